#include "kernels/cuda/metrics.h"

#include "kernels/cuda/cuda_check.h"

#define METRIC_THREADS 256

/* Blocks stride over the rows; each keeps per-label counts in shared memory
 * and adds them to the global counts once, so atomics stay few. */
#define METRIC_MAX_BLOCKS 1024
#define METRIC_MAX_LABELS 64

static __global__ void confusion_kernel(const float *probabilities, const int8_t *targets,
                                        size_t count, int labels, float threshold,
                                        unsigned long long *counts)
{
    __shared__ unsigned long long block_counts[METRIC_MAX_LABELS * AP_CUDA_CONFUSION_FIELDS];
    for (int i = threadIdx.x; i < labels * AP_CUDA_CONFUSION_FIELDS; i += blockDim.x)
        block_counts[i] = 0;
    __syncthreads();

    const size_t total = count * (size_t)labels;
    const size_t stride = (size_t)gridDim.x * blockDim.x;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        int label = (int)(i % (size_t)labels);
        int target = targets[i];
        bool predicted = probabilities[i] >= threshold;
        int field = AP_CUDA_UNKNOWN;
        if (target == 1)
            field = predicted ? AP_CUDA_TRUE_POSITIVE : AP_CUDA_FALSE_NEGATIVE;
        else if (target >= 0)
            field = predicted ? AP_CUDA_FALSE_POSITIVE : AP_CUDA_TRUE_NEGATIVE;
        atomicAdd(&block_counts[label * AP_CUDA_CONFUSION_FIELDS + field], 1ULL);
    }
    __syncthreads();

    for (int i = threadIdx.x; i < labels * AP_CUDA_CONFUSION_FIELDS; i += blockDim.x)
        if (block_counts[i] != 0)
            atomicAdd(&counts[i], block_counts[i]);
}

extern "C" ap_status ap_cuda_confusion_add(const float *probabilities, const int8_t *targets,
                                           size_t count, int labels, float threshold,
                                           unsigned long long *counts, cudaStream_t stream,
                                           ap_error *err)
{
    if (probabilities == NULL || targets == NULL || counts == NULL)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "confusion: probabilities, targets and counts must not be NULL; "
                             "pass device buffers");
    if (labels <= 0 || labels > METRIC_MAX_LABELS)
        return ap_cuda_error(err, AP_ERR_INVALID, "confusion: %d labels is outside [1, %d]", labels,
                             METRIC_MAX_LABELS);
    if (count == 0)
        return AP_OK;
    size_t needed = (count * (size_t)labels + METRIC_THREADS - 1) / METRIC_THREADS;
    unsigned blocks = (unsigned)(needed < METRIC_MAX_BLOCKS ? needed : METRIC_MAX_BLOCKS);
    confusion_kernel<<<blocks, METRIC_THREADS, 0, stream>>>(probabilities, targets, count, labels,
                                                            threshold, counts);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}
