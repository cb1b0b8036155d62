#ifndef APIARY_NN_NET_INTERNAL_H
#define APIARY_NN_NET_INTERNAL_H

/* The network's structure, shared by the files that build and run it. */

#include <stdbool.h>
#include <stdint.h>

#include "pipeline/nn/layers.h"
#include "pipeline/nn/net.h"

/* A basic residual block: conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the
 * shortcut (the input, or conv1x1 -> BN when the stride or channel count
 * changes), then ReLU. */
typedef struct {
    char prefix[AP_PARAM_NAME_MAX]; /* for example "stages.1.blocks.0" */
    bool projection;
    nn_act *input;
    nn_conv conv1;
    nn_bn bn1;
    nn_conv conv2;
    nn_bn bn2;
    nn_conv shortcut_conv;
    nn_bn shortcut_bn;
    nn_residual residual;

    /* The shortcut path's input gradient, in the input's format, before it
     * is added to the branch's. */
    dnnl_memory_t shortcut_grad;
    float *shortcut_grad_ptr;
    /* The gradient of the sum reordered for the shortcut path, when the
     * shortcut's format differs from the branch's. */
    bool sum_grad_reordered;
    nn_op sum_grad_reorder;
} nn_block;

struct ap_net {
    ap_net_spec spec;
    int batch;
    uint64_t seed;
    nn_context ctx;

    ap_net_tensor *tensors;
    size_t tensor_count;
    size_t tensor_capacity;

    nn_act input; /* plain NCHW copy of the last batch; its gradient memory is
                     bound to the caller's buffer by ap_net_input_grad */
    nn_conv stem_conv;
    nn_bn stem_bn;
    nn_pool stem_pool;
    nn_block *blocks;
    int block_count;
    nn_gap gap;
    nn_head head;

    /* False when some batch norm would see one value per channel, which has
     * no variance to normalise by, so training is rejected. */
    bool trainable;
    bool fused_inference;
    bool last_forward_training;
    bool backward_done;
};

/* Projection shortcuts appear where the stride or the channel count changes. */
bool nn_block_has_projection(int in_channels, int out_channels, int stride);

/* Tensors are appended in the network's fixed order and initialised from
 * net->seed as they are added; the tensor array never moves. */
size_t nn_tensor_count_for(const ap_net_spec *spec);
ap_status nn_tensors_reserve(ap_net *net, ap_error *err);
ap_status nn_add_conv_weight(ap_net *net, const char *layer, int out_channels, int in_channels,
                             int kernel, ap_net_tensor **out, ap_error *err);
/* Append weight, bias, running_mean and running_var; *out points at the weight. */
ap_status nn_add_bn_tensors(ap_net *net, const char *layer, int channels, ap_net_tensor **out,
                            ap_error *err);
ap_status nn_add_dense_tensors(ap_net *net, const char *layer, int out_features, int in_features,
                               ap_net_tensor **out, ap_error *err);

ap_status nn_block_create(ap_net *net, nn_block *block, nn_act *input, int in_channels,
                          int out_channels, int stride, ap_error *err);
ap_status nn_block_forward(nn_context *ctx, nn_block *block, bool training, ap_error *err);
/* Create the fused inference primitives of a block (fused.c explains them). */
ap_status nn_block_create_fused(nn_context *ctx, nn_block *block, ap_error *err);
/* True when every convolution of the block has its fused inference primitive. */
bool nn_block_fused_ready(const nn_block *block);
ap_status nn_block_forward_fused(nn_context *ctx, nn_block *block, ap_error *err);
/* Choose between fused inference (the default) and the layer-by-layer
 * inference that training's layers run; tests compare the two. */
void nn_net_set_fused_inference(ap_net *net, bool fused);
ap_status nn_block_backward(nn_context *ctx, nn_block *block, ap_error *err);

#endif
