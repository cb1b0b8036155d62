#include "pipeline/validate/gate.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RULE_FORM                                                                                  \
    "LABEL.METRIC[.lower|.upper] >= VALUE (or <=), such as \"wasp.recall.lower >= 0.9\""

const char *ap_gate_bound_name(ap_gate_bound bound)
{
    switch (bound) {
    case AP_GATE_BOUND_VALUE:
        return "value";
    case AP_GATE_BOUND_LOWER:
        return "lower";
    case AP_GATE_BOUND_UPPER:
        return "upper";
    }
    return "unknown";
}

const char *ap_gate_op_text(ap_gate_op op)
{
    return op == AP_GATE_AT_MOST ? "<=" : ">=";
}

static ap_status fail_rule(ap_error *err, const char *rule, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Fail with "gate rule "RULE": MESSAGE". */
static ap_status fail_rule(ap_error *err, const char *rule, const char *format, ...)
{
    char message[AP_ERROR_MESSAGE_MAX];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof(message), format, args);
    va_end(args);
    return ap_error_set(err, AP_ERR_INVALID, "gate rule \"%.200s\": %s", rule, message);
}

/* Copy text[start, end) without surrounding spaces and tabs into out. */
static void copy_trimmed(const char *start, const char *end, char *out, size_t out_size)
{
    while (start < end && (*start == ' ' || *start == '\t'))
        start++;
    while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    snprintf(out, out_size, "%.*s", (int)(end - start), start);
}

/* Find the comparison: exactly one of >= and <=, nothing else like it. */
static ap_status find_operator(const char *text, ap_gate_op *op, size_t *at, ap_error *err)
{
    size_t position = strcspn(text, "<>=!");
    if (text[position] == '\0')
        return fail_rule(err, text, "no comparison found; write " RULE_FORM);
    char first = text[position], second = text[position + 1];
    if ((first == '>' || first == '<') && second == '=') {
        *op = first == '>' ? AP_GATE_AT_LEAST : AP_GATE_AT_MOST;
        *at = position;
    } else if (first == '>' || first == '<') {
        return fail_rule(err, text, "'%c' is not supported; use %c= (the limit itself passes)",
                         first, first);
    } else {
        int length = (int)strspn(text + position, "<>=!");
        return fail_rule(err, text,
                         "\"%.*s\" is not supported; use >= or <=", length > 2 ? 2 : length,
                         text + position);
    }
    if (text[position + 2 + strcspn(text + position + 2, "<>=!")] != '\0')
        return fail_rule(err, text, "more than one comparison; write one rule per item");
    return AP_OK;
}

static ap_status parse_limit(const char *rule, const char *text, double *limit, ap_error *err)
{
    if (text[0] == '\0')
        return fail_rule(err, rule, "the value after the comparison is missing; write " RULE_FORM);
    char *end = NULL;
    errno = 0;
    double value = strtod(text, &end);
    if (end == text || *end != '\0' || errno == ERANGE || !isfinite(value))
        return fail_rule(err, rule, "\"%s\" is not a number; the value must be a number in [0, 1]",
                         text);
    if (value < 0.0 || value > 1.0)
        return fail_rule(err, rule,
                         "value %s is outside [0, 1], the range of every metric; write a rate "
                         "such as 0.9, not a percentage",
                         text);
    *limit = value;
    return AP_OK;
}

static bool parse_bound(const char *word, ap_gate_bound *bound)
{
    for (int b = AP_GATE_BOUND_VALUE; b <= AP_GATE_BOUND_UPPER; b++) {
        if (strcmp(word, ap_gate_bound_name((ap_gate_bound)b)) == 0) {
            *bound = (ap_gate_bound)b;
            return true;
        }
    }
    return false;
}

static bool is_metric_name(const char *word)
{
    ap_metric metric;
    return ap_metric_from_name(word, &metric, NULL) == AP_OK;
}

static ap_status resolve_label(const char *rule, const char (*labels)[AP_NAME_MAX], int label_count,
                               ap_gate_rule *out, ap_error *err)
{
    if (strcmp(out->label, AP_GATE_MACRO) == 0) {
        out->label_index = -1;
        return AP_OK;
    }
    char valid[AP_MAX_LABELS * (AP_NAME_MAX + 2) + 16] = "";
    for (int i = 0; i < label_count; i++) {
        if (strcmp(out->label, labels[i]) == 0) {
            out->label_index = i;
            return AP_OK;
        }
        size_t used = strlen(valid);
        snprintf(valid + used, sizeof(valid) - used, "%s, ", labels[i]);
    }
    return fail_rule(err, rule,
                     "unknown label \"%s\"; use one of data.labels (%s" AP_GATE_MACRO
                     " for the mean over labels)",
                     out->label, valid);
}

/* Split "LABEL.METRIC[.BOUND]" from the right, because labels may contain dots. */
static ap_status parse_target(const char *rule, char *target, const char (*labels)[AP_NAME_MAX],
                              int label_count, ap_gate_rule *out, ap_error *err)
{
    if (target[0] == '\0')
        return fail_rule(err, rule,
                         "the metric before the comparison is missing; write " RULE_FORM);
    if (strpbrk(target, " \t") != NULL)
        return fail_rule(err, rule, "\"%s\" contains spaces; write LABEL.METRIC without spaces",
                         target);
    char *dot = strrchr(target, '.');
    if (dot == NULL)
        return fail_rule(err, rule, "\"%s\" names no label; write LABEL.METRIC, such as wasp.%s",
                         target, target);
    out->bound = AP_GATE_BOUND_VALUE;
    if (parse_bound(dot + 1, &out->bound)) {
        *dot = '\0';
        dot = strrchr(target, '.');
        if (dot == NULL)
            return fail_rule(err, rule,
                             "\"%s\" names no metric before .%s; write LABEL.METRIC.%s, such as "
                             "wasp.recall.%s",
                             target, ap_gate_bound_name(out->bound), ap_gate_bound_name(out->bound),
                             ap_gate_bound_name(out->bound));
    } else {
        *dot = '\0';
        char *before = strrchr(target, '.');
        bool names_metric = is_metric_name(before != NULL ? before + 1 : target);
        *dot = '.';
        if (names_metric && !is_metric_name(dot + 1))
            return fail_rule(err, rule,
                             "unknown bound \"%s\"; use lower or upper for a confidence bound, or "
                             "leave it out for the value",
                             dot + 1);
    }
    *dot = '\0';
    ap_error metric_err = {0};
    if (ap_metric_from_name(dot + 1, &out->metric, &metric_err) != AP_OK)
        return fail_rule(err, rule, "%s", metric_err.message);
    if (target[0] == '\0')
        return fail_rule(err, rule, "the label before .%s is missing; write " RULE_FORM, dot + 1);
    size_t length = strlen(target);
    if (length >= sizeof(out->label))
        return fail_rule(err, rule, "label \"%.64s...\" is too long", target);
    memcpy(out->label, target, length + 1);
    return resolve_label(rule, labels, label_count, out, err);
}

ap_status ap_gate_rule_parse(const char *text, const char (*labels)[AP_NAME_MAX], int label_count,
                             ap_gate_rule *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    if (text == NULL || text[strspn(text, " \t")] == '\0')
        return ap_error_set(err, AP_ERR_INVALID, "gate rule is empty; write " RULE_FORM);
    if (strlen(text) >= sizeof(out->text))
        return fail_rule(err, text, "longer than %zu characters", sizeof(out->text) - 1);
    snprintf(out->text, sizeof(out->text), "%s", text);

    size_t at = 0;
    ap_status status = find_operator(text, &out->op, &at, err);
    if (status != AP_OK)
        return status;
    char target[AP_GATE_RULE_MAX], value[AP_GATE_RULE_MAX];
    copy_trimmed(text, text + at, target, sizeof(target));
    copy_trimmed(text + at + 2, text + strlen(text), value, sizeof(value));
    status = parse_target(text, target, labels, label_count, out, err);
    if (status == AP_OK)
        status = parse_limit(text, value, &out->limit, err);
    return status;
}

ap_status ap_gate_rules_parse(const ap_config *cfg, ap_gate_rule *rules, int *count, ap_error *err)
{
    *count = 0;
    for (int i = 0; i < cfg->gate.rule_count && i < AP_GATE_MAX_RULES; i++) {
        ap_status status = ap_gate_rule_parse(cfg->gate.rules[i], cfg->data.labels,
                                              cfg->data.label_count, &rules[i], err);
        if (status != AP_OK)
            return ap_error_prefix(err, "gate.rules item %d", i + 1);
        (*count)++;
    }
    return AP_OK;
}

/* ---- Evaluation ---- */

/* The quantity a rule reads, for example "the lower 95% wilson bound of wasp recall". */
static void describe_quantity(const ap_gate_rule *rule, const ap_metric_value *value, double level,
                              char *out, size_t out_size)
{
    char subject[AP_NAME_MAX + 48];
    if (rule->label_index < 0)
        snprintf(subject, sizeof(subject), "macro-average %s", ap_metric_name(rule->metric));
    else
        snprintf(subject, sizeof(subject), "%s %s", rule->label, ap_metric_name(rule->metric));
    if (rule->bound == AP_GATE_BOUND_VALUE)
        snprintf(out, out_size, "%s", subject);
    else
        snprintf(out, out_size, "the %s %g%% %s bound of %s", ap_gate_bound_name(rule->bound),
                 100.0 * level, ap_interval_method_name(value->interval.method), subject);
}

/* The reason a label metric has no value on the test split. */
static const char *undefined_reason(const ap_label_metrics *m, ap_metric metric)
{
    switch (metric) {
    case AP_METRIC_RECALL:
    case AP_METRIC_PR_AUC:
        return "the test split has no positive image of this label";
    case AP_METRIC_SPECIFICITY:
        return "the test split has no negative image of this label";
    case AP_METRIC_PRECISION:
        return "the model predicts no test image positive at its threshold";
    case AP_METRIC_F1:
        return "the test split has no positive image and the model predicts none";
    case AP_METRIC_BALANCED_ACCURACY:
    case AP_METRIC_ROC_AUC:
        return m->positives == 0 ? "the test split has no positive image of this label"
                                 : "the test split has no negative image of this label";
    default:
        return "no test image has a known value for this label";
    }
}

static void explain_undefined(const ap_gate_rule *rule, const ap_evaluation *evaluation,
                              const ap_metric_value *value, const char *quantity,
                              ap_gate_outcome *out)
{
    const char *reason;
    if (isnan(value->value) && rule->label_index >= 0)
        reason = undefined_reason(&evaluation->labels[rule->label_index], rule->metric);
    else if (isnan(value->value))
        reason = "no label has a defined value";
    else if (value->interval.method == AP_INTERVAL_NONE && evaluation->options.resamples == 0)
        reason = "this metric gets its interval from the bootstrap, which "
                 "gate.bootstrap_resamples = 0 turns off";
    else if (value->interval.method == AP_INTERVAL_NONE)
        reason = "no interval was computed for it";
    else
        reason = "the metric is undefined in every bootstrap resample";
    snprintf(out->detail, sizeof(out->detail), "%s is undefined because %s, so the rule fails",
             quantity, reason);
}

void ap_gate_rule_evaluate(const ap_gate_rule *rule, const ap_evaluation *evaluation,
                           ap_gate_outcome *out)
{
    memset(out, 0, sizeof(*out));
    out->actual = NAN;
    if (rule->label_index >= evaluation->label_count) {
        snprintf(out->detail, sizeof(out->detail),
                 "label %s is not among the %d evaluated labels, so the rule fails", rule->label,
                 evaluation->label_count);
        return;
    }
    const ap_metric_value *value =
        rule->label_index < 0 ? &evaluation->macro.metrics[rule->metric]
                              : &evaluation->labels[rule->label_index].metrics[rule->metric];
    if (rule->bound == AP_GATE_BOUND_LOWER)
        out->actual = value->interval.lower;
    else if (rule->bound == AP_GATE_BOUND_UPPER)
        out->actual = value->interval.upper;
    else
        out->actual = value->value;

    char quantity[256];
    describe_quantity(rule, value, evaluation->options.level, quantity, sizeof(quantity));
    if (isnan(out->actual)) {
        explain_undefined(rule, evaluation, value, quantity, out);
        return;
    }
    bool at_least = rule->op == AP_GATE_AT_LEAST;
    out->passed = at_least ? out->actual >= rule->limit : out->actual <= rule->limit;
    if (out->passed)
        snprintf(out->detail, sizeof(out->detail), "%s is %.4f, %s %g as required", quantity,
                 out->actual, at_least ? "at least" : "at most", rule->limit);
    else
        snprintf(out->detail, sizeof(out->detail), "%s is %.4f, %s the required %s %g", quantity,
                 out->actual, at_least ? "below" : "above", at_least ? "minimum" : "maximum",
                 rule->limit);
}

/* ---- Test support ---- */

static void mark_ruled_labels(const ap_gate_rule *rules, int rule_count, int label_count,
                              bool *ruled)
{
    for (int l = 0; l < label_count; l++)
        ruled[l] = false;
    for (int r = 0; r < rule_count; r++) {
        for (int l = 0; l < label_count; l++)
            if (rules[r].label_index < 0 || rules[r].label_index == l)
                ruled[l] = true;
    }
}

/* Append printf output to out, which contains *used bytes, up to the end of out. */
static void append(char *out, size_t out_size, size_t *used, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

static void append(char *out, size_t out_size, size_t *used, const char *format, ...)
{
    if (*used >= out_size)
        return;
    va_list args;
    va_start(args, format);
    int written = vsnprintf(out + *used, out_size - *used, format, args);
    va_end(args);
    if (written > 0)
        *used += (size_t)written;
}

void ap_gate_check_support(const ap_gate_rule *rules, int rule_count,
                           const char (*labels)[AP_NAME_MAX], int label_count,
                           const long *positives, const long *negatives, long min_positives,
                           long min_negatives, ap_data_check *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->name, sizeof(out->name), "test_support");
    bool ruled[AP_MAX_LABELS];
    mark_ruled_labels(rules, rule_count, label_count, ruled);

    out->passed = true;
    size_t used = 0;
    int checked = 0;
    for (int l = 0; l < label_count; l++) {
        if (!ruled[l])
            continue;
        bool enough = positives[l] >= min_positives && negatives[l] >= min_negatives;
        out->passed = out->passed && enough;
        append(out->detail, sizeof(out->detail), &used,
               "%s%s has %ld positive and %ld negative test images%s", checked > 0 ? "; " : "",
               labels[l], positives[l], negatives[l], enough ? "" : " (too few)");
        checked++;
    }
    if (checked == 0) {
        snprintf(out->detail, sizeof(out->detail),
                 "no gate rule names a label, so no minimum test support applies");
        return;
    }
    append(out->detail, sizeof(out->detail), &used,
           ". Each label with a rule needs at least %ld positive and %ld negative test images "
           "(gate.min_positives, gate.min_negatives)%s",
           min_positives, min_negatives,
           out->passed ? "." : ", because fewer cannot show that the bar is met.");
}
