/* Inference with each batch norm folded into the convolution before it:
 * with a = scale / sqrt(running_var + epsilon), the convolution's weights
 * become W * a (per output channel) and its bias shift - running_mean * a.
 * oneDNN post-ops then add the residual shortcut and apply the ReLU in the
 * same pass, so a block reads and writes each activation once instead of
 * once per layer. Each inference forward compares the master weights and
 * batch-norm tensors with a copy of those it last folded, and folds again
 * when any bit differs, so the folded weights always match the current
 * parameters. */

#include <math.h>
#include <string.h>

#include "pipeline/nn/layers.h"

static ap_status create_attr(bool sum, bool relu, const char *layer, dnnl_primitive_attr_t *out,
                             ap_error *err)
{
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t post_ops = NULL;
    NN_CHECK(dnnl_primitive_attr_create(&attr), layer, err);
    dnnl_status_t status = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (status == dnnl_success)
        status = dnnl_post_ops_create(&post_ops);
    if (status == dnnl_success && sum)
        status = dnnl_post_ops_append_sum(post_ops, 1.0f);
    if (status == dnnl_success && relu)
        status = dnnl_post_ops_append_eltwise(post_ops, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f);
    if (status == dnnl_success)
        status = dnnl_primitive_attr_set_post_ops(attr, post_ops);
    if (post_ops != NULL)
        dnnl_post_ops_destroy(post_ops);
    if (status != dnnl_success) {
        dnnl_primitive_attr_destroy(attr);
        return nn_backend_error(err, "dnnl_post_ops_append", layer, status);
    }
    *out = attr;
    return AP_OK;
}

/* The primitive descriptor, or NULL when oneDNN has none or only its reference one.
 * The algorithm is left to oneDNN: under 2.6 on AVX-512 it picks Winograd
 * (jit_wino_4x3) for 3x3 stride-1 convolutions over 16-channel blocks, which
 * scored 12% more images/s on the default network (bench_vs_torch.sh score).
 * Its weight transform is costly, which the cached fold pays once. */
static ap_status create_pd(nn_context *ctx, const nn_conv *conv, const dnnl_memory_desc_t *dst_md,
                           bool sum, bool relu, dnnl_primitive_desc_t *out, ap_error *err)
{
    *out = NULL;
    const dnnl_memory_desc_t *src_md = NULL;
    NN_CHECK(dnnl_memory_get_memory_desc(conv->src, &src_md), conv->name, err);
    const ap_net_tensor *weight = conv->weight;
    dnnl_memory_desc_t weights_md, bias_md;
    dnnl_dims_t weight_dims = {weight->shape[0], weight->shape[1], weight->shape[2],
                               weight->shape[3]};
    dnnl_dims_t bias_dims = {weight->shape[0]};
    dnnl_dims_t strides = {conv->stride, conv->stride};
    dnnl_dims_t padding = {conv->padding, conv->padding};
    NN_CHECK(
        dnnl_memory_desc_init_by_tag(&weights_md, 4, weight_dims, dnnl_f32, dnnl_format_tag_any),
        conv->name, err);
    NN_TRY(nn_md_plain(&bias_md, 1, bias_dims, conv->name, err));
    dnnl_convolution_desc_t desc;
    NN_CHECK(dnnl_convolution_forward_desc_init(&desc, dnnl_forward_inference,
                                                dnnl_convolution_auto, src_md, &weights_md,
                                                &bias_md, dst_md, strides, padding, padding),
             conv->name, err);

    dnnl_primitive_attr_t attr = NULL;
    NN_TRY(create_attr(sum, relu, conv->name, &attr, err));
    dnnl_primitive_desc_t pd = NULL;
    dnnl_status_t status = dnnl_primitive_desc_create(&pd, &desc, attr, ctx->engine, NULL);
    dnnl_primitive_attr_destroy(attr);
    if (status != dnnl_success)
        return AP_OK;
    if (nn_pd_is_reference(pd)) {
        dnnl_primitive_desc_destroy(pd);
        return AP_OK;
    }
    *out = pd;
    return nn_pd_keep(ctx, pd, conv->name, err);
}

/* The master weights, then scale, shift, running mean and running variance. */
static size_t folded_source_floats(const nn_conv *conv)
{
    return conv->weight->size + 4 * (size_t)conv->weight->shape[0];
}

static ap_status create_buffers(nn_context *ctx, nn_conv *conv, const_dnnl_primitive_desc_t pd,
                                ap_error *err)
{
    nn_fused_conv *fused = &conv->fused;
    const ap_net_tensor *weight = conv->weight;
    dnnl_memory_desc_t plain_md, weights_md, bias_md;
    dnnl_dims_t weight_dims = {weight->shape[0], weight->shape[1], weight->shape[2],
                               weight->shape[3]};
    dnnl_dims_t bias_dims = {weight->shape[0]};
    NN_TRY(nn_md_plain(&plain_md, 4, weight_dims, conv->name, err));
    NN_TRY(nn_md_plain(&bias_md, 1, bias_dims, conv->name, err));
    NN_TRY(nn_pd_md(pd, dnnl_query_weights_md, conv->name, &weights_md, err));

    void *weights = NULL, *bias = NULL, *folded_from = NULL;
    NN_TRY(nn_alloc(ctx, weight->size * sizeof(float), conv->name, &weights, err));
    NN_TRY(nn_alloc(ctx, (size_t)weight->shape[0] * sizeof(float), conv->name, &bias, err));
    NN_TRY(
        nn_alloc(ctx, folded_source_floats(conv) * sizeof(float), conv->name, &folded_from, err));
    fused->weights = weights;
    fused->bias = bias;
    fused->folded_from = folded_from;
    NN_TRY(nn_memory_create(ctx, &plain_md, weights, conv->name, &fused->weights_plain, err));
    NN_TRY(nn_memory_create(ctx, &bias_md, bias, conv->name, &fused->bias_mem, err));
    if (nn_md_equal(&weights_md, &plain_md)) {
        fused->weights_mem = fused->weights_plain;
        return AP_OK;
    }
    fused->weights_reordered = true;
    NN_TRY(nn_memory_create(ctx, &weights_md, DNNL_MEMORY_ALLOCATE, conv->name, &fused->weights_mem,
                            err));
    return nn_reorder_create(ctx, &plain_md, &weights_md, conv->name, "fused weight reorder",
                             &fused->weights_reorder, err);
}

ap_status nn_fused_create(nn_context *ctx, nn_conv *conv, const nn_bn *bn,
                          const dnnl_memory_desc_t *dst_md, bool sum, bool relu, ap_error *err)
{
    nn_fused_conv *fused = &conv->fused;
    memset(fused, 0, sizeof(*fused));
    dnnl_primitive_desc_t pd = NULL;
    NN_TRY(create_pd(ctx, conv, dst_md, sum, relu, &pd, err));
    if (pd == NULL)
        return AP_OK;
    fused->scale = bn->scale;
    fused->shift = bn->shift;
    fused->running_mean = bn->running_mean;
    fused->running_var = bn->running_var;
    NN_TRY(create_buffers(ctx, conv, pd, err));
    NN_TRY(nn_op_create(ctx, pd, conv->name, "fused inference forward", &fused->op, err));
    fused->ready = true;
    return AP_OK;
}

static void fold_batch_norm(const nn_conv *conv)
{
    const nn_fused_conv *fused = &conv->fused;
    int64_t outputs = conv->weight->shape[0];
    size_t per_output = conv->weight->size / (size_t)outputs;
    for (int64_t o = 0; o < outputs; o++) {
        double a =
            fused->scale->data[o] / sqrt((double)fused->running_var->data[o] + NN_BN_EPSILON);
        const float *from = conv->weight->data + (size_t)o * per_output;
        float *to = fused->weights + (size_t)o * per_output;
        for (size_t i = 0; i < per_output; i++)
            to[i] = (float)(from[i] * a);
        fused->bias[o] = (float)(fused->shift->data[o] - fused->running_mean->data[o] * a);
    }
}

/* Compare the parameters with the copy of those last folded, or copy them
 * there when copy is set. Returns true when they match (always after a copy). */
static bool sync_folded_source(const nn_conv *conv, bool copy)
{
    const nn_fused_conv *fused = &conv->fused;
    size_t outputs = (size_t)conv->weight->shape[0];
    const float *parts[] = {conv->weight->data, fused->scale->data, fused->shift->data,
                            fused->running_mean->data, fused->running_var->data};
    size_t sizes[] = {conv->weight->size, outputs, outputs, outputs, outputs};
    float *at = fused->folded_from;
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
        size_t bytes = sizes[i] * sizeof(float);
        if (copy)
            memcpy(at, parts[i], bytes);
        else if (memcmp(at, parts[i], bytes) != 0)
            return false;
        at += sizes[i];
    }
    return true;
}

ap_status nn_fused_forward(nn_context *ctx, nn_conv *conv, dnnl_memory_t dst, ap_error *err)
{
    nn_fused_conv *fused = &conv->fused;
    if (!fused->folded || !sync_folded_source(conv, false)) {
        fold_batch_norm(conv);
        if (fused->weights_reordered)
            NN_TRY(nn_reorder_run(ctx, &fused->weights_reorder, fused->weights_plain,
                                  fused->weights_mem, err));
        sync_folded_source(conv, true);
        fused->folded = true;
    }
    if (conv->src_reordered)
        NN_TRY(nn_reorder_run(ctx, &conv->src_reorder, conv->input->data, conv->src, err));
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, conv->src},
        {DNNL_ARG_WEIGHTS, fused->weights_mem},
        {DNNL_ARG_BIAS, fused->bias_mem},
        {DNNL_ARG_DST, dst},
    };
    return nn_op_run(ctx, &fused->op, 4, args, err);
}
