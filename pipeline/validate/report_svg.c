#include "pipeline/validate/report_svg.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

/* Chart geometry in SVG user units (px): a square plot inside a square
 * chart, with room on the left and below for tick labels and axis titles. */
#define CHART_SIZE  300
#define PLOT_LEFT   52.0
#define PLOT_TOP    34.0
#define PLOT_SIZE   230.0
#define PLOT_RIGHT  (PLOT_LEFT + PLOT_SIZE)
#define PLOT_BOTTOM (PLOT_TOP + PLOT_SIZE)
#define TICK_COUNT  6 /* 0, 0.2, ..., 1 */

/* A point in tenths of a pixel, so that equal rounded points compare equal. */
typedef struct {
    long x;
    long y;
} chart_point;

typedef struct {
    chart_point *points;
    size_t count;
    size_t capacity;
    bool merge_runs; /* merge horizontal and vertical runs: for step curves, not for dots */
    bool out_of_memory;
} point_list;

static double clamp_unit(double value)
{
    if (value < 0.0)
        return 0.0;
    if (value > 1.0)
        return 1.0;
    return value;
}

static long tenths_x(double x)
{
    return lround((PLOT_LEFT + clamp_unit(x) * PLOT_SIZE) * 10.0);
}

static long tenths_y(double y)
{
    return lround((PLOT_TOP + (1.0 - clamp_unit(y)) * PLOT_SIZE) * 10.0);
}

/* Append a non-negative length in tenths of a pixel, without a trailing ".0". */
static void append_tenths(ap_text *text, long tenths)
{
    if (tenths % 10 == 0)
        ap_text_printf(text, "%ld", tenths / 10);
    else
        ap_text_printf(text, "%ld.%ld", tenths / 10, tenths % 10);
}

static bool is_between(long a, long b, long c)
{
    return (a <= b && b <= c) || (a >= b && b >= c);
}

/* Add a data point, clamped to [0, 1] x [0, 1]. A point that rounds onto the
 * last one is dropped. With merge_runs, one that continues a horizontal or
 * vertical run replaces the run's end, so that step curves with a point per
 * threshold stay small. */
static void add_point(point_list *list, double x, double y)
{
    chart_point point = {tenths_x(x), tenths_y(y)};
    if (list->out_of_memory)
        return;
    if (list->count > 0) {
        chart_point last = list->points[list->count - 1];
        if (last.x == point.x && last.y == point.y)
            return;
    }
    if (list->merge_runs && list->count >= 2) {
        chart_point a = list->points[list->count - 2], b = list->points[list->count - 1];
        bool vertical = a.x == b.x && b.x == point.x && is_between(a.y, b.y, point.y);
        bool horizontal = a.y == b.y && b.y == point.y && is_between(a.x, b.x, point.x);
        if (vertical || horizontal) {
            list->points[list->count - 1] = point;
            return;
        }
    }
    if (list->count == list->capacity) {
        size_t capacity = list->capacity > 0 ? list->capacity * 2 : 64;
        chart_point *points = realloc(list->points, capacity * sizeof(*points));
        if (points == NULL) {
            list->out_of_memory = true;
            return;
        }
        list->points = points;
        list->capacity = capacity;
    }
    list->points[list->count++] = point;
}

/* Collect the [x, y] pairs of a curve array, skipping malformed entries. */
static void read_pairs(point_list *list, const json_t *curve)
{
    for (size_t i = 0; i < json_array_size(curve); i++) {
        const json_t *pair = json_array_get(curve, i);
        const json_t *x = json_array_get(pair, 0), *y = json_array_get(pair, 1);
        if (!json_is_number(x) || !json_is_number(y))
            continue;
        if (!isfinite(json_number_value(x)) || !isfinite(json_number_value(y)))
            continue;
        add_point(list, json_number_value(x), json_number_value(y));
    }
}

static void append_points(ap_text *text, const point_list *list)
{
    for (size_t i = 0; i < list->count; i++) {
        if (i > 0)
            ap_text_append(text, " ");
        append_tenths(text, list->points[i].x);
        ap_text_append(text, ",");
        append_tenths(text, list->points[i].y);
    }
}

static void draw_polyline(ap_text *text, const point_list *list, const char *css_class)
{
    ap_text_printf(text, "<polyline class=\"%s\" points=\"", css_class);
    append_points(text, list);
    ap_text_append(text, "\"/>");
}

/* Shade the area between the curve and the x axis. */
static void draw_area(ap_text *text, const point_list *list)
{
    long bottom = tenths_y(0.0);
    ap_text_append(text, "<polygon class=\"area\" points=\"");
    append_points(text, list);
    ap_text_append(text, " ");
    append_tenths(text, list->points[list->count - 1].x);
    ap_text_append(text, ",");
    append_tenths(text, bottom);
    ap_text_append(text, " ");
    append_tenths(text, list->points[0].x);
    ap_text_append(text, ",");
    append_tenths(text, bottom);
    ap_text_append(text, "\"/>");
}

static void draw_grid(ap_text *text)
{
    ap_text_append(text, "<path class=\"grid\" d=\"");
    for (int i = 1; i < TICK_COUNT - 1; i++) {
        double at = (double)i / (TICK_COUNT - 1);
        ap_text_append(text, "M");
        append_tenths(text, tenths_x(at));
        ap_text_printf(text, " %.0fV%.0fM%.0f ", PLOT_TOP, PLOT_BOTTOM, PLOT_LEFT);
        append_tenths(text, tenths_y(at));
        ap_text_printf(text, "H%.0f", PLOT_RIGHT);
    }
    ap_text_append(text, "\"/><path class=\"axis\" d=\"");
    for (int i = 0; i < TICK_COUNT; i++) {
        double at = (double)i / (TICK_COUNT - 1);
        ap_text_append(text, "M");
        append_tenths(text, tenths_x(at));
        ap_text_printf(text, " %.0fv5M%.0f ", PLOT_BOTTOM, PLOT_LEFT - 5.0);
        append_tenths(text, tenths_y(at));
        ap_text_append(text, "h5");
    }
    ap_text_append(text, "\"/>");
}

static void draw_tick_labels(ap_text *text)
{
    for (int i = 0; i < TICK_COUNT; i++) {
        double at = (double)i / (TICK_COUNT - 1);
        ap_text_append(text, "<text x=\"");
        append_tenths(text, tenths_x(at));
        ap_text_printf(text, "\" y=\"%.0f\" text-anchor=\"middle\">%.3g</text>", PLOT_BOTTOM + 18.0,
                       at);
        ap_text_printf(text, "<text x=\"%.0f\" y=\"", PLOT_LEFT - 8.0);
        append_tenths(text, tenths_y(at) + 40);
        ap_text_printf(text, "\" text-anchor=\"end\">%.3g</text>", at);
    }
}

/* Open the <svg> element and draw the title, grid, ticks and axis titles. */
static void begin_chart(ap_text *text, const char *kind, const char *label, const char *title,
                        const char *x_title, const char *y_title)
{
    ap_text_printf(text,
                   "<svg class=\"chart\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" "
                   "role=\"img\" aria-label=\"%s for label ",
                   CHART_SIZE, CHART_SIZE, CHART_SIZE, CHART_SIZE, kind);
    ap_text_append_html(text, label);
    ap_text_printf(text, "\"><text class=\"title\" x=\"%.0f\" y=\"20\">", PLOT_LEFT);
    ap_text_append_html(text, title);
    ap_text_append(text, "</text>");
    draw_grid(text);
    draw_tick_labels(text);
    ap_text_printf(text, "<text class=\"axis-title\" x=\"%.0f\" y=\"%d\" text-anchor=\"middle\">",
                   PLOT_LEFT + PLOT_SIZE / 2.0, CHART_SIZE - 4);
    ap_text_append_html(text, x_title);
    ap_text_printf(text,
                   "</text><text class=\"axis-title\" transform=\"translate(14 %.0f) rotate(-90)\" "
                   "text-anchor=\"middle\">",
                   PLOT_TOP + PLOT_SIZE / 2.0);
    ap_text_append_html(text, y_title);
    ap_text_append(text, "</text>");
}

static void draw_diagonal(ap_text *text)
{
    ap_text_printf(text,
                   "<line class=\"diagonal\" x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\"/>",
                   PLOT_LEFT, PLOT_BOTTOM, PLOT_RIGHT, PLOT_TOP);
}

static void draw_no_data(ap_text *text)
{
    ap_text_printf(
        text, "<text class=\"empty\" x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">no data</text>",
        PLOT_LEFT + PLOT_SIZE / 2.0, PLOT_TOP + PLOT_SIZE / 2.0);
}

/* Draw the plot frame on top of everything and close the <svg> element. */
static void end_chart(ap_text *text, const point_list *list)
{
    ap_text_printf(text,
                   "<rect class=\"frame\" x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"%.0f\"/>"
                   "</svg>\n",
                   PLOT_LEFT, PLOT_TOP, PLOT_SIZE, PLOT_SIZE);
    if (list->out_of_memory)
        text->out_of_memory = true;
    free(list->points);
}

/* "name value" with the metric from result.metrics, or "name n/a". */
static void format_title(char *title, size_t size, const char *chart, const char *metric_name,
                         const json_t *result, const char *metric_key)
{
    const json_t *metric = ap_report_object(ap_report_object(result, "metrics"), metric_key);
    char number[AP_REPORT_NUMBER_MAX];
    snprintf(title, size, "%s (%s %s)", chart, metric_name,
             ap_format_number(ap_report_number(metric, "value"), number));
}

static const json_t *curve_of(const json_t *result, const char *name)
{
    return ap_report_array(ap_report_object(result, "curves"), name);
}

void ap_svg_roc(ap_text *text, const json_t *result, const char *label)
{
    char title[128];
    point_list list = {.merge_runs = true};
    format_title(title, sizeof(title), "ROC curve", "AUC", result, "roc_auc");
    begin_chart(text, "ROC curve", label, title, "False positive rate", "True positive rate");
    draw_diagonal(text);
    read_pairs(&list, curve_of(result, "roc"));
    if (list.count >= 2) {
        draw_area(text, &list);
        draw_polyline(text, &list, "curve");
    } else {
        draw_no_data(text);
    }
    end_chart(text, &list);
}

/* The precision of a classifier that predicts positive at random. */
static void draw_pr_baseline(ap_text *text, const json_t *result)
{
    const json_t *support = ap_report_object(result, "support");
    double positives = ap_report_number(support, "positives");
    double negatives = ap_report_number(support, "negatives");
    if (!(positives + negatives > 0.0))
        return;
    double share = positives / (positives + negatives);
    long y = tenths_y(share);
    char number[AP_REPORT_NUMBER_MAX];
    ap_text_printf(text, "<line class=\"baseline\" x1=\"%.0f\" x2=\"%.0f\" y1=\"", PLOT_LEFT,
                   PLOT_RIGHT);
    append_tenths(text, y);
    ap_text_append(text, "\" y2=\"");
    append_tenths(text, y);
    /* Put the note below the line unless the line sits at the bottom. */
    ap_text_printf(text, "\"/><text class=\"note\" x=\"%.0f\" y=\"", PLOT_RIGHT - 4.0);
    append_tenths(text, share > 0.1 ? y + 130 : y - 50);
    ap_text_printf(text, "\" text-anchor=\"end\">random %s</text>",
                   ap_format_number(share, number));
}

void ap_svg_pr(ap_text *text, const json_t *result, const char *label)
{
    char title[128];
    point_list list = {.merge_runs = true};
    format_title(title, sizeof(title), "Precision-recall", "AP", result, "pr_auc");
    begin_chart(text, "Precision-recall curve", label, title, "Recall", "Precision");
    read_pairs(&list, curve_of(result, "pr"));
    if (list.count >= 2) {
        draw_pr_baseline(text, result);
        draw_area(text, &list);
        draw_polyline(text, &list, "curve");
    } else {
        draw_no_data(text);
    }
    end_chart(text, &list);
}

/* Draw one bin's bar with a tooltip. Returns false for a bin with nothing to show. */
static bool draw_bin(ap_text *text, const json_t *bin)
{
    double lower = ap_report_number(bin, "lower"), upper = ap_report_number(bin, "upper");
    double fraction = ap_report_number(bin, "fraction_positive");
    char count[AP_REPORT_NUMBER_MAX], numbers[4][AP_REPORT_NUMBER_MAX];
    if (!isfinite(lower) || !isfinite(upper) || !isfinite(fraction) || !(upper > lower))
        return false;
    long left = tenths_x(lower) + 10, right = tenths_x(upper) - 10;
    if (right <= left)
        right = left + 1;
    ap_text_append(text, "<rect class=\"bar\" x=\"");
    append_tenths(text, left);
    ap_text_append(text, "\" y=\"");
    append_tenths(text, tenths_y(fraction));
    ap_text_append(text, "\" width=\"");
    append_tenths(text, right - left);
    ap_text_append(text, "\" height=\"");
    append_tenths(text, tenths_y(0.0) - tenths_y(fraction));
    ap_text_printf(text,
                   "\"><title>%s to %s: %s images, fraction positive %s, mean predicted %s</title>"
                   "</rect>",
                   ap_format_number(lower, numbers[0]), ap_format_number(upper, numbers[1]),
                   ap_format_count(bin, "count", count), ap_format_number(fraction, numbers[2]),
                   ap_format_number(ap_report_number(bin, "mean_predicted"), numbers[3]));
    return true;
}

void ap_svg_calibration(ap_text *text, const json_t *result, const char *label)
{
    char title[128];
    point_list list = {0};
    const json_t *bins = curve_of(result, "calibration");
    size_t drawn = 0;
    format_title(title, sizeof(title), "Calibration", "ECE", result, "ece");
    begin_chart(text, "Calibration diagram", label, title, "Mean predicted probability",
                "Fraction positive");
    draw_diagonal(text);
    for (size_t i = 0; i < json_array_size(bins); i++) {
        const json_t *bin = json_array_get(bins, i);
        if (ap_report_number(bin, "count") == 0.0 || !draw_bin(text, bin))
            continue;
        drawn++;
        double predicted = ap_report_number(bin, "mean_predicted");
        if (isfinite(predicted))
            add_point(&list, predicted, ap_report_number(bin, "fraction_positive"));
    }
    if (list.count >= 2)
        draw_polyline(text, &list, "curve thin");
    for (size_t i = 0; i < list.count; i++) {
        ap_text_append(text, "<circle class=\"dot\" r=\"3.5\" cx=\"");
        append_tenths(text, list.points[i].x);
        ap_text_append(text, "\" cy=\"");
        append_tenths(text, list.points[i].y);
        ap_text_append(text, "\"/>");
    }
    if (drawn == 0)
        draw_no_data(text);
    end_chart(text, &list);
}
