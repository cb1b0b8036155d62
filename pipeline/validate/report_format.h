#ifndef APIARY_VALIDATE_REPORT_FORMAT_H
#define APIARY_VALIDATE_REPORT_FORMAT_H

/* Helpers shared by the Markdown and HTML report renderers: a growing text
 * buffer with escaping, typed look-ups into the report JSON that treat a
 * wrong type as missing, and number formatting with "n/a" for missing or
 * non-finite values. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "pipeline/common/status.h"

/* A malloc'd, NUL-terminated text that grows as it is appended to. After an
 * allocation failure out_of_memory is set and later appends do nothing, so a
 * renderer checks once at the end. */
typedef struct {
    char *data;
    size_t length;
    size_t capacity;
    bool out_of_memory;
} ap_text;

void ap_text_append(ap_text *text, const char *string);
void ap_text_printf(ap_text *text, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* Append string with & < > " ' as character references and control
 * characters other than tab and newline as spaces. */
void ap_text_append_html(ap_text *text, const char *string);
/* Append string so that Markdown shows it literally, also inside a table
 * cell: punctuation that starts markup, inline HTML or a cell break gets a
 * backslash, and line breaks become spaces. string must not start a line,
 * since a leading '#', '>' or '-' is left as it is. */
void ap_text_append_markdown(ap_text *text, const char *string);
/* Append string as a Markdown code span, which shows it literally in a
 * monospace font. A '|' gets a backslash so that a table cell stays whole. */
void ap_text_append_markdown_code(ap_text *text, const char *string);
/* Hand over the text (the caller frees it), or free it and return NULL after
 * an allocation failure. */
char *ap_text_take(ap_text *text);

/* Digits after the decimal point for every metric, limit and probability. */
#define AP_REPORT_DECIMALS 3
/* Enough for any formatted number, or for a value with its interval. */
#define AP_REPORT_NUMBER_MAX 96

/* A metric key of the report and how the page names it. */
typedef struct {
    const char *key;
    const char *title;
    bool lower_is_better;
} ap_report_metric_name;

/* The metrics of format version 1, in display order. */
extern const ap_report_metric_name ap_report_metric_names[];
extern const size_t ap_report_metric_name_count;

/* Check what the renderers rely on: a JSON object with a boolean "passed"
 * and, when present, the expected format, version and a labels array of
 * strings. */
ap_status ap_report_check(const json_t *report, ap_error *err);

/* The labels in report order: "labels" when present, else the keys of
 * test.labels. Returns a new reference, or NULL when memory ran out. */
json_t *ap_report_labels(const json_t *report);

/* Typed member look-ups. Each returns NULL (or NAN) when the member is
 * missing, null or of another type. */
const json_t *ap_report_object(const json_t *parent, const char *key);
const json_t *ap_report_array(const json_t *parent, const char *key);
const char *ap_report_string(const json_t *parent, const char *key);
double ap_report_number(const json_t *parent, const char *key);
/* 1 for true, 0 for false, -1 when missing or not a boolean. */
int ap_report_bool(const json_t *parent, const char *key);

/* The entry of the rules array whose "rule" text equals rule, or NULL. */
const json_t *ap_report_find_rule(const json_t *report, const char *rule);

/* Called once per reason for a failed verdict: kind is "rule", "data check",
 * "missing champion label" or "champion comparison", subject the rule text,
 * check name or label, and actual the rule's formatted actual value (NULL
 * for the other kinds). */
typedef void (*ap_report_failure_visitor)(void *context, const char *kind, const char *subject,
                                          const char *actual);

/* Visit the failed rules ("failed_rules", or the rules marked failed when
 * that list is missing), then the failed data checks, then the champion
 * labels this model lacks, then the labels that failed the champion
 * comparison. Returns how many were visited. */
size_t ap_report_visit_failures(const json_t *report, ap_report_failure_visitor visit,
                                void *context);

/* Callback for one fact of the report summary. name is the display name, and
 * value the formatted value, or NULL when the report lacks it. as_code marks
 * an identifier (a hash, a path) that belongs in a fixed-width font. */
typedef void (*ap_report_fact_visitor)(void *context, const char *name, const char *value,
                                       bool as_code);

/* Visit the summary facts (model and card hashes, run folder, creation time,
 * versions, test images, confidence level) in display order. */
void ap_report_visit_summary(const json_t *report, ap_report_fact_visitor visit, void *context);

/* value with AP_REPORT_DECIMALS digits, or "n/a" when it is not finite. */
const char *ap_format_number(double value, char buffer[AP_REPORT_NUMBER_MAX]);
/* An integer member such as a count, or "n/a". */
const char *ap_format_count(const json_t *parent, const char *key,
                            char buffer[AP_REPORT_NUMBER_MAX]);
/* A p-value, with "< 0.001" below what the fixed precision can show. */
const char *ap_format_p_value(double value, char buffer[AP_REPORT_NUMBER_MAX]);
/* A metric object as "0.953 [0.910, 0.980]", just the value when the
 * interval is missing, or "n/a" when the value is. */
const char *ap_format_metric(const json_t *metric, char buffer[AP_REPORT_NUMBER_MAX]);
/* "pass", "fail" or "n/a" for the boolean member key. */
const char *ap_format_verdict(const json_t *parent, const char *key);

#endif
