#ifndef APIARY_EVAL_INTERVALS_H
#define APIARY_EVAL_INTERVALS_H

/* Confidence intervals for metrics (Wilson score, group bootstrap) and
 * McNemar's test for comparing two models on the same images. */

#include <stddef.h>
#include <stdint.h>

#include "pipeline/common/status.h"
#include "pipeline/eval/metrics.h"

/* Standard normal quantile: x with P(Z <= x) = probability; NAN outside (0, 1).
 * Solved by bisection on erfc, accurate to a few units in the last place. */
double ap_normal_quantile(double probability);

/* Wilson score interval for successes out of trials at a two-sided level:
 * (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), clamped to
 * [0, 1], with z the normal quantile at (1 + level) / 2. With no trials the
 * bounds are NAN. */
ap_status ap_wilson_interval(long successes, long trials, double level, ap_interval *out,
                             ap_error *err);

/* Bootstrap percentile intervals for every label of an evaluation and for
 * its macro averages. Each resample draws as many groups as set->groups has
 * (every image its own group when NULL) uniformly with replacement and
 * evaluates each label at evaluation->labels[l].threshold with the images of
 * the drawn groups, counted as often as drawn. Draw d of resample r comes from
 * ap_rng_u64(options->seed, r, d), so the result depends on the seed and not
 * on the thread count. The interval bounds are the (1 - level) / 2 and
 * (1 + level) / 2 quantiles of the resamples where the metric is defined,
 * interpolated linearly between order statistics. Resamples where the metric
 * is undefined are skipped and counted.
 *
 * Label intervals are replaced for the metrics without a Wilson interval, or
 * for all when options->bootstrap_proportions is set; macro intervals always.
 * The macro average of a resample is the mean over the labels defined in it.
 * orders contains one ap_label_order per label. */
ap_status ap_bootstrap_intervals(const ap_eval_set *set, const ap_label_order *orders,
                                 const ap_metrics_options *options, ap_evaluation *evaluation,
                                 ap_error *err);

/* McNemar's test on the images where exactly one of two models is right. */

typedef enum {
    AP_MCNEMAR_AUTO = 0,   /* exact below AP_MCNEMAR_EXACT_BELOW discordant images */
    AP_MCNEMAR_EXACT,      /* binomial test with success probability 1/2 */
    AP_MCNEMAR_CHI_SQUARE, /* chi-square (or normal) approximation, continuity corrected */
} ap_mcnemar_method;

#define AP_MCNEMAR_EXACT_BELOW 25

typedef enum {
    AP_MCNEMAR_TWO_SIDED = 0,    /* the models differ */
    AP_MCNEMAR_CHALLENGER_WORSE, /* the challenger is wrong more often than the champion */
} ap_mcnemar_alternative;

/* The same images scored by the current model (champion) and a new one. */
typedef struct {
    const float *champion;   /* count x label_count probabilities */
    const float *challenger; /* count x label_count probabilities */
    const int8_t *targets;   /* count x label_count: 1, 0 or -1 for unknown (skipped) */
    size_t count;
    int label_count;
} ap_paired_predictions;

typedef struct {
    long b; /* champion right, challenger wrong */
    long c; /* champion wrong, challenger right */
    ap_mcnemar_method method;
    ap_mcnemar_alternative alternative;
    /* Exact two-sided: min(b, c). Exact one-sided: b.
     * Chi-square two-sided: max(0, |b - c| - 1)^2 / (b + c), 1 degree of freedom.
     * Normal one-sided: (b - c - 1) / sqrt(b + c). 0 when b + c is 0. */
    double statistic;
    double p_value; /* 1 when b + c is 0 */
} ap_mcnemar_result;

/* Count b and c for one label; each model predicts positive at probability
 * >= its own threshold. */
ap_status ap_mcnemar_count(const ap_paired_predictions *pair, int label, float champion_threshold,
                           float challenger_threshold, long *b, long *c, ap_error *err);

/* Test from the discordant counts. AP_MCNEMAR_AUTO resolves to the method
 * used, which out->method reports. The two-sided exact p-value is
 * min(1, 2 P(X <= min(b, c))) with X ~ Binomial(b + c, 1/2); the one-sided
 * one is P(X >= b). When b equals c, the chi-square statistic is 0 and p is 1
 * (statsmodels 0.15 computes (|b - c| - 1)^2 / (b + c) there instead). */
ap_status ap_mcnemar_test(long b, long c, ap_mcnemar_alternative alternative,
                          ap_mcnemar_method method, ap_mcnemar_result *out, ap_error *err);

#endif
