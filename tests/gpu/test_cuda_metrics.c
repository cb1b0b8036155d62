#include <stdint.h>
#include <stdlib.h>

#include <cuda_runtime_api.h>

#include "kernels/cuda/metrics.h"
#include "pipeline/eval/confusion.h"
#include "tests/gpu/gpu_test.h"

/* ap_cuda_confusion_add against ap_confusion_count for every label. The
 * counts are integers, so they must be equal. */

static cudaStream_t stream;

static void check_label(const unsigned long long *counts, const ap_confusion *expected,
                        long repeats, int label)
{
    const unsigned long long *row = counts + (size_t)label * AP_CUDA_CONFUSION_FIELDS;
    if ((long long)row[AP_CUDA_TRUE_POSITIVE] != repeats * expected->true_positive)
        fprintf(stderr, "label %d: counts differ from the CPU\n", label);
    CHECK_INT_EQ(row[AP_CUDA_TRUE_POSITIVE], repeats * expected->true_positive);
    CHECK_INT_EQ(row[AP_CUDA_FALSE_POSITIVE], repeats * expected->false_positive);
    CHECK_INT_EQ(row[AP_CUDA_TRUE_NEGATIVE], repeats * expected->true_negative);
    CHECK_INT_EQ(row[AP_CUDA_FALSE_NEGATIVE], repeats * expected->false_negative);
    CHECK_INT_EQ(row[AP_CUDA_UNKNOWN], repeats * expected->unknown);
}

/* Adds the same batch twice, so the second call must add to the first's
 * counts. Probabilities include the threshold itself, which predicts positive. */
static void compare_confusion(size_t count, int labels, float threshold)
{
    const size_t total = count * (size_t)labels;
    const size_t fields = (size_t)labels * AP_CUDA_CONFUSION_FIELDS;
    float *probabilities = gpu_test_host(total * sizeof(float));
    int8_t *targets = gpu_test_host(total);
    unsigned long long *counts = gpu_test_host(fields * sizeof(*counts));
    float *d_probabilities = NULL;
    int8_t *d_targets = NULL;
    unsigned long long *d_counts = NULL;
    ap_error err = {0};
    if (probabilities == NULL || targets == NULL || counts == NULL)
        goto cleanup;
    for (size_t i = 0; i < total; i++) {
        probabilities[i] = i % 11 == 0 ? threshold : gpu_test_uniform(0.0f, 1.0f);
        targets[i] = (int8_t)(rand() % 4 - 1); /* -1 unknown, 0, 1, and 2 counts as negative */
    }
    d_probabilities = gpu_test_device(probabilities, total * sizeof(float));
    d_targets = gpu_test_device(targets, total);
    d_counts = gpu_test_device(NULL, fields * sizeof(*counts));
    if (d_probabilities == NULL || d_targets == NULL || d_counts == NULL)
        goto cleanup;
    for (int pass = 0; pass < 2; pass++)
        if (!GPU_STATUS_OK(ap_cuda_confusion_add(d_probabilities, d_targets, count, labels,
                                                 threshold, d_counts, stream, &err),
                           &err))
            goto cleanup;
    if (!gpu_test_read(counts, d_counts, fields * sizeof(*counts), stream))
        goto cleanup;
    for (int label = 0; label < labels; label++) {
        ap_confusion expected;
        ap_confusion_count(probabilities, targets, count, labels, label, threshold, &expected);
        check_label(counts, &expected, 2, label);
    }

cleanup:
    cudaFree(d_probabilities);
    cudaFree(d_targets);
    cudaFree(d_counts);
    free(probabilities);
    free(targets);
    free(counts);
}

static void test_invalid_arguments(void)
{
    ap_error err = {0};
    float *d_values = gpu_test_device(NULL, 4 * sizeof(float));
    if (d_values == NULL)
        return;
    CHECK_INT_EQ(ap_cuda_confusion_add(d_values, NULL, 1, 4, 0.5f, NULL, stream, &err),
                 AP_ERR_INVALID);
    CHECK_INT_EQ(ap_cuda_confusion_add(d_values, (const int8_t *)d_values, 1, 65, 0.5f,
                                       (unsigned long long *)d_values, stream, &err),
                 AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "65 labels");
    cudaFree(d_values);
}

int main(void)
{
    if (gpu_test_skip())
        return 77;
    if (!GPU_CUDA_OK(cudaStreamCreate(&stream)))
        return check_finish();
    srand(2024);
    compare_confusion(1, 1, 0.5f);
    compare_confusion(1000, 4, 0.5f);
    /* More rows than the kernel's 1024 x 256 threads, so blocks loop. */
    compare_confusion(300000, 4, 0.3f);
    compare_confusion(517, 64, 0.7f); /* the maximum label count of the kernel */
    compare_confusion(0, 4, 0.5f);
    test_invalid_arguments();
    GPU_CUDA_OK(cudaStreamDestroy(stream));
    return check_finish();
}
