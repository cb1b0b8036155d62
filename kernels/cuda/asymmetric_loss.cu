#include "kernels/cuda/asymmetric_loss.h"

#include "kernels/cuda/cuda_check.h"

/* Threads of the single block; a power of two for the tree reduction. */
#define LOSS_THREADS 512

/* Maximum entries accepted: one block is sized for batch x labels, which is
 * thousands of entries, so far larger sizes point to a wrong argument. */
#define MAX_ENTRIES (1L << 26)

/* Each thread computes the losses and gradients of a strided set of entries;
 * the block then sums losses and known counts with a fixed tree, so thread 0
 * holds the totals in loss_sums[0] and known_counts[0]. */
static __device__ void sum_block(const float *logits, const int8_t *targets,
                                 const float *pos_weight, int labels, size_t total,
                                 ap_asymmetric_params params, float *grad, double *loss_sums,
                                 unsigned long long *known_counts)
{
    const unsigned thread = threadIdx.x;
    double loss_sum = 0.0;
    unsigned long long known = 0;
    for (size_t i = thread; i < total; i += LOSS_THREADS) {
        int target = targets[i];
        float element_grad = 0.0f;
        if (target == 0 || target == 1) {
            float weight = pos_weight != NULL ? pos_weight[i % (size_t)labels] : 1.0f;
            loss_sum += ap_asymmetric_element(logits[i], target, weight, &params, &element_grad);
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
}

static __global__ void asymmetric_loss_kernel(const float *logits, const int8_t *targets,
                                              const float *pos_weight, int labels, size_t total,
                                              ap_asymmetric_params params, float *grad, float *loss)
{
    __shared__ double loss_sums[LOSS_THREADS];
    __shared__ unsigned long long known_counts[LOSS_THREADS];
    sum_block(logits, targets, pos_weight, labels, total, params, grad, loss_sums, known_counts);

    const unsigned long long known_total = known_counts[0];
    if (threadIdx.x == 0)
        *loss = known_total > 0 ? (float)(loss_sums[0] / (double)known_total) : 0.0f;
    if (grad == NULL || known_total == 0)
        return;

    /* d(mean)/d(logit): each thread divides the gradients it wrote. */
    const float known_count = (float)known_total;
    for (size_t i = threadIdx.x; i < total; i += LOSS_THREADS)
        grad[i] = grad[i] / known_count;
}

static __global__ void asymmetric_loss_sum_kernel(const float *logits, const int8_t *targets,
                                                  const float *pos_weight, int labels, size_t total,
                                                  ap_asymmetric_params params, float *grad,
                                                  float *totals)
{
    __shared__ double loss_sums[LOSS_THREADS];
    __shared__ unsigned long long known_counts[LOSS_THREADS];
    sum_block(logits, targets, pos_weight, labels, total, params, grad, loss_sums, known_counts);
    if (threadIdx.x == 0) {
        totals[1] += (float)known_counts[0];
        totals[0] += (float)loss_sums[0];
    }
}

/* Checks the arguments shared by both launchers; name prefixes the message. */
static ap_status check_arguments(const char *name, const float *logits, const int8_t *targets,
                                 const void *output, int count, int labels,
                                 const ap_asymmetric_params *params, ap_error *err)
{
    if (logits == NULL || targets == NULL || output == NULL || params == NULL)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "%s: logits, targets, params and the output must not be NULL; pass "
                             "device buffers and a host params struct",
                             name);
    if (count < 0 || labels <= 0)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "%s: shape %d x %d is invalid; count must be at least 0 and labels "
                             "at least 1",
                             name, count, labels);
    if ((long)count * labels > MAX_ENTRIES)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "%s: %ld entries exceed the single-block limit of %ld; pass the "
                             "batch in parts",
                             name, (long)count * labels, MAX_ENTRIES);
    if (!ap_asymmetric_params_valid(params))
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "%s: gamma_pos %g, gamma_neg %g or clip %g is invalid; the "
                             "exponents must be at least 0 and the clip in [0, 1)",
                             name, (double)params->gamma_pos, (double)params->gamma_neg,
                             (double)params->clip);
    return AP_OK;
}

extern "C" ap_status ap_cuda_asymmetric_loss(const float *logits, const int8_t *targets,
                                             const float *pos_weight, int count, int labels,
                                             const ap_asymmetric_params *params, float *grad,
                                             float *loss, cudaStream_t stream, ap_error *err)
{
    ap_status status =
        check_arguments("asymmetric_loss", logits, targets, loss, count, labels, params, err);
    if (status != AP_OK)
        return status;
    asymmetric_loss_kernel<<<1, LOSS_THREADS, 0, stream>>>(
        logits, targets, pos_weight, labels, (size_t)count * (size_t)labels, *params, grad, loss);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}

extern "C" ap_status ap_cuda_asymmetric_loss_sum(const float *logits, const int8_t *targets,
                                                 const float *pos_weight, int count, int labels,
                                                 const ap_asymmetric_params *params, float *grad,
                                                 float *totals, cudaStream_t stream, ap_error *err)
{
    ap_status status =
        check_arguments("asymmetric_loss_sum", logits, targets, totals, count, labels, params, err);
    if (status == AP_OK && grad == NULL)
        status = ap_cuda_error(err, AP_ERR_INVALID,
                               "asymmetric_loss_sum: grad must not be NULL; pass a device buffer "
                               "of count x labels floats");
    if (status != AP_OK)
        return status;
    asymmetric_loss_sum_kernel<<<1, LOSS_THREADS, 0, stream>>>(
        logits, targets, pos_weight, labels, (size_t)count * (size_t)labels, *params, grad, totals);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}

extern "C" ap_status ap_cuda_focal_loss(const float *logits, const int8_t *targets,
                                        const float *pos_weight, int count, int labels, float gamma,
                                        float *grad, float *loss, cudaStream_t stream,
                                        ap_error *err)
{
    const ap_asymmetric_params params = {gamma, gamma, 0.0f};
    return ap_cuda_asymmetric_loss(logits, targets, pos_weight, count, labels, &params, grad, loss,
                                   stream, err);
}
