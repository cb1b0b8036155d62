#ifndef APIARY_SCORE_SCORE_STORE_H
#define APIARY_SCORE_SCORE_STORE_H

/* Score inputs and outputs in S3. An s3:// score.input (a prefix, or a
 * manifest or listing object) is copied into store.cache_dir/s3 and scored
 * from there. Objects whose cached copy has the same ETag are not
 * downloaded again. An s3:// score.output is staged in
 * store.cache_dir/scores. The results of one model version are fetched
 * before scoring, so a run on another machine resumes. They are uploaded
 * after scoring, each file in one PUT or one multipart upload, so readers
 * never see a partial object. */

#include <stdbool.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"
#include "pipeline/store/store.h"

typedef struct {
    bool remote_input;
    char input_uri[AP_PATH_MAX]; /* the s3:// score.input */
    ap_store_sync_stats fetched; /* images and list files downloaded for the input */
    bool remote_output;
    char output_uri[AP_PATH_MAX]; /* the s3:// score.output */
} ap_score_store;

/* Replace an s3:// score.input in cfg with its local copy, after
 * downloading the objects it names that are not cached yet: the images
 * below a prefix, or the manifest or listing object and the images it
 * names. Does nothing for a local input. */
ap_status ap_score_store_fetch_input(ap_config *cfg, ap_score_store *store, ap_error *err);

/* Replace an s3:// score.output in cfg with its staging folder. Does
 * nothing for a local output. */
ap_status ap_score_store_stage_output(ap_config *cfg, ap_score_store *store, ap_error *err);

/* Download the results of model version from S3 into the staging folder,
 * unless the folder already contains a journal for it (a staging folder is at
 * least as new as its last upload). */
ap_status ap_score_store_resume(const ap_score_store *store, const ap_config *cfg, int version,
                                ap_error *err);

/* Upload the staged results of version, skipping files whose copy in S3
 * has the same size and ETag. */
ap_status ap_score_store_upload(const ap_score_store *store, const ap_config *cfg, int version,
                                ap_store_sync_stats *stats, ap_error *err);

#endif
