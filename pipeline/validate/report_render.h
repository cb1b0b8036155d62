#ifndef APIARY_VALIDATE_REPORT_RENDER_H
#define APIARY_VALIDATE_REPORT_RENDER_H

/* Renders a validation report (the report.json that `apiary validate` writes,
 * format "apiary-validation-report", version 1) for people: Markdown for pull
 * requests and CI logs, and one self-contained HTML page with inline CSS and
 * inline SVG charts (ROC, precision-recall and calibration per label).
 *
 * The report must be a JSON object with a boolean "passed" and, when present,
 * "format" "apiary-validation-report", "format_version" 1 and "labels" as an
 * array of strings. Every other part is optional: a missing or null number
 * renders as "n/a", a missing comparison as "no champion", a label without
 * curves as an empty chart. Parts of the wrong JSON type render as missing.
 * Every string taken from the report is escaped for the output format. */

#include <jansson.h>

#include "pipeline/common/status.h"

/* Render report as GitHub-flavoured Markdown into a malloc'd string at *out.
 * The first line is the verdict: PASSED or FAILED with the failed rules and
 * their actual values. */
ap_status ap_report_render_markdown(const json_t *report, char **out, ap_error *err);

/* Render report as one HTML page into a malloc'd string at *out. The page
 * loads nothing: no scripts, fonts, images or style sheets. */
ap_status ap_report_render_html(const json_t *report, char **out, ap_error *err);

/* The same renderers for callers that need no error message: they return a
 * malloc'd string, or NULL when the report is invalid or memory ran out. */
char *ap_report_markdown(const json_t *report);
char *ap_report_html(const json_t *report);

#endif
