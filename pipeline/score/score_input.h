#ifndef APIARY_SCORE_SCORE_INPUT_H
#define APIARY_SCORE_SCORE_INPUT_H

/* The images to score: listing an input location, reading one image's
 * bytes, and the group an image belongs to. An input is a folder path or a
 * file:// URI, or a manifest or listing file that names the images (see
 * ap_score_read_list_file). An s3:// input is copied to a local folder
 * first (see score_store.h). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/common/status.h"

/* Image paths relative to the input, sorted by strcmp. */
typedef struct {
    char **paths;
    size_t count;
    size_t rejected; /* files skipped because their names are not valid UTF-8 */
} ap_score_inputs;

/* A reusable read buffer that only grows. */
typedef struct {
    uint8_t *data;
    size_t capacity;
} ap_score_buffer;

/* True for names ending in .jpg, .jpeg or .png, in any letter case. */
bool ap_score_is_image_name(const char *name);

/* Length of the valid UTF-8 sequence at text, or 0 when it is not one
 * (overlong forms, surrogates and code points above U+10FFFF are invalid). */
size_t ap_score_utf8_length(const unsigned char *text);

/* True when text is valid UTF-8 throughout. */
bool ap_score_is_utf8(const char *text);

/* List the images below input, recursively, following symbolic links and
 * skipping names that start with '.'. A folder that links back to one of
 * its parents is an error, as is a folder that cannot be read. When input
 * is a manifest or listing file, the images are the ones it names. */
ap_status ap_score_list_inputs(const char *input, ap_score_inputs *out, ap_error *err);

/* What a file given as the input contains, decided by its name. */
typedef enum {
    AP_SCORE_LIST_NONE = 0,
    AP_SCORE_LIST_MANIFEST, /* .csv: the `file` column names the images */
    AP_SCORE_LIST_LISTING,  /* .txt or .lst: one image path per line */
} ap_score_list_kind;

ap_score_list_kind ap_score_list_kind_of(const char *name);

/* Read the image paths of a manifest or listing file, relative to the
 * file's folder, sorted by strcmp with repeats dropped. Every image named
 * is listed, whatever its extension, and one that is missing gets an error
 * row when it is read. A listing skips blank lines and lines starting with
 * '#'. Absolute paths and ".." segments are rejected; paths that are not
 * valid UTF-8 are counted in out->rejected. */
ap_status ap_score_read_list_file(const char *path, ap_score_inputs *out, ap_error *err);
void ap_score_inputs_free(ap_score_inputs *inputs);

/* Read the listed image relative into buffer, growing it when needed; *size
 * receives the byte count. Files over max_bytes fail with AP_ERR_LIMIT. */
ap_status ap_score_read_input(const char *input, const char *relative, size_t max_bytes,
                              ap_score_buffer *buffer, size_t *size, ap_error *err);
void ap_score_buffer_free(ap_score_buffer *buffer);

/* How an image's group comes from its relative path. */
typedef enum {
    AP_GROUP_NONE = 0, /* no groups */
    AP_GROUP_DIR,      /* the first `fields` folders, for example hive/camera */
    AP_GROUP_NAME,     /* the first `fields` '_'-separated fields of the file name */
} ap_group_kind;

typedef struct {
    ap_group_kind kind;
    int fields;
} ap_group_pattern;

#define AP_GROUP_MAX_FIELDS 16

/* Parse "none", "dir", "dir:N", "name" or "name:N" (N from 1 to 16; no N
 * means 1). */
ap_status ap_group_pattern_parse(const char *text, ap_group_pattern *out, ap_error *err);

/* Write the group of path into group, which must hold strlen(path) + 1
 * bytes. Returns false when the path has none: fewer than N folders for
 * dir:N, or fewer than N '_' in the file name for name:N. */
bool ap_group_of_path(const ap_group_pattern *pattern, const char *path, char *group);

#endif
