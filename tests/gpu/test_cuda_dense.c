#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "kernels/cpu/dense.h"
#include "kernels/cuda/dense.h"
#include "tests/gpu/gpu_test.h"

/* The dense layer and dropout against kernels/cpu/dense.h. */

static cudaStream_t stream;
static cublasHandle_t blas;

/* Tolerances on the scale-free error of a matrix product with k-term sums:
 * fp32: cuBLAS and the CPU sum in other orders, so each result carries
 *   rounding of about sqrt(k) * 6e-8 of its terms; 1e-5 is far above that
 *   for k <= 512 and far below a wrong layout or transpose (order 1).
 * tf32: each input rounded to 10 mantissa bits, up to 2^-11 = 4.9e-4
 *   relative per product, averaging out over the sum; 5e-3.
 * bf16: each input rounded to 7 mantissa bits, up to 2^-8 = 3.9e-3 per
 *   product; 3e-2. */
static double tolerance_for(ap_cuda_gemm_math math)
{
    switch (math) {
    case AP_CUDA_GEMM_TF32:
        return 5e-3;
    case AP_CUDA_GEMM_BF16:
        return 3e-2;
    case AP_CUDA_GEMM_FP32:
        break;
    }
    return 1e-5;
}

typedef struct {
    float *in, *weight, *bias, *d_out, *d_in, *d_weight, *d_bias, *out;
} dense_buffers;

static void free_buffers(dense_buffers *b, bool device)
{
    float *all[] = {b->in, b->weight, b->bias, b->d_out, b->d_in, b->d_weight, b->d_bias, b->out};
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (device)
            cudaFree(all[i]);
        else
            free(all[i]);
    }
}

static void fill(float *values, size_t size)
{
    for (size_t i = 0; i < size; i++)
        values[i] = gpu_test_uniform(-1.0f, 1.0f);
}

static void report(const char *quantity, ap_cuda_gemm_math math, double error)
{
    double tolerance = tolerance_for(math);
    if (error > tolerance)
        fprintf(stderr, "dense %s (math %d): scale-free error %g above %g\n", quantity, (int)math,
                error, tolerance);
    CHECK_NEAR(error, 0.0, tolerance);
}

/* Forward, then backward twice with accumulate: the second pass must add
 * the same gradients again, as micro-batches do. */
static void compare_dense(int batch, int in_features, int out_features, ap_cuda_gemm_math math)
{
    const size_t in_size = (size_t)batch * (size_t)in_features;
    const size_t weight_size = (size_t)out_features * (size_t)in_features;
    const size_t out_size = (size_t)batch * (size_t)out_features;
    dense_buffers cpu = {0}, dev = {0};
    float *gpu = gpu_test_host((weight_size > in_size ? weight_size : in_size) * sizeof(float));
    ap_error err = {0};
    cpu.in = gpu_test_host(in_size * sizeof(float));
    cpu.weight = gpu_test_host(weight_size * sizeof(float));
    cpu.bias = gpu_test_host((size_t)out_features * sizeof(float));
    cpu.d_out = gpu_test_host(out_size * sizeof(float));
    cpu.d_in = gpu_test_host(in_size * sizeof(float));
    cpu.d_weight = gpu_test_host(weight_size * sizeof(float));
    cpu.d_bias = gpu_test_host((size_t)out_features * sizeof(float));
    cpu.out = gpu_test_host(out_size * sizeof(float));
    if (gpu == NULL || cpu.in == NULL || cpu.weight == NULL || cpu.bias == NULL ||
        cpu.d_out == NULL || cpu.d_in == NULL || cpu.d_weight == NULL || cpu.d_bias == NULL ||
        cpu.out == NULL)
        goto cleanup;
    fill(cpu.in, in_size);
    fill(cpu.weight, weight_size);
    fill(cpu.bias, (size_t)out_features);
    fill(cpu.d_out, out_size);
    ap_cpu_dense_forward(cpu.in, cpu.weight, cpu.bias, batch, in_features, out_features, cpu.out);
    ap_cpu_dense_backward(cpu.in, cpu.weight, cpu.d_out, batch, in_features, out_features, cpu.d_in,
                          cpu.d_weight, cpu.d_bias);

    dev.in = gpu_test_device(cpu.in, in_size * sizeof(float));
    dev.weight = gpu_test_device(cpu.weight, weight_size * sizeof(float));
    dev.bias = gpu_test_device(cpu.bias, (size_t)out_features * sizeof(float));
    dev.d_out = gpu_test_device(cpu.d_out, out_size * sizeof(float));
    dev.d_in = gpu_test_device(NULL, in_size * sizeof(float));
    dev.d_weight = gpu_test_device(NULL, weight_size * sizeof(float));
    dev.d_bias = gpu_test_device(NULL, (size_t)out_features * sizeof(float));
    dev.out = gpu_test_device(NULL, out_size * sizeof(float));
    if (dev.in == NULL || dev.weight == NULL || dev.bias == NULL || dev.d_out == NULL ||
        dev.d_in == NULL || dev.d_weight == NULL || dev.d_bias == NULL || dev.out == NULL)
        goto cleanup;

    if (!GPU_STATUS_OK(ap_cuda_dense_forward(blas, math, dev.in, dev.weight, dev.bias, batch,
                                             in_features, out_features, dev.out, stream, &err),
                       &err) ||
        !gpu_test_read(gpu, dev.out, out_size * sizeof(float), stream))
        goto cleanup;
    report("forward", math, gpu_test_scale_free_error(gpu, cpu.out, out_size));

    for (int pass = 0; pass < 2; pass++) {
        if (!GPU_STATUS_OK(ap_cuda_dense_backward(blas, math, dev.in, dev.weight, dev.d_out, batch,
                                                  in_features, out_features, dev.d_in, dev.d_weight,
                                                  dev.d_bias, pass > 0, stream, &err),
                           &err))
            goto cleanup;
    }
    if (gpu_test_read(gpu, dev.d_in, in_size * sizeof(float), stream))
        report("input gradient", math, gpu_test_scale_free_error(gpu, cpu.d_in, in_size));
    for (size_t i = 0; i < weight_size; i++)
        cpu.d_weight[i] *= 2.0f;
    if (gpu_test_read(gpu, dev.d_weight, weight_size * sizeof(float), stream))
        report("accumulated weight gradient", math,
               gpu_test_scale_free_error(gpu, cpu.d_weight, weight_size));
    /* The bias gradient sums rows in the CPU's order in every math mode,
     * and doubling a float is exact, so it matches bit for bit. */
    for (int o = 0; o < out_features; o++)
        cpu.d_bias[o] += cpu.d_bias[o];
    if (gpu_test_read(gpu, dev.d_bias, (size_t)out_features * sizeof(float), stream))
        CHECK_INT_EQ(gpu_test_bit_differences(gpu, cpu.d_bias, (size_t)out_features), 0);

cleanup:
    free_buffers(&cpu, false);
    free_buffers(&dev, true);
    free(gpu);
}

/* The same mask and values as the CPU, since both draw from
 * ap_rng_uniform(seed, stream, i), and the backward pass multiplies by the mask. */
static void compare_dropout(long size, float rate)
{
    float *values = gpu_test_host((size_t)size * sizeof(float));
    float *cpu_mask = gpu_test_host((size_t)size * sizeof(float));
    float *gpu = gpu_test_host((size_t)size * sizeof(float));
    float *d_values = NULL, *d_mask = NULL;
    ap_error err = {0};
    if (values == NULL || cpu_mask == NULL || gpu == NULL)
        goto cleanup;
    fill(values, (size_t)size);
    d_values = gpu_test_device(values, (size_t)size * sizeof(float));
    d_mask = gpu_test_device(NULL, (size_t)size * sizeof(float));
    if (d_values == NULL || d_mask == NULL)
        goto cleanup;
    ap_cpu_dropout_forward(values, cpu_mask, size, rate, 77, 5);
    if (!GPU_STATUS_OK(ap_cuda_dropout_forward(d_values, d_mask, size, rate, 77, 5, stream, &err),
                       &err))
        goto cleanup;
    if (gpu_test_read(gpu, d_values, (size_t)size * sizeof(float), stream))
        CHECK_INT_EQ(gpu_test_bit_differences(gpu, values, (size_t)size), 0);
    if (gpu_test_read(gpu, d_mask, (size_t)size * sizeof(float), stream))
        CHECK_INT_EQ(gpu_test_bit_differences(gpu, cpu_mask, (size_t)size), 0);

    fill(values, (size_t)size);
    if (!GPU_CUDA_OK(
            cudaMemcpy(d_values, values, (size_t)size * sizeof(float), cudaMemcpyHostToDevice)))
        goto cleanup;
    ap_cpu_dropout_backward(values, cpu_mask, size);
    if (GPU_STATUS_OK(ap_cuda_dropout_backward(d_values, d_mask, size, stream, &err), &err) &&
        gpu_test_read(gpu, d_values, (size_t)size * sizeof(float), stream))
        CHECK_INT_EQ(gpu_test_bit_differences(gpu, values, (size_t)size), 0);

cleanup:
    cudaFree(d_values);
    cudaFree(d_mask);
    free(values);
    free(cpu_mask);
    free(gpu);
}

static void test_invalid_arguments(void)
{
    ap_error err = {0};
    float *d_values = gpu_test_device(NULL, 16 * sizeof(float));
    if (d_values == NULL)
        return;
    CHECK_INT_EQ(ap_cuda_dense_forward(blas, AP_CUDA_GEMM_FP32, d_values, d_values, NULL, 0, 2, 2,
                                       d_values, stream, &err),
                 AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "batch 0");
    CHECK_INT_EQ(ap_cuda_dense_backward(blas, AP_CUDA_GEMM_FP32, d_values, d_values, d_values, 2, 2,
                                        2, NULL, NULL, NULL, false, stream, &err),
                 AP_ERR_INVALID);
    CHECK_INT_EQ(ap_cuda_dropout_forward(d_values, NULL, 4, 0.5f, 1, 1, stream, &err),
                 AP_ERR_INVALID);
    CHECK_INT_EQ(ap_cuda_dropout_forward(d_values, d_values, -1, 0.5f, 1, 1, stream, &err),
                 AP_ERR_INVALID);
    cudaFree(d_values);
}

int main(void)
{
    if (gpu_test_skip())
        return 77;
    if (!GPU_CUDA_OK(cudaStreamCreate(&stream)))
        return check_finish();
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS || cublasSetStream(blas, stream) != 0) {
        fprintf(stderr, "cuBLAS handle setup failed\n");
        return 1;
    }
    srand(4321);
    const ap_cuda_gemm_math maths[] = {AP_CUDA_GEMM_FP32, AP_CUDA_GEMM_TF32, AP_CUDA_GEMM_BF16};
    for (size_t m = 0; m < sizeof(maths) / sizeof(maths[0]); m++) {
        compare_dense(8, 512, 4, maths[m]); /* the head's shape: few labels, wide features */
        compare_dense(33, 70, 19, maths[m]);
    }
    compare_dropout(1000, 0.3f);
    compare_dropout(257, 0.0f);
    test_invalid_arguments();
    cublasDestroy(blas);
    GPU_CUDA_OK(cudaStreamDestroy(stream));
    return check_finish();
}
