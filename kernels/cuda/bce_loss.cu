#include "kernels/cuda/bce_loss.h"

#include "kernels/cpu/bce_loss.h"
#include "kernels/cuda/cuda_check.h"

/* Threads of the single block; a power of two for the tree reduction. */
#define LOSS_THREADS 512

/* Maximum entries accepted. One block is sized for batch x labels, which is
 * thousands of entries. Sizes far beyond that point to a wrong argument and
 * would make one slow launch. */
#define MAX_ENTRIES (1L << 26)

/* One block: each thread computes the losses and gradients of a strided
 * set of entries, the block sums losses and known counts with a fixed tree,
 * and every thread then divides its own gradients by the known count. */
static __global__ void bce_loss_kernel(const float *logits, const int8_t *targets,
                                       const float *pos_weight, int labels, size_t total,
                                       float *grad, float *loss)
{
    __shared__ double loss_sums[LOSS_THREADS];
    __shared__ unsigned long long known_counts[LOSS_THREADS];
    const unsigned thread = threadIdx.x;

    double loss_sum = 0.0;
    unsigned long long known = 0;
    for (size_t i = thread; i < total; i += LOSS_THREADS) {
        int target = targets[i];
        float element_grad = 0.0f;
        if (target == 0 || target == 1) {
            float weight = pos_weight != NULL ? pos_weight[i % (size_t)labels] : 1.0f;
            loss_sum += ap_bce_element(logits[i], target, weight, &element_grad);
            known++;
        }
        if (grad != NULL)
            grad[i] = element_grad;
    }
    loss_sums[thread] = loss_sum;
    known_counts[thread] = known;
    __syncthreads();

    for (unsigned half = LOSS_THREADS / 2; half > 0; half /= 2) {
        if (thread < half) {
            loss_sums[thread] += loss_sums[thread + half];
            known_counts[thread] += known_counts[thread + half];
        }
        __syncthreads();
    }
    const unsigned long long known_total = known_counts[0];
    if (thread == 0)
        *loss = known_total > 0 ? (float)(loss_sums[0] / (double)known_total) : 0.0f;
    if (grad == NULL || known_total == 0)
        return;

    const float known_count = (float)known_total;
    for (size_t i = thread; i < total; i += LOSS_THREADS)
        grad[i] = grad[i] / known_count;
}

extern "C" ap_status ap_cuda_bce_loss(const float *logits, const int8_t *targets,
                                      const float *pos_weight, int count, int labels, float *grad,
                                      float *loss, cudaStream_t stream, ap_error *err)
{
    if (logits == NULL || targets == NULL || loss == NULL)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "bce_loss: logits, targets and loss must not be NULL; pass device "
                             "buffers");
    if (count < 0 || labels <= 0)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "bce_loss: shape %d x %d is invalid; count must be at least 0 and "
                             "labels at least 1",
                             count, labels);
    const long total = (long)count * labels;
    if (total > MAX_ENTRIES)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "bce_loss: %ld entries exceed the single-block limit of %ld; pass "
                             "the batch in parts",
                             total, MAX_ENTRIES);

    bce_loss_kernel<<<1, LOSS_THREADS, 0, stream>>>(logits, targets, pos_weight, labels,
                                                    (size_t)total, grad, loss);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}

/* One block: per-element losses and gradients of the sum, then a fixed tree
 * over the block for the loss sum and the known count. */
static __global__ void bce_loss_sum_kernel(const float *logits, const int8_t *targets,
                                           const float *pos_weight, int labels, size_t total,
                                           float *grad, float *totals)
{
    __shared__ double loss_sums[LOSS_THREADS];
    __shared__ unsigned long long known_counts[LOSS_THREADS];
    const unsigned thread = threadIdx.x;

    double loss_sum = 0.0;
    unsigned long long known = 0;
    for (size_t i = thread; i < total; i += LOSS_THREADS) {
        int target = targets[i];
        float element_grad = 0.0f;
        if (target == 0 || target == 1) {
            float weight = pos_weight != NULL ? pos_weight[i % (size_t)labels] : 1.0f;
            loss_sum += ap_bce_element(logits[i], target, weight, &element_grad);
            known++;
        }
        grad[i] = element_grad;
    }
    loss_sums[thread] = loss_sum;
    known_counts[thread] = known;
    __syncthreads();

    for (unsigned half = LOSS_THREADS / 2; half > 0; half /= 2) {
        if (thread < half) {
            loss_sums[thread] += loss_sums[thread + half];
            known_counts[thread] += known_counts[thread + half];
        }
        __syncthreads();
    }
    if (thread == 0) {
        totals[1] += (float)known_counts[0];
        totals[0] += (float)loss_sums[0];
    }
}

extern "C" ap_status ap_cuda_bce_loss_sum(const float *logits, const int8_t *targets,
                                          const float *pos_weight, int count, int labels,
                                          float *grad, float *totals, cudaStream_t stream,
                                          ap_error *err)
{
    if (logits == NULL || targets == NULL || grad == NULL || totals == NULL)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "bce_loss_sum: logits, targets, grad and totals must not be NULL; "
                             "pass device buffers");
    if (count < 0 || labels <= 0)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "bce_loss_sum: shape %d x %d is invalid; count must be at least 0 "
                             "and labels at least 1",
                             count, labels);
    const long total = (long)count * labels;
    if (total > MAX_ENTRIES)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "bce_loss_sum: %ld entries exceed the single-block limit of %ld; "
                             "pass the batch in parts",
                             total, MAX_ENTRIES);

    bce_loss_sum_kernel<<<1, LOSS_THREADS, 0, stream>>>(logits, targets, pos_weight, labels,
                                                        (size_t)total, grad, totals);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}
