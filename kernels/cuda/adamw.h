#ifndef APIARY_KERNELS_CUDA_ADAMW_H
#define APIARY_KERNELS_CUDA_ADAMW_H

#include <stddef.h>

#include <cuda_runtime_api.h>

#include "kernels/cpu/adamw.h"
#include "pipeline/common/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* GPU version of ap_cpu_adamw, fused into one kernel with one thread per
 * element, which rounds the same float operations in the same order as the
 * CPU. param, grad, m and v are device memory of size floats. args is host
 * memory, checked for step >= 1, learning rate and weight decay >= 0, betas
 * in [0, 1) and epsilon > 0. Work is queued on stream. Returns AP_OK,
 * AP_ERR_INVALID for a bad argument, or AP_ERR_BACKEND when the launch fails,
 * with err (may be NULL) filled. */
ap_status ap_cuda_adamw(float *param, const float *grad, float *m, float *v, size_t size,
                        const ap_adamw_args *args, cudaStream_t stream, ap_error *err);

#ifdef __cplusplus
}
#endif

#endif
