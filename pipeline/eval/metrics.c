#include "pipeline/eval/metrics.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/eval/intervals.h"

typedef struct {
    const char *name;
    bool higher_is_better;
    bool proportion;
} metric_info;

static const metric_info metric_table[AP_METRIC_COUNT] = {
    [AP_METRIC_ACCURACY] = {"accuracy", true, true},
    [AP_METRIC_BALANCED_ACCURACY] = {"balanced_accuracy", true, false},
    [AP_METRIC_PRECISION] = {"precision", true, true},
    [AP_METRIC_RECALL] = {"recall", true, true},
    [AP_METRIC_SPECIFICITY] = {"specificity", true, true},
    [AP_METRIC_F1] = {"f1", true, false},
    [AP_METRIC_ROC_AUC] = {"roc_auc", true, false},
    [AP_METRIC_PR_AUC] = {"pr_auc", true, false},
    [AP_METRIC_BRIER] = {"brier", false, false},
    [AP_METRIC_ECE] = {"ece", false, false},
};

const char *ap_metric_name(ap_metric metric)
{
    return metric >= 0 && metric < AP_METRIC_COUNT ? metric_table[metric].name : "unknown";
}

ap_status ap_metric_from_name(const char *name, ap_metric *out, ap_error *err)
{
    char valid[256] = "";
    for (int m = 0; m < AP_METRIC_COUNT; m++) {
        if (name != NULL && strcmp(name, metric_table[m].name) == 0) {
            *out = (ap_metric)m;
            return AP_OK;
        }
        size_t used = strlen(valid);
        snprintf(valid + used, sizeof(valid) - used, "%s%s", m > 0 ? ", " : "",
                 metric_table[m].name);
    }
    return ap_error_set(err, AP_ERR_INVALID, "unknown metric \"%s\"; use one of: %s",
                        name != NULL ? name : "(null)", valid);
}

bool ap_metric_higher_is_better(ap_metric metric)
{
    return metric >= 0 && metric < AP_METRIC_COUNT && metric_table[metric].higher_is_better;
}

bool ap_metric_is_proportion(ap_metric metric)
{
    return metric >= 0 && metric < AP_METRIC_COUNT && metric_table[metric].proportion;
}

const char *ap_interval_method_name(ap_interval_method method)
{
    switch (method) {
    case AP_INTERVAL_NONE:
        return "none";
    case AP_INTERVAL_WILSON:
        return "wilson";
    case AP_INTERVAL_BOOTSTRAP:
        return "bootstrap";
    }
    return "unknown";
}

void ap_metrics_options_default(ap_metrics_options *options)
{
    memset(options, 0, sizeof(*options));
    options->level = 0.95;
    options->resamples = 1000;
    options->seed = 0;
    options->bootstrap_proportions = false;
    options->ece_bins = 10;
    options->threads = 0;
}

ap_status ap_metrics_options_check(const ap_metrics_options *options, ap_error *err)
{
    if (!(options->level > 0.0 && options->level < 1.0))
        return ap_error_set(err, AP_ERR_INVALID,
                            "confidence level %g is invalid; use a value in (0, 1), such as 0.95",
                            options->level);
    if (options->resamples < 0 || options->resamples > AP_BOOTSTRAP_MAX_RESAMPLES)
        return ap_error_set(err, AP_ERR_INVALID,
                            "bootstrap resamples %d is invalid; use 0 (no bootstrap) to %d",
                            options->resamples, AP_BOOTSTRAP_MAX_RESAMPLES);
    if (options->ece_bins < 1 || options->ece_bins > AP_ECE_MAX_BINS)
        return ap_error_set(err, AP_ERR_INVALID,
                            "calibration bin count %d is invalid; use 1 to %d (10 is usual)",
                            options->ece_bins, AP_ECE_MAX_BINS);
    if (options->threads < 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "thread count %d is invalid; use 0 for the OpenMP default or more",
                            options->threads);
    return AP_OK;
}

static ap_status check_set_shape(const ap_eval_set *set, ap_error *err)
{
    if (set->label_count < 1)
        return ap_error_set(err, AP_ERR_INVALID, "label count %d is invalid; need at least 1",
                            set->label_count);
    if (set->count > (size_t)AP_EVAL_MAX_IMAGES)
        return ap_error_set(err, AP_ERR_LIMIT, "%zu images exceed the limit of %ld per evaluation",
                            set->count, AP_EVAL_MAX_IMAGES);
    if (set->count > 0 && (set->probabilities == NULL || set->targets == NULL))
        return ap_error_set(err, AP_ERR_INVALID,
                            "evaluation of %zu images is missing its probabilities or targets",
                            set->count);
    return AP_OK;
}

ap_status ap_eval_set_check(const ap_eval_set *set, ap_error *err)
{
    ap_status status = check_set_shape(set, err);
    if (status != AP_OK)
        return status;
    for (size_t i = 0; i < set->count; i++) {
        for (int label = 0; label < set->label_count; label++) {
            size_t at = i * (size_t)set->label_count + (size_t)label;
            float p = set->probabilities[at];
            int8_t t = set->targets[at];
            if (!(p >= 0.0f && p <= 1.0f))
                return ap_error_set(err, AP_ERR_INVALID,
                                    "probability %g of image %zu, label %d is outside [0, 1]; "
                                    "pass sigmoid outputs, not logits",
                                    (double)p, i, label);
            if (t != 1 && t != 0 && t != -1)
                return ap_error_set(err, AP_ERR_INVALID,
                                    "target %d of image %zu, label %d is invalid; "
                                    "use 1, 0 or -1 for unknown",
                                    t, i, label);
        }
    }
    return AP_OK;
}

static int compare_ranked(const void *a, const void *b)
{
    const ap_ranked_image *x = a, *y = b;
    if (x->probability != y->probability)
        return x->probability > y->probability ? -1 : 1;
    return (x->image > y->image) - (x->image < y->image);
}

ap_status ap_label_order_build(const ap_eval_set *set, int label, ap_label_order *out,
                               ap_error *err)
{
    memset(out, 0, sizeof(*out));
    out->label = label;
    if (label < 0 || label >= set->label_count)
        return ap_error_set(err, AP_ERR_INVALID, "label %d is out of range; the set has %d labels",
                            label, set->label_count);
    out->ranked = malloc((set->count > 0 ? set->count : 1) * sizeof(*out->ranked));
    if (out->ranked == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the ranking of %zu images",
                            set->count);
    for (size_t i = 0; i < set->count; i++) {
        size_t at = i * (size_t)set->label_count + (size_t)label;
        if (set->targets[at] < 0) {
            out->unknown++;
            continue;
        }
        ap_ranked_image *r = &out->ranked[out->known_count++];
        r->probability = set->probabilities[at];
        r->target = set->targets[at];
        r->image = i;
    }
    qsort(out->ranked, out->known_count, sizeof(*out->ranked), compare_ranked);
    return AP_OK;
}

void ap_label_order_free(ap_label_order *order)
{
    free(order->ranked);
    order->ranked = NULL;
    order->known_count = 0;
}

/* Weighted sums gathered in one pass over the images in ranking order. */
typedef struct {
    ap_confusion confusion;
    long positives_above; /* positives with a probability >= the current one */
    long negatives_above;
    double auc_twice;     /* 2 x (positive-negative pairs ranked right + tied pairs / 2) */
    double precision_sum; /* over positives: precision at their probability as threshold */
    double squared_error;
    double bin_probability[AP_ECE_MAX_BINS];
    double bin_target[AP_ECE_MAX_BINS];
} label_sums;

/* Add a run of images that share one probability. Pairs inside the run are
 * ties, and the run enters the precision-recall curve as one step. */
static void add_run(label_sums *s, float probability, long positives, long negatives,
                    float threshold)
{
    if (probability >= threshold) {
        s->confusion.true_positive += positives;
        s->confusion.false_positive += negatives;
    } else {
        s->confusion.false_negative += positives;
        s->confusion.true_negative += negatives;
    }
    s->auc_twice += (double)negatives * (2.0 * (double)s->positives_above + (double)positives);
    s->positives_above += positives;
    s->negatives_above += negatives;
    if (positives > 0) {
        double precision =
            (double)s->positives_above / (double)(s->positives_above + s->negatives_above);
        s->precision_sum += (double)positives * precision;
    }
}

static void add_image(label_sums *s, const ap_ranked_image *r, long weight, int bins)
{
    double p = (double)r->probability;
    double error = p - (double)r->target;
    s->squared_error += (double)weight * error * error;
    int bin = (int)(p * bins);
    if (bin >= bins)
        bin = bins - 1;
    s->bin_probability[bin] += (double)weight * p;
    s->bin_target[bin] += (double)weight * (double)r->target;
}

static void sum_label(const ap_label_order *order, const uint32_t *weights, float threshold,
                      int bins, label_sums *s)
{
    size_t i = 0;
    while (i < order->known_count) {
        float probability = order->ranked[i].probability;
        long positives = 0, negatives = 0;
        for (; i < order->known_count && order->ranked[i].probability == probability; i++) {
            const ap_ranked_image *r = &order->ranked[i];
            long weight = weights != NULL ? (long)weights[r->image] : 1;
            if (weight == 0)
                continue;
            if (r->target == 1)
                positives += weight;
            else
                negatives += weight;
            add_image(s, r, weight, bins);
        }
        add_run(s, probability, positives, negatives, threshold);
    }
}

static double calibration_error(const label_sums *s, int bins, long images)
{
    if (images == 0)
        return NAN;
    double total = 0.0;
    for (int b = 0; b < bins; b++)
        total += fabs(s->bin_probability[b] - s->bin_target[b]);
    return total / (double)images;
}

static void set_value(ap_label_metrics *out, ap_metric metric, double value)
{
    ap_metric_value *v = &out->metrics[metric];
    v->value = value;
    v->interval = (ap_interval){AP_INTERVAL_NONE, NAN, NAN, NAN, 0, 0};
}

void ap_label_metrics_compute(const ap_label_order *order, const uint32_t *weights, float threshold,
                              int ece_bins, ap_label_metrics *out)
{
    label_sums s;
    memset(&s, 0, sizeof(s));
    sum_label(order, weights, threshold, ece_bins, &s);

    const ap_confusion *c = &s.confusion;
    long positives = c->true_positive + c->false_negative;
    long negatives = c->true_negative + c->false_positive;
    long known = positives + negatives;
    bool both_classes = positives > 0 && negatives > 0;
    double recall = ap_confusion_recall(c), specificity = ap_confusion_specificity(c);

    memset(out, 0, sizeof(*out));
    out->label = order->label;
    out->threshold = threshold;
    out->confusion = s.confusion;
    out->confusion.unknown = order->unknown;
    out->positives = positives;
    out->negatives = negatives;
    out->unknown = order->unknown;
    set_value(out, AP_METRIC_ACCURACY, ap_confusion_accuracy(c));
    set_value(out, AP_METRIC_BALANCED_ACCURACY, both_classes ? (recall + specificity) / 2 : NAN);
    set_value(out, AP_METRIC_PRECISION, ap_confusion_precision(c));
    set_value(out, AP_METRIC_RECALL, recall);
    set_value(out, AP_METRIC_SPECIFICITY, specificity);
    set_value(out, AP_METRIC_F1, ap_confusion_f1(c));
    set_value(out, AP_METRIC_ROC_AUC,
              both_classes ? s.auc_twice / (2.0 * (double)positives * (double)negatives) : NAN);
    set_value(out, AP_METRIC_PR_AUC, positives > 0 ? s.precision_sum / (double)positives : NAN);
    set_value(out, AP_METRIC_BRIER, known > 0 ? s.squared_error / (double)known : NAN);
    set_value(out, AP_METRIC_ECE, calibration_error(&s, ece_bins, known));
}

void ap_macro_average(const ap_label_metrics *labels, int label_count, ap_macro_metrics *out)
{
    memset(out, 0, sizeof(*out));
    for (int m = 0; m < AP_METRIC_COUNT; m++) {
        double sum = 0.0;
        int defined = 0;
        for (int l = 0; l < label_count; l++) {
            double value = labels[l].metrics[m].value;
            if (!isnan(value)) {
                sum += value;
                defined++;
            }
        }
        out->metrics[m].value = defined > 0 ? sum / defined : NAN;
        out->metrics[m].interval = (ap_interval){AP_INTERVAL_NONE, NAN, NAN, NAN, 0, 0};
        out->label_count[m] = defined;
    }
}

static ap_status add_wilson_intervals(ap_label_metrics *m, double level, ap_error *err)
{
    const ap_confusion *c = &m->confusion;
    long tp = c->true_positive, tn = c->true_negative;
    ap_status status = ap_wilson_interval(tp + tn, m->positives + m->negatives, level,
                                          &m->metrics[AP_METRIC_ACCURACY].interval, err);
    if (status == AP_OK)
        status = ap_wilson_interval(tp, tp + c->false_positive, level,
                                    &m->metrics[AP_METRIC_PRECISION].interval, err);
    if (status == AP_OK)
        status = ap_wilson_interval(tp, m->positives, level, &m->metrics[AP_METRIC_RECALL].interval,
                                    err);
    if (status == AP_OK)
        status = ap_wilson_interval(tn, m->negatives, level,
                                    &m->metrics[AP_METRIC_SPECIFICITY].interval, err);
    return status;
}

static ap_status check_thresholds(const float *thresholds, int label_count, ap_error *err)
{
    for (int l = 0; thresholds != NULL && l < label_count; l++)
        if (!(thresholds[l] >= 0.0f && thresholds[l] <= 1.0f))
            return ap_error_set(err, AP_ERR_INVALID, "threshold %g of label %d is outside [0, 1]",
                                (double)thresholds[l], l);
    return AP_OK;
}

static ap_status evaluate_labels(const ap_eval_set *set, const float *thresholds,
                                 ap_label_order *orders, ap_evaluation *out, ap_error *err)
{
    for (int l = 0; l < set->label_count; l++) {
        ap_status status = ap_label_order_build(set, l, &orders[l], err);
        if (status != AP_OK)
            return status;
        float threshold = thresholds != NULL ? thresholds[l] : 0.5f;
        ap_label_metrics_compute(&orders[l], NULL, threshold, out->options.ece_bins,
                                 &out->labels[l]);
        status = add_wilson_intervals(&out->labels[l], out->options.level, err);
        if (status != AP_OK)
            return status;
    }
    ap_macro_average(out->labels, set->label_count, &out->macro);
    if (out->options.resamples > 0)
        return ap_bootstrap_intervals(set, orders, &out->options, out, err);
    return AP_OK;
}

ap_status ap_evaluate(const ap_eval_set *set, const float *thresholds,
                      const ap_metrics_options *options, ap_evaluation *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    if (options != NULL)
        out->options = *options;
    else
        ap_metrics_options_default(&out->options);
    ap_status status = ap_metrics_options_check(&out->options, err);
    if (status == AP_OK)
        status = ap_eval_set_check(set, err);
    if (status == AP_OK)
        status = check_thresholds(thresholds, set->label_count, err);
    if (status != AP_OK)
        return status;

    out->label_count = set->label_count;
    out->labels = calloc((size_t)set->label_count, sizeof(*out->labels));
    ap_label_order *orders = calloc((size_t)set->label_count, sizeof(*orders));
    if (out->labels == NULL || orders == NULL)
        status = ap_error_set(err, AP_ERR_NOMEM, "cannot allocate metrics for %d labels",
                              set->label_count);
    else
        status = evaluate_labels(set, thresholds, orders, out, err);

    for (int l = 0; orders != NULL && l < set->label_count; l++)
        ap_label_order_free(&orders[l]);
    free(orders);
    if (status != AP_OK)
        ap_evaluation_free(out);
    return status;
}

void ap_evaluation_free(ap_evaluation *evaluation)
{
    free(evaluation->labels);
    evaluation->labels = NULL;
    evaluation->label_count = 0;
}

ap_status ap_label_metrics_get(const ap_label_metrics *metrics, const char *name,
                               ap_metric_value *out, ap_error *err)
{
    ap_metric metric;
    ap_status status = ap_metric_from_name(name, &metric, err);
    if (status == AP_OK)
        *out = metrics->metrics[metric];
    return status;
}

ap_status ap_macro_metrics_get(const ap_macro_metrics *macro, const char *name,
                               ap_metric_value *out, ap_error *err)
{
    ap_metric metric;
    ap_status status = ap_metric_from_name(name, &metric, err);
    if (status == AP_OK)
        *out = macro->metrics[metric];
    return status;
}

/* JSON. jansson rejects non-finite reals, so NAN becomes null. Every setter
 * returns false when a value could not be built or attached, and the caller
 * drops the whole object. */

static json_t *real_or_null(double value)
{
    return isfinite(value) ? json_real(value) : json_null();
}

static bool set_field(json_t *object, const char *key, json_t *value)
{
    return value != NULL && json_object_set_new(object, key, value) == 0;
}

static json_t *interval_to_json(const ap_interval *interval)
{
    if (interval->method == AP_INTERVAL_NONE)
        return json_null();
    json_t *object = json_object();
    bool ok = object != NULL;
    ok = ok && set_field(object, "method", json_string(ap_interval_method_name(interval->method)));
    ok = ok && set_field(object, "level", real_or_null(interval->level));
    ok = ok && set_field(object, "lower", real_or_null(interval->lower));
    ok = ok && set_field(object, "upper", real_or_null(interval->upper));
    if (interval->method == AP_INTERVAL_BOOTSTRAP) {
        ok = ok && set_field(object, "resamples_used", json_integer(interval->resamples_used));
        ok =
            ok && set_field(object, "resamples_skipped", json_integer(interval->resamples_skipped));
    }
    if (!ok) {
        json_decref(object);
        return NULL;
    }
    return object;
}

static json_t *value_to_json(const ap_metric_value *value, int label_count)
{
    json_t *object = json_object();
    bool ok = object != NULL;
    ok = ok && set_field(object, "value", real_or_null(value->value));
    ok = ok && set_field(object, "interval", interval_to_json(&value->interval));
    if (label_count >= 0)
        ok = ok && set_field(object, "labels", json_integer(label_count));
    if (!ok) {
        json_decref(object);
        return NULL;
    }
    return object;
}

/* label_counts: labels averaged per metric (macro), or NULL for one label. */
static json_t *values_to_json(const ap_metric_value *values, const int *label_counts)
{
    json_t *object = json_object();
    bool ok = object != NULL;
    for (int m = 0; ok && m < AP_METRIC_COUNT; m++)
        ok = set_field(object, metric_table[m].name,
                       value_to_json(&values[m], label_counts != NULL ? label_counts[m] : -1));
    if (!ok) {
        json_decref(object);
        return NULL;
    }
    return object;
}

static json_t *confusion_to_json(const ap_confusion *c)
{
    return json_pack("{s:I, s:I, s:I, s:I}", "true_positive", (json_int_t)c->true_positive,
                     "false_positive", (json_int_t)c->false_positive, "true_negative",
                     (json_int_t)c->true_negative, "false_negative", (json_int_t)c->false_negative);
}

ap_status ap_label_metrics_to_json(const ap_label_metrics *metrics, json_t **out, ap_error *err)
{
    json_t *object = json_object();
    bool ok = object != NULL;
    ok = ok && set_field(object, "label", json_integer(metrics->label));
    ok = ok && set_field(object, "threshold", json_real((double)metrics->threshold));
    ok = ok && set_field(object, "positives", json_integer(metrics->positives));
    ok = ok && set_field(object, "negatives", json_integer(metrics->negatives));
    ok = ok && set_field(object, "unknown", json_integer(metrics->unknown));
    ok = ok && set_field(object, "confusion", confusion_to_json(&metrics->confusion));
    ok = ok && set_field(object, "metrics", values_to_json(metrics->metrics, NULL));
    if (!ok) {
        json_decref(object);
        *out = NULL;
        return ap_error_set(err, AP_ERR_NOMEM, "cannot build the JSON metrics of label %d",
                            metrics->label);
    }
    *out = object;
    return AP_OK;
}

/* JSON integers are signed 64-bit, so a larger seed is written as a string. */
static json_t *seed_to_json(uint64_t seed)
{
    if (seed <= (uint64_t)INT64_MAX)
        return json_integer((json_int_t)seed);
    char text[32];
    snprintf(text, sizeof(text), "%" PRIu64, seed);
    return json_string(text);
}

static json_t *options_to_json(const ap_metrics_options *options)
{
    json_t *object = json_object();
    bool ok = object != NULL;
    ok = ok && set_field(object, "level", json_real(options->level));
    ok = ok && set_field(object, "resamples", json_integer(options->resamples));
    ok = ok && set_field(object, "seed", seed_to_json(options->seed));
    ok = ok &&
         set_field(object, "bootstrap_proportions", json_boolean(options->bootstrap_proportions));
    ok = ok && set_field(object, "ece_bins", json_integer(options->ece_bins));
    if (!ok) {
        json_decref(object);
        return NULL;
    }
    return object;
}

static json_t *labels_to_json(const ap_evaluation *evaluation, const char *const *label_names)
{
    json_t *object = json_object();
    bool ok = object != NULL;
    for (int l = 0; ok && l < evaluation->label_count; l++) {
        char number[16];
        snprintf(number, sizeof(number), "%d", l);
        json_t *label = NULL;
        ok = ap_label_metrics_to_json(&evaluation->labels[l], &label, NULL) == AP_OK;
        ok = ok && set_field(object, label_names != NULL ? label_names[l] : number, label);
    }
    if (!ok) {
        json_decref(object);
        return NULL;
    }
    return object;
}

ap_status ap_evaluation_to_json(const ap_evaluation *evaluation, const char *const *label_names,
                                json_t **out, ap_error *err)
{
    json_t *object = json_object();
    bool ok = object != NULL;
    ok = ok && set_field(object, "options", options_to_json(&evaluation->options));
    ok = ok && set_field(object, "labels", labels_to_json(evaluation, label_names));
    ok = ok && set_field(object, "macro",
                         values_to_json(evaluation->macro.metrics, evaluation->macro.label_count));
    if (!ok) {
        json_decref(object);
        *out = NULL;
        return ap_error_set(err, AP_ERR_NOMEM, "cannot build the JSON report of %d labels",
                            evaluation->label_count);
    }
    *out = object;
    return AP_OK;
}
