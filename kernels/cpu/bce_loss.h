#ifndef APIARY_KERNELS_CPU_BCE_LOSS_H
#define APIARY_KERNELS_CPU_BCE_LOSS_H

#include <math.h>
#include <stdint.h>

#include "kernels/cpu/rng.h" /* AP_HOST_DEVICE */

/* Masked, weighted sigmoid binary cross-entropy on logits.
 * For each known target t (0 or 1; any other value, such as -1, means unknown
 * and is skipped):
 *   loss = -(w * t * log(sigmoid(x)) + (1 - t) * log(1 - sigmoid(x)))
 * with w = pos_weight[label] (1 when pos_weight is NULL), computed in a
 * numerically stable form. Returns the mean over known targets (0 when there
 * are none) and, when grad is not NULL, writes d(mean)/d(logit) for every
 * entry (0 for unknown targets). logits, targets and grad are count x labels.
 * The sum is accumulated in double in a fixed order, so the result does not
 * depend on the number of threads. */
float ap_cpu_bce_loss(const float *logits, const int8_t *targets, const float *pos_weight,
                      int count, int labels, float *grad);

/* Computes the loss of one known target and stores d(loss)/d(logit) in *grad.
 * With e = exp(-|x|), which never overflows, and softplus(z) = log(1 + exp(z)):
 *   t = 1: loss = w * softplus(-x), grad = -w * sigmoid(-x)
 *   t = 0: loss = softplus(x),      grad = sigmoid(x)
 * where softplus(+-x) = log1p(e) + max(+-x, 0) and sigmoid(|x|) = 1 / (1 + e),
 * sigmoid(-|x|) = e / (1 + e). These equal the general form
 * (1 - t) x + (1 + (w - 1) t) softplus(-x) and its derivative
 * (1 + (w - 1) t) sigmoid(x) - w t, without its cancellation for large |x|.
 * The CPU and the CUDA kernel share this function. */
static inline AP_HOST_DEVICE float ap_bce_element(float logit, int positive, float weight,
                                                  float *grad)
{
    float e = expf(-fabsf(logit));
    float log_term = log1pf(e);
    float sigmoid_abs = 1.0f / (1.0f + e);
    float sigmoid_neg_abs = e / (1.0f + e);
    if (positive) {
        *grad = -weight * (logit >= 0.0f ? sigmoid_neg_abs : sigmoid_abs);
        return weight * (log_term + fmaxf(-logit, 0.0f));
    }
    *grad = logit >= 0.0f ? sigmoid_abs : sigmoid_neg_abs;
    return log_term + fmaxf(logit, 0.0f);
}

#endif
