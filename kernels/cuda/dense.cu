#include "kernels/cuda/dense.h"

#include "kernels/cpu/rng.h"
#include "kernels/cuda/cuda_check.h"

#define DENSE_THREADS 256

/* Largest grid x dimension CUDA accepts for compute capability 3.0 and later. */
#define MAX_BLOCKS 2147483647L

static ap_status blas_failure(cublasStatus_t status, const char *call, int line, ap_error *err)
{
    int device = -1;
    if (cudaGetDevice(&device) != cudaSuccess)
        device = -1;
    return ap_cuda_error(err, AP_ERR_BACKEND,
                         "cuBLAS call %s failed at %s:%d on device %d: %s (%s)", call, __FILE__,
                         line, device, cublasGetStatusName(status), cublasGetStatusString(status));
}

#define BLAS_CHECK(call, err)                                                                      \
    do {                                                                                           \
        cublasStatus_t blas_status = (call);                                                       \
        if (blas_status != CUBLAS_STATUS_SUCCESS)                                                  \
            return blas_failure(blas_status, #call, __LINE__, (err));                              \
    } while (0)

static __global__ void add_bias_kernel(float *out, const float *bias, int batch, int out_features)
{
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (long)batch * out_features)
        out[i] = AP_ROUNDED_ADD(out[i], bias[i % out_features]);
}

/* One thread per output sums its column over the batch in row order. */
static __global__ void bias_grad_kernel(const float *d_out, int batch, int out_features,
                                        float *d_bias, bool accumulate)
{
    int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out_features)
        return;
    float sum = 0.0f;
    for (int n = 0; n < batch; n++)
        sum = AP_ROUNDED_ADD(sum, d_out[(size_t)n * (size_t)out_features + o]);
    d_bias[o] = accumulate ? AP_ROUNDED_ADD(d_bias[o], sum) : sum;
}

static __global__ void dropout_forward_kernel(float *values, float *mask, long size, float rate,
                                              float scale, uint64_t seed, uint64_t rng_stream)
{
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= size)
        return;
    float mask_value = ap_rng_uniform(seed, rng_stream, (uint64_t)i) >= rate ? scale : 0.0f;
    mask[i] = mask_value;
    values[i] = AP_ROUNDED_MUL(values[i], mask_value);
}

static __global__ void fill_kernel(float *values, long size, float value)
{
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < size)
        values[i] = value;
}

static __global__ void multiply_kernel(float *values, const float *factors, long size)
{
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < size)
        values[i] = AP_ROUNDED_MUL(values[i], factors[i]);
}

static ap_status check_dense_shape(const char *op, int batch, int in_features, int out_features,
                                   ap_error *err)
{
    if (batch <= 0 || in_features <= 0 || out_features <= 0 ||
        (long)batch * out_features / DENSE_THREADS >= MAX_BLOCKS)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "%s: shape batch %d, in %d, out %d is invalid; all must be positive",
                             op, batch, in_features, out_features);
    return AP_OK;
}

static cublasComputeType_t compute_type(ap_cuda_gemm_math math)
{
    switch (math) {
    case AP_CUDA_GEMM_TF32:
        return CUBLAS_COMPUTE_32F_FAST_TF32;
    case AP_CUDA_GEMM_BF16:
        return CUBLAS_COMPUTE_32F_FAST_16BF;
    case AP_CUDA_GEMM_FP32:
        break;
    }
    return CUBLAS_COMPUTE_32F_PEDANTIC;
}

/* Compute C = alpha op(A) op(B) + beta C, all float column-major, in math's arithmetic. */
static cublasStatus_t gemm(cublasHandle_t blas, ap_cuda_gemm_math math, cublasOperation_t op_a,
                           cublasOperation_t op_b, int m, int n, int k, const float *a, int lda,
                           const float *b, int ldb, const float *beta, float *c, int ldc)
{
    const float one = 1.0f;
    return cublasGemmEx(blas, op_a, op_b, m, n, k, &one, a, CUDA_R_32F, lda, b, CUDA_R_32F, ldb,
                        beta, c, CUDA_R_32F, ldc, compute_type(math), CUBLAS_GEMM_DEFAULT);
}

static unsigned blocks_for(long size)
{
    return (unsigned)((size + DENSE_THREADS - 1) / DENSE_THREADS);
}

/* cuBLAS is column-major, and a row-major matrix read column-major is its
 * transpose. So in becomes in_cm (in x batch), weight becomes weight_cm
 * (in x out), out becomes out_cm (out x batch), and
 * out_cm = weight_cm^T * in_cm. */
extern "C" ap_status ap_cuda_dense_forward(cublasHandle_t blas, ap_cuda_gemm_math math,
                                           const float *in, const float *weight, const float *bias,
                                           int batch, int in_features, int out_features, float *out,
                                           cudaStream_t stream, ap_error *err)
{
    if (blas == NULL || in == NULL || weight == NULL || out == NULL)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "dense_forward: blas, in, weight and out must not be NULL");
    ap_status status = check_dense_shape("dense_forward", batch, in_features, out_features, err);
    if (status != AP_OK)
        return status;

    const float zero = 0.0f;
    BLAS_CHECK(gemm(blas, math, CUBLAS_OP_T, CUBLAS_OP_N, out_features, batch, in_features, weight,
                    in_features, in, in_features, &zero, out, out_features),
               err);
    if (bias == NULL)
        return AP_OK;
    long size = (long)batch * out_features;
    add_bias_kernel<<<blocks_for(size), DENSE_THREADS, 0, stream>>>(out, bias, batch, out_features);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}

/* In column-major terms: d_weight_cm (in x out) = in_cm (in x batch) *
 * d_out_cm^T (batch x out), and d_in_cm (in x batch) = weight_cm (in x out) *
 * d_out_cm (out x batch). */
extern "C" ap_status ap_cuda_dense_backward(cublasHandle_t blas, ap_cuda_gemm_math math,
                                            const float *in, const float *weight,
                                            const float *d_out, int batch, int in_features,
                                            int out_features, float *d_in, float *d_weight,
                                            float *d_bias, bool accumulate, cudaStream_t stream,
                                            ap_error *err)
{
    if (blas == NULL || in == NULL || weight == NULL || d_out == NULL || d_weight == NULL)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "dense_backward: blas, in, weight, d_out and d_weight must not be "
                             "NULL");
    ap_status status = check_dense_shape("dense_backward", batch, in_features, out_features, err);
    if (status != AP_OK)
        return status;

    const float one = 1.0f, zero = 0.0f;
    const float *weight_beta = accumulate ? &one : &zero;
    BLAS_CHECK(gemm(blas, math, CUBLAS_OP_N, CUBLAS_OP_T, in_features, out_features, batch, in,
                    in_features, d_out, out_features, weight_beta, d_weight, in_features),
               err);
    if (d_in != NULL)
        BLAS_CHECK(gemm(blas, math, CUBLAS_OP_N, CUBLAS_OP_N, in_features, batch, out_features,
                        weight, in_features, d_out, out_features, &zero, d_in, in_features),
                   err);
    if (d_bias == NULL)
        return AP_OK;
    bias_grad_kernel<<<blocks_for(out_features), DENSE_THREADS, 0, stream>>>(
        d_out, batch, out_features, d_bias, accumulate);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}

extern "C" ap_status ap_cuda_dropout_forward(float *values, float *mask, long size, float rate,
                                             uint64_t seed, uint64_t rng_stream,
                                             cudaStream_t stream, ap_error *err)
{
    if (values == NULL || mask == NULL)
        return ap_cuda_error(err, AP_ERR_INVALID, "dropout: values and mask must not be NULL");
    if (size < 0 || size / DENSE_THREADS >= MAX_BLOCKS)
        return ap_cuda_error(err, AP_ERR_INVALID, "dropout: size %ld is invalid", size);
    if (size == 0)
        return AP_OK;
    if (rate <= 0.0f) {
        fill_kernel<<<blocks_for(size), DENSE_THREADS, 0, stream>>>(mask, size, 1.0f);
        AP_CUDA_CHECK(cudaGetLastError(), err);
        return AP_OK;
    }
    const float scale = rate < 1.0f ? 1.0f / (1.0f - rate) : 0.0f;
    dropout_forward_kernel<<<blocks_for(size), DENSE_THREADS, 0, stream>>>(values, mask, size, rate,
                                                                           scale, seed, rng_stream);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}

extern "C" ap_status ap_cuda_dropout_backward(float *d_values, const float *mask, long size,
                                              cudaStream_t stream, ap_error *err)
{
    if (d_values == NULL || mask == NULL)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "dropout backward: d_values and mask must not be NULL");
    if (size < 0 || size / DENSE_THREADS >= MAX_BLOCKS)
        return ap_cuda_error(err, AP_ERR_INVALID, "dropout backward: size %ld is invalid", size);
    if (size == 0)
        return AP_OK;
    multiply_kernel<<<blocks_for(size), DENSE_THREADS, 0, stream>>>(d_values, mask, size);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}
