#include "pipeline/score/score_alerts.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *skip_spaces(const char *text)
{
    while (*text == ' ' || *text == '\t')
        text++;
    return text;
}

static bool is_operator_char(char c)
{
    return c == '<' || c == '>' || c == '=' || c == '!';
}

/* Split "LABEL.METRIC" at its last dot. */
static ap_status parse_subject(const char *text, const char *start, size_t length,
                               ap_score_alert *out, ap_error *err)
{
    const char *dot = NULL;
    for (const char *p = start; p < start + length; p++)
        if (*p == '.')
            dot = p;
    if (dot == NULL || dot == start)
        return ap_error_set(err, AP_ERR_INVALID,
                            "score.alerts entry \"%s\": expected LABEL.METRIC OP VALUE, for "
                            "example \"wasp.count >= 1\"",
                            text);
    size_t subject_length = (size_t)(dot - start);
    size_t metric_length = length - subject_length - 1;
    if (subject_length >= sizeof(out->subject))
        return ap_error_set(err, AP_ERR_INVALID,
                            "score.alerts entry \"%s\": the label is longer than %zu characters",
                            text, sizeof(out->subject) - 1);
    memcpy(out->subject, start, subject_length);
    out->subject[subject_length] = '\0';
    if (metric_length == 5 && strncmp(dot + 1, "count", 5) == 0)
        out->metric = AP_ALERT_COUNT;
    else if (metric_length == 4 && strncmp(dot + 1, "rate", 4) == 0)
        out->metric = AP_ALERT_RATE;
    else
        return ap_error_set(err, AP_ERR_INVALID,
                            "score.alerts entry \"%s\": unknown metric \"%.*s\"; use count or "
                            "rate",
                            text, (int)metric_length, dot + 1);
    return AP_OK;
}

/* Parse the operator at *at and move past it. */
static ap_status parse_operator(const char *text, const char **at, ap_score_alert *out,
                                ap_error *err)
{
    static const struct {
        const char *symbol;
        ap_alert_op op;
    } operators[] = {
        {">=", AP_ALERT_GE}, {"<=", AP_ALERT_LE}, {">", AP_ALERT_GT}, {"<", AP_ALERT_LT}};
    for (size_t i = 0; i < sizeof(operators) / sizeof(operators[0]); i++) {
        size_t length = strlen(operators[i].symbol);
        if (strncmp(*at, operators[i].symbol, length) == 0 && !is_operator_char((*at)[length])) {
            out->op = operators[i].op;
            *at += length;
            return AP_OK;
        }
    }
    size_t length = strspn(*at, "<>=!");
    return ap_error_set(err, AP_ERR_INVALID,
                        "score.alerts entry \"%s\": %s%.*s%s; use >, >=, < or <=", text,
                        length > 0 ? "unsupported operator \"" : "missing operator", (int)length,
                        *at, length > 0 ? "\"" : "");
}

static ap_status parse_threshold(const char *text, const char *at, ap_score_alert *out,
                                 ap_error *err)
{
    char *end = NULL;
    errno = 0;
    double value = *at != '\0' ? strtod(at, &end) : 0.0;
    if (end == NULL || end == at || errno != 0 || !isfinite(value))
        return ap_error_set(err, AP_ERR_INVALID,
                            "score.alerts entry \"%s\": the value after the operator is not a "
                            "number",
                            text);
    if (*skip_spaces(end) != '\0')
        return ap_error_set(err, AP_ERR_INVALID,
                            "score.alerts entry \"%s\": unexpected text \"%s\" after the value",
                            text, skip_spaces(end));
    if (value < 0.0 || (out->metric == AP_ALERT_RATE && value > 1.0))
        return ap_error_set(
            err, AP_ERR_INVALID, "score.alerts entry \"%s\": the value must be %s", text,
            out->metric == AP_ALERT_RATE ? "a rate from 0 to 1" : "a count of at least 0");
    out->threshold = value;
    return AP_OK;
}

ap_status ap_score_alert_parse(const char *text, ap_score_alert *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    out->label = AP_ALERT_ERRORS;
    if (strlen(text) >= sizeof(out->text))
        return ap_error_set(err, AP_ERR_INVALID,
                            "score.alerts entry \"%.60s...\" is longer than %zu characters", text,
                            sizeof(out->text) - 1);
    snprintf(out->text, sizeof(out->text), "%s", text);

    const char *start = skip_spaces(text);
    const char *at = start;
    while (*at != '\0' && *at != ' ' && *at != '\t' && !is_operator_char(*at))
        at++;
    ap_status status = parse_subject(text, start, (size_t)(at - start), out, err);
    if (status != AP_OK)
        return status;
    at = skip_spaces(at);
    status = parse_operator(text, &at, out, err);
    if (status != AP_OK)
        return status;
    return parse_threshold(text, skip_spaces(at), out, err);
}

ap_status ap_score_alerts_parse(const ap_score_config *cfg, ap_score_alert *alerts, int *count,
                                ap_error *err)
{
    *count = 0;
    for (int i = 0; i < cfg->alert_count && i < AP_SCORE_MAX_ALERTS; i++) {
        ap_status status = ap_score_alert_parse(cfg->alerts[i], &alerts[i], err);
        if (status != AP_OK)
            return status;
        *count = i + 1;
    }
    return AP_OK;
}

ap_status ap_score_alert_resolve(ap_score_alert *alert, const char (*labels)[AP_NAME_MAX],
                                 int label_count, ap_error *err)
{
    int found = -2;
    for (int l = 0; l < label_count; l++)
        if (strcmp(labels[l], alert->subject) == 0)
            found = l;
    bool errors = strcmp(alert->subject, AP_ALERT_ERRORS_NAME) == 0;
    if (errors && found >= 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "score.alerts entry \"%s\": the model has a label named %s, so the "
                            "alert could mean that label or decode errors; rename the label",
                            alert->text, AP_ALERT_ERRORS_NAME);
    if (errors) {
        alert->label = AP_ALERT_ERRORS;
        return AP_OK;
    }
    if (found >= 0) {
        alert->label = found;
        return AP_OK;
    }
    char names[AP_MAX_LABELS * (AP_NAME_MAX + 2)] = "";
    size_t used = 0;
    for (int l = 0; l < label_count && used < sizeof(names); l++)
        used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s", l > 0 ? ", " : "",
                                 labels[l]);
    return ap_error_set(err, AP_ERR_INVALID,
                        "score.alerts entry \"%s\": \"%s\" is not a label of the model; use one "
                        "of %s, or %s",
                        alert->text, alert->subject, names, AP_ALERT_ERRORS_NAME);
}

bool ap_score_alert_value(const ap_score_alert *alert, const ap_score_counts *counts, double *value)
{
    bool errors = alert->label == AP_ALERT_ERRORS;
    size_t count = errors ? counts->errors : counts->positives[alert->label];
    size_t total = errors ? counts->images : counts->images - counts->errors;
    if (alert->metric == AP_ALERT_COUNT) {
        *value = (double)count;
        return true;
    }
    if (total == 0)
        return false;
    *value = (double)count / (double)total;
    return true;
}

bool ap_score_alert_fires(const ap_score_alert *alert, double value)
{
    switch (alert->op) {
    case AP_ALERT_GT:
        return value > alert->threshold;
    case AP_ALERT_GE:
        return value >= alert->threshold;
    case AP_ALERT_LT:
        return value < alert->threshold;
    case AP_ALERT_LE:
        return value <= alert->threshold;
    }
    return false;
}
