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
 * an absolute path or `..` in a file name, a row with the wrong field count.
 * A group_column that is NULL or "" makes each image its own group; a named
 * group column must exist, and an empty group value is replaced by the file name. */
ap_status ap_manifest_parse(const char *text, size_t size, const char *source,
                            const char *const *labels, int label_count, const char *group_column,
                            ap_manifest *out, ap_error *err);

/* Read path (at most AP_MANIFEST_MAX_BYTES) and parse it as above. */
ap_status ap_manifest_load(const char *path, const char *const *labels, int label_count,
                           const char *group_column, ap_manifest *out, ap_error *err);

/* Free every row and name; each string and array is a separate malloc'd block. */
void ap_manifest_free(ap_manifest *manifest);

#define AP_MANIFEST_MAX_BYTES ((size_t)1 << 30)

/* A CSV table as RFC 4180 defines it, the common layer of labels.csv and
 * split.csv. Every row has as many fields as the header. */
typedef struct {
    char **header; /* column_count names, surrounding spaces and tabs removed */
    int column_count;
    char **fields; /* row_count * column_count values, row by row */
    int *lines;    /* the line (1-based) on which each row starts */
    size_t row_count;
    char *storage; /* decoded text that header and fields point into */
} ap_csv_table;

/* Parse CSV text: quoted fields with "" escapes, embedded commas and line
 * breaks, CRLF or LF line ends, an optional UTF-8 byte order mark and empty
 * lines at the end. Errors name source and line. */
ap_status ap_csv_parse(const char *text, size_t size, const char *source, ap_csv_table *out,
                       ap_error *err);

/* Index of the column called name, or -1 when there is none. */
int ap_csv_column(const ap_csv_table *table, const char *name);

/* Write "a, b, c" (the header names) into out, truncated to fit, for messages. */
void ap_csv_describe_columns(const ap_csv_table *table, char *out, size_t out_size);

void ap_csv_free(ap_csv_table *table);

#endif
