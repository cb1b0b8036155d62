#include "kernels/cuda/bce_loss.h"

#include "kernels/cpu/bce_loss.h"
#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/loss_block.cuh"

/* The weighted binary cross-entropy of one entry. */
struct bce_element {
    __device__ float operator()(float logit, int target, float weight, float *grad) const
    {
        return ap_bce_element(logit, target, weight, grad);
    }
};

/* One block: the mean loss over the known targets and d(mean)/d(logit). */
static __global__ void bce_loss_kernel(const float *logits, const int8_t *targets,
                                       const float *pos_weight, int labels, size_t total,
                                       float *grad, float *loss)
{
    __shared__ ap_loss_block block;
    ap_loss_sum_block(logits, targets, pos_weight, labels, total, bce_element(), grad, &block);
    ap_loss_finish_mean(&block, total, grad, loss);
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
    if (total > AP_LOSS_MAX_ENTRIES)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "bce_loss: %ld entries exceed the single-block limit of %ld; pass "
                             "the batch in parts",
                             total, AP_LOSS_MAX_ENTRIES);

    bce_loss_kernel<<<1, AP_LOSS_THREADS, 0, stream>>>(logits, targets, pos_weight, labels,
                                                       (size_t)total, grad, loss);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}

/* One block: per-element gradients of the sum, with the loss sum and the
 * known count added to totals. */
static __global__ void bce_loss_sum_kernel(const float *logits, const int8_t *targets,
                                           const float *pos_weight, int labels, size_t total,
                                           float *grad, float *totals)
{
    __shared__ ap_loss_block block;
    ap_loss_sum_block(logits, targets, pos_weight, labels, total, bce_element(), grad, &block);
    ap_loss_add_totals(&block, totals);
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
    if (total > AP_LOSS_MAX_ENTRIES)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "bce_loss_sum: %ld entries exceed the single-block limit of %ld; "
                             "pass the batch in parts",
                             total, AP_LOSS_MAX_ENTRIES);

    bce_loss_sum_kernel<<<1, AP_LOSS_THREADS, 0, stream>>>(logits, targets, pos_weight, labels,
                                                           (size_t)total, grad, totals);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}
