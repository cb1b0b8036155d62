#ifndef APIARY_VALIDATE_REPORT_SVG_H
#define APIARY_VALIDATE_REPORT_SVG_H

/* Inline SVG charts for one label of a validation report. Each chart is a
 * 300 x 300 <svg> element with a unit-square plot, ticks every 0.2 and axis
 * titles; coordinates are rounded to 0.1 px. Colours and fonts come from the
 * page's style sheet through the class names in report_html.c. A chart with
 * no usable points still draws its axes, with "no data" in the middle. */

#include <jansson.h>

#include "pipeline/validate/report_format.h"

/* Draw the ROC curve (true positive rate against false positive rate) from
 * result.curves.roc, with the chance diagonal. result is one entry of
 * test.labels; label names the chart for screen readers. */
void ap_svg_roc(ap_text *text, const json_t *result, const char *label);

/* Draw the precision-recall curve from result.curves.pr, with the
 * precision of a random classifier (the share of positives) as a baseline. */
void ap_svg_pr(ap_text *text, const json_t *result, const char *label);

/* Draw the reliability diagram from result.curves.calibration: one bar per
 * bin up to its fraction of positives, a dot at its mean predicted
 * probability, and the diagonal of perfect calibration. */
void ap_svg_calibration(ap_text *text, const json_t *result, const char *label);

#endif
