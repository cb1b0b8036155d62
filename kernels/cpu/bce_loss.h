#ifndef APIARY_KERNELS_CPU_BCE_LOSS_H
#define APIARY_KERNELS_CPU_BCE_LOSS_H

#include <stdint.h>

/* Masked, weighted sigmoid binary cross-entropy on logits.
 * For each known target t (0 or 1; -1 means unknown and is skipped):
 *   loss = -(w * t * log(sigmoid(x)) + (1 - t) * log(1 - sigmoid(x)))
 * with w = pos_weight[label] (1 when pos_weight is NULL), computed in a
 * numerically stable form. Returns the mean over known targets (0 when there
 * are none) and, when grad is not NULL, writes d(mean)/d(logit) for every
 * entry (0 for unknown targets). logits, targets and grad are count x labels. */
float ap_cpu_bce_loss(const float *logits, const int8_t *targets, const float *pos_weight,
                      int count, int labels, float *grad);

#endif
