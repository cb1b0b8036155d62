/* Reading report.json and the model card for registration: the report's
 * gate verdict, failed rules and per-label metrics (the fields are listed in
 * mlflow_registry.h), and the card's scalar fields as run parameters. */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/registry/mlflow_internal.h"

#define JSON_INPUT_MAX (64u << 20)
/* Older MLflow releases limit parameter values to 500 characters. */
#define PARAM_VALUE_MAX 500
#define PARAMS_MAX      200
#define CARD_DEPTH_MAX  3

static ap_status load_json_object(const char *path, json_t **value, ap_error *err)
{
    uint8_t *text = NULL;
    size_t size = 0;
    *value = NULL;
    ap_status status = ap_read_file(path, JSON_INPUT_MAX, &text, &size, err);
    if (status != AP_OK)
        return status;
    json_error_t parse_error;
    *value = json_loadb((const char *)text, size, JSON_REJECT_DUPLICATES, &parse_error);
    free(text);
    if (!json_is_object(*value)) {
        json_decref(*value);
        *value = NULL;
        return ap_error_set(err, AP_ERR_FORMAT, "%s is not a JSON object (%s at line %d)", path,
                            parse_error.text, parse_error.line);
    }
    return AP_OK;
}

/* ---- The validation report ---- */

ap_status mlflow_report_init(mlflow_report *summary, ap_error *err)
{
    summary->verdict = "none";
    summary->sha256_match = -1;
    summary->failed_rules = json_array();
    summary->metrics = json_object();
    if (summary->failed_rules == NULL || summary->metrics == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot summarize the validation report");
    return AP_OK;
}

/* Replace characters MLflow rejects in metric and parameter names with '_'. */
static void sanitize_key(char *key)
{
    for (char *p = key; *p != '\0'; p++) {
        char c = *p;
        bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '_' || c == '-' || c == '.' || c == '/';
        if (!allowed)
            *p = '_';
    }
}

static const char *rule_name(const json_t *rule)
{
    if (json_is_string(rule))
        return json_string_value(rule);
    const char *name = json_string_value(json_object_get(rule, "name"));
    return name != NULL ? name : json_string_value(json_object_get(rule, "rule"));
}

/* "failed_rules" when present, else the entries of "rules" whose "passed" is false. */
static ap_status collect_failed_rules(const json_t *report, json_t *rules, ap_error *err)
{
    json_t *failed = json_object_get(report, "failed_rules");
    bool listed = json_is_array(failed);
    json_t *source = listed ? failed : json_object_get(report, "rules");
    size_t index;
    json_t *rule;
    json_array_foreach(source, index, rule)
    {
        if (!listed && !json_is_false(json_object_get(rule, "passed")))
            continue;
        const char *name = rule_name(rule);
        char unnamed[32];
        snprintf(unnamed, sizeof(unnamed), "rule %zu", index + 1);
        if (json_array_append_new(rules, json_string(name != NULL ? name : unnamed)) != 0)
            return ap_error_set(err, AP_ERR_FORMAT,
                                "validation report rule %zu has a name that is not UTF-8",
                                index + 1);
    }
    return AP_OK;
}

static double metric_number(const json_t *value)
{
    if (json_is_object(value))
        value = json_object_get(value, "value");
    return json_is_number(value) ? json_number_value(value) : NAN;
}

static void add_metric_group(const char *group, const json_t *values, json_t *metrics)
{
    const char *name;
    json_t *value;
    json_object_foreach((json_t *)values, name, value)
    {
        double number = metric_number(value);
        char key[256];
        if (!isfinite(number) ||
            snprintf(key, sizeof(key), "%s/%s", group, name) >= (int)sizeof(key))
            continue;
        sanitize_key(key);
        json_object_set_new(metrics, key, json_real(number));
    }
}

/* Metrics are under "test": "labels" maps each label to its "metrics", and
 * "macro" holds the macro averages, as apiary validate writes them. */
static void collect_metrics(const json_t *report, json_t *metrics)
{
    json_t *test = json_object_get(report, "test");
    json_t *labels = json_object_get(test, "labels");
    json_t *macro = json_object_get(test, "macro");
    const char *label;
    json_t *entry;
    json_object_foreach(labels, label, entry)
    {
        add_metric_group(label, json_object_get(entry, "metrics"), metrics);
    }
    if (json_is_object(macro))
        add_metric_group("macro", macro, metrics);
}

ap_status mlflow_report_read(mlflow_report *summary, const char *path, const char *model_sha256,
                             ap_error *err)
{
    json_t *report = NULL;
    ap_status status = load_json_object(path, &report, err);
    if (status != AP_OK)
        return ap_error_prefix(err, "validation report");
    json_t *passed = json_object_get(report, "passed");
    json_t *named_sha = json_object_get(report, "model_sha256");
    if (passed != NULL && !json_is_boolean(passed))
        status = ap_error_set(err, AP_ERR_FORMAT,
                              "validation report field \"passed\" must be true or false");
    else if (named_sha != NULL && !json_is_string(named_sha))
        status = ap_error_set(err, AP_ERR_FORMAT,
                              "validation report field \"model_sha256\" must be a string");
    if (status == AP_OK) {
        summary->verdict = passed == NULL ? "unknown" : json_is_true(passed) ? "pass" : "fail";
        summary->sha256_match =
            named_sha == NULL ? -1 : strcmp(json_string_value(named_sha), model_sha256) == 0;
        status = collect_failed_rules(report, summary->failed_rules, err);
        collect_metrics(report, summary->metrics);
    }
    json_decref(report);
    return status;
}

void mlflow_report_free(mlflow_report *summary)
{
    json_decref(summary->failed_rules);
    json_decref(summary->metrics);
}

/* The failed rules as a JSON array that fits a tag value, dropping rules from
 * the end when the whole list is too long. apiary.failed_rule_count keeps the count. */
char *mlflow_failed_rules_text(const json_t *rules)
{
    json_t *kept = json_copy((json_t *)rules);
    char *text = NULL;
    while (kept != NULL) {
        text = json_dumps(kept, JSON_COMPACT);
        if (text == NULL || strlen(text) <= MLFLOW_TAG_VALUE_MAX || json_array_size(kept) == 0)
            break;
        free(text);
        text = NULL;
        json_array_remove(kept, json_array_size(kept) - 1);
    }
    json_decref(kept);
    return text;
}

json_t *mlflow_report_metrics(const mlflow_report *summary)
{
    json_t *metrics = json_array();
    long long now = mlflow_now_ms();
    const char *key;
    json_t *value;
    json_object_foreach(summary->metrics, key, value)
    {
        json_t *metric = json_pack("{s:s, s:f, s:I, s:i}", "key", key, "value",
                                   json_real_value(value), "timestamp", (json_int_t)now, "step", 0);
        if (metrics != NULL && metric != NULL)
            json_array_append_new(metrics, metric);
    }
    return metrics;
}

/* ---- The model card ---- */

static void add_param(json_t *params, const char *key, const char *value)
{
    if (json_array_size(params) >= PARAMS_MAX || strlen(value) > PARAM_VALUE_MAX)
        return;
    char clean[256];
    if (snprintf(clean, sizeof(clean), "%s", key) >= (int)sizeof(clean))
        return;
    sanitize_key(clean);
    json_t *param = json_pack("{s:s, s:s}", "key", clean, "value", value);
    if (param != NULL)
        json_array_append_new(params, param);
}

/* Log the model card's scalar fields as parameters named card.PATH. */
static void add_card_params(const json_t *value, const char *path, int depth, json_t *params)
{
    char text[64];
    if (json_is_string(value)) {
        add_param(params, path, json_string_value(value));
    } else if (json_is_integer(value)) {
        snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        add_param(params, path, text);
    } else if (json_is_real(value)) {
        snprintf(text, sizeof(text), "%.9g", json_real_value(value));
        add_param(params, path, text);
    } else if (json_is_boolean(value)) {
        add_param(params, path, json_is_true(value) ? "true" : "false");
    } else if (json_is_object(value) && depth < CARD_DEPTH_MAX) {
        const char *key;
        json_t *child;
        json_object_foreach((json_t *)value, key, child)
        {
            char child_path[256];
            if (snprintf(child_path, sizeof(child_path), "%s.%s", path, key) <
                (int)sizeof(child_path))
                add_card_params(child, child_path, depth + 1, params);
        }
    }
}

json_t *mlflow_card_params(const char *card_path)
{
    json_t *params = json_array(), *card = NULL;
    /* A model card that is not a JSON object is registered all the same, without parameters. */
    if (params != NULL && load_json_object(card_path, &card, NULL) == AP_OK)
        add_card_params(card, "card", 0, params);
    json_decref(card);
    return params;
}
