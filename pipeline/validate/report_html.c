#include "pipeline/validate/report_render.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/validate/report_format.h"
#include "pipeline/validate/report_svg.h"

/* The whole style sheet. It names only local font families and no url(), so
 * the page renders the same without a network. */
static const char page_style[] =
    "body{margin:0;background:#f6f8fa;color:#1f2328;"
    "font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif}"
    "main{max-width:1080px;margin:0 auto;padding:24px}"
    "h1,h2,h3{margin:0;line-height:1.25}"
    "h2{font-size:18px;margin-bottom:12px}"
    "h3{font-size:14px;margin-bottom:8px}"
    "code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}"
    ".verdict{border-radius:8px;padding:18px 22px;margin-bottom:20px;color:#fff}"
    ".verdict.pass{background:#1a7f37}"
    ".verdict.fail{background:#cf222e}"
    ".verdict h1{font-size:30px;letter-spacing:.05em}"
    ".verdict p{margin:6px 0 0}"
    ".verdict ul{margin:8px 0 0;padding-left:22px}"
    ".verdict code{background:rgba(255,255,255,.18);padding:1px 4px;border-radius:4px}"
    "section{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:16px 20px;"
    "margin-bottom:20px}"
    "p.facts{margin:0 0 12px;color:#424a53}"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:3px 18px;margin:0}"
    "dt{color:#57606a}"
    "dd{margin:0;overflow-wrap:anywhere}"
    "table{border-collapse:collapse;font-variant-numeric:tabular-nums}"
    "th,td{padding:5px 10px;border-bottom:1px solid #d8dee4;text-align:left;vertical-align:top}"
    "thead th{border-bottom:2px solid #d0d7de;color:#424a53;font-weight:600}"
    ".num{text-align:right}"
    "td.num{white-space:nowrap}"
    "td.wide{overflow-wrap:anywhere;min-width:220px;max-width:520px}"
    "h2 code{font-size:16px;background:#eaeef2;padding:1px 6px;border-radius:4px}"
    "tr.fail td{background:#fff5f5}"
    ".badge{display:inline-block;min-width:34px;text-align:center;padding:0 8px;"
    "border-radius:10px;font-size:12px;font-weight:600}"
    ".badge.pass{background:#dafbe1;color:#116329}"
    ".badge.fail{background:#ffebe9;color:#a40e26}"
    ".badge.na{background:#eaeef2;color:#57606a}"
    ".muted{color:#6e7781}"
    ".row{display:flex;flex-wrap:wrap;gap:28px;align-items:flex-start}"
    "table.confusion th,table.confusion td{text-align:center;vertical-align:middle;min-width:72px}"
    "table.confusion td{font-size:16px;font-weight:600}"
    "table.confusion td.hit{background:#dafbe1}"
    "table.confusion td.miss{background:#ffebe9}"
    "table.confusion caption{text-align:left;font-weight:600;padding-bottom:8px;"
    "white-space:nowrap}"
    ".charts{display:flex;flex-wrap:wrap;gap:16px;margin-top:16px}"
    "svg.chart{background:#fff;border:1px solid #eaeef2;border-radius:6px}"
    "svg text{font-size:11px;fill:#57606a}"
    "svg text.title{font-size:13px;font-weight:600;fill:#1f2328}"
    "svg text.axis-title{font-size:12px;fill:#424a53}"
    "svg text.empty{font-size:14px;fill:#8c959f;paint-order:stroke;stroke:#fff;stroke-width:5px}"
    "svg text.note{font-size:10.5px;fill:#6e7781}"
    "svg .grid{stroke:#eef1f4;fill:none}"
    "svg .axis,svg .frame{stroke:#8c959f;fill:none}"
    "svg .diagonal,svg .baseline{stroke:#8c959f;stroke-dasharray:4 4}"
    "svg .curve{fill:none;stroke:#0969da;stroke-width:2;stroke-linejoin:round}"
    "svg .curve.thin{stroke-width:1.25}"
    "svg .area{fill:#0969da;fill-opacity:.08}"
    "svg .bar{fill:#0969da;fill-opacity:.16}"
    "svg .dot{fill:#0969da}";

static void append_code(ap_text *text, const char *string)
{
    ap_text_append(text, "<code>");
    ap_text_append_html(text, string);
    ap_text_append(text, "</code>");
}

static void append_cell(ap_text *text, const char *css_class, const char *string)
{
    if (css_class != NULL)
        ap_text_printf(text, "<td class=\"%s\">", css_class);
    else
        ap_text_append(text, "<td>");
    if (string != NULL)
        ap_text_append_html(text, string);
    else
        ap_text_append(text, "<span class=\"muted\">n/a</span>");
    ap_text_append(text, "</td>");
}

/* A result cell: verdict is "pass", "fail" or "n/a" from ap_format_verdict. */
static void append_badge_cell(ap_text *text, const char *verdict)
{
    const char *css_class = strcmp(verdict, "n/a") == 0 ? "na" : verdict;
    ap_text_printf(text, "<td><span class=\"badge %s\">%s</span></td>", css_class, verdict);
}

static void begin_row(ap_text *text, const json_t *entry)
{
    ap_text_append(text, ap_report_bool(entry, "passed") == 0 ? "<tr class=\"fail\">" : "<tr>");
}

typedef struct {
    ap_text *text;
    size_t count;
} failure_list;

static void append_failure(void *context, const char *kind, const char *subject, const char *actual)
{
    failure_list *list = context;
    ap_text_printf(list->text, "<li>%s ", kind);
    append_code(list->text, subject);
    if (actual != NULL)
        ap_text_printf(list->text, ": actual %s", actual);
    ap_text_append(list->text, "</li>");
    list->count++;
}

static void write_banner(ap_text *text, const json_t *report)
{
    const json_t *rules = ap_report_array(report, "rules");
    size_t passed_rules = 0;
    for (size_t i = 0; i < json_array_size(rules); i++)
        if (ap_report_bool(json_array_get(rules, i), "passed") == 1)
            passed_rules++;

    bool passed = ap_report_bool(report, "passed") == 1;
    ap_text_printf(text, "<header class=\"verdict %s\"><h1>%s</h1>", passed ? "pass" : "fail",
                   passed ? "PASSED" : "FAILED");
    ap_text_printf(text, "<p>Validation gate: %zu of %zu rules passed.</p>", passed_rules,
                   json_array_size(rules));
    if (!passed) {
        failure_list list = {text, 0};
        ap_text_append(text, "<ul>");
        if (ap_report_visit_failures(report, append_failure, &list) == 0)
            ap_text_append(text, "<li>the report names no failed rule or check</li>");
        ap_text_append(text, "</ul>");
    }
    ap_text_append(text, "</header>\n");
}

static void write_fact(void *context, const char *name, const char *value, bool as_code)
{
    ap_text *text = context;
    ap_text_printf(text, "<dt>%s</dt><dd>", name);
    if (value == NULL)
        ap_text_append(text, "<span class=\"muted\">n/a</span>");
    else if (as_code)
        append_code(text, value);
    else
        ap_text_append_html(text, value);
    ap_text_append(text, "</dd>");
}

static void write_summary(ap_text *text, const json_t *report)
{
    ap_text_append(text, "<section><h2>Summary</h2><dl>");
    ap_report_visit_summary(report, write_fact, text);
    ap_text_append(text, "</dl></section>\n");
}

static void write_rules(ap_text *text, const json_t *report)
{
    const json_t *rules = ap_report_array(report, "rules");
    ap_text_append(text, "<section><h2>Rules</h2>");
    if (json_array_size(rules) == 0) {
        ap_text_append(text, "<p class=\"muted\">No rules in this report.</p></section>\n");
        return;
    }
    ap_text_append(text, "<table><thead><tr><th>Rule</th><th class=\"num\">Actual</th>"
                         "<th>Result</th><th>Detail</th></tr></thead><tbody>");
    for (size_t i = 0; i < json_array_size(rules); i++) {
        const json_t *rule = json_array_get(rules, i);
        char actual[AP_REPORT_NUMBER_MAX];
        begin_row(text, rule);
        const char *rule_text = ap_report_string(rule, "rule");
        ap_text_append(text, "<td>");
        append_code(text, rule_text != NULL ? rule_text : "n/a");
        ap_text_append(text, "</td>");
        append_cell(text, "num", ap_format_number(ap_report_number(rule, "actual"), actual));
        append_badge_cell(text, ap_format_verdict(rule, "passed"));
        append_cell(text, "wide", ap_report_string(rule, "detail"));
        ap_text_append(text, "</tr>");
    }
    ap_text_append(text, "</tbody></table></section>\n");
}

static void write_data_checks(ap_text *text, const json_t *report)
{
    const json_t *checks = ap_report_array(report, "data_checks");
    ap_text_append(text, "<section><h2>Data checks</h2>");
    if (json_array_size(checks) == 0) {
        ap_text_append(text, "<p class=\"muted\">No data checks in this report.</p></section>\n");
        return;
    }
    ap_text_append(text, "<table><thead><tr><th>Check</th><th>Result</th><th>Detail</th></tr>"
                         "</thead><tbody>");
    for (size_t i = 0; i < json_array_size(checks); i++) {
        const json_t *check = json_array_get(checks, i);
        begin_row(text, check);
        append_cell(text, NULL, ap_report_string(check, "name"));
        append_badge_cell(text, ap_format_verdict(check, "passed"));
        append_cell(text, "wide", ap_report_string(check, "detail"));
        ap_text_append(text, "</tr>");
    }
    ap_text_append(text, "</tbody></table></section>\n");
}

static void write_comparison_rows(ap_text *text, const json_t *by_label)
{
    ap_text_append(
        text, "<table><thead><tr><th>Label</th><th class=\"num\">Champion accuracy</th>"
              "<th class=\"num\">Challenger accuracy</th>"
              "<th class=\"num\">Only challenger correct</th>"
              "<th class=\"num\">Only champion correct</th><th class=\"num\">p&#8209;value</th>"
              "<th>Result</th><th>Detail</th></tr></thead><tbody>");
    const char *label;
    json_t *result;
    json_object_foreach((json_t *)by_label, label, result)
    {
        char number[AP_REPORT_NUMBER_MAX];
        begin_row(text, result);
        append_cell(text, NULL, label);
        append_cell(text, "num",
                    ap_format_number(ap_report_number(result, "champion_accuracy"), number));
        append_cell(text, "num",
                    ap_format_number(ap_report_number(result, "challenger_accuracy"), number));
        append_cell(text, "num", ap_format_count(result, "challenger_only_correct", number));
        append_cell(text, "num", ap_format_count(result, "champion_only_correct", number));
        append_cell(text, "num", ap_format_p_value(ap_report_number(result, "p_value"), number));
        append_badge_cell(text, ap_format_verdict(result, "passed"));
        append_cell(text, "wide", ap_report_string(result, "detail"));
        ap_text_append(text, "</tr>");
    }
    ap_text_append(text, "</tbody></table>");
}

static void write_comparison(ap_text *text, const json_t *report)
{
    const json_t *comparison = ap_report_object(report, "comparison");
    ap_text_append(text, "<section><h2>Champion comparison</h2>");
    if (comparison == NULL) {
        ap_text_append(text, "<p class=\"muted\">n/a: no champion comparison in this report.</p>"
                             "</section>\n");
        return;
    }
    if (ap_report_bool(comparison, "skipped") == 1) {
        const char *reason = ap_report_string(comparison, "reason");
        ap_text_append(text, "<p class=\"muted\">Skipped: ");
        ap_text_append_html(text, reason != NULL ? reason : "no champion yet");
        ap_text_append(text, ".</p></section>\n");
        return;
    }
    char version[AP_REPORT_NUMBER_MAX], regression[AP_REPORT_NUMBER_MAX],
        alpha[AP_REPORT_NUMBER_MAX];
    const char *sha = ap_report_string(comparison, "champion_sha256");
    ap_text_printf(text, "<p class=\"facts\">Against champion version %s, sha256 ",
                   ap_format_count(comparison, "champion_version", version));
    append_code(text, sha != NULL ? sha : "n/a");
    ap_text_printf(text, "; maximum regression %s, significance level %s.</p>",
                   ap_format_number(ap_report_number(comparison, "max_regression"), regression),
                   ap_format_number(ap_report_number(comparison, "alpha"), alpha));
    const json_t *label_check = ap_report_object(comparison, "label_check");
    const char *label_detail = ap_report_string(label_check, "detail");
    if (label_detail != NULL) {
        ap_text_printf(text, "<p>Labels (%s): ", ap_format_verdict(label_check, "passed"));
        ap_text_append_html(text, label_detail);
        ap_text_append(text, ".</p>");
    }
    const json_t *by_label = ap_report_object(comparison, "labels");
    if (json_object_size(by_label) == 0)
        ap_text_append(text, "<p class=\"muted\">No labels were compared.</p>");
    else
        write_comparison_rows(text, by_label);
    ap_text_append(text, "</section>\n");
}

static bool is_known_metric(const char *key)
{
    for (size_t m = 0; m < ap_report_metric_name_count; m++)
        if (strcmp(ap_report_metric_names[m].key, key) == 0)
            return true;
    return false;
}

static void write_metric_row(ap_text *text, const char *title, bool lower_is_better,
                             const json_t *metric)
{
    char value[AP_REPORT_NUMBER_MAX], lower[AP_REPORT_NUMBER_MAX], upper[AP_REPORT_NUMBER_MAX];
    double low = ap_report_number(metric, "lower"), high = ap_report_number(metric, "upper");
    ap_text_append(text, "<tr><td>");
    ap_text_append_html(text, title);
    if (lower_is_better)
        ap_text_append(text, " <span class=\"muted\">(lower is better)</span>");
    ap_text_append(text, "</td>");
    append_cell(text, "num", ap_format_number(ap_report_number(metric, "value"), value));
    if (!isfinite(low) && !isfinite(high)) {
        append_cell(text, "num", "n/a");
    } else {
        ap_text_printf(text, "<td class=\"num\">[%s, %s]</td>", ap_format_number(low, lower),
                       ap_format_number(high, upper));
    }
    append_cell(text, NULL, ap_report_string(metric, "method"));
    ap_text_append(text, "</tr>");
}

/* A table of every metric of format version 1, then any other metric the
 * report carries, under its key. */
static void write_metric_table(ap_text *text, const json_t *metrics, double level)
{
    ap_text_append(text, "<table class=\"metrics\"><thead><tr><th>Metric</th>"
                         "<th class=\"num\">Value</th><th class=\"num\">");
    if (isfinite(level))
        ap_text_printf(text, "%.4g%% interval", level * 100.0);
    else
        ap_text_append(text, "Interval");
    ap_text_append(text, "</th><th>Method</th></tr></thead><tbody>");
    for (size_t m = 0; m < ap_report_metric_name_count; m++) {
        const ap_report_metric_name *name = &ap_report_metric_names[m];
        write_metric_row(text, name->title, name->lower_is_better,
                         ap_report_object(metrics, name->key));
    }
    const char *key;
    json_t *metric;
    json_object_foreach((json_t *)metrics, key, metric)
    {
        if (!is_known_metric(key))
            write_metric_row(text, key, false, json_is_object(metric) ? metric : NULL);
    }
    ap_text_append(text, "</tbody></table>");
}

static void write_macro(ap_text *text, const json_t *report)
{
    const json_t *macro = ap_report_object(ap_report_object(report, "test"), "macro");
    ap_text_append(text, "<section><h2>Macro average over labels</h2>");
    write_metric_table(text, macro, ap_report_number(report, "confidence_level"));
    ap_text_append(text, "</section>\n");
}

static void append_count_cell(ap_text *text, const char *css_class, const json_t *confusion,
                              const char *key)
{
    char count[AP_REPORT_NUMBER_MAX];
    ap_text_printf(text, "<td class=\"%s\">%s</td>", css_class,
                   ap_format_count(confusion, key, count));
}

static void write_confusion(ap_text *text, const json_t *result, double threshold)
{
    const json_t *confusion = ap_report_object(result, "confusion");
    char number[AP_REPORT_NUMBER_MAX];
    ap_text_printf(
        text,
        "<table class=\"confusion\"><caption>Confusion matrix at threshold %s"
        "</caption><tr><th></th><th>Predicted<br>positive</th><th>Predicted<br>negative</th>"
        "</tr><tr><th>Actual<br>positive</th>",
        ap_format_number(threshold, number));
    append_count_cell(text, "hit", confusion, "true_positive");
    append_count_cell(text, "miss", confusion, "false_negative");
    ap_text_append(text, "</tr><tr><th>Actual<br>negative</th>");
    append_count_cell(text, "miss", confusion, "false_positive");
    append_count_cell(text, "hit", confusion, "true_negative");
    ap_text_append(text, "</tr></table>");
}

static void write_label_facts(ap_text *text, const json_t *threshold, const json_t *result)
{
    const json_t *validation = ap_report_object(threshold, "validation");
    const json_t *support = ap_report_object(result, "support");
    const char *policy = ap_report_string(threshold, "policy");
    char numbers[4][AP_REPORT_NUMBER_MAX], counts[3][AP_REPORT_NUMBER_MAX];
    ap_text_printf(text, "<p class=\"facts\">Threshold %s, policy ",
                   ap_format_number(ap_report_number(threshold, "value"), numbers[0]));
    ap_text_append_html(text, policy != NULL ? policy : "n/a");
    ap_text_printf(text, "; on the validation split precision %s, recall %s, F1 %s.",
                   ap_format_number(ap_report_number(validation, "precision"), numbers[1]),
                   ap_format_number(ap_report_number(validation, "recall"), numbers[2]),
                   ap_format_number(ap_report_number(validation, "f1"), numbers[3]));
    if (support != NULL)
        ap_text_printf(text, "<br>Test support: %s positives, %s negatives, %s unknown.",
                       ap_format_count(support, "positives", counts[0]),
                       ap_format_count(support, "negatives", counts[1]),
                       ap_format_count(support, "unknown", counts[2]));
    ap_text_append(text, "</p>");
}

static void write_label(ap_text *text, const json_t *report, const char *label)
{
    const json_t *by_label = ap_report_object(ap_report_object(report, "test"), "labels");
    const json_t *result = ap_report_object(by_label, label);
    const json_t *threshold = ap_report_object(ap_report_object(report, "thresholds"), label);
    ap_text_append(text, "<section class=\"label\"><h2>Label ");
    append_code(text, label);
    ap_text_append(text, "</h2>");
    write_label_facts(text, threshold, result);
    if (result == NULL) {
        ap_text_append(text, "<p class=\"muted\">n/a: no test results for this label.</p>"
                             "</section>\n");
        return;
    }
    ap_text_append(text, "<div class=\"row\">");
    write_metric_table(text, ap_report_object(result, "metrics"),
                       ap_report_number(report, "confidence_level"));
    write_confusion(text, result, ap_report_number(threshold, "value"));
    ap_text_append(text, "</div><div class=\"charts\">");
    ap_svg_roc(text, result, label);
    ap_svg_pr(text, result, label);
    ap_svg_calibration(text, result, label);
    ap_text_append(text, "</div></section>\n");
}

static void write_head(ap_text *text, const json_t *report)
{
    bool passed = ap_report_bool(report, "passed") == 1;
    /* The policy forbids every script and every load, so even a string that
     * slipped past escaping could neither run nor fetch anything. */
    ap_text_printf(text,
                   "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                   "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
                   "style-src 'unsafe-inline'\">"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                   "<title>apiary validation report: %s</title><style>%s</style></head>\n"
                   "<body><main>\n",
                   passed ? "PASSED" : "FAILED", page_style);
}

ap_status ap_report_render_html(const json_t *report, char **out, ap_error *err)
{
    *out = NULL;
    ap_status status = ap_report_check(report, err);
    if (status != AP_OK)
        return status;
    json_t *labels = ap_report_labels(report);
    if (labels == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "validation report: out of memory listing labels");

    ap_text text = {0};
    write_head(&text, report);
    write_banner(&text, report);
    write_summary(&text, report);
    write_rules(&text, report);
    write_data_checks(&text, report);
    write_comparison(&text, report);
    write_macro(&text, report);
    for (size_t i = 0; i < json_array_size(labels); i++)
        write_label(&text, report, json_string_value(json_array_get(labels, i)));
    ap_text_append(&text, "</main></body></html>\n");
    json_decref(labels);

    *out = ap_text_take(&text);
    if (*out == NULL)
        return ap_error_set(err, AP_ERR_NOMEM,
                            "validation report: out of memory while rendering HTML");
    return AP_OK;
}

char *ap_report_html(const json_t *report)
{
    char *html = NULL;
    ap_error err = {0};
    if (ap_report_render_html(report, &html, &err) != AP_OK)
        return NULL;
    return html;
}
