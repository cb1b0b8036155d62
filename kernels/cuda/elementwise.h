#ifndef APIARY_KERNELS_CUDA_ELEMENTWISE_H
#define APIARY_KERNELS_CUDA_ELEMENTWISE_H

#include <stddef.h>

#include <cuda_runtime_api.h>

#include "pipeline/common/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Element-wise steps of the residual network and the gradient reduction,
 * one thread per element, so every result is independent of the launch
 * shape. All pointers are device memory of size floats; work is queued on
 * stream. Each returns AP_OK, AP_ERR_INVALID for a NULL buffer, or
 * AP_ERR_BACKEND when the launch fails, with err (may be NULL) filled.
 * The CPU counterparts are the loops in pipeline/nn/eltwise.c and
 * ap_dp_bucket_apply. */

/* out = max(a + b, 0), the end of a residual block. */
ap_status ap_cuda_add_relu(const float *a, const float *b, float *out, size_t size,
                           cudaStream_t stream, ap_error *err);

/* values = max(values, 0) in place. */
ap_status ap_cuda_relu(float *values, size_t size, cudaStream_t stream, ap_error *err);

/* d_in = out > 0 ? d_out : 0, the ReLU gradient from its output; d_in may
 * be d_out. */
ap_status ap_cuda_relu_backward(const float *out, const float *d_out, float *d_in, size_t size,
                                cudaStream_t stream, ap_error *err);

/* dst += src. */
ap_status ap_cuda_add_into(float *dst, const float *src, size_t size, cudaStream_t stream,
                           ap_error *err);

/* values = *count > 0 ? values / *count : 0, with count one float in device
 * memory, so a count summed by an all-reduce needs no copy to the host. */
ap_status ap_cuda_divide_by_count(float *values, size_t size, const float *count,
                                  cudaStream_t stream, ap_error *err);

/* values = values / divisor, with divisor a host value other than 0. */
ap_status ap_cuda_divide(float *values, size_t size, float divisor, cudaStream_t stream,
                         ap_error *err);

#ifdef __cplusplus
}
#endif

#endif
