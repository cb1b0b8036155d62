#include "pipeline/nn/layers.h"

#include <string.h>

/* Memory formats the forward convolution chose, which backward reuses. */
typedef struct {
    dnnl_memory_desc_t src;
    dnnl_memory_desc_t weights;
    dnnl_memory_desc_t dst;
    dnnl_memory_desc_t plain_weights; /* OIHW master copy */
} conv_formats;

/* The convolution reads its input in the format it chose. When that differs
 * from the input activation's format, forward copies the input into a private
 * buffer, and backward data copies the gradient back. */
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
                                         const dnnl_convolution_desc_t *fwd_desc,
                                         const_dnnl_primitive_desc_t fwd_pd,
                                         const conv_formats *formats, ap_error *err)
{
    dnnl_memory_desc_t weights_any;
    NN_CHECK(dnnl_memory_desc_init_by_tag(&weights_any, 4, formats->weights.dims, dnnl_f32,
                                          dnnl_format_tag_any),
             conv->name, err);
    dnnl_convolution_desc_t desc;
    NN_CHECK(dnnl_convolution_backward_weights_desc_init(
                 &desc, dnnl_convolution_direct, &formats->src, &weights_any, NULL, &formats->dst,
                 fwd_desc->strides, fwd_desc->padding[0], fwd_desc->padding[1]),
             conv->name, err);
    dnnl_primitive_desc_t pd = NULL;
    NN_TRY(nn_pd_create(ctx, &desc, fwd_pd, conv->name, &pd, err));
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

/* Backward data may want the weights in another blocked format than forward
 * (transposed blocks), so it gets its own reorder from the master copy. */
static ap_status create_backward_data(nn_context *ctx, nn_conv *conv,
                                      const dnnl_convolution_desc_t *fwd_desc,
                                      const_dnnl_primitive_desc_t fwd_pd,
                                      const conv_formats *formats, ap_error *err)
{
    dnnl_memory_desc_t weights_any;
    NN_CHECK(dnnl_memory_desc_init_by_tag(&weights_any, 4, formats->weights.dims, dnnl_f32,
                                          dnnl_format_tag_any),
             conv->name, err);
    dnnl_convolution_desc_t desc;
    NN_CHECK(dnnl_convolution_backward_data_desc_init(
                 &desc, dnnl_convolution_direct, &formats->src, &weights_any, &formats->dst,
                 fwd_desc->strides, fwd_desc->padding[0], fwd_desc->padding[1]),
             conv->name, err);
    dnnl_primitive_desc_t pd = NULL;
    NN_TRY(nn_pd_create(ctx, &desc, fwd_pd, conv->name, &pd, err));
    NN_TRY(nn_op_create(ctx, pd, conv->name, "backward data", &conv->bwd_data, err));

    if (conv->src_reordered) {
        NN_TRY(nn_memory_create(ctx, &formats->src, DNNL_MEMORY_ALLOCATE, conv->name,
                                &conv->diff_src, err));
        NN_TRY(nn_reorder_create(ctx, &formats->src, &conv->input->md, conv->name,
                                 "input gradient reorder", &conv->diff_src_reorder, err));
    }

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

ap_status nn_conv_create(nn_context *ctx, nn_conv *conv, nn_act *input, ap_net_tensor *weight,
                         int stride, bool needs_bwd_data, ap_error *err)
{
    conv->input = input;
    conv->weight = weight;
    conv->kernel = (int)weight->shape[2];
    conv->stride = stride;
    conv->padding = conv->kernel / 2;

    int64_t batch = input->md.dims[0];
    int64_t height = input->md.dims[2];
    int64_t width = input->md.dims[3];
    int64_t out_height = (height + 2 * conv->padding - conv->kernel) / stride + 1;
    int64_t out_width = (width + 2 * conv->padding - conv->kernel) / stride + 1;
    dnnl_dims_t src_dims = {batch, weight->shape[1], height, width};
    dnnl_dims_t dst_dims = {batch, weight->shape[0], out_height, out_width};
    dnnl_dims_t weight_dims = {weight->shape[0], weight->shape[1], weight->shape[2],
                               weight->shape[3]};
    dnnl_dims_t strides = {stride, stride};
    dnnl_dims_t padding = {conv->padding, conv->padding};
    conv->macs_per_image = (double)weight->size * (double)(out_height * out_width);

    dnnl_memory_desc_t src_any, weights_any, dst_any;
    conv_formats formats;
    NN_CHECK(dnnl_memory_desc_init_by_tag(&src_any, 4, src_dims, dnnl_f32, dnnl_format_tag_any),
             conv->name, err);
    NN_CHECK(
        dnnl_memory_desc_init_by_tag(&weights_any, 4, weight_dims, dnnl_f32, dnnl_format_tag_any),
        conv->name, err);
    NN_CHECK(dnnl_memory_desc_init_by_tag(&dst_any, 4, dst_dims, dnnl_f32, dnnl_format_tag_any),
             conv->name, err);
    NN_TRY(nn_md_plain(&formats.plain_weights, 4, weight_dims, conv->name, err));

    dnnl_convolution_desc_t desc;
    NN_CHECK(dnnl_convolution_forward_desc_init(&desc, dnnl_forward_training,
                                                dnnl_convolution_direct, &src_any, &weights_any,
                                                NULL, &dst_any, strides, padding, padding),
             conv->name, err);
    dnnl_primitive_desc_t pd = NULL;
    NN_TRY(nn_pd_create(ctx, &desc, NULL, conv->name, &pd, err));
    NN_TRY(nn_op_create(ctx, pd, conv->name, "forward", &conv->fwd, err));
    NN_TRY(nn_pd_md(pd, dnnl_query_src_md, conv->name, &formats.src, err));
    NN_TRY(nn_pd_md(pd, dnnl_query_weights_md, conv->name, &formats.weights, err));
    NN_TRY(nn_pd_md(pd, dnnl_query_dst_md, conv->name, &formats.dst, err));

    NN_TRY(nn_act_create(ctx, &formats.dst, conv->name, &conv->output, err));
    NN_TRY(create_src(ctx, conv, &formats.src, err));
    NN_TRY(create_forward_weights(ctx, conv, &formats, err));
    NN_TRY(create_backward_weights(ctx, conv, &desc, pd, &formats, err));
    if (needs_bwd_data)
        NN_TRY(create_backward_data(ctx, conv, &desc, pd, &formats, err));
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
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_DIFF_DST, conv->output.diff},
        {DNNL_ARG_WEIGHTS, conv->weights_bwd},
        {DNNL_ARG_DIFF_SRC, conv->src_reordered ? conv->diff_src : target},
    };
    NN_TRY(nn_op_run(ctx, &conv->bwd_data, 3, args, err));
    if (conv->src_reordered)
        NN_TRY(nn_reorder_run(ctx, &conv->diff_src_reorder, conv->diff_src, target, err));
    return AP_OK;
}
