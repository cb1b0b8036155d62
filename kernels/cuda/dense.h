#ifndef APIARY_KERNELS_CUDA_DENSE_H
#define APIARY_KERNELS_CUDA_DENSE_H

#include <stdbool.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "pipeline/common/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* GPU versions of kernels/cpu/dense.h, with the same row-major layouts:
 * in is batch x in_features, weight out_features x in_features, out batch x
 * out_features. The matrix products run in cuBLAS (cublasGemmEx, float
 * storage) on the stream that blas is bound to (cublasSetStream), which must
 * be stream, with the arithmetic that math selects. All pointers are device
 * memory. Each returns AP_OK, AP_ERR_INVALID for a bad argument, or
 * AP_ERR_BACKEND when cuBLAS or a launch fails, with err (may be NULL)
 * filled. */

/* Arithmetic of the matrix products, as a cuBLAS compute type. */
typedef enum {
    AP_CUDA_GEMM_FP32 = 0, /* CUBLAS_COMPUTE_32F_PEDANTIC: float products and sums */
    AP_CUDA_GEMM_TF32,     /* CUBLAS_COMPUTE_32F_FAST_TF32: inputs rounded to TF32 */
    AP_CUDA_GEMM_BF16,     /* CUBLAS_COMPUTE_32F_FAST_16BF: inputs rounded to bf16 */
} ap_cuda_gemm_math;

/* out = in * weight^T + bias; bias may be NULL. */
ap_status ap_cuda_dense_forward(cublasHandle_t blas, ap_cuda_gemm_math math, const float *in,
                                const float *weight, const float *bias, int batch, int in_features,
                                int out_features, float *out, cudaStream_t stream, ap_error *err);

/* Gradients of the forward pass. d_in (may be NULL) is set. d_weight and
 * d_bias (may be NULL) are set, or added to when accumulate is true, so that
 * micro-batches can sum their gradients. d_bias sums over the batch in row
 * order, one thread per output, as the CPU does. */
ap_status ap_cuda_dense_backward(cublasHandle_t blas, ap_cuda_gemm_math math, const float *in,
                                 const float *weight, const float *d_out, int batch,
                                 int in_features, int out_features, float *d_in, float *d_weight,
                                 float *d_bias, bool accumulate, cudaStream_t stream,
                                 ap_error *err);

/* Inverted dropout exactly as ap_cpu_dropout_forward: keeps value i when
 * ap_rng_uniform(seed, rng_stream, i) >= rate, scaled by 1 / (1 - rate), and
 * records the scale applied in mask. */
ap_status ap_cuda_dropout_forward(float *values, float *mask, long size, float rate, uint64_t seed,
                                  uint64_t rng_stream, cudaStream_t stream, ap_error *err);

/* d_values *= mask. */
ap_status ap_cuda_dropout_backward(float *d_values, const float *mask, long size,
                                   cudaStream_t stream, ap_error *err);

#ifdef __cplusplus
}
#endif

#endif
