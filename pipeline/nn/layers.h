#ifndef APIARY_NN_LAYERS_H
#define APIARY_NN_LAYERS_H

/* Layers of the CPU network. Each layer reads an activation owned by the
 * layer before it and owns its output activation, both in the memory format
 * that the preceding convolution chose. Backward reads the output gradient and
 * sets the input gradient. The *_create functions make every buffer and
 * primitive, so forward and backward neither allocate nor create primitives. */

#include <stdbool.h>
#include <stdint.h>

#include "pipeline/nn/dnnl_util.h"
#include "pipeline/nn/net.h"

/* PyTorch's default batch-norm epsilon and running-statistics momentum. */
#define NN_BN_EPSILON  1e-5f
#define NN_BN_MOMENTUM 0.1f

/* Inference convolution with the following batch norm folded into its
 * weights and a bias, and optional sum and ReLU post-ops (fused.c). */
typedef struct {
    bool ready; /* false: inference runs the convolution and batch norm apart */
    /* the folded batch norm's tensors */
    const ap_net_tensor *scale;
    const ap_net_tensor *shift;
    const ap_net_tensor *running_mean;
    const ap_net_tensor *running_var;
    float *weights; /* folded OIHW weights */
    float *bias;
    /* The master weights, scale, shift, running mean and running variance
     * that the folded weights came from, so that a forward with unchanged
     * parameters (every batch of scoring) neither folds nor reorders again. */
    float *folded_from;
    bool folded;
    dnnl_memory_t weights_plain;
    dnnl_memory_t weights_mem; /* in the primitive's format */
    dnnl_memory_t bias_mem;
    bool weights_reordered;
    nn_op weights_reorder;
    nn_op op;
} nn_fused_conv;

/* Convolution without bias, padding kernel / 2 on every side. */
typedef struct {
    char name[AP_PARAM_NAME_MAX];
    int kernel;
    int stride;
    int padding;
    ap_net_tensor *weight; /* OIHW master weights and their gradient */
    nn_act *input;
    nn_act output;
    double macs_per_image; /* multiply-adds of one forward pass */

    /* The input in the format forward and backward weights read, and its
     * gradient in the format backward data writes: the input's own memories
     * when the formats match, otherwise buffers that the reorders copy. */
    bool src_reordered;
    bool diff_src_reordered;
    dnnl_memory_t src;
    dnnl_memory_t diff_src;
    nn_op src_reorder;
    nn_op diff_src_reorder;
    /* The output gradient in the format backward data reads, when that
     * differs from the output's format. */
    bool diff_dst_reordered;
    dnnl_memory_t diff_dst;
    nn_op diff_dst_reorder;

    /* Weights: plain OIHW master copy, the formats forward and backward-data
     * chose, and the weight gradient before it is reordered back to OIHW. */
    dnnl_memory_t weights_plain;
    dnnl_memory_t weights_fwd;
    dnnl_memory_t weights_bwd;
    dnnl_memory_t diff_weights;
    dnnl_memory_t diff_weights_plain;
    bool weights_fwd_reordered;
    bool weights_bwd_reordered;
    bool diff_weights_reordered;
    nn_op weights_fwd_reorder;
    nn_op weights_bwd_reorder;
    nn_op diff_weights_reorder;

    nn_op fwd;
    nn_op bwd_data;
    nn_op bwd_weights;
    nn_fused_conv fused;
} nn_conv;

/* Batch norm with learned scale and shift, optionally followed by a fused ReLU. */
typedef struct {
    char name[AP_PARAM_NAME_MAX];
    bool relu;
    int channels;
    int64_t values_per_channel; /* batch * height * width */
    ap_net_tensor *scale;       /* followed by shift, running mean and running variance */
    ap_net_tensor *shift;
    ap_net_tensor *running_mean;
    ap_net_tensor *running_var;
    nn_act *input;
    nn_act output;
    float *batch_mean;
    float *batch_var; /* biased, as oneDNN computes it */
    dnnl_memory_t scale_mem;
    dnnl_memory_t shift_mem;
    dnnl_memory_t batch_mean_mem;
    dnnl_memory_t batch_var_mem;
    dnnl_memory_t running_mean_mem;
    dnnl_memory_t running_var_mem;
    dnnl_memory_t diff_scale_mem;
    dnnl_memory_t diff_shift_mem;
    dnnl_memory_t workspace; /* ReLU mask for backward, NULL without ReLU */
    nn_op fwd_train;
    nn_op fwd_infer;
    nn_op bwd;
} nn_bn;

typedef struct {
    char name[AP_PARAM_NAME_MAX];
    nn_act *input;
    nn_act output;
    dnnl_memory_t workspace; /* positions of the maxima, NULL for average pooling */
    nn_op fwd_train;
    nn_op fwd_infer;
    nn_op bwd;
} nn_pool;

/* Global average pooling into plain [batch, channels] features for the head. */
typedef struct {
    nn_pool pool;
    dnnl_memory_t features_mem;
    dnnl_memory_t d_features_mem;
    float *features;
    float *d_features;
    nn_op to_plain;
    nn_op from_plain;
} nn_gap;

/* output = ReLU(branch + shortcut) at the end of a residual block. */
typedef struct {
    char name[AP_PARAM_NAME_MAX];
    nn_act *branch;
    nn_act *shortcut;
    nn_act output;
    /* The shortcut in the branch's format when their formats differ. */
    bool shortcut_reordered;
    dnnl_memory_t shortcut_copy;
    float *shortcut_copy_ptr;
    nn_op shortcut_reorder;
} nn_residual;

/* Dropout then the dense layer, on plain [batch, features] rows. */
typedef struct {
    int batch;
    int features;
    int labels;
    float dropout;
    ap_net_tensor *weight; /* [labels, features] */
    ap_net_tensor *bias;
    float *dropped;           /* features after dropout */
    float *mask;              /* scale dropout applied to each feature */
    const float *dense_input; /* what the last forward fed the dense layer */
    bool dropout_applied;
} nn_head;

/* Dimensions of a convolution without bias, with the same padding on every side. */
typedef struct {
    dnnl_dims_t src;
    dnnl_dims_t weights;
    dnnl_dims_t dst;
    dnnl_dims_t strides;
    dnnl_dims_t padding;
} nn_conv_shape;

/* Primitive descriptors of one convolution, owned by the context. */
typedef struct {
    dnnl_primitive_desc_t fwd;
    dnnl_primitive_desc_t bwd_weights;
    dnnl_primitive_desc_t bwd_data; /* NULL unless requested */
} nn_conv_plan;

/* Choose the memory formats of a convolution whose input has the format
 * input_md, so that no pass runs a oneDNN reference kernel where some format
 * avoids it (conv_formats.c explains why). */
ap_status nn_conv_plan_create(nn_context *ctx, const nn_conv_shape *shape,
                              const dnnl_memory_desc_t *input_md, bool needs_bwd_data,
                              const char *layer, nn_conv_plan *plan, ap_error *err);
ap_status nn_conv_create(nn_context *ctx, nn_conv *conv, nn_act *input, ap_net_tensor *weight,
                         int stride, bool needs_bwd_data, ap_error *err);
ap_status nn_conv_forward(nn_context *ctx, nn_conv *conv, ap_error *err);
ap_status nn_conv_backward_weights(nn_context *ctx, nn_conv *conv, ap_error *err);
/* Set target (a memory in the input's format) to the gradient of the input. */
ap_status nn_conv_backward_data(nn_context *ctx, nn_conv *conv, dnnl_memory_t target,
                                ap_error *err);

/* Create conv's fused inference primitive with bn folded in, writing dst_md,
 * adding to what dst holds when sum is set, then ReLU when relu is set. Leaves
 * conv->fused.ready false when oneDNN offers only a reference kernel. */
ap_status nn_fused_create(nn_context *ctx, nn_conv *conv, const nn_bn *bn,
                          const dnnl_memory_desc_t *dst_md, bool sum, bool relu, ap_error *err);
/* Fold the batch norm's running statistics into the weights and run the
 * fused primitive into dst. */
ap_status nn_fused_forward(nn_context *ctx, nn_conv *conv, dnnl_memory_t dst, ap_error *err);

/* tensors points at scale, shift, running mean and running variance, in that
 * order. When shared_diff has the output's format, the output gradient is
 * that activation's gradient instead of a buffer of its own. */
ap_status nn_bn_create(nn_context *ctx, nn_bn *bn, nn_act *input, bool relu, ap_net_tensor *tensors,
                       const nn_act *shared_diff, ap_error *err);
ap_status nn_bn_forward(nn_context *ctx, nn_bn *bn, bool training, ap_error *err);
ap_status nn_bn_backward(nn_context *ctx, nn_bn *bn, ap_error *err);

ap_status nn_pool_create(nn_context *ctx, nn_pool *pool, nn_act *input, dnnl_alg_kind_t algorithm,
                         int kernel, int stride, int padding, ap_error *err);
ap_status nn_pool_forward(nn_context *ctx, nn_pool *pool, bool training, ap_error *err);
ap_status nn_pool_backward(nn_context *ctx, nn_pool *pool, ap_error *err);

ap_status nn_gap_create(nn_context *ctx, nn_gap *gap, nn_act *input, ap_error *err);
ap_status nn_gap_forward(nn_context *ctx, nn_gap *gap, ap_error *err);
/* Backward from gap->d_features, which the head fills. */
ap_status nn_gap_backward(nn_context *ctx, nn_gap *gap, ap_error *err);

ap_status nn_residual_create(nn_context *ctx, nn_residual *residual, nn_act *branch,
                             nn_act *shortcut, ap_error *err);
ap_status nn_residual_forward(nn_context *ctx, nn_residual *residual, ap_error *err);
/* Set the branch's gradient to the gradient of the sum before the ReLU. */
ap_status nn_residual_backward(nn_context *ctx, nn_residual *residual, ap_error *err);
/* dst[i] += src[i] for count floats. */
void nn_add_into(float *dst, const float *src, size_t count);

ap_status nn_head_create(nn_context *ctx, nn_head *head, int batch, int features, int labels,
                         float dropout, ap_net_tensor *weight, ap_net_tensor *bias, ap_error *err);
void nn_head_forward(nn_head *head, const float *features, bool training, uint64_t dropout_seed,
                     uint64_t dropout_stream, float *logits);
void nn_head_backward(nn_head *head, const float *d_logits, float *d_features);

#endif
