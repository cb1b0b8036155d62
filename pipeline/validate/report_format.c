#include "pipeline/validate/report_format.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPORT_FORMAT_NAME    "apiary-validation-report"
#define REPORT_FORMAT_VERSION 1

const ap_report_metric_name ap_report_metric_names[] = {
    {"accuracy", "Accuracy", false},       {"balanced_accuracy", "Balanced accuracy", false},
    {"precision", "Precision", false},     {"recall", "Recall", false},
    {"specificity", "Specificity", false}, {"f1", "F1", false},
    {"roc_auc", "ROC AUC", false},         {"pr_auc", "PR AUC (average precision)", false},
    {"brier", "Brier score", true},        {"ece", "Expected calibration error", true},
};

const size_t ap_report_metric_name_count =
    sizeof(ap_report_metric_names) / sizeof(ap_report_metric_names[0]);

static bool text_reserve(ap_text *text, size_t extra)
{
    if (text->out_of_memory)
        return false;
    size_t needed = text->length + extra + 1;
    if (needed <= text->capacity)
        return true;
    size_t capacity = text->capacity > 0 ? text->capacity : 4096;
    while (capacity < needed)
        capacity *= 2;
    char *data = realloc(text->data, capacity);
    if (data == NULL) {
        text->out_of_memory = true;
        return false;
    }
    text->data = data;
    text->capacity = capacity;
    return true;
}

static void text_append_bytes(ap_text *text, const char *bytes, size_t size)
{
    if (!text_reserve(text, size))
        return;
    memcpy(text->data + text->length, bytes, size);
    text->length += size;
    text->data[text->length] = '\0';
}

void ap_text_append(ap_text *text, const char *string)
{
    text_append_bytes(text, string, strlen(string));
}

void ap_text_printf(ap_text *text, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    char small[256];
    int size = vsnprintf(small, sizeof(small), format, args);
    va_end(args);
    if (size < 0) {
        text->out_of_memory = true;
        return;
    }
    if ((size_t)size < sizeof(small)) {
        text_append_bytes(text, small, (size_t)size);
        return;
    }
    if (!text_reserve(text, (size_t)size))
        return;
    va_start(args, format);
    vsnprintf(text->data + text->length, (size_t)size + 1, format, args);
    va_end(args);
    text->length += (size_t)size;
}

void ap_text_append_html(ap_text *text, const char *string)
{
    for (const char *c = string; *c != '\0'; c++) {
        switch (*c) {
        case '&':
            ap_text_append(text, "&amp;");
            break;
        case '<':
            ap_text_append(text, "&lt;");
            break;
        case '>':
            ap_text_append(text, "&gt;");
            break;
        case '"':
            ap_text_append(text, "&quot;");
            break;
        case '\'':
            ap_text_append(text, "&#39;");
            break;
        default:
            if ((unsigned char)*c < 0x20 && *c != '\t' && *c != '\n')
                text_append_bytes(text, " ", 1);
            else
                text_append_bytes(text, c, 1);
        }
    }
}

static bool starts_html_tag(const char *after)
{
    return (*after >= 'a' && *after <= 'z') || (*after >= 'A' && *after <= 'Z') || *after == '/' ||
           *after == '!' || *after == '?';
}

void ap_text_append_markdown(ap_text *text, const char *string)
{
    /* Backslash escapes work for every ASCII punctuation character in
     * CommonMark. These are the ones that open emphasis, code, links,
     * entities or strike-through, or end a table cell. A '<' needs one only
     * where it could open inline HTML or an autolink. */
    static const char special[] = "\\`*_[]|&~";
    for (const char *c = string; *c != '\0'; c++) {
        if (*c == '\n' || *c == '\r' || *c == '\t') {
            text_append_bytes(text, " ", 1);
            continue;
        }
        if ((unsigned char)*c < 0x20)
            continue;
        if (strchr(special, *c) != NULL || (*c == '<' && starts_html_tag(c + 1)))
            text_append_bytes(text, "\\", 1);
        text_append_bytes(text, c, 1);
    }
}

static void append_fence(ap_text *text, size_t length)
{
    for (size_t i = 0; i < length; i++)
        text_append_bytes(text, "`", 1);
}

void ap_text_append_markdown_code(ap_text *text, const char *string)
{
    size_t length = strlen(string), run = 0, longest = 0;
    if (length == 0)
        return;
    for (size_t i = 0; i < length; i++) {
        run = string[i] == '`' ? run + 1 : 0;
        if (run > longest)
            longest = run;
    }
    /* The fence is one backtick longer than any run inside. CommonMark strips
     * one space on each side when both are there, so pad when the content
     * starts or ends with a backtick or has a space at both ends. */
    bool pad = string[0] == '`' || string[length - 1] == '`' ||
               (string[0] == ' ' && string[length - 1] == ' ');
    append_fence(text, longest + 1);
    if (pad)
        ap_text_append(text, " ");
    for (const char *c = string; *c != '\0'; c++) {
        if (*c == '|')
            ap_text_append(text, "\\|");
        else if ((unsigned char)*c < 0x20)
            text_append_bytes(text, " ", 1);
        else
            text_append_bytes(text, c, 1);
    }
    if (pad)
        ap_text_append(text, " ");
    append_fence(text, longest + 1);
}

char *ap_text_take(ap_text *text)
{
    if (text->out_of_memory) {
        free(text->data);
        text->data = NULL;
        return NULL;
    }
    if (text->data == NULL)
        text->data = calloc(1, 1);
    char *data = text->data;
    text->data = NULL;
    text->length = text->capacity = 0;
    return data;
}

static ap_status check_labels(const json_t *labels, ap_error *err)
{
    if (labels == NULL)
        return AP_OK;
    if (!json_is_array(labels))
        return ap_error_set(err, AP_ERR_FORMAT,
                            "validation report: \"labels\" is not an array of label names; "
                            "regenerate the report with apiary validate");
    for (size_t i = 0; i < json_array_size(labels); i++)
        if (!json_is_string(json_array_get(labels, i)))
            return ap_error_set(err, AP_ERR_FORMAT,
                                "validation report: labels[%zu] is not a string; regenerate the "
                                "report with apiary validate",
                                i);
    return AP_OK;
}

ap_status ap_report_check(const json_t *report, ap_error *err)
{
    if (!json_is_object(report))
        return ap_error_set(err, AP_ERR_FORMAT,
                            "validation report: the top level is not a JSON object; expected the "
                            "report.json that apiary validate writes");
    const json_t *format = json_object_get(report, "format");
    if (format != NULL &&
        (!json_is_string(format) || strcmp(json_string_value(format), REPORT_FORMAT_NAME) != 0))
        return ap_error_set(err, AP_ERR_FORMAT,
                            "validation report: \"format\" is not \"%s\"; this file is not a "
                            "validation report",
                            REPORT_FORMAT_NAME);
    const json_t *version = json_object_get(report, "format_version");
    if (version != NULL &&
        (!json_is_integer(version) || json_integer_value(version) != REPORT_FORMAT_VERSION))
        return ap_error_set(err, AP_ERR_FORMAT,
                            "validation report: unsupported format_version (this apiary reads "
                            "version %d); render it with the apiary that wrote it",
                            REPORT_FORMAT_VERSION);
    if (!json_is_boolean(json_object_get(report, "passed")))
        return ap_error_set(err, AP_ERR_FORMAT,
                            "validation report: missing boolean \"passed\", so there is no "
                            "verdict to show; regenerate the report with apiary validate");
    return check_labels(json_object_get(report, "labels"), err);
}

json_t *ap_report_labels(const json_t *report)
{
    const json_t *labels = ap_report_array(report, "labels");
    if (labels != NULL)
        return json_incref((json_t *)labels);
    json_t *names = json_array();
    const json_t *by_label = ap_report_object(ap_report_object(report, "test"), "labels");
    if (names == NULL || by_label == NULL)
        return names;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)by_label, key, value)
    {
        if (json_array_append_new(names, json_string(key)) != 0) {
            json_decref(names);
            return NULL;
        }
    }
    return names;
}

const json_t *ap_report_object(const json_t *parent, const char *key)
{
    const json_t *value = json_is_object(parent) ? json_object_get(parent, key) : NULL;
    return json_is_object(value) ? value : NULL;
}

const json_t *ap_report_array(const json_t *parent, const char *key)
{
    const json_t *value = json_is_object(parent) ? json_object_get(parent, key) : NULL;
    return json_is_array(value) ? value : NULL;
}

const char *ap_report_string(const json_t *parent, const char *key)
{
    const json_t *value = json_is_object(parent) ? json_object_get(parent, key) : NULL;
    return json_string_value(value);
}

double ap_report_number(const json_t *parent, const char *key)
{
    const json_t *value = json_is_object(parent) ? json_object_get(parent, key) : NULL;
    return json_is_number(value) ? json_number_value(value) : NAN;
}

int ap_report_bool(const json_t *parent, const char *key)
{
    const json_t *value = json_is_object(parent) ? json_object_get(parent, key) : NULL;
    if (!json_is_boolean(value))
        return -1;
    return json_is_true(value) ? 1 : 0;
}

const json_t *ap_report_find_rule(const json_t *report, const char *rule)
{
    const json_t *rules = ap_report_array(report, "rules");
    for (size_t i = 0; i < json_array_size(rules); i++) {
        const char *text = ap_report_string(json_array_get(rules, i), "rule");
        if (text != NULL && strcmp(text, rule) == 0)
            return json_array_get(rules, i);
    }
    return NULL;
}

static size_t visit_failed_rules(const json_t *report, ap_report_failure_visitor visit,
                                 void *context)
{
    char actual[AP_REPORT_NUMBER_MAX];
    const json_t *failed = ap_report_array(report, "failed_rules");
    if (failed != NULL) {
        size_t count = 0;
        for (size_t i = 0; i < json_array_size(failed); i++) {
            const char *rule = json_string_value(json_array_get(failed, i));
            if (rule == NULL)
                continue;
            const json_t *entry = ap_report_find_rule(report, rule);
            visit(context, "rule", rule,
                  ap_format_number(ap_report_number(entry, "actual"), actual));
            count++;
        }
        return count;
    }
    size_t count = 0;
    const json_t *rules = ap_report_array(report, "rules");
    for (size_t i = 0; i < json_array_size(rules); i++) {
        const json_t *entry = json_array_get(rules, i);
        const char *rule = ap_report_string(entry, "rule");
        if (rule == NULL || ap_report_bool(entry, "passed") != 0)
            continue;
        visit(context, "rule", rule, ap_format_number(ap_report_number(entry, "actual"), actual));
        count++;
    }
    return count;
}

size_t ap_report_visit_failures(const json_t *report, ap_report_failure_visitor visit,
                                void *context)
{
    size_t count = visit_failed_rules(report, visit, context);

    const json_t *checks = ap_report_array(report, "data_checks");
    for (size_t i = 0; i < json_array_size(checks); i++) {
        const json_t *check = json_array_get(checks, i);
        const char *name = ap_report_string(check, "name");
        if (ap_report_bool(check, "passed") != 0)
            continue;
        visit(context, "data check", name != NULL ? name : "(unnamed)", NULL);
        count++;
    }

    const json_t *comparison = ap_report_object(report, "comparison");
    const json_t *missing =
        ap_report_array(ap_report_object(comparison, "label_check"), "missing_labels");
    for (size_t i = 0; i < json_array_size(missing); i++) {
        const char *name = json_string_value(json_array_get(missing, i));
        visit(context, "missing champion label", name != NULL ? name : "(unnamed)", NULL);
        count++;
    }

    const json_t *by_label = ap_report_object(comparison, "labels");
    const char *label;
    json_t *result;
    json_object_foreach((json_t *)by_label, label, result)
    {
        if (ap_report_bool(result, "passed") != 0)
            continue;
        visit(context, "champion comparison", label, NULL);
        count++;
    }
    return count;
}

void ap_report_visit_summary(const json_t *report, ap_report_fact_visitor visit, void *context)
{
    static const struct {
        const char *name;
        const char *key;
        bool as_code;
    } strings[] = {
        {"Model sha256", "model_sha256", true},
        {"Model card sha256", "model_card_sha256", true},
        {"Run folder", "run_dir", true},
        {"Created", "created", false},
        {"apiary version", "apiary_version", false},
        {"Git commit", "git_commit", true},
    };
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
        visit(context, strings[i].name, ap_report_string(report, strings[i].key),
              strings[i].as_code);

    char number[AP_REPORT_NUMBER_MAX];
    visit(context, "Test images",
          ap_format_count(ap_report_object(report, "test"), "images", number), false);
    visit(context, "Confidence level",
          ap_format_number(ap_report_number(report, "confidence_level"), number), false);
}

const char *ap_format_number(double value, char buffer[AP_REPORT_NUMBER_MAX])
{
    if (!isfinite(value))
        return "n/a";
    /* Keep "-0.000" from a tiny negative rounding residue out of the page. */
    if (fabs(value) < 0.5e-3)
        value = 0.0;
    /* Fixed precision stays short for anything a metric or limit can be.
     * Beyond that, scientific notation keeps the text at most 11 characters. */
    if (fabs(value) >= 1e6)
        snprintf(buffer, AP_REPORT_NUMBER_MAX, "%.4g", value);
    else
        snprintf(buffer, AP_REPORT_NUMBER_MAX, "%.*f", AP_REPORT_DECIMALS, value);
    return buffer;
}

const char *ap_format_count(const json_t *parent, const char *key,
                            char buffer[AP_REPORT_NUMBER_MAX])
{
    const json_t *value = json_is_object(parent) ? json_object_get(parent, key) : NULL;
    if (json_is_integer(value)) {
        snprintf(buffer, AP_REPORT_NUMBER_MAX, "%lld", (long long)json_integer_value(value));
        return buffer;
    }
    if (json_is_real(value) && isfinite(json_real_value(value))) {
        snprintf(buffer, AP_REPORT_NUMBER_MAX, "%.0f", json_real_value(value));
        return buffer;
    }
    return "n/a";
}

const char *ap_format_p_value(double value, char buffer[AP_REPORT_NUMBER_MAX])
{
    if (isfinite(value) && value < 1e-3)
        return "< 0.001";
    return ap_format_number(value, buffer);
}

const char *ap_format_metric(const json_t *metric, char buffer[AP_REPORT_NUMBER_MAX])
{
    double value = ap_report_number(metric, "value");
    double lower = ap_report_number(metric, "lower");
    double upper = ap_report_number(metric, "upper");
    if (!isfinite(value))
        return "n/a";
    char value_text[AP_REPORT_NUMBER_MAX], lower_text[AP_REPORT_NUMBER_MAX],
        upper_text[AP_REPORT_NUMBER_MAX];
    ap_format_number(value, value_text);
    if (!isfinite(lower) && !isfinite(upper)) {
        snprintf(buffer, AP_REPORT_NUMBER_MAX, "%s", value_text);
        return buffer;
    }
    /* Each part is at most 11 characters (see ap_format_number), so the
     * precision only bounds what the compiler has to assume. */
    snprintf(buffer, AP_REPORT_NUMBER_MAX, "%.28s [%.28s, %.28s]", value_text,
             ap_format_number(lower, lower_text), ap_format_number(upper, upper_text));
    return buffer;
}

const char *ap_format_verdict(const json_t *parent, const char *key)
{
    switch (ap_report_bool(parent, key)) {
    case 1:
        return "pass";
    case 0:
        return "fail";
    default:
        return "n/a";
    }
}
