#ifndef APIARY_KERNELS_CUDA_LOSS_BLOCK_CUH
#define APIARY_KERNELS_CUDA_LOSS_BLOCK_CUH

/* The single-block reduction that every masked loss kernel shares. Included
 * by .cu files only. */

#include <stddef.h>
#include <stdint.h>

/* Threads of the single block; a power of two for the tree reduction. */
#define AP_LOSS_THREADS 512

/* Maximum entries accepted. One block is sized for batch x labels, which is
 * thousands of entries. Sizes far beyond that point to a wrong argument and
 * would make one slow launch. */
#define AP_LOSS_MAX_ENTRIES (1L << 26)

/* Shared memory of one loss block: per-thread partial sums. */
struct ap_loss_block {
    double loss_sums[AP_LOSS_THREADS];
    unsigned long long known_counts[AP_LOSS_THREADS];
};

/* Compute the losses and gradients of a strided set of entries in each
 * thread, then sum losses and known counts over the block with a fixed tree,
 * so the order of additions never changes. Afterwards loss_sums[0] and
 * known_counts[0] contain the totals. element(logit, target, weight, &grad)
 * returns one entry's loss; unknown targets get gradient 0 and no loss. */
template <typename Element>
static __device__ void ap_loss_sum_block(const float *logits, const int8_t *targets,
                                         const float *pos_weight, int labels, size_t total,
                                         Element element, float *grad, ap_loss_block *block)
{
    const unsigned thread = threadIdx.x;
    double loss_sum = 0.0;
    unsigned long long known = 0;
    for (size_t i = thread; i < total; i += AP_LOSS_THREADS) {
        int target = targets[i];
        float element_grad = 0.0f;
        if (target == 0 || target == 1) {
            float weight = pos_weight != NULL ? pos_weight[i % (size_t)labels] : 1.0f;
            loss_sum += element(logits[i], target, weight, &element_grad);
            known++;
        }
        if (grad != NULL)
            grad[i] = element_grad;
    }
    block->loss_sums[thread] = loss_sum;
    block->known_counts[thread] = known;
    __syncthreads();

    for (unsigned half = AP_LOSS_THREADS / 2; half > 0; half /= 2) {
        if (thread < half) {
            block->loss_sums[thread] += block->loss_sums[thread + half];
            block->known_counts[thread] += block->known_counts[thread + half];
        }
        __syncthreads();
    }
}

/* Write the mean loss to *loss and divide each thread's gradients by the
 * known count, giving d(mean)/d(logit). */
static __device__ void ap_loss_finish_mean(const ap_loss_block *block, size_t total, float *grad,
                                           float *loss)
{
    const unsigned long long known_total = block->known_counts[0];
    if (threadIdx.x == 0)
        *loss = known_total > 0 ? (float)(block->loss_sums[0] / (double)known_total) : 0.0f;
    if (grad == NULL || known_total == 0)
        return;

    const float known_count = (float)known_total;
    for (size_t i = threadIdx.x; i < total; i += AP_LOSS_THREADS)
        grad[i] = grad[i] / known_count;
}

/* Add the loss sum and the known count to totals[0] and totals[1]. */
static __device__ void ap_loss_add_totals(const ap_loss_block *block, float *totals)
{
    if (threadIdx.x == 0) {
        totals[1] += (float)block->known_counts[0];
        totals[0] += (float)block->loss_sums[0];
    }
}

#endif
