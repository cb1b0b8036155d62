#include "pipeline/eval/curves.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void count_classes(const ap_label_order *order, long *positives, long *negatives)
{
    *positives = *negatives = 0;
    for (size_t i = 0; i < order->known_count; i++) {
        if (order->ranked[i].target == 1)
            (*positives)++;
        else
            (*negatives)++;
    }
}

/* Walk the ranking one run of equal probabilities at a time and add a ROC
 * and a precision-recall point after each run. */
static void trace_curves(const ap_label_order *order, long positives, long negatives,
                         ap_label_curves *out)
{
    bool roc = positives > 0 && negatives > 0;
    bool pr = positives > 0;
    long true_positive = 0, false_positive = 0;
    if (roc)
        out->roc[out->roc_count++] = (ap_curve_point){0.0, 0.0};
    size_t i = 0;
    while (i < order->known_count) {
        float probability = order->ranked[i].probability;
        for (; i < order->known_count && order->ranked[i].probability == probability; i++) {
            if (order->ranked[i].target == 1)
                true_positive++;
            else
                false_positive++;
        }
        if (roc)
            out->roc[out->roc_count++] =
                (ap_curve_point){(double)false_positive / (double)negatives,
                                 (double)true_positive / (double)positives};
        if (pr)
            out->pr[out->pr_count++] =
                (ap_curve_point){(double)true_positive / (double)positives,
                                 (double)true_positive / (double)(true_positive + false_positive)};
    }
}

static void fill_bins(const ap_label_order *order, int bin_count, ap_label_curves *out)
{
    double probability_sum[AP_ECE_MAX_BINS] = {0}, positive_sum[AP_ECE_MAX_BINS] = {0};
    out->bin_count = bin_count;
    for (int b = 0; b < bin_count; b++) {
        out->bins[b].lower = (double)b / bin_count;
        out->bins[b].upper = (double)(b + 1) / bin_count;
        out->bins[b].count = 0;
    }
    for (size_t i = 0; i < order->known_count; i++) {
        double p = (double)order->ranked[i].probability;
        int bin = (int)(p * bin_count);
        if (bin >= bin_count)
            bin = bin_count - 1;
        out->bins[bin].count++;
        probability_sum[bin] += p;
        positive_sum[bin] += order->ranked[i].target;
    }
    for (int b = 0; b < bin_count; b++) {
        long count = out->bins[b].count;
        out->bins[b].mean_predicted = count > 0 ? probability_sum[b] / (double)count : NAN;
        out->bins[b].fraction_positive = count > 0 ? positive_sum[b] / (double)count : NAN;
    }
}

ap_status ap_label_curves_compute(const ap_label_order *order, int bin_count, ap_label_curves *out,
                                  ap_error *err)
{
    memset(out, 0, sizeof(*out));
    if (bin_count < 1 || bin_count > AP_ECE_MAX_BINS)
        return ap_error_set(err, AP_ERR_INVALID,
                            "calibration bin count %d is invalid; use 1 to %d (10 is usual)",
                            bin_count, AP_ECE_MAX_BINS);
    /* At most one point per image, plus the ROC origin. */
    size_t capacity = order->known_count + 1;
    out->roc = malloc(capacity * sizeof(*out->roc));
    out->pr = malloc(capacity * sizeof(*out->pr));
    if (out->roc == NULL || out->pr == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the curves of %zu images",
                            order->known_count);
    long positives, negatives;
    count_classes(order, &positives, &negatives);
    trace_curves(order, positives, negatives, out);
    fill_bins(order, bin_count, out);
    return AP_OK;
}

void ap_label_curves_free(ap_label_curves *curves)
{
    free(curves->roc);
    free(curves->pr);
    curves->roc = curves->pr = NULL;
    curves->roc_count = curves->pr_count = 0;
}
