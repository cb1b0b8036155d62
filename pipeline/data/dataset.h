#ifndef APIARY_DATA_DATASET_H
#define APIARY_DATA_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"
#include "pipeline/data/manifest.h"

/* A manifest row's file is looked up beside the manifest, then in this
 * folder beside it, so that labels.csv may name files inside images/. */
#define AP_MANIFEST_IMAGES_FOLDER "images"

/* Decoded, resized images of a dataset, kept as one uint8 block and cached
 * in a compact file so later epochs and resumed runs never decode again. */

typedef struct {
    char *file; /* as the manifest row names it */
    size_t row; /* manifest row */
    char reason[256];
} ap_data_problem;

typedef struct {
    ap_data_problem *bad_images; /* listed in the manifest, unreadable */
    size_t bad_count;
    char **missing_files; /* rows whose image file does not exist */
    size_t missing_count;
    char **unlisted_files; /* image files in the folder with no row */
    size_t unlisted_count;
} ap_data_report;

typedef struct {
    int width;
    int height;
    int label_count;
    size_t count;          /* images that decoded */
    uint8_t *pixels;       /* count * height * width * 3, RGB, row-major */
    int8_t *labels;        /* count * label_count */
    size_t *row_index;     /* manifest row of each image */
    char content_hash[65]; /* SHA-256 over the manifest rows and pixels */
    bool from_cache;       /* read from the cache file instead of decoded */
} ap_image_set;

/* Decode every manifest row from cfg->root in parallel (OpenMP), resize to
 * cfg->width x cfg->height, and record problems in report. A row's file is
 * looked up at root/file, then at root/images/file (the layout with
 * labels.csv beside an images folder). Images are kept in manifest order
 * whatever the thread count. Fails with AP_ERR_INVALID when the bad and
 * missing share exceeds cfg->max_bad_fraction or no image decodes; report is
 * filled even then, and must be freed whatever the result.
 * When cache_path is not NULL, a valid cache for the same manifest, size and
 * image files (size and modification time) is read instead of decoding, and
 * a new one is written otherwise. A stale or corrupt cache is rebuilt. */
ap_status ap_image_set_load(const ap_data_config *cfg, const ap_manifest *manifest,
                            const char *cache_path, ap_image_set *out, ap_data_report *report,
                            ap_error *err);

void ap_image_set_free(ap_image_set *set);
void ap_data_report_free(ap_data_report *report);

#endif
