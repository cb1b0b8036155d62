#ifndef APIARY_EVAL_THRESHOLDS_H
#define APIARY_EVAL_THRESHOLDS_H

/* Decision thresholds chosen per label on the validation split.
 *
 * An image is predicted positive when its probability is >= the threshold.
 * The candidates are the distinct probabilities of the images with a known
 * target, plus 0.5. Among candidates that score equally under a policy (equal
 * F1 for max_f1, equal confusion counts for target_recall), 0.5 wins when it
 * is one of them, and otherwise the highest threshold does, so the choice
 * depends only on the data. */

#include <stdbool.h>
#include <stddef.h>

#include "pipeline/common/status.h"
#include "pipeline/eval/metrics.h"

typedef enum {
    AP_THRESHOLD_MAX_F1 = 0,    /* the threshold with the highest F1 */
    AP_THRESHOLD_TARGET_RECALL, /* the highest threshold whose recall reaches a target */
    AP_THRESHOLD_FIXED,         /* a given value */
} ap_threshold_policy;

typedef struct {
    ap_threshold_policy policy;
    double target_recall; /* AP_THRESHOLD_TARGET_RECALL: in (0, 1] */
    float fixed;          /* AP_THRESHOLD_FIXED: in [0, 1] */
} ap_threshold_rule;

typedef struct {
    float threshold;
    /* False when the policy cannot be met: the label has no positive image,
     * so recall and F1 are undefined. threshold is then the lowest
     * probability. Always true for AP_THRESHOLD_FIXED. */
    bool found;
    /* True when threshold is at or below the lowest probability, so every
     * image is predicted positive. A target recall reached only this way
     * means the model cannot separate the classes at that recall. */
    bool all_positive;
    size_t candidate_count;   /* distinct thresholds compared */
    ap_label_metrics metrics; /* on the split at threshold, without intervals */
} ap_threshold_choice;

/* "max_f1", "target_recall", "fixed". */
const char *ap_threshold_policy_name(ap_threshold_policy policy);
ap_status ap_threshold_policy_from_name(const char *name, ap_threshold_policy *out, ap_error *err);

/* Choose the threshold of one label. For AP_THRESHOLD_TARGET_RECALL the
 * threshold is the highest that reaches the target, because recall only
 * grows as the threshold falls while precision tends to fall.
 * NOTE: precision is not monotone in the threshold, so a lower threshold can
 * now and then reach the target with a higher precision. It is not searched.
 * options supplies ece_bins for the reported metrics (NULL: defaults).
 * Fails when the label has no image with a known target. */
ap_status ap_threshold_choose(const ap_eval_set *set, int label, const ap_threshold_rule *rule,
                              const ap_metrics_options *options, ap_threshold_choice *out,
                              ap_error *err);

#endif
