#ifndef APIARY_SCORE_SCORE_OUTPUT_H
#define APIARY_SCORE_SCORE_OUTPUT_H

/* Prediction rows and the files made from them.
 *
 * A row of predictions.jsonl, one line, for example:
 *   {"image":"hive-1/a.jpg","model_version":3,"model_sha256":"0123456789ab",
 *    "probabilities":{"wasp":0.912},"decisions":{"wasp":true},"error":""}
 * An image that could not be read or decoded has null probabilities and
 * decisions and the reason in "error". A decision is probability >= the
 * label's threshold, the rule the validation gate uses.
 *
 * predictions.csv has the columns image, model_version, model_sha256, then
 * LABEL_probability and LABEL_decision (1 or 0) per label, then error. */

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"
#include "pipeline/score/score_alerts.h"
#include "pipeline/score/score_input.h"
#include "pipeline/validate/report_format.h"

#define AP_SCORE_SHA_SHORT 12 /* hex digits of the weights sha256 in each row */
#define AP_SCORE_ERROR_MAX AP_ERROR_MESSAGE_MAX

/* What every row records about the model. */
typedef struct {
    int version;
    char sha256_short[AP_SCORE_SHA_SHORT + 1];
    int label_count;
    char labels[AP_MAX_LABELS][AP_NAME_MAX];
    float thresholds[AP_MAX_LABELS];
} ap_score_model_info;

/* One row as read back from predictions.jsonl. */
typedef struct {
    const char *image; /* points into the parsed line; valid until the next parse */
    bool failed;
    float probabilities[AP_MAX_LABELS];
    bool decisions[AP_MAX_LABELS];
    char error[AP_SCORE_ERROR_MAX];
} ap_score_row;

/* Append the JSON line (with its newline) of one image to line. probabilities
 * (label_count values) is NULL for an image that failed with error. Text
 * that is not valid UTF-8 is written with U+FFFD in place of the bad bytes. */
void ap_score_format_row(ap_text *line, const ap_score_model_info *model, const char *image,
                         const float *probabilities, const char *error);

/* Parse one line of predictions.jsonl, which must come from model: the same
 * version, sha256 and labels. *json holds the parsed line (the row's image
 * points into it); the caller releases it with json_decref. */
ap_status ap_score_parse_row(const char *line, size_t length, const ap_score_model_info *model,
                             ap_score_row *row, json_t **json, ap_error *err);

/* Append the CSV header line, or one row, with RFC 4180 quoting. */
void ap_score_csv_header(ap_text *text, const ap_score_model_info *model);
void ap_score_csv_row(ap_text *text, const ap_score_model_info *model, const ap_score_row *row);

/* Counts of all rows and of each group, for summary.json. */
typedef struct {
    ap_score_counts totals;
    json_t *group_index; /* group name -> index into groups */
    ap_score_counts *groups;
    size_t group_count;
    size_t group_capacity;
} ap_score_tally;

ap_status ap_score_tally_init(ap_score_tally *tally, ap_error *err);
/* Count row in the totals and in its group (NULL: no group). */
ap_status ap_score_tally_add(ap_score_tally *tally, const ap_score_model_info *model,
                             const char *group, const ap_score_row *row, ap_error *err);
void ap_score_tally_free(ap_score_tally *tally);

/* The counts, rates and fired alerts of a tally as JSON:
 *   {"totals": COUNTS, "groups": {NAME: COUNTS, ...}, "alerts": [HIT, ...]}
 * with COUNTS {"images", "decoded", "errors", "error_rate", "labels":
 * {LABEL: {"count", "rate"}}} (a rate over no images is null) and HIT
 * {"alert", "scope": "totals" or "group", "group" (for a group), "value"}.
 * Groups appear in name order. Returns NULL when memory runs out. */
json_t *ap_score_tally_json(const ap_score_tally *tally, const ap_score_model_info *model,
                            const ap_score_alert *alerts, int alert_count);

/* Read every row of the journal at journal_path and write predictions.csv
 * into dir atomically; fill tally with the rows' counts by group. */
ap_status ap_score_write_csv(const char *journal_path, const char *dir,
                             const ap_score_model_info *model, const ap_group_pattern *pattern,
                             ap_score_tally *tally, ap_error *err);

#endif
