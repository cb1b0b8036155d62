#ifndef APIARY_KERNELS_CPU_ASYMMETRIC_LOSS_H
#define APIARY_KERNELS_CPU_ASYMMETRIC_LOSS_H

#include <math.h>
#include <stdint.h>

#include "kernels/cpu/rng.h" /* AP_HOST_DEVICE */

/* Masked, weighted focal and asymmetric losses on logits for multi-label
 * classification.
 *
 * The asymmetric loss (Ridnik et al., "Asymmetric Loss For Multi-Label
 * Classification", ICCV 2021) with p = sigmoid(x), positive weight w, focusing
 * exponents gamma_pos and gamma_neg and probability clip m is
 *   t = 1: loss = -w (1 - p)^gamma_pos log(p)
 *   t = 0: loss = -p_m^gamma_neg log(1 - p_m),  p_m = max(p - m, 0)
 * Easy negatives (p <= m) then contribute nothing, and gamma_neg > gamma_pos
 * lowers the weight of the many easy negatives more than of the few
 * positives. The focal loss (Lin et al., "Focal Loss for Dense Object
 * Detection", ICCV 2017, without its alpha, which pos_weight replaces) is the
 * case gamma_pos = gamma_neg = gamma, m = 0, and plain weighted binary
 * cross-entropy is gamma = 0. */
typedef struct {
    float gamma_pos; /* focusing exponent of positive targets, at least 0 */
    float gamma_neg; /* focusing exponent of negative targets, at least 0 */
    float clip;      /* probability margin m in [0, 1) subtracted from negatives' p */
} ap_asymmetric_params;

/* Computes the asymmetric loss of count x labels logits against targets (0
 * or 1; any other value, such as -1, means unknown and is skipped) with
 * w = pos_weight[label] (1 when pos_weight is NULL). Returns the mean over
 * known targets (0 when there are none) and, when grad is not NULL, writes
 * d(mean)/d(logit) for every entry (0 for unknown targets). The sum is
 * accumulated in double in a fixed order, so the result does not depend on
 * the number of threads. params must satisfy ap_asymmetric_params_valid. */
float ap_cpu_asymmetric_loss(const float *logits, const int8_t *targets, const float *pos_weight,
                             int count, int labels, const ap_asymmetric_params *params,
                             float *grad);

/* Computes the same loss as a sum over the known targets, for callers that
 * combine several micro-batches. Writes the count of known targets to *known
 * and, when grad is not NULL, the per-element d(loss)/d(logit) to grad. The
 * gradient is not divided by the count. */
double ap_cpu_asymmetric_loss_sum(const float *logits, const int8_t *targets,
                                  const float *pos_weight, int count, int labels,
                                  const ap_asymmetric_params *params, float *grad, long *known);

/* Computes the focal loss: ap_cpu_asymmetric_loss with gamma_pos = gamma_neg
 * = gamma and no clip. */
float ap_cpu_focal_loss(const float *logits, const int8_t *targets, const float *pos_weight,
                        int count, int labels, float gamma, float *grad);

/* True when both exponents are in [0, 1e6] and the clip is in [0, 1); NaN fails. */
static inline AP_HOST_DEVICE int ap_asymmetric_params_valid(const ap_asymmetric_params *params)
{
    return params->gamma_pos >= 0.0f && params->gamma_pos <= 1e6f && params->gamma_neg >= 0.0f &&
           params->gamma_neg <= 1e6f && params->clip >= 0.0f && params->clip < 1.0f;
}

/* Computes the loss of one known positive target and stores d(loss)/d(logit)
 * in *grad. With q = 1 - p = sigmoid(-x) and log(p) = -softplus(-x), both
 * computed from e = exp(-|x|) so nothing overflows:
 *   loss = w q^g softplus(-x)
 *   grad = w q^g (-g p softplus(-x) - q)
 * which is the derivative of -w q^g log(p) through dq/dx = -p q and
 * d log(p)/dx = q. */
static inline AP_HOST_DEVICE float ap_asymmetric_positive(float logit, float weight, float gamma,
                                                          float *grad)
{
    float e = expf(-fabsf(logit));
    float p = logit >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    float q = logit >= 0.0f ? e / (1.0f + e) : 1.0f / (1.0f + e);
    float softplus_neg = log1pf(e) + fmaxf(-logit, 0.0f);
    float focus = powf(q, gamma);
    *grad = weight * focus * (-gamma * p * softplus_neg - q);
    return weight * focus * softplus_neg;
}

/* Computes the loss of one known negative target and stores d(loss)/d(logit)
 * in *grad. With r = p - m (the clipped probability when positive) and
 * 1 - r = q + m:
 *   loss = -r^g log(q + m)
 *   grad = p q (r^g / (q + m) - g r^g log(q + m) / r)
 * which is the derivative of -r^g log(1 - r) through dr/dx = p q. Without a
 * clip, log(q) = -softplus(x) and p q / q = p avoid 0 / 0 when q underflows.
 * The ratio log(1 - r) / r tends to -1 as r -> 0, so the second term stays
 * finite for every g >= 0. When r <= 0 the loss and its gradient are 0. */
static inline AP_HOST_DEVICE float ap_asymmetric_negative(float logit, float gamma, float clip,
                                                          float *grad)
{
    float e = expf(-fabsf(logit));
    float p = logit >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
    float q = logit >= 0.0f ? e / (1.0f + e) : 1.0f / (1.0f + e);
    float r = p - clip;
    if (r <= 0.0f) {
        *grad = 0.0f;
        return 0.0f;
    }
    float log_one_minus_r, p_q_over;
    if (clip > 0.0f) {
        /* log1p(-r) is accurate for small r, log(q + m) when r nears 1 - m. */
        log_one_minus_r = r < 0.5f ? log1pf(-r) : logf(q + clip);
        p_q_over = p * q / (q + clip);
    } else {
        log_one_minus_r = -(log1pf(e) + fmaxf(logit, 0.0f));
        p_q_over = p;
    }
    float focus = powf(r, gamma);
    *grad = focus * (p_q_over - gamma * p * q * (log_one_minus_r / r));
    return -focus * log_one_minus_r;
}

/* Computes the loss of one known target (positive when positive is not 0)
 * and stores d(loss)/d(logit) in *grad. The CPU and the CUDA kernels share
 * this function. */
static inline AP_HOST_DEVICE float ap_asymmetric_element(float logit, int positive, float weight,
                                                         const ap_asymmetric_params *params,
                                                         float *grad)
{
    if (positive)
        return ap_asymmetric_positive(logit, weight, params->gamma_pos, grad);
    return ap_asymmetric_negative(logit, params->gamma_neg, params->clip, grad);
}

#endif
