#include "pipeline/nn/layers.h"

#include <string.h>

/* Memory formats the convolution's primitives chose. */
typedef struct {
    dnnl_memory_desc_t src; /* read by forward and backward weights */
    dnnl_memory_desc_t weights;
    dnnl_memory_desc_t dst;
    dnnl_memory_desc_t plain_weights; /* OIHW master copy */
} conv_formats;

/* Forward reads the input in the format the plan chose. When that differs
 * from the input activation's format, forward copies the input into a
 * private buffer, which backward weights reads as well. */
static ap_status create_src(nn_context *ctx, nn_conv *conv, const dnnl_memory_desc_t *src_md,
                            ap_error *err)
{
    if (nn_md_equal(src_md, &conv->input->md)) {
        conv->src = conv->input->data;
        return AP_OK;
    }
    conv->src_reordered = true;
    NN_TRY(nn_memory_create(ctx, src_md, DNNL_MEMORY_ALLOCATE, conv->name, &conv->src, err));
    return nn_reorder_create(ctx, &conv->input->md, src_md, conv->name, "input reorder",
                             &conv->src_reorder, err);
}

static ap_status create_forward_weights(nn_context *ctx, nn_conv *conv, const conv_formats *formats,
                                        ap_error *err)
{
    NN_TRY(nn_memory_create(ctx, &formats->plain_weights, conv->weight->data, conv->name,
                            &conv->weights_plain, err));
    if (nn_md_equal(&formats->weights, &formats->plain_weights)) {
        conv->weights_fwd = conv->weights_plain;
        return AP_OK;
    }
    conv->weights_fwd_reordered = true;
    NN_TRY(nn_memory_create(ctx, &formats->weights, DNNL_MEMORY_ALLOCATE, conv->name,
                            &conv->weights_fwd, err));
    return nn_reorder_create(ctx, &formats->plain_weights, &formats->weights, conv->name,
                             "weight reorder", &conv->weights_fwd_reorder, err);
}

static ap_status create_backward_weights(nn_context *ctx, nn_conv *conv,
                                         const_dnnl_primitive_desc_t pd,
                                         const conv_formats *formats, ap_error *err)
{
    NN_TRY(nn_op_create(ctx, pd, conv->name, "backward weights", &conv->bwd_weights, err));
    dnnl_memory_desc_t diff_md;
    NN_TRY(nn_pd_md(pd, dnnl_query_diff_weights_md, conv->name, &diff_md, err));
    NN_TRY(nn_memory_create(ctx, &formats->plain_weights, conv->weight->grad, conv->name,
                            &conv->diff_weights_plain, err));
    if (nn_md_equal(&diff_md, &formats->plain_weights)) {
        conv->diff_weights = conv->diff_weights_plain;
        return AP_OK;
    }
    conv->diff_weights_reordered = true;
    NN_TRY(nn_memory_create(ctx, &diff_md, DNNL_MEMORY_ALLOCATE, conv->name, &conv->diff_weights,
                            err));
    return nn_reorder_create(ctx, &diff_md, &formats->plain_weights, conv->name,
                             "weight gradient reorder", &conv->diff_weights_reorder, err);
}

/* Backward data reads the output gradient and writes the input gradient in
 * formats of its own choice. Reorders copy them from and to the formats of
 * the output and the input where those differ. */
static ap_status create_backward_data_gradients(nn_context *ctx, nn_conv *conv,
                                                const_dnnl_primitive_desc_t pd, ap_error *err)
{
    dnnl_memory_desc_t diff_dst_md, diff_src_md;
    NN_TRY(nn_pd_md(pd, dnnl_query_diff_dst_md, conv->name, &diff_dst_md, err));
    NN_TRY(nn_pd_md(pd, dnnl_query_diff_src_md, conv->name, &diff_src_md, err));
    if (!nn_md_equal(&diff_dst_md, &conv->output.md)) {
        conv->diff_dst_reordered = true;
        NN_TRY(nn_memory_create(ctx, &diff_dst_md, DNNL_MEMORY_ALLOCATE, conv->name,
                                &conv->diff_dst, err));
        NN_TRY(nn_reorder_create(ctx, &conv->output.md, &diff_dst_md, conv->name,
                                 "output gradient reorder", &conv->diff_dst_reorder, err));
    }
    if (nn_md_equal(&diff_src_md, &conv->input->md))
        return AP_OK;
    conv->diff_src_reordered = true;
    NN_TRY(nn_memory_create(ctx, &diff_src_md, DNNL_MEMORY_ALLOCATE, conv->name, &conv->diff_src,
                            err));
    return nn_reorder_create(ctx, &diff_src_md, &conv->input->md, conv->name,
                             "input gradient reorder", &conv->diff_src_reorder, err);
}

/* Backward data may want the weights in another blocked format than forward
 * (transposed blocks), so it gets its own reorder from the master copy. */
static ap_status create_backward_data(nn_context *ctx, nn_conv *conv,
                                      const_dnnl_primitive_desc_t pd, const conv_formats *formats,
                                      ap_error *err)
{
    NN_TRY(nn_op_create(ctx, pd, conv->name, "backward data", &conv->bwd_data, err));
    NN_TRY(create_backward_data_gradients(ctx, conv, pd, err));

    dnnl_memory_desc_t bwd_md;
    NN_TRY(nn_pd_md(pd, dnnl_query_weights_md, conv->name, &bwd_md, err));
    if (nn_md_equal(&bwd_md, &formats->weights)) {
        conv->weights_bwd = conv->weights_fwd;
        return AP_OK;
    }
    if (nn_md_equal(&bwd_md, &formats->plain_weights)) {
        conv->weights_bwd = conv->weights_plain;
        return AP_OK;
    }
    conv->weights_bwd_reordered = true;
    NN_TRY(
        nn_memory_create(ctx, &bwd_md, DNNL_MEMORY_ALLOCATE, conv->name, &conv->weights_bwd, err));
    return nn_reorder_create(ctx, &formats->plain_weights, &bwd_md, conv->name,
                             "backward weight reorder", &conv->weights_bwd_reorder, err);
}

static void init_shape(const nn_conv *conv, nn_conv_shape *shape)
{
    const ap_net_tensor *weight = conv->weight;
    const int64_t *src = conv->input->md.dims;
    int64_t out_height = (src[2] + 2 * conv->padding - conv->kernel) / conv->stride + 1;
    int64_t out_width = (src[3] + 2 * conv->padding - conv->kernel) / conv->stride + 1;
    memset(shape, 0, sizeof(*shape));
    for (int i = 0; i < 4; i++)
        shape->weights[i] = weight->shape[i];
    shape->src[0] = src[0];
    shape->src[1] = weight->shape[1];
    shape->src[2] = src[2];
    shape->src[3] = src[3];
    shape->dst[0] = src[0];
    shape->dst[1] = weight->shape[0];
    shape->dst[2] = out_height;
    shape->dst[3] = out_width;
    shape->strides[0] = shape->strides[1] = conv->stride;
    shape->padding[0] = shape->padding[1] = conv->padding;
}

ap_status nn_conv_create(nn_context *ctx, nn_conv *conv, nn_act *input, ap_net_tensor *weight,
                         int stride, bool needs_bwd_data, ap_error *err)
{
    conv->input = input;
    conv->weight = weight;
    conv->kernel = (int)weight->shape[2];
    conv->stride = stride;
    conv->padding = conv->kernel / 2;
    nn_conv_shape shape;
    init_shape(conv, &shape);
    conv->macs_per_image = (double)weight->size * (double)(shape.dst[2] * shape.dst[3]);

    nn_conv_plan plan;
    NN_TRY(nn_conv_plan_create(ctx, &shape, &input->md, needs_bwd_data, conv->name, &plan, err));
    conv_formats formats;
    NN_TRY(nn_md_plain(&formats.plain_weights, 4, shape.weights, conv->name, err));
    NN_TRY(nn_pd_md(plan.fwd, dnnl_query_src_md, conv->name, &formats.src, err));
    NN_TRY(nn_pd_md(plan.fwd, dnnl_query_weights_md, conv->name, &formats.weights, err));
    NN_TRY(nn_pd_md(plan.fwd, dnnl_query_dst_md, conv->name, &formats.dst, err));

    NN_TRY(nn_op_create(ctx, plan.fwd, conv->name, "forward", &conv->fwd, err));
    NN_TRY(nn_act_create(ctx, &formats.dst, conv->name, &conv->output, err));
    NN_TRY(create_src(ctx, conv, &formats.src, err));
    NN_TRY(create_forward_weights(ctx, conv, &formats, err));
    NN_TRY(create_backward_weights(ctx, conv, plan.bwd_weights, &formats, err));
    if (needs_bwd_data)
        NN_TRY(create_backward_data(ctx, conv, plan.bwd_data, &formats, err));
    return AP_OK;
}

ap_status nn_conv_forward(nn_context *ctx, nn_conv *conv, ap_error *err)
{
    if (conv->weights_fwd_reordered)
        NN_TRY(nn_reorder_run(ctx, &conv->weights_fwd_reorder, conv->weights_plain,
                              conv->weights_fwd, err));
    if (conv->src_reordered)
        NN_TRY(nn_reorder_run(ctx, &conv->src_reorder, conv->input->data, conv->src, err));
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, conv->src},
        {DNNL_ARG_WEIGHTS, conv->weights_fwd},
        {DNNL_ARG_DST, conv->output.data},
    };
    return nn_op_run(ctx, &conv->fwd, 3, args, err);
}

ap_status nn_conv_backward_weights(nn_context *ctx, nn_conv *conv, ap_error *err)
{
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, conv->src},
        {DNNL_ARG_DIFF_DST, conv->output.diff},
        {DNNL_ARG_DIFF_WEIGHTS, conv->diff_weights},
    };
    NN_TRY(nn_op_run(ctx, &conv->bwd_weights, 3, args, err));
    if (conv->diff_weights_reordered)
        NN_TRY(nn_reorder_run(ctx, &conv->diff_weights_reorder, conv->diff_weights,
                              conv->diff_weights_plain, err));
    return AP_OK;
}

ap_status nn_conv_backward_data(nn_context *ctx, nn_conv *conv, dnnl_memory_t target, ap_error *err)
{
    if (conv->bwd_data.primitive == NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "network layer %s: built without a backward-data pass", conv->name);
    if (conv->weights_bwd_reordered)
        NN_TRY(nn_reorder_run(ctx, &conv->weights_bwd_reorder, conv->weights_plain,
                              conv->weights_bwd, err));
    if (conv->diff_dst_reordered)
        NN_TRY(
            nn_reorder_run(ctx, &conv->diff_dst_reorder, conv->output.diff, conv->diff_dst, err));
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_DIFF_DST, conv->diff_dst_reordered ? conv->diff_dst : conv->output.diff},
        {DNNL_ARG_WEIGHTS, conv->weights_bwd},
        {DNNL_ARG_DIFF_SRC, conv->diff_src_reordered ? conv->diff_src : target},
    };
    NN_TRY(nn_op_run(ctx, &conv->bwd_data, 3, args, err));
    if (conv->diff_src_reordered)
        NN_TRY(nn_reorder_run(ctx, &conv->diff_src_reorder, conv->diff_src, target, err));
    return AP_OK;
}
