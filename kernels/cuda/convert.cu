#include "kernels/cuda/convert.h"

#include <cuda_bf16.h>

#include "kernels/cpu/rng.h"
#include "kernels/cuda/cuda_check.h"

#define CONVERT_THREADS 256

/* Largest grid x dimension CUDA accepts for compute capability 3.0 and later. */
#define MAX_BLOCKS 2147483647UL

static __global__ void float_to_bf16_kernel(const float *in, uint16_t *out, size_t size)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < size)
        out[i] = __bfloat16_as_ushort(__float2bfloat16_rn(in[i]));
}

static __global__ void bf16_to_float_kernel(const uint16_t *in, float *out, size_t size,
                                            bool accumulate)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= size)
        return;
    float value = __bfloat162float(__ushort_as_bfloat16(in[i]));
    out[i] = accumulate ? AP_ROUNDED_ADD(out[i], value) : value;
}

static ap_status plan_blocks(const char *op, const void *in, const void *out, size_t size,
                             unsigned *blocks, ap_error *err)
{
    if (in == NULL || out == NULL)
        return ap_cuda_error(err, AP_ERR_INVALID, "%s: a buffer is NULL; pass device buffers", op);
    size_t needed = (size + CONVERT_THREADS - 1) / CONVERT_THREADS;
    if (needed > MAX_BLOCKS)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "%s: %zu values exceed one launch; convert the tensor in parts", op,
                             size);
    *blocks = (unsigned)needed;
    return AP_OK;
}

extern "C" ap_status ap_cuda_float_to_bf16(const float *in, uint16_t *out, size_t size,
                                           cudaStream_t stream, ap_error *err)
{
    unsigned blocks = 0;
    ap_status status = plan_blocks("float_to_bf16", in, out, size, &blocks, err);
    if (status != AP_OK || size == 0)
        return status;
    float_to_bf16_kernel<<<blocks, CONVERT_THREADS, 0, stream>>>(in, out, size);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}

extern "C" ap_status ap_cuda_bf16_to_float(const uint16_t *in, float *out, size_t size,
                                           bool accumulate, cudaStream_t stream, ap_error *err)
{
    unsigned blocks = 0;
    ap_status status = plan_blocks("bf16_to_float", in, out, size, &blocks, err);
    if (status != AP_OK || size == 0)
        return status;
    bf16_to_float_kernel<<<blocks, CONVERT_THREADS, 0, stream>>>(in, out, size, accumulate);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}
