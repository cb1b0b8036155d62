#ifndef APIARY_KERNELS_CUDA_BCE_LOSS_H
#define APIARY_KERNELS_CUDA_BCE_LOSS_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "pipeline/common/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* GPU version of ap_cpu_bce_loss with the same per-element formula. Writes
 * the mean over known targets to *loss (one float) and, when grad is not
 * NULL, d(mean)/d(logit) to grad. logits, targets, pos_weight (may be NULL),
 * grad and loss are device memory, with count x labels entries. One block
 * sums the losses in double with a fixed-order tree, so every run gives the
 * same result. Work is queued on stream. Returns AP_OK, AP_ERR_INVALID for a
 * bad argument, or AP_ERR_BACKEND when the launch fails, with err (may be
 * NULL) filled. */
ap_status ap_cuda_bce_loss(const float *logits, const int8_t *targets, const float *pos_weight,
                           int count, int labels, float *grad, float *loss, cudaStream_t stream,
                           ap_error *err);

/* GPU version of ap_dp_bce_loss_sum for one micro-batch. Writes
 * d(sum)/d(logit) to grad (device, count x labels, 0 for unknown targets).
 * Adds the summed loss and the known-target count to totals[0] and
 * totals[1] (device, two floats), rounded to float as ap_dp_bucket_add_loss
 * adds them. One block sums in double with a fixed-order tree, as
 * ap_cuda_bce_loss does. */
ap_status ap_cuda_bce_loss_sum(const float *logits, const int8_t *targets, const float *pos_weight,
                               int count, int labels, float *grad, float *totals,
                               cudaStream_t stream, ap_error *err);

#ifdef __cplusplus
}
#endif

#endif
