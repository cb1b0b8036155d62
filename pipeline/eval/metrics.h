#ifndef APIARY_EVAL_METRICS_H
#define APIARY_EVAL_METRICS_H

/* Per-label classification metrics with confidence intervals, and their macro
 * averages, for a multi-label classifier scored on a held-out split.
 *
 * Inputs: probabilities (count x label_count floats in [0, 1], row-major) and
 * targets (count x label_count int8: 1 positive, 0 negative, -1 unknown).
 * Images whose target is unknown for a label are skipped for that label.
 * An image is predicted positive when its probability is >= the threshold.
 *
 * A metric whose denominator is zero is NAN, never 0:
 * - accuracy, brier, ece: no image with a known target;
 * - recall: no positives; specificity: no negatives; precision: no predicted
 *   positives; f1: no positives and no predicted positives;
 * - balanced_accuracy and roc_auc: no positives or no negatives (scikit-learn
 *   averages over the classes present instead; here it is undefined);
 * - pr_auc: no positives.
 * Macro averages are the mean over labels whose value is defined; labels with
 * NAN are left out and counted. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/common/status.h"
#include "pipeline/eval/confusion.h"

typedef enum {
    AP_METRIC_ACCURACY = 0,
    AP_METRIC_BALANCED_ACCURACY, /* (recall + specificity) / 2 */
    AP_METRIC_PRECISION,
    AP_METRIC_RECALL, /* sensitivity */
    AP_METRIC_SPECIFICITY,
    AP_METRIC_F1,
    AP_METRIC_ROC_AUC, /* Mann-Whitney: a tied positive-negative pair counts 1/2 */
    AP_METRIC_PR_AUC,  /* average precision, the step-wise sum used by scikit-learn */
    AP_METRIC_BRIER,   /* mean squared difference between probability and target */
    AP_METRIC_ECE,     /* expected calibration error over equal-width bins */
    AP_METRIC_COUNT
} ap_metric;

typedef enum {
    AP_INTERVAL_NONE = 0,
    AP_INTERVAL_WILSON,    /* Wilson score interval from the counts */
    AP_INTERVAL_BOOTSTRAP, /* percentile interval of a group bootstrap */
} ap_interval_method;

/* A two-sided confidence interval. lower and upper are NAN when method is
 * AP_INTERVAL_NONE or the interval is undefined (no trials, or no resample
 * where the metric was defined). */
typedef struct {
    ap_interval_method method;
    double level; /* confidence level, for example 0.95 */
    double lower;
    double upper;
    int resamples_used;    /* bootstrap: resamples in which the metric was defined */
    int resamples_skipped; /* bootstrap: resamples in which it was undefined */
} ap_interval;

typedef struct {
    double value; /* NAN when undefined */
    ap_interval interval;
} ap_metric_value;

typedef struct {
    int label;
    float threshold;        /* predicted positive when probability >= threshold */
    ap_confusion confusion; /* at threshold; confusion.unknown counts skipped images */
    long positives;         /* images with target 1 */
    long negatives;         /* images with target 0 */
    long unknown;           /* images with target -1, skipped */
    ap_metric_value metrics[AP_METRIC_COUNT];
} ap_label_metrics;

typedef struct {
    ap_metric_value metrics[AP_METRIC_COUNT];
    int label_count[AP_METRIC_COUNT]; /* labels whose value was defined and entered the mean */
} ap_macro_metrics;

/* The images being evaluated. */
typedef struct {
    const float *probabilities; /* count x label_count, row-major, each in [0, 1] */
    const int8_t *targets;      /* count x label_count: 1, 0 or -1 for unknown */
    size_t count;               /* at most AP_EVAL_MAX_IMAGES */
    int label_count;
    const int *groups; /* count group ids for the bootstrap, or NULL: one group per image */
} ap_eval_set;

#define AP_EVAL_MAX_IMAGES         2147483647L
#define AP_ECE_MAX_BINS            100
#define AP_BOOTSTRAP_MAX_RESAMPLES 100000

typedef struct {
    double level;               /* confidence level of every interval, in (0, 1) */
    int resamples;              /* bootstrap resamples; 0 leaves the bootstrap out */
    uint64_t seed;              /* bootstrap seed: equal seeds give equal intervals */
    bool bootstrap_proportions; /* bootstrap accuracy, precision, recall and specificity
                                   too, instead of their Wilson intervals */
    int ece_bins;               /* equal-width calibration bins on [0, 1] */
    int threads;                /* OpenMP threads for the bootstrap; 0: the OpenMP default */
} ap_metrics_options;

/* Every label of an evaluation, and the options it was computed with. */
typedef struct {
    int label_count;
    ap_label_metrics *labels; /* label_count entries, owned */
    ap_macro_metrics macro;
    ap_metrics_options options;
} ap_evaluation;

/* One image of a label with a known target, in ranking order. */
typedef struct {
    float probability;
    int8_t target; /* 0 or 1 */
    size_t image;  /* row in the ap_eval_set */
} ap_ranked_image;

/* The images of one label with a known target, sorted by decreasing
 * probability and, among equal probabilities, by increasing row. */
typedef struct {
    int label;
    size_t known_count;
    ap_ranked_image *ranked; /* known_count entries, owned */
    long unknown;            /* images whose target is unknown */
} ap_label_order;

/* Metric names as the gate config spells them ("recall", "roc_auc", ...). */
const char *ap_metric_name(ap_metric metric);
ap_status ap_metric_from_name(const char *name, ap_metric *out, ap_error *err);
/* False for brier and ece, where lower is better. */
bool ap_metric_higher_is_better(ap_metric metric);
/* True for the metrics that are a proportion of counts and get a Wilson
 * interval: accuracy, precision, recall, specificity. */
bool ap_metric_is_proportion(ap_metric metric);
const char *ap_interval_method_name(ap_interval_method method);

/* Defaults: level 0.95, 1000 resamples, seed 0, Wilson for proportions,
 * 10 bins, OpenMP default threads. */
void ap_metrics_options_default(ap_metrics_options *options);
ap_status ap_metrics_options_check(const ap_metrics_options *options, ap_error *err);

/* Check shapes and values (probabilities finite in [0, 1], targets -1, 0, 1). */
ap_status ap_eval_set_check(const ap_eval_set *set, ap_error *err);

/* Rank the images of one label. The set's values are not checked here, so
 * pass a set that ap_eval_set_check accepted. */
ap_status ap_label_order_build(const ap_eval_set *set, int label, ap_label_order *out,
                               ap_error *err);
void ap_label_order_free(ap_label_order *order);

/* Compute every metric of one label at threshold, without intervals.
 * weights contains a multiplicity per row of the ap_eval_set (NULL: 1 each),
 * as a bootstrap resample does; counts and sums are weighted, except unknown.
 * ece_bins must be in [1, AP_ECE_MAX_BINS]. Bin b contains the probabilities in
 * [b / ece_bins, (b + 1) / ece_bins), the last bin includes 1, and
 * ece = sum over bins of |sum(probability) - sum(target)| / images, the
 * bin-count weighted mean of |mean probability - positive fraction|. */
void ap_label_metrics_compute(const ap_label_order *order, const uint32_t *weights, float threshold,
                              int ece_bins, ap_label_metrics *out);

/* Average each metric over the labels where it is defined; no intervals. */
void ap_macro_average(const ap_label_metrics *labels, int label_count, ap_macro_metrics *out);

/* Evaluate every label at its threshold (thresholds: label_count entries, or
 * NULL for 0.5 each), with Wilson and bootstrap intervals as options set
 * (NULL: defaults). Free out with ap_evaluation_free. */
ap_status ap_evaluate(const ap_eval_set *set, const float *thresholds,
                      const ap_metrics_options *options, ap_evaluation *out, ap_error *err);
void ap_evaluation_free(ap_evaluation *evaluation);

/* Look a metric up by its config name; fails with the list of valid names. */
ap_status ap_label_metrics_get(const ap_label_metrics *metrics, const char *name,
                               ap_metric_value *out, ap_error *err);
ap_status ap_macro_metrics_get(const ap_macro_metrics *macro, const char *name,
                               ap_metric_value *out, ap_error *err);

/* JSON objects for reports; NAN values and missing intervals are null.
 * label_names may be NULL (labels are then "0", "1", ...). The caller owns
 * *out and releases it with json_decref. */
ap_status ap_label_metrics_to_json(const ap_label_metrics *metrics, json_t **out, ap_error *err);
ap_status ap_evaluation_to_json(const ap_evaluation *evaluation, const char *const *label_names,
                                json_t **out, ap_error *err);

#endif
