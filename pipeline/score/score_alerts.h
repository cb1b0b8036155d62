#ifndef APIARY_SCORE_SCORE_ALERTS_H
#define APIARY_SCORE_SCORE_ALERTS_H

/* Alert conditions on scoring counts, written "LABEL.METRIC OP VALUE":
 *   LABEL   a label of the model, or "errors" for images that could not be
 *           read or decoded
 *   METRIC  count: images with a positive decision (or errors);
 *           rate: count per decoded image (errors: per image)
 *   OP      >, >=, < or <=
 *   VALUE   a number, at least 0; at most 1 for a rate
 * for example "wasp.count >= 1" or "varroa.rate > 0.05". */

#include <stdbool.h>
#include <stddef.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"

#define AP_ALERT_ERRORS      (-1) /* label index of the "errors" subject */
#define AP_ALERT_ERRORS_NAME "errors"

typedef enum { AP_ALERT_COUNT = 0, AP_ALERT_RATE } ap_alert_metric;
typedef enum { AP_ALERT_GT = 0, AP_ALERT_GE, AP_ALERT_LT, AP_ALERT_LE } ap_alert_op;

typedef struct {
    char text[AP_SCORE_ALERT_MAX]; /* as configured */
    char subject[AP_NAME_MAX];     /* a label name or "errors" */
    int label;                     /* model label index or AP_ALERT_ERRORS, after resolving */
    ap_alert_metric metric;
    ap_alert_op op;
    double threshold;
} ap_score_alert;

/* Image counts of all rows or of one group. */
typedef struct {
    size_t images;                   /* rows, errors included */
    size_t errors;                   /* rows of images that could not be read or decoded */
    size_t positives[AP_MAX_LABELS]; /* decoded images with a positive decision */
} ap_score_counts;

/* Parse one condition. Messages name the entry as score.alerts writes it. */
ap_status ap_score_alert_parse(const char *text, ap_score_alert *out, ap_error *err);

/* Parse every score.alerts entry of cfg into alerts (AP_SCORE_MAX_ALERTS). */
ap_status ap_score_alerts_parse(const ap_score_config *cfg, ap_score_alert *alerts, int *count,
                                ap_error *err);

/* Find the alert's subject among the model's labels. A model label named
 * "errors" makes the subject ambiguous, which is an error. */
ap_status ap_score_alert_resolve(ap_score_alert *alert, const char (*labels)[AP_NAME_MAX],
                                 int label_count, ap_error *err);

/* The alert's metric over counts. Returns false when it is undefined: a
 * rate over no images. */
bool ap_score_alert_value(const ap_score_alert *alert, const ap_score_counts *counts,
                          double *value);

/* True when value meets the alert's condition. */
bool ap_score_alert_fires(const ap_score_alert *alert, double value);

#endif
