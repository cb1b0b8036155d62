#ifndef APIARY_NN_NET_H
#define APIARY_NN_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/common/status.h"

/* The residual CNN on the CPU, built on oneDNN:
 *   stem: conv(k x k, stride s) -> batch norm -> ReLU -> max pool 3x3 stride 2
 *   stages: each stage has `blocks` basic residual blocks
 *     (conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut, then ReLU);
 *     the first block of every stage after the first has stride 2; a block's
 *     shortcut is conv1x1 (with the block's stride) -> BN when the stride or
 *     the channel count changes, and the block's input otherwise
 *   head: global average pooling -> dropout -> dense layer, one logit per label
 * Master parameters are plain float arrays in PyTorch layouts (OIHW conv
 * weights, [out, in] dense weights) so checkpoints read the same anywhere. */

#define AP_NET_MAX_STAGES 8
#define AP_PARAM_NAME_MAX 96

typedef struct {
    int in_channels; /* 3 for RGB */
    int height;
    int width;
    int stem_channels;
    int stem_kernel;
    int stem_stride;
    int stage_count;
    int stage_channels[AP_NET_MAX_STAGES];
    int stage_blocks[AP_NET_MAX_STAGES];
    float dropout;
    int label_count;
} ap_net_spec;

typedef enum {
    AP_TENSOR_WEIGHT = 0, /* trained, weight decay applies */
    AP_TENSOR_NO_DECAY,   /* trained, no weight decay (batch-norm scale and shift, biases) */
    AP_TENSOR_STATE,      /* not trained (batch-norm running mean and variance) */
} ap_tensor_role;

typedef struct {
    char name[AP_PARAM_NAME_MAX]; /* for example "stages.1.blocks.0.conv1.weight" */
    ap_tensor_role role;
    int ndim;
    int64_t shape[4];
    size_t size; /* element count */
    float *data; /* owned by the network */
    float *grad; /* NULL for AP_TENSOR_STATE; written by ap_net_backward */
} ap_net_tensor;

typedef struct ap_net ap_net;

/* Build the network for a fixed batch size and initialise weights (He normal
 * for convolutions, PyTorch-style uniform for the dense layer, BN scale 1 and
 * shift 0) from seed. oneDNN and the C loops use OpenMP: set the thread count
 * (omp_set_num_threads) before this call, since primitives plan their work
 * for the thread count they see when they are created. Results are
 * bit-identical across runs with the same thread count. */
ap_status ap_net_create(const ap_net_spec *spec, int batch, uint64_t seed, ap_net **out,
                        ap_error *err);
void ap_net_destroy(ap_net *net);

/* All tensors in a fixed order: trained ones and batch-norm state. */
size_t ap_net_tensor_count(const ap_net *net);
ap_net_tensor *ap_net_tensor_at(ap_net *net, size_t index);
/* Total trained parameters. */
size_t ap_net_param_total(const ap_net *net);
int ap_net_batch(const ap_net *net);

/* Forward a batch of exactly ap_net_batch images (float NCHW) into logits
 * (batch x label_count). Training mode uses batch statistics, updates the
 * running statistics (momentum 0.1) and applies dropout keyed by
 * (dropout_seed, dropout_stream); inference uses the running statistics.
 * The network keeps its own copy of input, so the caller may reuse it. */
ap_status ap_net_forward(ap_net *net, const float *input, bool training, uint64_t dropout_seed,
                         uint64_t dropout_stream, float *logits, ap_error *err);

/* Backward from d_logits after a training forward; sets every grad. */
ap_status ap_net_backward(ap_net *net, const float *d_logits, ap_error *err);

/* Set d_input (batch x in_channels x height x width, NCHW) to the gradient
 * of the loss with respect to the input of the last training forward, after
 * ap_net_backward. Training does not need it, so backward skips it. */
ap_status ap_net_input_grad(ap_net *net, float *d_input, ap_error *err);

/* Room for the memories of one primitive in ap_net_primitive. */
#define AP_NET_MEMORIES_MAX 256

/* One oneDNN primitive of a network, with the implementation oneDNN chose. */
typedef struct {
    const char *layer;          /* for example "stages.0.blocks.0.conv1" */
    const char *pass;           /* for example "backward data" */
    const char *kind;           /* oneDNN primitive kind, for example "convolution" */
    const char *implementation; /* oneDNN implementation name, for example "jit:avx2" */
    /* oneDNN's reference implementation ("ref:any"), a plain loop nest far
     * slower than the jit kernels */
    bool reference;
    /* shapes and formats of the primitive's memories, for example
     * "src 16x8x24x24 aBcd8b, weights 16x8x3x3 ABcd8b8a, dst 16x16x12x12 aBcd8b" */
    char memories[AP_NET_MEMORIES_MAX];
} ap_net_primitive;

/* The oneDNN primitives of a network, in creation order. The strings stay
 * valid until ap_net_destroy. Returns AP_ERR_INVALID for an index past the end. */
size_t ap_net_primitive_count(const ap_net *net);
ap_status ap_net_primitive_at(const ap_net *net, size_t index, ap_net_primitive *out,
                              ap_error *err);
/* Primitives running oneDNN's reference implementation: 0 unless, on this
 * CPU, a convolution has no faster kernel in any memory format tried, or a
 * batch norm, pooling or reorder has none for the format of its input. */
size_t ap_net_reference_count(const ap_net *net);

/* Floating-point operations of one training step (forward and backward)
 * and of one inference forward, per image, for throughput figures. */
double ap_net_flops_per_image(const ap_net *net, bool training);

#endif
