#ifndef APIARY_SCORE_SCORE_H
#define APIARY_SCORE_SCORE_H

/* Batch scoring: every image of a folder through a registered model.
 *
 * Output goes to score.output/v<VERSION>, one subfolder per model version,
 * so a new champion rescans everything without touching earlier results:
 *   predictions.jsonl  one JSON object per image, append-only and fsynced once
 *                      per chunk; a rerun reads it and skips the images in it
 *   predictions.csv    the same rows as CSV, rewritten atomically at the end
 *   summary.json       counts and rates per label for all rows and per group,
 *                      and the alerts that fired; rewritten atomically
 * An image that cannot be read or decoded gets a row with the error and the
 * run continues. Alerts are reported, not failures. */

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"

/* A registry version fetched for scoring. */
typedef struct {
    int version; /* 0 until the reference has resolved */
    char card_path[AP_PATH_MAX + 64];
} ap_score_model_source;

/* Resolve cfg->score.model (an alias or a version number) in the registry
 * cfg->registry and fetch that version's weights and model card. A local
 * registry folder that does not exist fails with AP_ERR_IO. A reference
 * that does not resolve fails with AP_ERR_NOT_FOUND or AP_ERR_INVALID and a
 * message that lists the versions and aliases there are. out->version stays
 * 0 when the reference itself did not resolve, which the caller can tell
 * apart from a failure to fetch the files. */
ap_status ap_score_fetch_model(const ap_config *cfg, ap_score_model_source *out, ap_error *err);

typedef struct {
    const ap_config *cfg;
    const ap_score_model_source *model;
    /* The input as summary.json records it, for example the s3:// URI that
     * cfg->score.input is a local copy of. NULL: cfg->score.input. */
    const char *input_name;
    /* Set by a signal handler; checked after each chunk. May be NULL. */
    const volatile sig_atomic_t *stop;
} ap_score_request;

/* One alert condition met by the totals (group NULL) or by one group. */
typedef struct {
    const char *alert; /* the score.alerts entry */
    const char *group; /* NULL for the totals over all rows */
    double value;
} ap_score_alert_hit;

typedef struct {
    char output_dir[AP_PATH_MAX + 64]; /* score.output/v<VERSION> */
    int model_version;
    char model_sha256[65];
    bool card_thresholds; /* false: some label fell back to the 0.5 threshold */
    bool alert_rejected;  /* the run failed because an alert names no label of the model */
    int threads;
    size_t listed;            /* images found in the input */
    size_t skipped;           /* already in predictions.jsonl */
    size_t scored;            /* rows written by this run, errors included */
    size_t errors;            /* rows of this run for images that could not be read or decoded */
    size_t rejected;          /* files skipped because their names are not valid UTF-8 */
    bool repaired;            /* a damaged last line of predictions.jsonl was dropped */
    double seconds;           /* wall time of decoding and inference */
    double decode_seconds;    /* summed time of the decode steps */
    double inference_seconds; /* summed time of the inference steps */
    json_t *summary;          /* the content of summary.json (owned) */
    ap_score_alert_hit *hits; /* alerts that fired; strings point into summary */
    size_t hit_count;
} ap_score_outcome;

/* Score every image of cfg->score.input that predictions.jsonl does not list
 * yet, then rewrite predictions.csv and summary.json. Returns
 * AP_ERR_INTERRUPTED when stop was set, after the finished chunks are on
 * disk; a rerun continues from there. Free out with ap_score_outcome_free,
 * also after a failure. */
ap_status ap_score_run(const ap_score_request *request, ap_score_outcome *out, ap_error *err);
void ap_score_outcome_free(ap_score_outcome *out);

#endif
