#include "pipeline/validate/report_render.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/validate/report_format.h"

/* A table cell with text from the report, shown literally. */
static void append_cell(ap_text *text, const char *string)
{
    ap_text_append(text, " ");
    ap_text_append_markdown(text, string != NULL ? string : "n/a");
    ap_text_append(text, " |");
}

/* A table cell with a name from the report (rule, label, check) in code font. */
static void append_code_cell(ap_text *text, const char *string)
{
    ap_text_append(text, " ");
    if (string != NULL)
        ap_text_append_markdown_code(text, string);
    else
        ap_text_append(text, "n/a");
    ap_text_append(text, " |");
}

/* A table cell with text this file formatted: numbers, "n/a" and verdicts. */
static void append_plain_cell(ap_text *text, const char *formatted)
{
    ap_text_printf(text, " %s |", formatted);
}

static void append_verdict_cell(ap_text *text, const json_t *entry)
{
    const char *verdict = ap_format_verdict(entry, "passed");
    append_plain_cell(text, strcmp(verdict, "fail") == 0 ? "**fail**" : verdict);
}

typedef struct {
    ap_text *text;
    size_t count;
} failure_list;

static void append_failure(void *context, const char *kind, const char *subject, const char *actual)
{
    failure_list *list = context;
    ap_text_printf(list->text, "%s %s ", list->count > 0 ? ";" : "", kind);
    ap_text_append_markdown_code(list->text, subject);
    if (actual != NULL)
        ap_text_printf(list->text, " (actual %s)", actual);
    list->count++;
}

static size_t count_passed_rules(const json_t *report)
{
    const json_t *rules = ap_report_array(report, "rules");
    size_t passed = 0;
    for (size_t i = 0; i < json_array_size(rules); i++)
        if (ap_report_bool(json_array_get(rules, i), "passed") == 1)
            passed++;
    return passed;
}

static void write_verdict(ap_text *text, const json_t *report)
{
    if (ap_report_bool(report, "passed") == 1) {
        ap_text_printf(text, "**PASSED**: %zu of %zu rules passed\n\n", count_passed_rules(report),
                       json_array_size(ap_report_array(report, "rules")));
        return;
    }
    failure_list list = {text, 0};
    ap_text_append(text, "**FAILED**:");
    if (ap_report_visit_failures(report, append_failure, &list) == 0)
        ap_text_append(text, " the report names no failed rule or check");
    ap_text_append(text, "\n\n");
}

static void write_fact(void *context, const char *name, const char *value, bool as_code)
{
    ap_text *text = context;
    ap_text_printf(text, "- %s: ", name);
    if (value == NULL)
        ap_text_append(text, "n/a");
    else if (as_code)
        ap_text_append_markdown_code(text, value);
    else
        ap_text_append_markdown(text, value);
    ap_text_append(text, "\n");
}

static void write_summary(ap_text *text, const json_t *report)
{
    ap_text_append(text, "# Validation report\n\n");
    ap_report_visit_summary(report, write_fact, text);
    ap_text_append(text, "\n");
}

static void write_rules(ap_text *text, const json_t *report)
{
    const json_t *rules = ap_report_array(report, "rules");
    ap_text_append(text, "## Rules\n\n");
    if (json_array_size(rules) == 0) {
        ap_text_append(text, "No rules in this report.\n\n");
        return;
    }
    ap_text_append(text, "| Rule | Actual | Result | Detail |\n|---|---:|---|---|\n");
    for (size_t i = 0; i < json_array_size(rules); i++) {
        const json_t *rule = json_array_get(rules, i);
        char actual[AP_REPORT_NUMBER_MAX];
        ap_text_append(text, "|");
        append_code_cell(text, ap_report_string(rule, "rule"));
        append_plain_cell(text, ap_format_number(ap_report_number(rule, "actual"), actual));
        append_verdict_cell(text, rule);
        append_cell(text, ap_report_string(rule, "detail"));
        ap_text_append(text, "\n");
    }
    ap_text_append(text, "\n");
}

static void write_data_checks(ap_text *text, const json_t *report)
{
    const json_t *checks = ap_report_array(report, "data_checks");
    ap_text_append(text, "## Data checks\n\n");
    if (json_array_size(checks) == 0) {
        ap_text_append(text, "No data checks in this report.\n\n");
        return;
    }
    ap_text_append(text, "| Check | Result | Detail |\n|---|---|---|\n");
    for (size_t i = 0; i < json_array_size(checks); i++) {
        const json_t *check = json_array_get(checks, i);
        ap_text_append(text, "|");
        append_code_cell(text, ap_report_string(check, "name"));
        append_verdict_cell(text, check);
        append_cell(text, ap_report_string(check, "detail"));
        ap_text_append(text, "\n");
    }
    ap_text_append(text, "\n");
}

static void write_thresholds(ap_text *text, const json_t *report, const json_t *labels)
{
    const json_t *thresholds = ap_report_object(report, "thresholds");
    ap_text_append(text, "## Thresholds\n\n");
    ap_text_append(text, "| Label | Threshold | Policy | Validation precision | Validation recall "
                         "| Validation F1 |\n|---|---:|---|---:|---:|---:|\n");
    for (size_t i = 0; i < json_array_size(labels); i++) {
        const char *label = json_string_value(json_array_get(labels, i));
        const json_t *threshold = ap_report_object(thresholds, label);
        const json_t *validation = ap_report_object(threshold, "validation");
        char number[AP_REPORT_NUMBER_MAX];
        ap_text_append(text, "|");
        append_code_cell(text, label);
        append_plain_cell(text, ap_format_number(ap_report_number(threshold, "value"), number));
        append_code_cell(text, ap_report_string(threshold, "policy"));
        append_plain_cell(text,
                          ap_format_number(ap_report_number(validation, "precision"), number));
        append_plain_cell(text, ap_format_number(ap_report_number(validation, "recall"), number));
        append_plain_cell(text, ap_format_number(ap_report_number(validation, "f1"), number));
        ap_text_append(text, "\n");
    }
    ap_text_append(text, "\n");
}

static const json_t *label_metrics(const json_t *report, const char *label)
{
    const json_t *by_label = ap_report_object(ap_report_object(report, "test"), "labels");
    return ap_report_object(ap_report_object(by_label, label), "metrics");
}

static void write_metric_header(ap_text *text, const json_t *report, const json_t *labels)
{
    double level = ap_report_number(report, "confidence_level");
    ap_text_append(text, "## Test metrics\n\n");
    if (isfinite(level))
        ap_text_printf(text, "Value [lower, upper] of the %.4g%% confidence interval.\n\n",
                       level * 100.0);
    else
        ap_text_append(text, "Value [lower, upper] of the confidence interval.\n\n");
    ap_text_append(text, "| Metric |");
    for (size_t i = 0; i < json_array_size(labels); i++)
        append_code_cell(text, json_string_value(json_array_get(labels, i)));
    ap_text_append(text, " macro |\n|---|");
    for (size_t i = 0; i <= json_array_size(labels); i++)
        ap_text_append(text, "---:|");
    ap_text_append(text, "\n");
}

static void write_metrics(ap_text *text, const json_t *report, const json_t *labels)
{
    const json_t *macro = ap_report_object(ap_report_object(report, "test"), "macro");
    write_metric_header(text, report, labels);
    for (size_t m = 0; m < ap_report_metric_name_count; m++) {
        const ap_report_metric_name *name = &ap_report_metric_names[m];
        char cell[AP_REPORT_NUMBER_MAX];
        ap_text_printf(text, "| %s%s |", name->title,
                       name->lower_is_better ? " (lower is better)" : "");
        for (size_t i = 0; i < json_array_size(labels); i++) {
            const char *label = json_string_value(json_array_get(labels, i));
            const json_t *metric = ap_report_object(label_metrics(report, label), name->key);
            append_plain_cell(text, ap_format_metric(metric, cell));
        }
        append_plain_cell(text, ap_format_metric(ap_report_object(macro, name->key), cell));
        ap_text_append(text, "\n");
    }
    ap_text_append(text, "\n");
}

static void write_support(ap_text *text, const json_t *report, const json_t *labels)
{
    const json_t *by_label = ap_report_object(ap_report_object(report, "test"), "labels");
    ap_text_append(text, "## Test support and confusion\n\n");
    ap_text_append(text,
                   "| Label | Positives | Negatives | Unknown | True positive | False positive "
                   "| True negative | False negative |\n"
                   "|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < json_array_size(labels); i++) {
        const char *label = json_string_value(json_array_get(labels, i));
        const json_t *result = ap_report_object(by_label, label);
        const json_t *support = ap_report_object(result, "support");
        const json_t *confusion = ap_report_object(result, "confusion");
        static const char *const support_keys[] = {"positives", "negatives", "unknown"};
        static const char *const confusion_keys[] = {"true_positive", "false_positive",
                                                     "true_negative", "false_negative"};
        char count[AP_REPORT_NUMBER_MAX];
        ap_text_append(text, "|");
        append_code_cell(text, label);
        for (size_t k = 0; k < 3; k++)
            append_plain_cell(text, ap_format_count(support, support_keys[k], count));
        for (size_t k = 0; k < 4; k++)
            append_plain_cell(text, ap_format_count(confusion, confusion_keys[k], count));
        ap_text_append(text, "\n");
    }
    ap_text_append(text, "\n");
}

static void write_comparison_rows(ap_text *text, const json_t *by_label)
{
    ap_text_append(text, "| Label | Champion accuracy | Challenger accuracy | Only challenger "
                         "correct | Only champion correct | p-value | Result | Detail |\n"
                         "|---|---:|---:|---:|---:|---:|---|---|\n");
    const char *label;
    json_t *result;
    json_object_foreach((json_t *)by_label, label, result)
    {
        char number[AP_REPORT_NUMBER_MAX];
        ap_text_append(text, "|");
        append_code_cell(text, label);
        append_plain_cell(text,
                          ap_format_number(ap_report_number(result, "champion_accuracy"), number));
        append_plain_cell(
            text, ap_format_number(ap_report_number(result, "challenger_accuracy"), number));
        append_plain_cell(text, ap_format_count(result, "challenger_only_correct", number));
        append_plain_cell(text, ap_format_count(result, "champion_only_correct", number));
        append_plain_cell(text, ap_format_p_value(ap_report_number(result, "p_value"), number));
        append_verdict_cell(text, result);
        append_cell(text, ap_report_string(result, "detail"));
        ap_text_append(text, "\n");
    }
}

static void write_comparison(ap_text *text, const json_t *report)
{
    const json_t *comparison = ap_report_object(report, "comparison");
    ap_text_append(text, "## Champion comparison\n\n");
    if (comparison == NULL) {
        ap_text_append(text, "n/a: no champion comparison in this report.\n");
        return;
    }
    if (ap_report_bool(comparison, "skipped") == 1) {
        const char *reason = ap_report_string(comparison, "reason");
        ap_text_append(text, "Skipped: ");
        ap_text_append_markdown(text, reason != NULL ? reason : "no champion yet");
        ap_text_append(text, ".\n");
        return;
    }
    char version[AP_REPORT_NUMBER_MAX], regression[AP_REPORT_NUMBER_MAX],
        alpha[AP_REPORT_NUMBER_MAX];
    const char *sha = ap_report_string(comparison, "champion_sha256");
    ap_text_printf(text, "Against champion version %s (sha256 ",
                   ap_format_count(comparison, "champion_version", version));
    if (sha != NULL)
        ap_text_append_markdown_code(text, sha);
    else
        ap_text_append(text, "n/a");
    ap_text_printf(text, "), maximum regression %s, significance level %s.\n\n",
                   ap_format_number(ap_report_number(comparison, "max_regression"), regression),
                   ap_format_number(ap_report_number(comparison, "alpha"), alpha));
    const json_t *label_check = ap_report_object(comparison, "label_check");
    const char *label_detail = ap_report_string(label_check, "detail");
    if (label_detail != NULL) {
        ap_text_printf(text, "Labels (%s): ", ap_format_verdict(label_check, "passed"));
        ap_text_append_markdown(text, label_detail);
        ap_text_append(text, ".\n\n");
    }
    const json_t *by_label = ap_report_object(comparison, "labels");
    if (json_object_size(by_label) == 0) {
        ap_text_append(text, "No labels were compared.\n");
        return;
    }
    write_comparison_rows(text, by_label);
}

ap_status ap_report_render_markdown(const json_t *report, char **out, ap_error *err)
{
    *out = NULL;
    ap_status status = ap_report_check(report, err);
    if (status != AP_OK)
        return status;
    json_t *labels = ap_report_labels(report);
    if (labels == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "validation report: out of memory listing labels");

    ap_text text = {0};
    write_verdict(&text, report);
    write_summary(&text, report);
    write_rules(&text, report);
    write_data_checks(&text, report);
    write_thresholds(&text, report, labels);
    write_metrics(&text, report, labels);
    write_support(&text, report, labels);
    write_comparison(&text, report);
    json_decref(labels);

    *out = ap_text_take(&text);
    if (*out == NULL)
        return ap_error_set(err, AP_ERR_NOMEM,
                            "validation report: out of memory while rendering Markdown");
    return AP_OK;
}

char *ap_report_markdown(const json_t *report)
{
    char *markdown = NULL;
    ap_error err = {0};
    if (ap_report_render_markdown(report, &markdown, &err) != AP_OK)
        return NULL;
    return markdown;
}
