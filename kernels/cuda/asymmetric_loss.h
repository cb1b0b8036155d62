#ifndef APIARY_KERNELS_CUDA_ASYMMETRIC_LOSS_H
#define APIARY_KERNELS_CUDA_ASYMMETRIC_LOSS_H

/* GPU versions of the focal and asymmetric losses in
 * kernels/cpu/asymmetric_loss.h, with the same per-element formulas
 * (ap_asymmetric_element) and the same masking: a target other than 0 or 1
 * is unknown, adds no loss and gets a gradient of 0.
 *
 * The trainer maps train.loss to the parameters as follows:
 *   focal:      {gamma_pos = gamma_neg = train.focal_gamma, clip = 0}
 *   asymmetric: {train.asymmetric_gamma_pos, train.asymmetric_gamma_neg,
 *                train.asymmetric_clip}
 * and train.loss = bce keeps using kernels/cuda/bce_loss.h. */

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "kernels/cpu/asymmetric_loss.h"
#include "pipeline/common/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* GPU version of ap_cpu_asymmetric_loss. Writes the mean over known targets to
 * *loss (one float, 0 when no target is known) and, when grad is not NULL,
 * d(mean)/d(logit) to grad. logits, targets, pos_weight (may be NULL: every
 * weight 1), grad and loss are device memory with count x labels entries
 * (pos_weight has labels). params is host memory, read before the call
 * returns. One block sums the losses in double with a fixed-order tree, so
 * every run gives the same result. Work is queued on stream. Returns AP_OK,
 * AP_ERR_INVALID for a bad argument (NULL buffer, bad shape, exponent below 0
 * or clip outside [0, 1)), or AP_ERR_BACKEND when the launch fails, with err
 * (may be NULL) filled. */
ap_status ap_cuda_asymmetric_loss(const float *logits, const int8_t *targets,
                                  const float *pos_weight, int count, int labels,
                                  const ap_asymmetric_params *params, float *grad, float *loss,
                                  cudaStream_t stream, ap_error *err);

/* GPU version of ap_cpu_asymmetric_loss_sum for one micro-batch. Writes
 * d(sum)/d(logit) to grad (device, count x labels, 0 for unknown targets).
 * Adds the summed loss and the known-target count to totals[0] and
 * totals[1] (device, two floats), rounded to float as ap_cuda_bce_loss_sum
 * adds them. Returns the same errors as ap_cuda_asymmetric_loss. */
ap_status ap_cuda_asymmetric_loss_sum(const float *logits, const int8_t *targets,
                                      const float *pos_weight, int count, int labels,
                                      const ap_asymmetric_params *params, float *grad,
                                      float *totals, cudaStream_t stream, ap_error *err);

/* GPU version of ap_cpu_focal_loss: ap_cuda_asymmetric_loss with gamma_pos =
 * gamma_neg = gamma and no clip. */
ap_status ap_cuda_focal_loss(const float *logits, const int8_t *targets, const float *pos_weight,
                             int count, int labels, float gamma, float *grad, float *loss,
                             cudaStream_t stream, ap_error *err);

#ifdef __cplusplus
}
#endif

#endif
