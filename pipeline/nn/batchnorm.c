#include "pipeline/nn/layers.h"

#include <string.h>

static unsigned bn_flags(const nn_bn *bn)
{
    unsigned flags = dnnl_use_scale | dnnl_use_shift;
    if (bn->relu)
        flags |= dnnl_fuse_norm_relu;
    return flags;
}

static ap_status create_parameter_memories(nn_context *ctx, nn_bn *bn, ap_error *err)
{
    dnnl_memory_desc_t channel_md;
    dnnl_dims_t dims = {bn->channels};
    NN_TRY(nn_md_plain(&channel_md, 1, dims, bn->name, err));

    void *mean = NULL;
    void *var = NULL;
    NN_TRY(nn_alloc(ctx, (size_t)bn->channels * sizeof(float), bn->name, &mean, err));
    NN_TRY(nn_alloc(ctx, (size_t)bn->channels * sizeof(float), bn->name, &var, err));
    bn->batch_mean = mean;
    bn->batch_var = var;

    struct {
        dnnl_memory_t *memory;
        void *handle;
    } bindings[] = {
        {&bn->scale_mem, bn->scale->data},
        {&bn->shift_mem, bn->shift->data},
        {&bn->diff_scale_mem, bn->scale->grad},
        {&bn->diff_shift_mem, bn->shift->grad},
        {&bn->running_mean_mem, bn->running_mean->data},
        {&bn->running_var_mem, bn->running_var->data},
        {&bn->batch_mean_mem, mean},
        {&bn->batch_var_mem, var},
    };
    for (size_t i = 0; i < sizeof(bindings) / sizeof(bindings[0]); i++)
        NN_TRY(nn_memory_create(ctx, &channel_md, bindings[i].handle, bn->name, bindings[i].memory,
                                err));
    return AP_OK;
}

static ap_status create_output(nn_context *ctx, nn_bn *bn, const dnnl_memory_desc_t *md,
                               const nn_act *shared_diff, ap_error *err)
{
    if (shared_diff == NULL || !nn_md_equal(md, &shared_diff->md))
        return nn_act_create(ctx, md, bn->name, &bn->output, err);
    NN_TRY(nn_act_create_data(ctx, md, bn->name, &bn->output, err));
    bn->output.diff = shared_diff->diff;
    bn->output.diff_ptr = shared_diff->diff_ptr;
    return AP_OK;
}

static ap_status create_inference(nn_context *ctx, nn_bn *bn, ap_error *err)
{
    dnnl_batch_normalization_desc_t desc;
    NN_CHECK(dnnl_batch_normalization_forward_desc_init(&desc, dnnl_forward_inference,
                                                        &bn->input->md, NN_BN_EPSILON,
                                                        bn_flags(bn) | dnnl_use_global_stats),
             bn->name, err);
    dnnl_primitive_desc_t pd = NULL;
    NN_TRY(nn_pd_create(ctx, &desc, NULL, bn->name, &pd, err));
    return nn_op_create(ctx, pd, bn->name, "inference forward", &bn->fwd_infer, err);
}

static ap_status create_backward(nn_context *ctx, nn_bn *bn, const_dnnl_primitive_desc_t fwd_pd,
                                 ap_error *err)
{
    dnnl_batch_normalization_desc_t desc;
    NN_CHECK(dnnl_batch_normalization_backward_desc_init(
                 &desc, dnnl_backward, &bn->output.md, &bn->input->md, NN_BN_EPSILON, bn_flags(bn)),
             bn->name, err);
    dnnl_primitive_desc_t pd = NULL;
    NN_TRY(nn_pd_create(ctx, &desc, fwd_pd, bn->name, &pd, err));
    return nn_op_create(ctx, pd, bn->name, "backward", &bn->bwd, err);
}

ap_status nn_bn_create(nn_context *ctx, nn_bn *bn, nn_act *input, bool relu, ap_net_tensor *tensors,
                       const nn_act *shared_diff, ap_error *err)
{
    bn->input = input;
    bn->relu = relu;
    bn->scale = &tensors[0];
    bn->shift = &tensors[1];
    bn->running_mean = &tensors[2];
    bn->running_var = &tensors[3];
    bn->channels = (int)input->md.dims[1];
    bn->values_per_channel = input->md.dims[0] * input->md.dims[2] * input->md.dims[3];

    dnnl_batch_normalization_desc_t desc;
    NN_CHECK(dnnl_batch_normalization_forward_desc_init(&desc, dnnl_forward_training, &input->md,
                                                        NN_BN_EPSILON, bn_flags(bn)),
             bn->name, err);
    dnnl_primitive_desc_t pd = NULL;
    NN_TRY(nn_pd_create(ctx, &desc, NULL, bn->name, &pd, err));
    NN_TRY(nn_op_create(ctx, pd, bn->name, "training forward", &bn->fwd_train, err));
    dnnl_memory_desc_t dst_md;
    NN_TRY(nn_pd_md(pd, dnnl_query_dst_md, bn->name, &dst_md, err));
    NN_TRY(create_output(ctx, bn, &dst_md, shared_diff, err));
    if (relu) {
        dnnl_memory_desc_t workspace_md;
        NN_TRY(nn_pd_md(pd, dnnl_query_workspace_md, bn->name, &workspace_md, err));
        NN_TRY(nn_memory_create(ctx, &workspace_md, DNNL_MEMORY_ALLOCATE, bn->name, &bn->workspace,
                                err));
    }
    NN_TRY(create_parameter_memories(ctx, bn, err));
    NN_TRY(create_inference(ctx, bn, err));
    return create_backward(ctx, bn, pd, err);
}

/* PyTorch's update: running = (1 - momentum) * running + momentum * batch
 * statistic, with the unbiased variance (count / (count - 1) times the biased
 * one). The network rejects training when a channel has a single value. */
static void update_running_stats(nn_bn *bn)
{
    double count = (double)bn->values_per_channel;
    float unbias = (float)(count / (count - 1.0));
    float *running_mean = bn->running_mean->data;
    float *running_var = bn->running_var->data;
    for (int c = 0; c < bn->channels; c++) {
        running_mean[c] =
            (1.0f - NN_BN_MOMENTUM) * running_mean[c] + NN_BN_MOMENTUM * bn->batch_mean[c];
        running_var[c] =
            (1.0f - NN_BN_MOMENTUM) * running_var[c] + NN_BN_MOMENTUM * bn->batch_var[c] * unbias;
    }
}

ap_status nn_bn_forward(nn_context *ctx, nn_bn *bn, bool training, ap_error *err)
{
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, bn->input->data},
        {DNNL_ARG_DST, bn->output.data},
        {DNNL_ARG_SCALE, bn->scale_mem},
        {DNNL_ARG_SHIFT, bn->shift_mem},
        {DNNL_ARG_MEAN, training ? bn->batch_mean_mem : bn->running_mean_mem},
        {DNNL_ARG_VARIANCE, training ? bn->batch_var_mem : bn->running_var_mem},
        {DNNL_ARG_WORKSPACE, bn->workspace},
    };
    int arg_count = training && bn->relu ? 7 : 6;
    if (!training)
        return nn_op_run(ctx, &bn->fwd_infer, arg_count, args, err);

    NN_TRY(nn_op_run(ctx, &bn->fwd_train, arg_count, args, err));
    NN_TRY(nn_wait(ctx, bn->name, err));
    update_running_stats(bn);
    return AP_OK;
}

/* oneDNN 2.6 rejects a backward call without the shift (invalid_arguments)
 * when dnnl_use_shift is set, although the gradients do not depend on it. */
ap_status nn_bn_backward(nn_context *ctx, nn_bn *bn, ap_error *err)
{
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, bn->input->data},           {DNNL_ARG_MEAN, bn->batch_mean_mem},
        {DNNL_ARG_VARIANCE, bn->batch_var_mem},    {DNNL_ARG_DIFF_DST, bn->output.diff},
        {DNNL_ARG_SCALE, bn->scale_mem},           {DNNL_ARG_SHIFT, bn->shift_mem},
        {DNNL_ARG_DIFF_SRC, bn->input->diff},      {DNNL_ARG_DIFF_SCALE, bn->diff_scale_mem},
        {DNNL_ARG_DIFF_SHIFT, bn->diff_shift_mem}, {DNNL_ARG_WORKSPACE, bn->workspace},
    };
    return nn_op_run(ctx, &bn->bwd, bn->relu ? 10 : 9, args, err);
}
