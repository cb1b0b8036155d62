#ifndef APIARY_NN_CUDA_GPU_NET_H
#define APIARY_NN_CUDA_GPU_NET_H

/* The residual CNN of pipeline/nn/net.h on one GPU: convolution, batch norm
 * and pooling in cuDNN (legacy API), the dense head in cuBLAS, the rest in
 * apiary's kernels (kernels/cuda). The network mirrors a host ap_net built
 * from the same spec. It has the same tensors in the same order, with the
 * same names, shapes and layouts (OIHW convolution weights, [out, in] dense
 * weights), so weights copy between the two with plain memcpy and
 * checkpoints are interchangeable. All work is queued on the network's
 * stream. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "pipeline/common/status.h"
#include "pipeline/nn/net.h"

/* Arithmetic of the convolutions and the dense layer. Activations, batch
 * norm, pooling, the loss, gradients and master weights are float in every
 * mode. */
typedef enum {
    AP_GPU_FP32 = 0, /* float math everywhere, tensor cores off: the reference mode */
    AP_GPU_TF32,     /* convolutions and the dense layer may round inputs to TF32 */
    /* Convolutions read bf16 copies of their float input and weights. They
     * write bf16 results (output, input and weight gradients), which are
     * widened into the float buffers, and cuDNN accumulates in float. The
     * dense layer rounds its inputs to bf16 inside cuBLAS. */
    AP_GPU_BF16,
} ap_gpu_precision;

typedef struct {
    int device;
    ap_gpu_precision precision;
    /* Deterministic cuDNN algorithms chosen by heuristics instead of timing,
     * and deterministic max-pooling backward, so two runs are bit-identical. */
    bool deterministic;
    /* Floats reserved after the gradients in the gradient buffer, which the
     * trainer uses for values that one all-reduce sums with the gradients. */
    size_t grad_tail;
    /* Largest cuDNN workspace one convolution may use, in bytes. */
    size_t workspace_limit;
} ap_gpu_options;

typedef struct ap_gpu_net ap_gpu_net;

/* One tensor of the GPU network, matching host tensor `index`. */
typedef struct {
    const char *name;
    ap_tensor_role role;
    int ndim;
    int64_t shape[4];
    size_t size;
    float *data; /* device */
    float *grad; /* device, inside the gradient buffer; NULL for AP_TENSOR_STATE */
} ap_gpu_tensor;

/* Parse "fp32", "tf32" or "bf16". */
ap_status ap_gpu_precision_parse(const char *text, ap_gpu_precision *out, ap_error *err);
const char *ap_gpu_precision_name(ap_gpu_precision precision);

/* Build the GPU twin of host (built from spec for the same batch) on
 * options->device and copy host's weights and statistics to it. */
ap_status ap_gpu_net_create(const ap_net_spec *spec, int batch, ap_net *host,
                            const ap_gpu_options *options, ap_gpu_net **out, ap_error *err);
void ap_gpu_net_destroy(ap_gpu_net *net);

cudaStream_t ap_gpu_net_stream(const ap_gpu_net *net);
int ap_gpu_net_batch(const ap_gpu_net *net);
size_t ap_gpu_net_tensor_count(const ap_gpu_net *net);
const ap_gpu_tensor *ap_gpu_net_tensor_at(const ap_gpu_net *net, size_t index);

/* Input buffer (device, batch x 3 x height x width floats, NCHW) that the
 * next forward pass reads. Preprocessing writes into it. */
float *ap_gpu_net_input(ap_gpu_net *net);
/* Logits of the last forward pass (device, batch x label_count). */
const float *ap_gpu_net_logits(const ap_gpu_net *net);

/* The gradient buffer: every trained tensor's gradient back to back in
 * tensor order (grad_count floats), then the running statistics
 * (state_count floats), then grad_tail floats. */
float *ap_gpu_net_grad_buffer(ap_gpu_net *net);
size_t ap_gpu_net_grad_count(const ap_gpu_net *net);
size_t ap_gpu_net_state_count(const ap_gpu_net *net);

/* Copy weights and statistics between the host twin and the GPU, in
 * tensor order. Both wait for the stream. */
ap_status ap_gpu_net_upload(ap_gpu_net *net, ap_net *host, ap_error *err);
ap_status ap_gpu_net_download(ap_gpu_net *net, ap_net *host, ap_error *err);

/* Copy the running statistics into their section of the gradient buffer, or
 * back from it divided by divisor (the process count after an all-reduce). */
ap_status ap_gpu_net_pack_state(ap_gpu_net *net, ap_error *err);
ap_status ap_gpu_net_unpack_state(ap_gpu_net *net, float divisor, ap_error *err);

/* Run the forward pass on the input buffer as ap_net_forward does, writing
 * the logits. */
ap_status ap_gpu_net_forward(ap_gpu_net *net, bool training, uint64_t dropout_seed,
                             uint64_t dropout_stream, ap_error *err);

/* Called during the backward pass each time the gradients from float
 * `first` of the gradient buffer to its end are final, as queued on the
 * stream, so that a caller can start reducing them. */
typedef ap_status (*ap_gpu_grads_ready_fn)(void *context, size_t first, ap_error *err);

/* Run the backward pass from d_logits (device, batch x label_count) after a
 * training forward pass. accumulate adds to the gradients instead of
 * setting them, for micro-batches. ready may be NULL. */
ap_status ap_gpu_net_backward(ap_gpu_net *net, const float *d_logits, bool accumulate,
                              ap_gpu_grads_ready_fn ready, void *ready_context, ap_error *err);

/* Return the number of CUDA devices, or 0 when there are none or the driver
 * is missing. In that case reason (may be NULL) receives the CUDA error. */
int ap_gpu_device_count(char *reason, size_t reason_size);

#endif
