#ifndef APIARY_TESTS_GPU_GPU_TEST_H
#define APIARY_TESTS_GPU_GPU_TEST_H

/* Helpers shared by the GPU tests, after tests/unit/check.h: a failed CUDA
 * call or apiary call counts as a failed check, and device buffers are
 * filled from and read back to host arrays. Every GPU test exits 77 when
 * gpu_test_skip finds no CUDA device. */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime_api.h>

#include "pipeline/common/status.h"
#include "tests/unit/check.h"

static inline int gpu_test_cuda_ok(cudaError_t status, const char *call, const char *file, int line)
{
    if (status == cudaSuccess)
        return 1;
    fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", file, line, call, cudaGetErrorName(status),
            cudaGetErrorString(status));
    check_failures++;
    return 0;
}

static inline int gpu_test_status_ok(ap_status status, const ap_error *err, const char *call,
                                     const char *file, int line)
{
    if (status == AP_OK)
        return 1;
    fprintf(stderr, "%s:%d: %s returned %s: %s\n", file, line, call, ap_status_name(status),
            err->message);
    check_failures++;
    return 0;
}

#define GPU_CUDA_OK(call)        gpu_test_cuda_ok((call), #call, __FILE__, __LINE__)
#define GPU_STATUS_OK(call, err) gpu_test_status_ok((call), (err), #call, __FILE__, __LINE__)

/* True (after printing why) when no CUDA device is visible. */
static inline int gpu_test_skip(void)
{
    int devices = 0;
    if (cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0)
        return 0;
    printf("no CUDA device, skipping\n");
    return 1;
}

/* malloc that counts a failed allocation as a failed check. */
static inline void *gpu_test_host(size_t bytes)
{
    void *memory = malloc(bytes > 0 ? bytes : 1);
    CHECK(memory != NULL);
    return memory;
}

/* A new device buffer of bytes, filled from host unless host is NULL, in
 * which case it is zeroed; NULL on failure. */
static inline void *gpu_test_device(const void *host, size_t bytes)
{
    void *device = NULL;
    if (!GPU_CUDA_OK(cudaMalloc(&device, bytes > 0 ? bytes : 1)))
        return NULL;
    cudaError_t status = host != NULL ? cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice)
                                      : cudaMemset(device, 0, bytes > 0 ? bytes : 1);
    if (!GPU_CUDA_OK(status)) {
        cudaFree(device);
        return NULL;
    }
    return device;
}

/* Wait for stream, then copy bytes of device memory to host. */
static inline int gpu_test_read(void *host, const void *device, size_t bytes, cudaStream_t stream)
{
    if (!GPU_CUDA_OK(cudaStreamSynchronize(stream)))
        return 0;
    return GPU_CUDA_OK(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost));
}

/* The largest absolute difference over the largest absolute reference
 * value, or the largest difference when the reference is all zeros. */
static inline double gpu_test_scale_free_error(const float *actual, const float *reference,
                                               size_t size)
{
    double max_error = 0.0, max_value = 0.0;
    for (size_t i = 0; i < size; i++) {
        max_error = fmax(max_error, fabs((double)actual[i] - (double)reference[i]));
        max_value = fmax(max_value, fabs((double)reference[i]));
    }
    return max_value > 0.0 ? max_error / max_value : max_error;
}

/* Count of positions where two float arrays differ in their bits. */
static inline size_t gpu_test_bit_differences(const float *a, const float *b, size_t size)
{
    size_t differences = 0;
    for (size_t i = 0; i < size; i++)
        differences += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return differences;
}

static inline float gpu_test_uniform(float low, float high)
{
    return low + (high - low) * ((float)rand() / (float)RAND_MAX);
}

#endif
