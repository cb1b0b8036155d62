#ifndef APIARY_TRAIN_RUN_DATA_H
#define APIARY_TRAIN_RUN_DATA_H

#include <stddef.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"
#include "pipeline/data/dataset.h"
#include "pipeline/data/manifest.h"
#include "pipeline/data/split.h"

/* Everything a stage needs to know about a run's data: the manifest, the
 * decoded images, problems found while reading them, and the split. */
typedef struct {
    ap_manifest manifest;
    ap_image_set images;
    ap_data_report report;
    size_t *part_images[3]; /* image indices of train, val and test */
    size_t part_count[3];
    char local_root[AP_PATH_MAX]; /* data.root, or its local copy when it is a blob store */
    char manifest_hash[65]; /* SHA-256 of the manifest file */
    char split_hash[65];    /* SHA-256 of split.csv */
} ap_run_data;

/* Load the manifest and images of cfg (decoded cache in run_dir/cache), then
 * read run_dir/split.csv when it exists, or make the split and write it. */
ap_status ap_run_data_prepare(const ap_config *cfg, const char *run_dir, ap_run_data *data,
                              ap_error *err);
void ap_run_data_free(ap_run_data *data);

/* Count positives, negatives and unknowns of one label in one part. */
void ap_run_data_label_counts(const ap_run_data *data, ap_split_part part, int label,
                              long *positives, long *negatives, long *unknown);

/* Log the data problems and the per-part, per-label counts. */
void ap_run_data_log_summary(const ap_run_data *data);

/* Remove the temporary files (NAME.tmp.XXXXXX) that atomic writers killed
 * before their rename left in run_dir and run_dir/cache. Only safe while no
 * other process writes to the run folder, as at the start of training. */
ap_status ap_run_remove_stale_temps(const char *run_dir, ap_error *err);

/* Write the data problems as JSON to path, atomically. */
ap_status ap_run_data_write_report(const ap_run_data *data, const char *path, ap_error *err);

#endif
