#ifndef APIARY_DATA_MANIFEST_H
#define APIARY_DATA_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/common/status.h"

/* A dataset manifest: labels.csv with a `file` column, one column per label
 * (1, 0, or empty for unknown) and an optional group column. */

#define AP_LABEL_UNKNOWN ((int8_t)-1)

typedef struct {
    char *file;     /* path relative to the dataset folder */
    char *group;    /* group name; the file name when the manifest has no group column */
    int8_t *labels; /* label_count values: 1, 0 or AP_LABEL_UNKNOWN */
    int line;       /* line in the manifest, for messages */
} ap_manifest_row;

typedef struct {
    int label_count;
    char **label_names;
    ap_manifest_row *rows;
    size_t row_count;
} ap_manifest;

/* Parse CSV text (RFC 4180 quoting) and keep the requested label columns in
 * the given order. Errors name the source, line and column: a missing file
 * or label column, a label value other than 1, 0 or empty, a duplicate file,
 * an absolute path or `..` in a file name, a row with the wrong field count. */
ap_status ap_manifest_parse(const char *text, size_t size, const char *source,
                            const char *const *labels, int label_count,
                            const char *group_column, ap_manifest *out, ap_error *err);

ap_status ap_manifest_load(const char *path, const char *const *labels, int label_count,
                           const char *group_column, ap_manifest *out, ap_error *err);

void ap_manifest_free(ap_manifest *manifest);

#endif
