#include "kernels/cpu/asymmetric_loss.h"

#include <stddef.h>

/* Runs serially for the reason ap_cpu_bce_loss does: a batch times a handful
 * of labels is too small for threads, and a serial double sum is
 * deterministic. */
double ap_cpu_asymmetric_loss_sum(const float *logits, const int8_t *targets,
                                  const float *pos_weight, int count, int labels,
                                  const ap_asymmetric_params *params, float *grad, long *known)
{
    const size_t total = (size_t)count * (size_t)labels;
    double loss_sum = 0.0;
    long known_count = 0;

    for (size_t i = 0; i < total; i++) {
        int target = targets[i];
        float element_grad = 0.0f;
        if (target == 0 || target == 1) {
            float weight = pos_weight != NULL ? pos_weight[i % (size_t)labels] : 1.0f;
            loss_sum += ap_asymmetric_element(logits[i], target, weight, params, &element_grad);
            known_count++;
        }
        if (grad != NULL)
            grad[i] = element_grad;
    }
    *known = known_count;
    return loss_sum;
}

float ap_cpu_asymmetric_loss(const float *logits, const int8_t *targets, const float *pos_weight,
                             int count, int labels, const ap_asymmetric_params *params, float *grad)
{
    long known = 0;
    double loss_sum = ap_cpu_asymmetric_loss_sum(logits, targets, pos_weight, count, labels, params,
                                                 grad, &known);
    if (known == 0)
        return 0.0f;

    /* d(mean)/d(logit) is the element's gradient over the known count. */
    if (grad != NULL) {
        const size_t total = (size_t)count * (size_t)labels;
        float known_count = (float)known;
        for (size_t i = 0; i < total; i++)
            grad[i] = grad[i] / known_count;
    }
    return (float)(loss_sum / (double)known);
}

float ap_cpu_focal_loss(const float *logits, const int8_t *targets, const float *pos_weight,
                        int count, int labels, float gamma, float *grad)
{
    const ap_asymmetric_params params = {.gamma_pos = gamma, .gamma_neg = gamma, .clip = 0.0f};
    return ap_cpu_asymmetric_loss(logits, targets, pos_weight, count, labels, &params, grad);
}
