#include "pipeline/nn/layers.h"

#include <string.h>

/* Fill a pooling descriptor whose destination format follows the source's. */
static ap_status init_forward_desc(const nn_pool *pool, dnnl_prop_kind_t prop_kind,
                                   dnnl_alg_kind_t algorithm, const dnnl_dims_t kernel,
                                   const dnnl_dims_t strides, const dnnl_dims_t padding,
                                   dnnl_pooling_v2_desc_t *desc, ap_error *err)
{
    const dnnl_memory_desc_t *src_md = &pool->input->md;
    dnnl_dims_t dst_dims = {src_md->dims[0], src_md->dims[1], 0, 0};
    for (int i = 0; i < 2; i++)
        dst_dims[2 + i] = (src_md->dims[2 + i] + 2 * padding[i] - kernel[i]) / strides[i] + 1;
    dnnl_memory_desc_t dst_any;
    NN_CHECK(dnnl_memory_desc_init_by_tag(&dst_any, 4, dst_dims, dnnl_f32, dnnl_format_tag_any),
             pool->name, err);
    dnnl_dims_t dilation = {0, 0};
    NN_CHECK(dnnl_pooling_v2_forward_desc_init(desc, prop_kind, algorithm, src_md, &dst_any,
                                               strides, kernel, dilation, padding, padding),
             pool->name, err);
    return AP_OK;
}

ap_status nn_pool_create(nn_context *ctx, nn_pool *pool, nn_act *input, dnnl_alg_kind_t algorithm,
                         int kernel, int stride, int padding, ap_error *err)
{
    pool->input = input;
    dnnl_dims_t kernel_dims = {kernel, kernel};
    dnnl_dims_t stride_dims = {stride, stride};
    dnnl_dims_t padding_dims = {padding, padding};

    dnnl_pooling_v2_desc_t desc;
    NN_TRY(init_forward_desc(pool, dnnl_forward_training, algorithm, kernel_dims, stride_dims,
                             padding_dims, &desc, err));
    dnnl_primitive_desc_t pd = NULL;
    NN_TRY(nn_pd_create(ctx, &desc, NULL, pool->name, &pd, err));
    NN_TRY(nn_op_create(ctx, pd, pool->name, "training forward", &pool->fwd_train, err));
    dnnl_memory_desc_t dst_md, workspace_md;
    NN_TRY(nn_pd_md(pd, dnnl_query_dst_md, pool->name, &dst_md, err));
    NN_TRY(nn_act_create(ctx, &dst_md, pool->name, &pool->output, err));
    NN_TRY(nn_pd_md(pd, dnnl_query_workspace_md, pool->name, &workspace_md, err));
    if (dnnl_memory_desc_get_size(&workspace_md) > 0)
        NN_TRY(nn_memory_create(ctx, &workspace_md, DNNL_MEMORY_ALLOCATE, pool->name,
                                &pool->workspace, err));

    dnnl_pooling_v2_desc_t infer_desc;
    NN_TRY(init_forward_desc(pool, dnnl_forward_inference, algorithm, kernel_dims, stride_dims,
                             padding_dims, &infer_desc, err));
    infer_desc.dst_desc = pool->output.md;
    dnnl_primitive_desc_t infer_pd = NULL;
    NN_TRY(nn_pd_create(ctx, &infer_desc, NULL, pool->name, &infer_pd, err));
    NN_TRY(nn_op_create(ctx, infer_pd, pool->name, "inference forward", &pool->fwd_infer, err));

    dnnl_pooling_v2_desc_t bwd_desc;
    dnnl_dims_t dilation = {0, 0};
    NN_CHECK(dnnl_pooling_v2_backward_desc_init(&bwd_desc, algorithm, &input->md, &pool->output.md,
                                                stride_dims, kernel_dims, dilation, padding_dims,
                                                padding_dims),
             pool->name, err);
    dnnl_primitive_desc_t bwd_pd = NULL;
    NN_TRY(nn_pd_create(ctx, &bwd_desc, pd, pool->name, &bwd_pd, err));
    return nn_op_create(ctx, bwd_pd, pool->name, "backward", &pool->bwd, err);
}

ap_status nn_pool_forward(nn_context *ctx, nn_pool *pool, bool training, ap_error *err)
{
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_SRC, pool->input->data},
        {DNNL_ARG_DST, pool->output.data},
        {DNNL_ARG_WORKSPACE, pool->workspace},
    };
    if (!training)
        return nn_op_run(ctx, &pool->fwd_infer, 2, args, err);
    return nn_op_run(ctx, &pool->fwd_train, pool->workspace != NULL ? 3 : 2, args, err);
}

ap_status nn_pool_backward(nn_context *ctx, nn_pool *pool, ap_error *err)
{
    dnnl_exec_arg_t args[] = {
        {DNNL_ARG_DIFF_DST, pool->output.diff},
        {DNNL_ARG_DIFF_SRC, pool->input->diff},
        {DNNL_ARG_WORKSPACE, pool->workspace},
    };
    return nn_op_run(ctx, &pool->bwd, pool->workspace != NULL ? 3 : 2, args, err);
}

ap_status nn_gap_create(nn_context *ctx, nn_gap *gap, nn_act *input, ap_error *err)
{
    nn_pool *pool = &gap->pool;
    int64_t height = input->md.dims[2];
    int64_t width = input->md.dims[3];
    dnnl_dims_t kernel = {height, width};
    dnnl_dims_t padding = {0, 0};
    pool->input = input;

    dnnl_pooling_v2_desc_t desc;
    NN_TRY(init_forward_desc(pool, dnnl_forward_training, dnnl_pooling_avg_exclude_padding, kernel,
                             kernel, padding, &desc, err));
    dnnl_primitive_desc_t pd = NULL;
    NN_TRY(nn_pd_create(ctx, &desc, NULL, pool->name, &pd, err));
    NN_TRY(nn_op_create(ctx, pd, pool->name, "forward", &pool->fwd_train, err));
    pool->fwd_infer = pool->fwd_train;
    dnnl_memory_desc_t dst_md;
    NN_TRY(nn_pd_md(pd, dnnl_query_dst_md, pool->name, &dst_md, err));
    NN_TRY(nn_act_create(ctx, &dst_md, pool->name, &pool->output, err));

    dnnl_pooling_v2_desc_t bwd_desc;
    dnnl_dims_t dilation = {0, 0};
    NN_CHECK(dnnl_pooling_v2_backward_desc_init(&bwd_desc, dnnl_pooling_avg_exclude_padding,
                                                &input->md, &pool->output.md, kernel, kernel,
                                                dilation, padding, padding),
             pool->name, err);
    dnnl_primitive_desc_t bwd_pd = NULL;
    NN_TRY(nn_pd_create(ctx, &bwd_desc, pd, pool->name, &bwd_pd, err));
    NN_TRY(nn_op_create(ctx, bwd_pd, pool->name, "backward", &pool->bwd, err));

    /* The pooled [batch, channels, 1, 1] map in plain order is the feature matrix. */
    dnnl_memory_desc_t plain_md;
    NN_TRY(nn_md_plain(&plain_md, 4, pool->output.md.dims, pool->name, err));
    void *features = NULL;
    void *d_features = NULL;
    size_t bytes = dnnl_memory_desc_get_size(&plain_md);
    NN_TRY(nn_alloc(ctx, bytes, pool->name, &features, err));
    NN_TRY(nn_alloc(ctx, bytes, pool->name, &d_features, err));
    gap->features = features;
    gap->d_features = d_features;
    NN_TRY(nn_memory_create(ctx, &plain_md, features, pool->name, &gap->features_mem, err));
    NN_TRY(nn_memory_create(ctx, &plain_md, d_features, pool->name, &gap->d_features_mem, err));
    NN_TRY(nn_reorder_create(ctx, &pool->output.md, &plain_md, pool->name, "feature reorder",
                             &gap->to_plain, err));
    return nn_reorder_create(ctx, &plain_md, &pool->output.md, pool->name,
                             "feature gradient reorder", &gap->from_plain, err);
}

ap_status nn_gap_forward(nn_context *ctx, nn_gap *gap, ap_error *err)
{
    NN_TRY(nn_pool_forward(ctx, &gap->pool, true, err));
    NN_TRY(nn_reorder_run(ctx, &gap->to_plain, gap->pool.output.data, gap->features_mem, err));
    return nn_wait(ctx, gap->pool.name, err);
}

ap_status nn_gap_backward(nn_context *ctx, nn_gap *gap, ap_error *err)
{
    NN_TRY(nn_reorder_run(ctx, &gap->from_plain, gap->d_features_mem, gap->pool.output.diff, err));
    return nn_pool_backward(ctx, &gap->pool, err);
}
