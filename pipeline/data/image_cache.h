#ifndef APIARY_DATA_IMAGE_CACHE_H
#define APIARY_DATA_IMAGE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/common/status.h"
#include "pipeline/config/config.h"
#include "pipeline/data/dataset.h"
#include "pipeline/data/manifest.h"

/* The cache file of ap_image_set_load, shared by dataset.c and
 * image_cache.c only. */

typedef enum {
    AP_ROW_FILE_FOUND,
    AP_ROW_FILE_MISSING,
    AP_ROW_FILE_UNREADABLE, /* stat failed for another reason, or not a regular file */
} ap_row_file_state;

/* Location of a manifest row's image, with the size and modification time
 * that the cache key covers. */
typedef struct {
    char *relative; /* path below the dataset root */
    ap_row_file_state state;
    int64_t size;
    int64_t mtime_seconds;
    int64_t mtime_nanoseconds;
    char reason[256]; /* message for an unreadable file */
} ap_row_file;

/* Hash the inputs that determine the decoded set: the manifest, the output
 * size and resize mode, the limits, and each row's file size and time. */
ap_status ap_image_cache_key(const ap_data_config *cfg, const ap_manifest *manifest,
                             const ap_row_file *files, char key[65], ap_error *err);

/* SHA-256 over the output size, the label names, and each image's file name,
 * labels and pixels. */
ap_status ap_image_set_hash(const ap_manifest *manifest, const ap_image_set *set, char hex[65],
                            ap_error *err);

/* Read the cache at path into set and report->bad_images. *hit is false,
 * and set and report are untouched, when the file is absent, stale,
 * truncated or corrupt. Only a failed allocation is an error. */
ap_status ap_image_cache_read(const char *path, const char key[65], const ap_manifest *manifest,
                              int width, int height, ap_image_set *set, ap_data_report *report,
                              bool *hit, ap_error *err);

/* Write set and report->bad_images to path atomically. */
ap_status ap_image_cache_write(const char *path, const char key[65], const ap_manifest *manifest,
                               const ap_image_set *set, const ap_data_report *report,
                               ap_error *err);

static inline void ap_hash_u64(ap_sha256_ctx *ctx, uint64_t value)
{
    uint8_t bytes[8];
    for (int i = 0; i < 8; i++)
        bytes[i] = (uint8_t)(value >> (8 * i));
    ap_sha256_update(ctx, bytes, sizeof(bytes));
}

/* Length first, so that ("ab", "c") and ("a", "bc") hash differently. */
static inline void ap_hash_string(ap_sha256_ctx *ctx, const char *text)
{
    size_t length = text != NULL ? strlen(text) : 0;
    ap_hash_u64(ctx, length);
    ap_sha256_update(ctx, text, length);
}

#endif
