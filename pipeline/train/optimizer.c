#include "pipeline/train/optimizer.h"

#include <stdlib.h>

#include "kernels/cpu/adamw.h"

ap_status ap_optimizer_init(ap_optimizer *opt, ap_net *net, ap_error *err)
{
    opt->tensor_count = ap_net_tensor_count(net);
    opt->step = 0;
    opt->first_moment = calloc(opt->tensor_count, sizeof(float *));
    opt->second_moment = calloc(opt->tensor_count, sizeof(float *));
    if (opt->first_moment == NULL || opt->second_moment == NULL) {
        ap_optimizer_free(opt);
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate optimizer state");
    }
    for (size_t i = 0; i < opt->tensor_count; i++) {
        ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        if (tensor->role == AP_TENSOR_STATE)
            continue;
        opt->first_moment[i] = calloc(tensor->size, sizeof(float));
        opt->second_moment[i] = calloc(tensor->size, sizeof(float));
        if (opt->first_moment[i] == NULL || opt->second_moment[i] == NULL) {
            ap_optimizer_free(opt);
            return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate optimizer state for %s",
                                tensor->name);
        }
    }
    return AP_OK;
}

void ap_optimizer_free(ap_optimizer *opt)
{
    for (size_t i = 0; i < opt->tensor_count; i++) {
        if (opt->first_moment)
            free(opt->first_moment[i]);
        if (opt->second_moment)
            free(opt->second_moment[i]);
    }
    free(opt->first_moment);
    free(opt->second_moment);
    opt->first_moment = NULL;
    opt->second_moment = NULL;
    opt->tensor_count = 0;
}

void ap_optimizer_step(ap_optimizer *opt, ap_net *net, double learning_rate, double weight_decay,
                       double beta1, double beta2, double epsilon)
{
    opt->step++;
    for (size_t i = 0; i < opt->tensor_count; i++) {
        ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        if (tensor->role == AP_TENSOR_STATE)
            continue;
        ap_adamw_args args = {
            .learning_rate = (float)learning_rate,
            .beta1 = (float)beta1,
            .beta2 = (float)beta2,
            .epsilon = (float)epsilon,
            .weight_decay = tensor->role == AP_TENSOR_WEIGHT ? (float)weight_decay : 0.0f,
            .step = opt->step,
        };
        ap_cpu_adamw(tensor->data, tensor->grad, opt->first_moment[i], opt->second_moment[i],
                     tensor->size, &args);
    }
}
