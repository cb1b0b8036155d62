#ifndef APIARY_EVAL_CURVES_H
#define APIARY_EVAL_CURVES_H

/* Curves of one label for reports: ROC, precision-recall and calibration
 * (reliability) bins, from the images of the label with a known target. */

#include <stddef.h>

#include "pipeline/common/status.h"
#include "pipeline/eval/metrics.h"

typedef struct {
    double x;
    double y;
} ap_curve_point;

/* Bin b contains the probabilities in [b / bins, (b + 1) / bins); the last
 * bin includes 1, as for the ece metric. */
typedef struct {
    double lower;
    double upper;
    long count;
    double mean_predicted;    /* NAN when count is 0 */
    double fraction_positive; /* NAN when count is 0 */
} ap_calibration_bin;

typedef struct {
    /* (false positive rate, true positive rate): (0, 0), then one point per
     * distinct probability taken as the threshold, from the highest down,
     * ending at (1, 1). Empty without positives or without negatives. */
    ap_curve_point *roc;
    size_t roc_count;
    /* (recall, precision), one point per distinct probability from the
     * highest down. Empty without positives. */
    ap_curve_point *pr;
    size_t pr_count;
    ap_calibration_bin bins[AP_ECE_MAX_BINS];
    int bin_count;
} ap_label_curves;

/* Compute the curves of a ranked label with bin_count calibration bins
 * (1 to AP_ECE_MAX_BINS). Free out with ap_label_curves_free, also after a
 * failure. */
ap_status ap_label_curves_compute(const ap_label_order *order, int bin_count, ap_label_curves *out,
                                  ap_error *err);
void ap_label_curves_free(ap_label_curves *curves);

#endif
