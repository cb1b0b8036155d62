/* Markdown and HTML rendering of a validation report, on the example report
 * in tests/fixtures and on small reports built here. */

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/validate/report_render.h"
#include "tests/unit/check.h"

#define FIXTURE_PATH   "tests/fixtures/report_example.json"
#define ODD_LABEL      "cooling <script>alert(\"x\")</script> & fans"
#define ODD_LABEL_HTML "cooling &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; fans"
#define FIXTURE_LABELS 4

/* Like CHECK_STR_CONTAINS, but prints only the needle: a page is too long to print. */
#define CHECK_HAS(text, needle)                                                                    \
    do {                                                                                           \
        const char *check_t = (text), *check_n = (needle);                                         \
        if (check_t == NULL || strstr(check_t, check_n) == NULL) {                                 \
            fprintf(stderr, "%s:%d: %s does not contain \"%s\"\n", __FILE__, __LINE__, #text,      \
                    check_n);                                                                      \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

#define CHECK_LACKS(text, needle)                                                                  \
    do {                                                                                           \
        const char *check_t = (text), *check_n = (needle);                                         \
        if (check_t != NULL && strstr(check_t, check_n) != NULL) {                                 \
            fprintf(stderr, "%s:%d: %s contains \"%s\" at offset %td\n", __FILE__, __LINE__,       \
                    #text, check_n, strstr(check_t, check_n) - check_t);                           \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

static bool starts_with(const char *text, const char *prefix)
{
    return text != NULL && strncmp(text, prefix, strlen(prefix)) == 0;
}

static size_t count_of(const char *text, const char *needle)
{
    size_t count = 0, length = strlen(needle);
    for (const char *at = strstr(text, needle); at != NULL; at = strstr(at + length, needle))
        count++;
    return count;
}

/* The repository root: APIARY_SOURCE_DIR, else derived from this file's path. */
static const char *source_dir(void)
{
    static char dir[4096];
    const char *env = getenv("APIARY_SOURCE_DIR");
    if (env != NULL && env[0] != '\0')
        return env;
    const char *suffix = "/tests/unit/test_report_render.c";
    size_t length = strlen(__FILE__), suffix_length = strlen(suffix);
    if (__FILE__[0] != '/' || length <= suffix_length || length - suffix_length >= sizeof(dir))
        return NULL;
    memcpy(dir, __FILE__, length - suffix_length);
    dir[length - suffix_length] = '\0';
    return dir;
}

static json_t *load_fixture(void)
{
    const char *dir = source_dir();
    if (dir == NULL) {
        fprintf(stderr, "set APIARY_SOURCE_DIR to the repository root\n");
        return NULL;
    }
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, FIXTURE_PATH);
    json_error_t error;
    json_t *report = json_load_file(path, 0, &error);
    if (report == NULL)
        fprintf(stderr, "cannot load %s: %s\n", path, error.text);
    return report;
}

/* The Markdown table row whose first cell is first_cell, up to its newline. */
static char *markdown_row(const char *markdown, const char *first_cell)
{
    char prefix[512];
    if (snprintf(prefix, sizeof(prefix), "\n| %s |", first_cell) >= (int)sizeof(prefix))
        return NULL;
    const char *start = strstr(markdown, prefix);
    if (start == NULL)
        return NULL;
    start++;
    const char *end = strchr(start, '\n');
    size_t length = end != NULL ? (size_t)(end - start) : strlen(start);
    char *row = malloc(length + 1);
    memcpy(row, start, length);
    row[length] = '\0';
    return row;
}

/* The HTML from the first occurrence of start to the next occurrence of end. */
static char *html_slice(const char *html, const char *start, const char *end)
{
    const char *from = strstr(html, start);
    if (from == NULL)
        return NULL;
    const char *to = strstr(from, end);
    size_t length = to != NULL ? (size_t)(to - from) + strlen(end) : strlen(from);
    char *slice = malloc(length + 1);
    memcpy(slice, from, length);
    slice[length] = '\0';
    return slice;
}

static void test_markdown_verdict(const json_t *report)
{
    char *markdown = ap_report_markdown(report);
    CHECK(markdown != NULL);
    if (markdown == NULL)
        return;
    /* Every failure is on the first line. */
    char *first_line = strndup(markdown, strcspn(markdown, "\n"));
    CHECK(starts_with(first_line, "**FAILED**:"));
    CHECK_HAS(first_line, "rule `wasps.recall.lower >= 0.9` (actual 0.453)");
    CHECK_HAS(first_line, "rule `wasps.accuracy.value >= 0.7` (actual 0.661)");
    CHECK_HAS(first_line, "rule `" ODD_LABEL ".recall.value >= 0.5` (actual n/a)");
    CHECK_HAS(first_line, "data check `test_support`");
    CHECK_HAS(first_line, "champion comparison `pollen`");
    CHECK_LACKS(first_line, "varroa");
    free(first_line);
    free(markdown);
}

static void test_markdown_rules(const json_t *report)
{
    char *markdown = ap_report_markdown(report);
    const json_t *rules = json_object_get(report, "rules");
    CHECK(markdown != NULL);
    CHECK_INT_EQ(json_array_size(rules), 7);
    for (size_t i = 0; markdown != NULL && i < json_array_size(rules); i++) {
        const json_t *rule = json_array_get(rules, i);
        char cell[512], actual[64];
        snprintf(cell, sizeof(cell), "`%s`", json_string_value(json_object_get(rule, "rule")));
        char *row = markdown_row(markdown, cell);
        CHECK(row != NULL);
        if (row == NULL) {
            fprintf(stderr, "no rules row for %s\n", cell);
            continue;
        }
        const json_t *value = json_object_get(rule, "actual");
        if (json_is_number(value))
            snprintf(actual, sizeof(actual), "| %.3f |", json_number_value(value));
        else
            snprintf(actual, sizeof(actual), "| n/a |");
        CHECK_HAS(row, actual);
        CHECK_HAS(row, json_is_true(json_object_get(rule, "passed")) ? "| pass |" : "| **fail** |");
        free(row);
    }
    free(markdown);
}

/* Position is inside a code span when an odd number of backticks precede it on its line. */
static bool in_code_span(const char *text, const char *position)
{
    const char *line = position;
    while (line > text && line[-1] != '\n')
        line--;
    size_t ticks = 0;
    for (const char *c = line; c < position; c++)
        ticks += *c == '`';
    return ticks % 2 == 1;
}

/* Each "<script" is in a code span or backslash-escaped, so no renderer parses a tag. */
static void test_markdown_escaping(const json_t *report)
{
    char *markdown = ap_report_markdown(report);
    CHECK(markdown != NULL);
    if (markdown == NULL)
        return;
    size_t raw_tags = 0;
    for (const char *at = strstr(markdown, "<script"); at != NULL; at = strstr(at + 1, "<script"))
        if (!in_code_span(markdown, at) && !(at > markdown && at[-1] == '\\'))
            raw_tags++;
    CHECK_INT_EQ(raw_tags, 0);
    /* In prose (the details) the label is backslash-escaped instead. */
    CHECK_HAS(markdown, "label cooling \\<script>alert(\"x\")\\</script> \\& fans has 0");
    CHECK_HAS(markdown, "| `" ODD_LABEL "` | 0.500 | `fixed` |");
    free(markdown);
}

static void test_markdown_metrics(const json_t *report)
{
    char *markdown = ap_report_markdown(report);
    CHECK(markdown != NULL);
    if (markdown == NULL)
        return;
    CHECK_HAS(markdown, "Value [lower, upper] of the 95% confidence interval.");
    char *accuracy = markdown_row(markdown, "Accuracy");
    CHECK_HAS(accuracy, "| Accuracy | 0.952 [0.867, 0.983] | 0.984 [0.914, 0.997] |");
    char *recall = markdown_row(markdown, "Recall");
    /* The odd label has no positives: its recall is undefined. */
    CHECK_HAS(recall, "| 0.778 [0.453, 0.937] | n/a | 0.926 [0.876, 0.966] |");
    char *ece = markdown_row(markdown, "Expected calibration error (lower is better)");
    CHECK_HAS(ece, "| 0.168 |");
    CHECK_HAS(markdown, "| `wasps` | 9 | 53 | 0 | 7 | 19 | 34 | 2 |");
    CHECK_HAS(markdown, "| `wasps` | 0.380 | `target_recall` | 0.611 | 0.917 | 0.733 |");
    CHECK_HAS(markdown, "| `wasps` | 0.790 | 0.806 | 2 | 1 | < 0.001 | pass |");
    CHECK_HAS(markdown, "| `pollen` | 0.935 | 0.871 | 0 | 4 | 0.031 | **fail** |");
    free(accuracy);
    free(recall);
    free(ece);
    free(markdown);
}

static void test_markdown_code_span(void)
{
    json_t *report = json_pack("{s:b, s:[s]}", "passed", 1, "labels", "a`b|c");
    char *markdown = ap_report_markdown(report);
    CHECK(markdown != NULL);
    CHECK(starts_with(markdown, "**PASSED**: 0 of 0 rules passed"));
    /* A two-backtick fence around a single backtick, and an escaped cell break. */
    CHECK_HAS(markdown, "| ``a`b\\|c`` |");
    free(markdown);
    json_decref(report);
}

static void test_html_verdict(const json_t *report)
{
    char *html = ap_report_html(report);
    CHECK(html != NULL);
    CHECK(starts_with(html, "<!DOCTYPE html>"));
    CHECK_HAS(html, "<header class=\"verdict fail\"><h1>FAILED</h1>");
    CHECK_HAS(html, "4 of 7 rules passed");
    CHECK_HAS(html, "<li>rule <code>wasps.recall.lower &gt;= 0.9</code>: actual 0.453</li>");
    CHECK_HAS(html, "<li>rule <code>" ODD_LABEL_HTML ".recall.value &gt;= 0.5</code>: actual "
                    "n/a</li>");
    CHECK_HAS(html, "<li>data check <code>test_support</code></li>");
    free(html);
}

static void test_html_rule_rows(const json_t *report)
{
    char *html = ap_report_html(report);
    CHECK(html != NULL);
    const char *expected[][3] = {
        {"varroa.recall.lower &gt;= 0.5", "0.845", "pass"},
        {"pollen.precision.value &gt;= 0.8", "0.968", "pass"},
        {"wasps.recall.lower &gt;= 0.9", "0.453", "fail"},
        {"wasps.accuracy.value &gt;= 0.7", "0.661", "fail"},
        {"macro.f1.value &gt;= 0.6", "0.772", "pass"},
        {"macro.brier.upper &lt;= 0.25", "0.107", "pass"},
        {ODD_LABEL_HTML ".recall.value &gt;= 0.5", "n/a", "fail"},
    };
    for (size_t i = 0; html != NULL && i < sizeof(expected) / sizeof(expected[0]); i++) {
        char start[512], actual[128], badge[128];
        snprintf(start, sizeof(start), "<td><code>%s</code></td>", expected[i][0]);
        char *row = html_slice(html, start, "</tr>");
        CHECK(row != NULL);
        if (row == NULL) {
            fprintf(stderr, "no rules row for %s\n", expected[i][0]);
            continue;
        }
        snprintf(actual, sizeof(actual), "<td class=\"num\">%s</td>", expected[i][1]);
        snprintf(badge, sizeof(badge), "<span class=\"badge %s\">%s</span>", expected[i][2],
                 expected[i][2]);
        CHECK_HAS(row, actual);
        CHECK_HAS(row, badge);
        free(row);
    }
    CHECK_INT_EQ(count_of(html, "<tr class=\"fail\">"), 3 + 1 + 1);
    free(html);
}

static void test_html_escaping(const json_t *report)
{
    char *html = ap_report_html(report);
    CHECK(html != NULL);
    if (html == NULL)
        return;
    CHECK_LACKS(html, "<script");
    CHECK_LACKS(html, "</script");
    CHECK_LACKS(html, " & fans");
    CHECK_LACKS(html, "runs/local & <nightly>");
    CHECK_HAS(html, "<h2>Label <code>" ODD_LABEL_HTML "</code></h2>");
    CHECK_HAS(html, "aria-label=\"ROC curve for label " ODD_LABEL_HTML "\"");
    CHECK_HAS(html, "<code>runs/local &amp; &lt;nightly&gt;</code>");
    free(html);
}

static void test_html_null_metrics(const json_t *report)
{
    char *html = ap_report_html(report);
    char *section = html_slice(html, "<h2>Label <code>" ODD_LABEL_HTML, "</section>");
    CHECK(section != NULL);
    CHECK_HAS(section, "<tr><td>Recall</td><td class=\"num\">n/a</td><td class=\"num\">n/a</td>");
    CHECK_HAS(section, "<tr><td>ROC AUC</td><td class=\"num\">n/a</td>");
    CHECK_HAS(section, "precision n/a, recall n/a, F1 n/a");
    CHECK_HAS(section, "ROC curve (AUC n/a)");
    /* Without curves, each of the three charts shows "no data". */
    CHECK_INT_EQ(section != NULL ? count_of(section, ">no data</text>") : 0, 3);
    CHECK_INT_EQ(count_of(html, ">no data</text>"), 3);
    free(section);
    free(html);
}

static void test_html_self_contained(const json_t *report)
{
    char *html = ap_report_html(report);
    CHECK(html != NULL);
    const char *forbidden[] = {"http://", "https://", "src=",    "href=",   "url(",  "@import",
                               "<link",   "<img",     "<iframe", "<object", "<embed"};
    for (size_t i = 0; i < sizeof(forbidden) / sizeof(forbidden[0]); i++)
        CHECK_LACKS(html, forbidden[i]);
    /* The only "http" is the http-equiv attribute of the content security policy. */
    CHECK_INT_EQ(html != NULL ? count_of(html, "http") : 0, 1);
    CHECK_HAS(html, "http-equiv=\"Content-Security-Policy\" content=\"default-src 'none';");
    free(html);
}

static void test_html_structure(const json_t *report)
{
    char *html = ap_report_html(report);
    CHECK(html != NULL);
    if (html == NULL)
        return;
    const char *pairs[][2] = {{"<svg", "</svg>"},         {"<table", "</table>"},
                              {"<section", "</section>"}, {"<tr", "</tr>"},
                              {"<td", "</td>"},           {"<text", "</text>"}};
    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        size_t opened = count_of(html, pairs[i][0]), closed = count_of(html, pairs[i][1]);
        if (opened != closed)
            fprintf(stderr, "%s opened %zu times, %s closed %zu times\n", pairs[i][0], opened,
                    pairs[i][1], closed);
        CHECK_INT_EQ(opened, closed);
    }
    CHECK_INT_EQ(count_of(html, "<svg"), 3 * FIXTURE_LABELS);
    CHECK_INT_EQ(count_of(html, "<section class=\"label\">"), FIXTURE_LABELS);
    CHECK_INT_EQ(count_of(html, "<table class=\"confusion\">"), FIXTURE_LABELS);
    CHECK_HAS(html, "</main></body></html>\n");
    free(html);
}

static void test_html_charts_per_label(const json_t *report)
{
    char *html = ap_report_html(report);
    const char *labels[] = {"varroa", "pollen", "wasps"};
    for (size_t i = 0; html != NULL && i < 3; i++) {
        char start[128];
        snprintf(start, sizeof(start), "<h2>Label <code>%s</code>", labels[i]);
        char *section = html_slice(html, start, "</section>");
        CHECK(section != NULL);
        if (section == NULL)
            continue;
        CHECK_INT_EQ(count_of(section, "<svg"), 3);
        CHECK_INT_EQ(count_of(section, "<polyline class=\"curve\""), 2);
        CHECK_INT_EQ(count_of(section, "<line class=\"diagonal\""), 2);
        CHECK_INT_EQ(count_of(section, "<line class=\"baseline\""), 1);
        CHECK(count_of(section, "<rect class=\"bar\"") >= 2);
        CHECK_INT_EQ(count_of(section, "<rect class=\"bar\""), count_of(section, "class=\"dot\""));
        CHECK_INT_EQ(count_of(section, "False positive rate"), 1);
        CHECK_INT_EQ(count_of(section, "Mean predicted probability"), 1);
        free(section);
    }
    CHECK_HAS(html, "ROC curve (AUC 0.994)");
    CHECK_HAS(html, "Precision-recall (AP 0.990)");
    CHECK_HAS(html, "Calibration (ECE 0.168)");
    free(html);
}

/* Every number inside points="..." has at most one decimal and lies in the chart. */
static void test_svg_coordinates(const json_t *report)
{
    char *html = ap_report_html(report);
    size_t numbers = 0, too_precise = 0, outside = 0;
    for (const char *at = html ? strstr(html, "points=\"") : NULL; at != NULL;
         at = strstr(at, "points=\"")) {
        at += strlen("points=\"");
        while (*at != '"' && *at != '\0') {
            char *end;
            double value = strtod(at, &end);
            const char *dot = memchr(at, '.', (size_t)(end - at));
            numbers++;
            too_precise += dot != NULL && end - dot > 2;
            outside += value < 0.0 || value > 300.0;
            at = end;
            while (*at == ',' || *at == ' ')
                at++;
        }
    }
    CHECK(numbers > 100);
    CHECK_INT_EQ(too_precise, 0);
    CHECK_INT_EQ(outside, 0);
    free(html);
}

/* A staircase of 1001 ROC points collapses to its three corners. */
static void test_svg_step_curve(void)
{
    json_t *roc = json_array();
    for (int k = 0; k <= 500; k++)
        json_array_append_new(roc, json_pack("[f, f]", 0.0, k / 500.0));
    for (int k = 1; k <= 500; k++)
        json_array_append_new(roc, json_pack("[f, f]", k / 500.0, 1.0));
    json_t *report = json_pack("{s:b, s:[s], s:{s:{s:{s:{s:o}}}}}", "passed", 1, "labels", "bee",
                               "test", "labels", "bee", "curves", "roc", roc);
    char *html = ap_report_html(report);
    CHECK(html != NULL);
    CHECK_HAS(html, "<polyline class=\"curve\" points=\"52,264 52,34 282,34\"/>");
    CHECK_HAS(html, "<polygon class=\"area\" points=\"52,264 52,34 282,34 282,264 52,264\"/>");
    CHECK_INT_EQ(html != NULL ? count_of(html, ">no data</text>") : 0, 2);
    free(html);
    json_decref(report);
}

static void test_svg_calibration_bins(void)
{
    json_t *bins = json_pack(
        "[{s:f, s:f, s:i, s:f, s:f}, {s:f, s:f, s:i, s:n, s:n}, {s:f, s:f, s:i, s:f, s:f}]",
        "lower", 0.0, "upper", 0.5, "count", 10, "mean_predicted", 0.25, "fraction_positive", 0.2,
        "lower", 0.5, "upper", 0.75, "count", 0, "mean_predicted", "fraction_positive", "lower",
        0.75, "upper", 1.0, "count", 5, "mean_predicted", 0.9, "fraction_positive", 1.0);
    json_t *report = json_pack("{s:b, s:[s], s:{s:{s:{s:{s:o}}}}}", "passed", 1, "labels", "bee",
                               "test", "labels", "bee", "curves", "calibration", bins);
    char *html = ap_report_html(report);
    char *chart = html_slice(html, "aria-label=\"Calibration diagram", "</svg>");
    CHECK(chart != NULL);
    CHECK_INT_EQ(chart != NULL ? count_of(chart, "<rect class=\"bar\"") : 0, 2);
    CHECK_INT_EQ(chart != NULL ? count_of(chart, "<circle class=\"dot\"") : 0, 2);
    CHECK_LACKS(chart, "no data");
    /* Bin [0, 0.5] up to 0.2: x from 52 + 1 px to 167 - 1 px, top at 264 - 0.2 * 230. */
    CHECK_HAS(chart, "<rect class=\"bar\" x=\"53\" y=\"218\" width=\"113\" height=\"46\">");
    CHECK_HAS(chart, "<title>0.000 to 0.500: 10 images, fraction positive 0.200, mean predicted "
                     "0.250</title>");
    CHECK_HAS(chart, "<circle class=\"dot\" r=\"3.5\" cx=\"109.5\" cy=\"218\"/>");
    free(chart);
    free(html);
    json_decref(report);
}

static void test_comparison_missing(const json_t *fixture)
{
    json_t *report = json_deep_copy(fixture);
    json_object_del(report, "comparison");
    char *markdown = ap_report_markdown(report), *html = ap_report_html(report);
    CHECK_HAS(markdown, "## Champion comparison\n\nn/a: no champion comparison in this report.");
    CHECK_HAS(html, "n/a: no champion comparison in this report.");
    CHECK_LACKS(markdown, "champion comparison `pollen`");
    free(markdown);
    free(html);

    json_object_set_new(report, "comparison",
                        json_pack("{s:b, s:s}", "skipped", 1, "reason", "no champion yet"));
    markdown = ap_report_markdown(report);
    html = ap_report_html(report);
    CHECK_HAS(markdown, "Skipped: no champion yet.");
    CHECK_HAS(html, "Skipped: no champion yet.");
    free(markdown);
    free(html);
    json_decref(report);
}

static void test_missing_champion_labels(const json_t *fixture)
{
    json_t *report = json_deep_copy(fixture);
    json_t *comparison = json_object_get(report, "comparison");
    json_object_set_new(comparison, "label_check",
                        json_pack("{s:b, s:[s, s], s:[], s:s}", "passed", 0, "missing_labels",
                                  "hornet", "asian_hornet", "added_labels", "detail",
                                  "this model lacks labels hornet, asian_hornet"));
    char *markdown = ap_report_markdown(report), *html = ap_report_html(report);
    char *first_line = markdown != NULL ? strndup(markdown, strcspn(markdown, "\n")) : NULL;
    CHECK_HAS(first_line, "missing champion label `hornet`");
    CHECK_HAS(first_line, "missing champion label `asian_hornet`");
    CHECK_HAS(markdown, "Labels (fail): this model lacks labels hornet, asian\\_hornet.");
    CHECK_HAS(html, "<li>missing champion label ");
    CHECK_HAS(html, "<p>Labels (fail): this model lacks labels hornet, asian_hornet.</p>");
    free(first_line);
    free(markdown);
    free(html);
    json_decref(report);
}

static void test_minimal_report(void)
{
    json_t *report = json_pack("{s:b}", "passed", 1);
    char *markdown = ap_report_markdown(report), *html = ap_report_html(report);
    CHECK(starts_with(markdown, "**PASSED**: 0 of 0 rules passed"));
    CHECK_HAS(markdown, "No rules in this report.");
    CHECK_HAS(markdown, "- Model sha256: n/a");
    CHECK_HAS(html, "<header class=\"verdict pass\"><h1>PASSED</h1>");
    CHECK_INT_EQ(html != NULL ? count_of(html, "<svg") : 1, 0);
    free(markdown);
    free(html);
    json_decref(report);
}

/* A label listed without test results gets a section with "no test results". */
static void test_label_without_results(void)
{
    json_t *report = json_pack("{s:b, s:[s]}", "passed", 0, "labels", "drone");
    char *html = ap_report_html(report);
    CHECK_HAS(html, "<h2>Label <code>drone</code></h2>");
    CHECK_HAS(html, "n/a: no test results for this label.");
    CHECK_HAS(html, "<li>the report names no failed rule or check</li>");
    free(html);
    json_decref(report);
}

static void check_rejected(json_t *report, const char *message_part)
{
    char *out = (char *)"unchanged";
    ap_error err = {0};
    ap_status status = ap_report_render_html(report, &out, &err);
    CHECK_INT_EQ(status, AP_ERR_FORMAT);
    CHECK(out == NULL);
    CHECK_STR_CONTAINS(err.message, message_part);
    CHECK(ap_report_markdown(report) == NULL);
    json_decref(report);
}

static void test_invalid_reports(void)
{
    check_rejected(json_pack("[i]", 1), "not a JSON object");
    check_rejected(json_pack("{s:s}", "format", "apiary-validation-report"), "\"passed\"");
    check_rejected(json_pack("{s:b, s:i}", "passed", 1, "format_version", 2), "format_version");
    check_rejected(json_pack("{s:b, s:s}", "passed", 1, "format", "something-else"), "format");
    check_rejected(json_pack("{s:b, s:[i]}", "passed", 1, "labels", 3), "labels[0]");
}

int main(void)
{
    json_t *report = load_fixture();
    CHECK(report != NULL);
    if (report == NULL)
        return check_finish();
    test_markdown_verdict(report);
    test_markdown_rules(report);
    test_markdown_escaping(report);
    test_markdown_metrics(report);
    test_markdown_code_span();
    test_html_verdict(report);
    test_html_rule_rows(report);
    test_html_escaping(report);
    test_html_null_metrics(report);
    test_html_self_contained(report);
    test_html_structure(report);
    test_html_charts_per_label(report);
    test_svg_coordinates(report);
    test_svg_step_curve();
    test_svg_calibration_bins();
    test_comparison_missing(report);
    test_missing_champion_labels(report);
    test_minimal_report();
    test_label_without_results();
    test_invalid_reports();
    json_decref(report);
    return check_finish();
}
