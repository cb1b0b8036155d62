#include "pipeline/nn/net_internal.h"

#include <stdio.h>
#include <string.h>

static ap_status name_layer(char *name, const char *prefix, const char *suffix, ap_error *err)
{
    int length = snprintf(name, AP_PARAM_NAME_MAX, "%s.%s", prefix, suffix);
    if (length < 0 || length >= AP_PARAM_NAME_MAX)
        return ap_error_set(err, AP_ERR_INVALID, "network: layer name %s.%s is too long", prefix,
                            suffix);
    return AP_OK;
}

static ap_status create_branch(ap_net *net, nn_block *block, int in_channels, int out_channels,
                               int stride, ap_error *err)
{
    nn_context *ctx = &net->ctx;
    ap_net_tensor *tensor = NULL;
    NN_TRY(name_layer(block->conv1.name, block->prefix, "conv1", err));
    NN_TRY(name_layer(block->bn1.name, block->prefix, "bn1", err));
    NN_TRY(name_layer(block->conv2.name, block->prefix, "conv2", err));
    NN_TRY(name_layer(block->bn2.name, block->prefix, "bn2", err));

    NN_TRY(nn_add_conv_weight(net, block->conv1.name, out_channels, in_channels, 3, &tensor, err));
    NN_TRY(nn_conv_create(ctx, &block->conv1, block->input, tensor, stride, true, err));
    NN_TRY(nn_add_bn_tensors(net, block->bn1.name, out_channels, &tensor, err));
    NN_TRY(nn_bn_create(ctx, &block->bn1, &block->conv1.output, true, tensor, NULL, err));
    NN_TRY(nn_add_conv_weight(net, block->conv2.name, out_channels, out_channels, 3, &tensor, err));
    NN_TRY(nn_conv_create(ctx, &block->conv2, &block->bn1.output, tensor, 1, true, err));
    NN_TRY(nn_add_bn_tensors(net, block->bn2.name, out_channels, &tensor, err));
    return nn_bn_create(ctx, &block->bn2, &block->conv2.output, false, tensor, NULL, err);
}

/* The projection's batch norm reads the gradient of the sum straight from the
 * branch's batch norm when both use one format. */
static ap_status create_projection(ap_net *net, nn_block *block, int in_channels, int out_channels,
                                   int stride, ap_error *err)
{
    nn_context *ctx = &net->ctx;
    ap_net_tensor *tensor = NULL;
    NN_TRY(name_layer(block->shortcut_conv.name, block->prefix, "shortcut.conv", err));
    NN_TRY(name_layer(block->shortcut_bn.name, block->prefix, "shortcut.bn", err));

    NN_TRY(nn_add_conv_weight(net, block->shortcut_conv.name, out_channels, in_channels, 1, &tensor,
                              err));
    NN_TRY(nn_conv_create(ctx, &block->shortcut_conv, block->input, tensor, stride, true, err));
    NN_TRY(nn_add_bn_tensors(net, block->shortcut_bn.name, out_channels, &tensor, err));
    NN_TRY(nn_bn_create(ctx, &block->shortcut_bn, &block->shortcut_conv.output, false, tensor,
                        &block->bn2.output, err));
    if (block->shortcut_bn.output.diff == block->bn2.output.diff)
        return AP_OK;
    block->sum_grad_reordered = true;
    return nn_reorder_create(ctx, &block->bn2.output.md, &block->shortcut_bn.output.md,
                             block->prefix, "shortcut gradient reorder", &block->sum_grad_reorder,
                             err);
}

ap_status nn_block_create(ap_net *net, nn_block *block, nn_act *input, int in_channels,
                          int out_channels, int stride, ap_error *err)
{
    nn_context *ctx = &net->ctx;
    block->input = input;
    block->projection = nn_block_has_projection(in_channels, out_channels, stride);
    NN_TRY(create_branch(net, block, in_channels, out_channels, stride, err));
    if (block->projection)
        NN_TRY(create_projection(net, block, in_channels, out_channels, stride, err));

    NN_TRY(name_layer(block->residual.name, block->prefix, "add", err));
    nn_act *shortcut = block->projection ? &block->shortcut_bn.output : input;
    NN_TRY(nn_residual_create(ctx, &block->residual, &block->bn2.output, shortcut, err));

    /* NOTE: under oneDNN 2.6 (AVX2, AVX-512), convolutions with one output
     * shape choose one format, so no tested network reaches the gradient
     * reorders for mismatched formats here and in create_projection. */
    bool same_format = nn_md_equal(&block->bn2.output.md, &input->md);
    if (!block->projection && same_format)
        return AP_OK;
    void *grad = NULL;
    NN_TRY(nn_alloc(ctx, input->floats * sizeof(float), block->prefix, &grad, err));
    block->shortcut_grad_ptr = grad;
    NN_TRY(nn_memory_create(ctx, &input->md, grad, block->prefix, &block->shortcut_grad, err));
    if (block->projection)
        return AP_OK;
    block->sum_grad_reordered = true;
    return nn_reorder_create(ctx, &block->bn2.output.md, &input->md, block->prefix,
                             "shortcut gradient reorder", &block->sum_grad_reorder, err);
}

ap_status nn_block_forward(nn_context *ctx, nn_block *block, bool training, ap_error *err)
{
    NN_TRY(nn_conv_forward(ctx, &block->conv1, err));
    NN_TRY(nn_bn_forward(ctx, &block->bn1, training, err));
    NN_TRY(nn_conv_forward(ctx, &block->conv2, err));
    NN_TRY(nn_bn_forward(ctx, &block->bn2, training, err));
    if (block->projection) {
        NN_TRY(nn_conv_forward(ctx, &block->shortcut_conv, err));
        NN_TRY(nn_bn_forward(ctx, &block->shortcut_bn, training, err));
    }
    return nn_residual_forward(ctx, &block->residual, err);
}

/* Compute the shortcut path's input gradient into block->shortcut_grad. An
 * identity shortcut in the input's format needs nothing: its gradient is the sum's. */
static ap_status backward_shortcut(nn_context *ctx, nn_block *block, ap_error *err)
{
    nn_act *sum = &block->bn2.output;
    if (!block->projection) {
        if (block->sum_grad_reordered)
            return nn_reorder_run(ctx, &block->sum_grad_reorder, sum->diff, block->shortcut_grad,
                                  err);
        return AP_OK;
    }
    if (block->sum_grad_reordered)
        NN_TRY(nn_reorder_run(ctx, &block->sum_grad_reorder, sum->diff,
                              block->shortcut_bn.output.diff, err));
    NN_TRY(nn_bn_backward(ctx, &block->shortcut_bn, err));
    NN_TRY(nn_conv_backward_weights(ctx, &block->shortcut_conv, err));
    return nn_conv_backward_data(ctx, &block->shortcut_conv, block->shortcut_grad, err);
}

/* The input's gradient is the branch's plus the shortcut's. */
ap_status nn_block_backward(nn_context *ctx, nn_block *block, ap_error *err)
{
    NN_TRY(nn_residual_backward(ctx, &block->residual, err));
    NN_TRY(nn_bn_backward(ctx, &block->bn2, err));
    NN_TRY(nn_conv_backward_weights(ctx, &block->conv2, err));
    NN_TRY(nn_conv_backward_data(ctx, &block->conv2, block->bn1.output.diff, err));
    NN_TRY(nn_bn_backward(ctx, &block->bn1, err));
    NN_TRY(nn_conv_backward_weights(ctx, &block->conv1, err));
    NN_TRY(nn_conv_backward_data(ctx, &block->conv1, block->input->diff, err));
    NN_TRY(backward_shortcut(ctx, block, err));
    NN_TRY(nn_wait(ctx, block->prefix, err));

    bool identity_in_place = !block->projection && !block->sum_grad_reordered;
    const float *shortcut =
        identity_in_place ? block->bn2.output.diff_ptr : block->shortcut_grad_ptr;
    nn_add_into(block->input->diff_ptr, shortcut, block->input->floats);
    return AP_OK;
}

ap_status nn_block_create_fused(nn_context *ctx, nn_block *block, ap_error *err)
{
    const dnnl_memory_desc_t *sum_md = &block->residual.output.md;
    NN_TRY(
        nn_fused_create(ctx, &block->conv1, &block->bn1, &block->bn1.output.md, false, true, err));
    NN_TRY(nn_fused_create(ctx, &block->conv2, &block->bn2, sum_md, true, true, err));
    if (block->projection)
        NN_TRY(nn_fused_create(ctx, &block->shortcut_conv, &block->shortcut_bn, sum_md, false,
                               false, err));
    return AP_OK;
}

bool nn_block_fused_ready(const nn_block *block)
{
    return block->conv1.fused.ready && block->conv2.fused.ready &&
           (!block->projection || block->shortcut_conv.fused.ready);
}

/* Write the shortcut into the block's output, where conv2's sum post-op adds to it. */
static ap_status write_shortcut(nn_context *ctx, nn_block *block, ap_error *err)
{
    nn_residual *residual = &block->residual;
    if (block->projection)
        return nn_fused_forward(ctx, &block->shortcut_conv, residual->output.data, err);
    if (residual->shortcut_reordered)
        return nn_reorder_run(ctx, &residual->shortcut_reorder, residual->shortcut->data,
                              residual->output.data, err);
    NN_TRY(nn_wait(ctx, residual->name, err));
    memcpy(residual->output.data_ptr, residual->shortcut->data_ptr,
           residual->output.floats * sizeof(float));
    return AP_OK;
}

ap_status nn_block_forward_fused(nn_context *ctx, nn_block *block, ap_error *err)
{
    NN_TRY(nn_fused_forward(ctx, &block->conv1, block->bn1.output.data, err));
    NN_TRY(write_shortcut(ctx, block, err));
    return nn_fused_forward(ctx, &block->conv2, block->residual.output.data, err);
}
