/* The validation report as JSON (format "apiary-validation-report",
 * version 1). Undefined numbers (NAN) are null, because JSON has no NAN. */

#include <math.h>
#include <string.h>
#include <time.h>

#include "pipeline/validate/validate_internal.h"

#define REPORT_FORMAT         "apiary-validation-report"
#define REPORT_FORMAT_VERSION 1

static json_t *number_or_null(double value)
{
    return isfinite(value) ? json_real(value) : json_null();
}

/* {"value", "lower", "upper", "method"} of one metric. */
static json_t *metric_json(const ap_metric_value *metric)
{
    const ap_interval *interval = &metric->interval;
    bool has_interval = interval->method != AP_INTERVAL_NONE;
    return json_pack("{s:o, s:o, s:o, s:s}", "value", number_or_null(metric->value), "lower",
                     number_or_null(has_interval ? interval->lower : NAN), "upper",
                     number_or_null(has_interval ? interval->upper : NAN), "method",
                     ap_interval_method_name(interval->method));
}

static json_t *metrics_json(const ap_metric_value *metrics)
{
    json_t *object = json_object();
    for (int m = 0; object != NULL && m < AP_METRIC_COUNT; m++) {
        if (json_object_set_new(object, ap_metric_name((ap_metric)m), metric_json(&metrics[m])) !=
            0) {
            json_decref(object);
            return NULL;
        }
    }
    return object;
}

static json_t *points_json(const ap_curve_point *points, size_t count)
{
    json_t *array = json_array();
    for (size_t i = 0; array != NULL && i < count; i++) {
        if (json_array_append_new(array, json_pack("[f, f]", points[i].x, points[i].y)) != 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

static json_t *calibration_json(const ap_label_curves *curves)
{
    json_t *array = json_array();
    for (int b = 0; array != NULL && b < curves->bin_count; b++) {
        const ap_calibration_bin *bin = &curves->bins[b];
        json_t *entry = json_pack("{s:f, s:f, s:I, s:o, s:o}", "lower", bin->lower, "upper",
                                  bin->upper, "count", (json_int_t)bin->count, "mean_predicted",
                                  number_or_null(bin->mean_predicted), "fraction_positive",
                                  number_or_null(bin->fraction_positive));
        if (json_array_append_new(array, entry) != 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

static json_t *label_json(const ap_validation *v, int label)
{
    const ap_label_metrics *m = &v->evaluation.labels[label];
    const ap_confusion *c = &m->confusion;
    const ap_label_curves *curves = &v->curves[label];
    return json_pack(
        "{s:{s:I, s:I, s:I}, s:{s:I, s:I, s:I, s:I}, s:o, s:{s:o, s:o, s:o}}", "support",
        "positives", (json_int_t)m->positives, "negatives", (json_int_t)m->negatives, "unknown",
        (json_int_t)m->unknown, "confusion", "true_positive", (json_int_t)c->true_positive,
        "false_positive", (json_int_t)c->false_positive, "true_negative",
        (json_int_t)c->true_negative, "false_negative", (json_int_t)c->false_negative, "metrics",
        metrics_json(m->metrics), "curves", "roc", points_json(curves->roc, curves->roc_count),
        "pr", points_json(curves->pr, curves->pr_count), "calibration", calibration_json(curves));
}

static json_t *test_json(const ap_validation *v)
{
    if (!v->evaluated)
        return json_null();
    json_t *labels = json_object();
    for (int l = 0; labels != NULL && l < v->evaluation.label_count; l++) {
        if (json_object_set_new(labels, v->cfg->data.labels[l], label_json(v, l)) != 0) {
            json_decref(labels);
            return NULL;
        }
    }
    return json_pack("{s:I, s:o, s:o}", "images", (json_int_t)v->test.count, "labels", labels,
                     "macro", metrics_json(v->evaluation.macro.metrics));
}

static json_t *data_checks_json(const ap_validation *v)
{
    json_t *array = json_array();
    for (int i = 0; array != NULL && i < v->check_count; i++) {
        const ap_data_check *check = &v->checks[i];
        json_t *entry = json_pack("{s:s, s:b, s:s}", "name", check->name, "passed", check->passed,
                                  "detail", check->detail);
        if (json_array_append_new(array, entry) != 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

static json_t *threshold_json(const ap_label_threshold *threshold)
{
    const ap_label_metrics *m = &threshold->validation;
    json_t *validation =
        threshold->has_validation
            ? json_pack("{s:o, s:o, s:o}", "precision",
                        number_or_null(m->metrics[AP_METRIC_PRECISION].value), "recall",
                        number_or_null(m->metrics[AP_METRIC_RECALL].value), "f1",
                        number_or_null(m->metrics[AP_METRIC_F1].value))
            : json_null();
    return json_pack("{s:f, s:s, s:o, s:s}", "value", (double)threshold->value, "policy",
                     ap_threshold_policy_name(threshold->policy), "validation", validation,
                     "detail", threshold->detail);
}

static json_t *thresholds_json(const ap_validation *v)
{
    json_t *object = json_object();
    for (int l = 0; object != NULL && v->thresholds_chosen && l < v->cfg->data.label_count; l++) {
        if (json_object_set_new(object, v->cfg->data.labels[l],
                                threshold_json(&v->thresholds[l])) != 0) {
            json_decref(object);
            return NULL;
        }
    }
    return object;
}

static json_t *rule_json(const ap_validation *v, int index)
{
    const ap_gate_rule *rule = &v->rules[index];
    const ap_gate_outcome *outcome = &v->outcomes[index];
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:f, s:o, s:b, s:s}", "rule", rule->text, "label",
                     rule->label, "metric", ap_metric_name(rule->metric), "bound",
                     ap_gate_bound_name(rule->bound), "op", ap_gate_op_text(rule->op), "limit",
                     rule->limit, "actual", number_or_null(outcome->actual), "passed",
                     outcome->passed, "detail", outcome->detail);
}

static json_t *rules_json(const ap_validation *v, bool failed_only)
{
    json_t *array = json_array();
    for (int i = 0; array != NULL && i < v->rule_count; i++) {
        if (failed_only && v->outcomes[i].passed)
            continue;
        json_t *entry = failed_only ? json_string(v->rules[i].text) : rule_json(v, i);
        if (json_array_append_new(array, entry) != 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

static json_t *comparison_label_json(const ap_label_comparison *c)
{
    return json_pack("{s:o, s:o, s:I, s:I, s:o, s:b, s:s}", "champion_accuracy",
                     number_or_null(c->champion_accuracy), "challenger_accuracy",
                     number_or_null(c->challenger_accuracy), "challenger_only_correct",
                     (json_int_t)c->challenger_only_correct, "champion_only_correct",
                     (json_int_t)c->champion_only_correct, "p_value", number_or_null(c->p_value),
                     "passed", c->passed, "detail", c->detail);
}

static json_t *names_json(const char names[][AP_NAME_MAX], int count)
{
    json_t *array = json_array();
    for (int i = 0; array != NULL && i < count; i++) {
        if (json_array_append_new(array, json_string(names[i])) != 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

/* {"passed", "missing_labels", "added_labels", "detail"}: the champion
 * labels this model lacks fail the comparison. */
static json_t *label_check_json(const ap_champion_comparison *c)
{
    return json_pack("{s:b, s:o, s:o, s:s}", "passed", c->missing_count == 0, "missing_labels",
                     names_json(c->missing_labels, c->missing_count), "added_labels",
                     names_json(c->added_labels, c->added_count), "detail", c->label_detail);
}

static json_t *comparison_json(const ap_validation *v)
{
    const ap_champion_comparison *c = &v->comparison;
    const ap_gate_config *gate = &v->cfg->gate;
    json_t *labels = json_object();
    for (int l = 0; labels != NULL && l < c->label_count; l++) {
        if (json_object_set_new(labels, c->labels[l].label, comparison_label_json(&c->labels[l])) !=
            0) {
            json_decref(labels);
            return NULL;
        }
    }
    if (c->skipped)
        return json_pack("{s:b, s:s, s:n, s:n, s:f, s:f, s:o}", "skipped", 1, "reason", c->reason,
                         "champion_version", "champion_sha256", "max_regression",
                         gate->max_regression, "alpha", gate->regression_alpha, "labels", labels);
    return json_pack("{s:b, s:i, s:s, s:f, s:f, s:o, s:o}", "skipped", 0, "champion_version",
                     c->champion_version, "champion_sha256", c->champion_sha256, "max_regression",
                     gate->max_regression, "alpha", gate->regression_alpha, "label_check",
                     label_check_json(c), "labels", labels);
}

static json_t *label_names_json(const ap_config *cfg)
{
    json_t *array = json_array();
    for (int l = 0; array != NULL && l < cfg->data.label_count; l++) {
        if (json_array_append_new(array, json_string(cfg->data.labels[l])) != 0) {
            json_decref(array);
            return NULL;
        }
    }
    return array;
}

ap_status ap_validation_build_report(const ap_validation *v, json_t **report, ap_error *err)
{
    char created[32];
    time_t now = time(NULL);
    struct tm parts;
    gmtime_r(&now, &parts);
    strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &parts);
    const char *card_sha = v->card_sha256[0] != '\0' ? v->card_sha256 : v->model.card_sha256;

    *report = json_pack(
        "{s:s, s:i, s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:o, s:o, s:f, s:o, s:o, s:o, s:o, s:o}",
        "format", REPORT_FORMAT, "format_version", REPORT_FORMAT_VERSION, "created", created,
        "apiary_version", APIARY_VERSION, "git_commit", APIARY_GIT_COMMIT, "run_dir", v->run_dir,
        "model_sha256", v->model.weights_sha256, "model_card_sha256", card_sha, "passed", v->passed,
        "failed_rules", rules_json(v, true), "labels", label_names_json(v->cfg), "confidence_level",
        v->cfg->gate.confidence_level, "data_checks", data_checks_json(v), "thresholds",
        thresholds_json(v), "test", test_json(v), "rules", rules_json(v, false), "comparison",
        comparison_json(v));
    if (*report == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot build the validation report of %s",
                            v->run_dir);
    return AP_OK;
}
