#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "kernels/cuda/elementwise.h"
#include "tests/gpu/gpu_test.h"

/* The element-wise kernels against the loops of pipeline/nn/eltwise.c and
 * ap_dp_bucket_apply, written out here. Each result is one IEEE operation
 * rounded to nearest (the kernels use __fadd_rn and __fdiv_rn, GCC does not
 * contract in ISO C mode), so the GPU must match the CPU bit for bit. */

static cudaStream_t stream;

/* Random values with exact zeros, negative zeros, and a NaN every so often. */
static void fill_values(float *values, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        values[i] = gpu_test_uniform(-3.0f, 3.0f);
        if (i % 17 == 0)
            values[i] = 0.0f;
        if (i % 23 == 0)
            values[i] = -0.0f;
    }
}

static void check_same_bits(const char *op, const float *gpu, const float *cpu, size_t size)
{
    size_t differences = gpu_test_bit_differences(gpu, cpu, size);
    if (differences > 0)
        fprintf(stderr, "%s: %zu of %zu values differ from the CPU\n", op, differences, size);
    CHECK_INT_EQ(differences, 0);
}

static void test_add_relu(size_t size)
{
    float *a = gpu_test_host(size * sizeof(float)), *b = gpu_test_host(size * sizeof(float));
    float *cpu = gpu_test_host(size * sizeof(float)), *gpu = gpu_test_host(size * sizeof(float));
    float *d_a = NULL, *d_b = NULL, *d_out = NULL;
    ap_error err = {0};
    if (a == NULL || b == NULL || cpu == NULL || gpu == NULL)
        goto cleanup;
    fill_values(a, size);
    fill_values(b, size);
    for (size_t i = 0; i < size; i++) {
        float sum = a[i] + b[i];
        cpu[i] = sum > 0.0f ? sum : 0.0f;
    }
    d_a = gpu_test_device(a, size * sizeof(float));
    d_b = gpu_test_device(b, size * sizeof(float));
    d_out = gpu_test_device(NULL, size * sizeof(float));
    if (d_a == NULL || d_b == NULL || d_out == NULL ||
        !GPU_STATUS_OK(ap_cuda_add_relu(d_a, d_b, d_out, size, stream, &err), &err) ||
        !gpu_test_read(gpu, d_out, size * sizeof(float), stream))
        goto cleanup;
    check_same_bits("add_relu", gpu, cpu, size);

cleanup:
    cudaFree(d_a);
    cudaFree(d_b);
    cudaFree(d_out);
    free(a);
    free(b);
    free(cpu);
    free(gpu);
}

/* In place, as batch norm's fused ReLU uses it; a NaN becomes 0 as in the
 * kernel's !(value > 0) test. */
static void test_relu(size_t size)
{
    float *values = gpu_test_host(size * sizeof(float));
    float *cpu = gpu_test_host(size * sizeof(float)), *gpu = gpu_test_host(size * sizeof(float));
    float *d_values = NULL;
    ap_error err = {0};
    if (values == NULL || cpu == NULL || gpu == NULL)
        goto cleanup;
    fill_values(values, size);
    values[size / 2] = NAN;
    for (size_t i = 0; i < size; i++)
        cpu[i] = values[i] > 0.0f ? values[i] : 0.0f;
    d_values = gpu_test_device(values, size * sizeof(float));
    if (d_values == NULL || !GPU_STATUS_OK(ap_cuda_relu(d_values, size, stream, &err), &err) ||
        !gpu_test_read(gpu, d_values, size * sizeof(float), stream))
        goto cleanup;
    check_same_bits("relu", gpu, cpu, size);

cleanup:
    cudaFree(d_values);
    free(values);
    free(cpu);
    free(gpu);
}

/* Into a separate buffer and in place (d_in == d_out), as gpu_bn_backward does. */
static void test_relu_backward(size_t size)
{
    float *out = gpu_test_host(size * sizeof(float)), *d_out = gpu_test_host(size * sizeof(float));
    float *cpu = gpu_test_host(size * sizeof(float)), *gpu = gpu_test_host(size * sizeof(float));
    float *dev_out = NULL, *dev_d_out = NULL, *dev_d_in = NULL;
    ap_error err = {0};
    if (out == NULL || d_out == NULL || cpu == NULL || gpu == NULL)
        goto cleanup;
    fill_values(out, size);
    fill_values(d_out, size);
    for (size_t i = 0; i < size; i++)
        cpu[i] = out[i] > 0.0f ? d_out[i] : 0.0f;
    dev_out = gpu_test_device(out, size * sizeof(float));
    dev_d_out = gpu_test_device(d_out, size * sizeof(float));
    dev_d_in = gpu_test_device(NULL, size * sizeof(float));
    if (dev_out == NULL || dev_d_out == NULL || dev_d_in == NULL)
        goto cleanup;
    if (GPU_STATUS_OK(ap_cuda_relu_backward(dev_out, dev_d_out, dev_d_in, size, stream, &err),
                      &err) &&
        gpu_test_read(gpu, dev_d_in, size * sizeof(float), stream))
        check_same_bits("relu_backward", gpu, cpu, size);
    if (GPU_STATUS_OK(ap_cuda_relu_backward(dev_out, dev_d_out, dev_d_out, size, stream, &err),
                      &err) &&
        gpu_test_read(gpu, dev_d_out, size * sizeof(float), stream))
        check_same_bits("relu_backward in place", gpu, cpu, size);

cleanup:
    cudaFree(dev_out);
    cudaFree(dev_d_out);
    cudaFree(dev_d_in);
    free(out);
    free(d_out);
    free(cpu);
    free(gpu);
}

static void test_add_into(size_t size)
{
    float *dst = gpu_test_host(size * sizeof(float)), *src = gpu_test_host(size * sizeof(float));
    float *gpu = gpu_test_host(size * sizeof(float));
    float *d_dst = NULL, *d_src = NULL;
    ap_error err = {0};
    if (dst == NULL || src == NULL || gpu == NULL)
        goto cleanup;
    fill_values(dst, size);
    fill_values(src, size);
    d_dst = gpu_test_device(dst, size * sizeof(float));
    d_src = gpu_test_device(src, size * sizeof(float));
    for (size_t i = 0; i < size; i++)
        dst[i] += src[i];
    if (d_dst == NULL || d_src == NULL ||
        !GPU_STATUS_OK(ap_cuda_add_into(d_dst, d_src, size, stream, &err), &err) ||
        !gpu_test_read(gpu, d_dst, size * sizeof(float), stream))
        goto cleanup;
    check_same_bits("add_into", gpu, dst, size);

cleanup:
    cudaFree(d_dst);
    cudaFree(d_src);
    free(dst);
    free(src);
    free(gpu);
}

/* Division by a count read from device memory, and by a host divisor: a
 * count of 0 (no known target in the whole batch) gives zeros. */
static void test_divide(size_t size, float count)
{
    float *values = gpu_test_host(size * sizeof(float));
    float *cpu = gpu_test_host(size * sizeof(float)), *gpu = gpu_test_host(size * sizeof(float));
    float *d_values = NULL, *d_count = NULL;
    ap_error err = {0};
    if (values == NULL || cpu == NULL || gpu == NULL)
        goto cleanup;
    fill_values(values, size);
    for (size_t i = 0; i < size; i++)
        cpu[i] = count > 0.0f ? values[i] / count : 0.0f;
    d_values = gpu_test_device(values, size * sizeof(float));
    d_count = gpu_test_device(&count, sizeof(float));
    if (d_values == NULL || d_count == NULL)
        goto cleanup;
    if (GPU_STATUS_OK(ap_cuda_divide_by_count(d_values, size, d_count, stream, &err), &err) &&
        gpu_test_read(gpu, d_values, size * sizeof(float), stream))
        check_same_bits("divide_by_count", gpu, cpu, size);
    if (count == 0.0f)
        goto cleanup;

    for (size_t i = 0; i < size; i++)
        cpu[i] = values[i] / 3.0f;
    if (GPU_CUDA_OK(cudaMemcpy(d_values, values, size * sizeof(float), cudaMemcpyHostToDevice)) &&
        GPU_STATUS_OK(ap_cuda_divide(d_values, size, 3.0f, stream, &err), &err) &&
        gpu_test_read(gpu, d_values, size * sizeof(float), stream))
        check_same_bits("divide", gpu, cpu, size);

cleanup:
    cudaFree(d_values);
    cudaFree(d_count);
    free(values);
    free(cpu);
    free(gpu);
}

static void test_invalid_arguments(void)
{
    ap_error err = {0};
    float *d_values = gpu_test_device(NULL, 4 * sizeof(float));
    if (d_values == NULL)
        return;
    CHECK_INT_EQ(ap_cuda_add_relu(d_values, NULL, d_values, 4, stream, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "add_relu");
    CHECK_INT_EQ(ap_cuda_divide(d_values, 4, 0.0f, stream, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "divisor is 0");
    CHECK_INT_EQ(ap_cuda_divide_by_count(d_values, 4, NULL, stream, &err), AP_ERR_INVALID);
    /* Zero elements is a valid empty launch. */
    CHECK_INT_EQ(ap_cuda_relu(d_values, 0, stream, &err), AP_OK);
    cudaFree(d_values);
}

int main(void)
{
    if (gpu_test_skip())
        return 77;
    if (!GPU_CUDA_OK(cudaStreamCreate(&stream)))
        return check_finish();
    srand(99);
    /* One partial block, and several blocks with a partial last one. */
    const size_t sizes[] = {1, 200, 100003};
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        test_add_relu(sizes[i]);
        test_relu(sizes[i]);
        test_relu_backward(sizes[i]);
        test_add_into(sizes[i]);
        test_divide(sizes[i], 37.0f);
        test_divide(sizes[i], 0.0f);
    }
    test_invalid_arguments();
    GPU_CUDA_OK(cudaStreamDestroy(stream));
    return check_finish();
}
