#include "kernels/cuda/elementwise.h"

#include "kernels/cpu/rng.h"
#include "kernels/cuda/cuda_check.h"

#define ELEMENTWISE_THREADS 256

/* Largest grid x dimension CUDA accepts for compute capability 3.0 and later. */
#define MAX_BLOCKS 2147483647UL

static __global__ void add_relu_kernel(const float *a, const float *b, float *out, size_t size)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < size) {
        float sum = AP_ROUNDED_ADD(a[i], b[i]);
        out[i] = sum > 0.0f ? sum : 0.0f;
    }
}

static __global__ void relu_kernel(float *values, size_t size)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < size && !(values[i] > 0.0f))
        values[i] = 0.0f;
}

static __global__ void relu_backward_kernel(const float *out, const float *d_out, float *d_in,
                                            size_t size)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < size)
        d_in[i] = out[i] > 0.0f ? d_out[i] : 0.0f;
}

static __global__ void add_into_kernel(float *dst, const float *src, size_t size)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < size)
        dst[i] = AP_ROUNDED_ADD(dst[i], src[i]);
}

static __global__ void divide_by_count_kernel(float *values, size_t size, const float *count)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= size)
        return;
    float known = *count;
    values[i] = known > 0.0f ? AP_ROUNDED_DIV(values[i], known) : 0.0f;
}

static __global__ void divide_kernel(float *values, size_t size, float divisor)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < size)
        values[i] = AP_ROUNDED_DIV(values[i], divisor);
}

/* Checks the size and returns the block count of a one-thread-per-element launch. */
static ap_status plan_blocks(const char *op, size_t size, unsigned *blocks, ap_error *err)
{
    size_t needed = (size + ELEMENTWISE_THREADS - 1) / ELEMENTWISE_THREADS;
    if (needed > MAX_BLOCKS)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "%s: %zu elements exceed one launch; pass the tensor in parts", op,
                             size);
    *blocks = (unsigned)needed;
    return AP_OK;
}

static ap_status missing_buffer(const char *op, ap_error *err)
{
    return ap_cuda_error(err, AP_ERR_INVALID, "%s: a buffer is NULL; pass device buffers", op);
}

extern "C" ap_status ap_cuda_add_relu(const float *a, const float *b, float *out, size_t size,
                                      cudaStream_t stream, ap_error *err)
{
    unsigned blocks = 0;
    if (a == NULL || b == NULL || out == NULL)
        return missing_buffer("add_relu", err);
    ap_status status = plan_blocks("add_relu", size, &blocks, err);
    if (status != AP_OK || size == 0)
        return status;
    add_relu_kernel<<<blocks, ELEMENTWISE_THREADS, 0, stream>>>(a, b, out, size);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}

extern "C" ap_status ap_cuda_relu(float *values, size_t size, cudaStream_t stream, ap_error *err)
{
    unsigned blocks = 0;
    if (values == NULL)
        return missing_buffer("relu", err);
    ap_status status = plan_blocks("relu", size, &blocks, err);
    if (status != AP_OK || size == 0)
        return status;
    relu_kernel<<<blocks, ELEMENTWISE_THREADS, 0, stream>>>(values, size);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}

extern "C" ap_status ap_cuda_relu_backward(const float *out, const float *d_out, float *d_in,
                                           size_t size, cudaStream_t stream, ap_error *err)
{
    unsigned blocks = 0;
    if (out == NULL || d_out == NULL || d_in == NULL)
        return missing_buffer("relu_backward", err);
    ap_status status = plan_blocks("relu_backward", size, &blocks, err);
    if (status != AP_OK || size == 0)
        return status;
    relu_backward_kernel<<<blocks, ELEMENTWISE_THREADS, 0, stream>>>(out, d_out, d_in, size);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}

extern "C" ap_status ap_cuda_add_into(float *dst, const float *src, size_t size,
                                      cudaStream_t stream, ap_error *err)
{
    unsigned blocks = 0;
    if (dst == NULL || src == NULL)
        return missing_buffer("add_into", err);
    ap_status status = plan_blocks("add_into", size, &blocks, err);
    if (status != AP_OK || size == 0)
        return status;
    add_into_kernel<<<blocks, ELEMENTWISE_THREADS, 0, stream>>>(dst, src, size);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}

extern "C" ap_status ap_cuda_divide_by_count(float *values, size_t size, const float *count,
                                             cudaStream_t stream, ap_error *err)
{
    unsigned blocks = 0;
    if (values == NULL || count == NULL)
        return missing_buffer("divide_by_count", err);
    ap_status status = plan_blocks("divide_by_count", size, &blocks, err);
    if (status != AP_OK || size == 0)
        return status;
    divide_by_count_kernel<<<blocks, ELEMENTWISE_THREADS, 0, stream>>>(values, size, count);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}

extern "C" ap_status ap_cuda_divide(float *values, size_t size, float divisor, cudaStream_t stream,
                                    ap_error *err)
{
    unsigned blocks = 0;
    if (values == NULL)
        return missing_buffer("divide", err);
    if (divisor == 0.0f)
        return ap_cuda_error(err, AP_ERR_INVALID, "divide: the divisor is 0");
    ap_status status = plan_blocks("divide", size, &blocks, err);
    if (status != AP_OK || size == 0)
        return status;
    divide_kernel<<<blocks, ELEMENTWISE_THREADS, 0, stream>>>(values, size, divisor);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}
