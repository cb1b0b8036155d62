#ifndef APIARY_STORE_STORE_H
#define APIARY_STORE_STORE_H

/* The blob store seen by the pipeline: a URI names a local folder (a plain
 * path or file:///path) or an S3 prefix (s3://bucket/prefix). Remote data is
 * synced into a local cache folder before it is read, and run folders are
 * staged locally and uploaded after each stage. Settings come from the
 * store.* config keys (see pipeline/store/s3.h for the S3 client). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"
#include "pipeline/store/s3.h"

#define AP_STORE_KEY_MAX 1024 /* the S3 limit on key length in bytes */

typedef enum { AP_STORE_FILE, AP_STORE_S3 } ap_store_kind;

typedef struct {
    ap_store_kind kind;
    char path[AP_PATH_MAX];        /* AP_STORE_FILE: the local path */
    char bucket[64];               /* AP_STORE_S3 */
    char prefix[AP_STORE_KEY_MAX]; /* AP_STORE_S3: "" or a prefix ending in '/' */
} ap_store_uri;

/* True when text is an s3:// URI. */
bool ap_store_is_s3(const char *text);

/* Parse a plain path, file:///path (file://localhost/path) or
 * s3://bucket[/prefix]. An S3 prefix is read as a folder: "a/b" becomes
 * "a/b/". Bucket names follow the S3 rules (3-63 characters of a-z, 0-9,
 * '.' and '-'), and the prefix must pass ap_store_check_key. */
ap_status ap_store_uri_parse(const char *text, ap_store_uri *out, ap_error *err);

/* Check that a relative name (an object key below a prefix, or an archive
 * entry) can be stored under a local folder: not empty, not absolute, no
 * empty, "." or ".." segment, no control character, at most
 * AP_STORE_KEY_MAX bytes. */
ap_status ap_store_check_key(const char *name, ap_error *err);

/* Join root and the relative name into out after ap_store_check_key, create
 * the missing parent folders, and check that the parent resolves (symbolic
 * links followed) to a folder inside root. A parent that is a symbolic link
 * is rejected. */
ap_status ap_store_local_path(const char *root, const char *name, char *out, size_t out_size,
                              ap_error *err);

/* The S3 client settings of cfg's store.* keys. */
void ap_store_s3_options(const ap_config *cfg, ap_s3_options *out);

/* What a sync did. */
typedef struct {
    size_t objects;       /* objects or files found at the source */
    size_t transferred;   /* downloaded or uploaded */
    size_t reused;        /* already up to date at the destination */
    size_t removed;       /* local copies of objects that no longer exist */
    int64_t bytes;        /* bytes transferred */
    ap_s3_stats requests; /* S3 requests, all zero for file:// */
} ap_store_sync_stats;

/* Make local_dir a copy of the S3 prefix uri. Objects whose local copy has
 * the ETag and size recorded at the last sync are not downloaded again, and
 * local copies of objects that disappeared are removed. The record is
 * local_dir/.apiary-sync.json, and a lock file beside it keeps two
 * processes from syncing one folder at once. Keys ending in '/' (folder
 * markers) are skipped. */
ap_status ap_store_sync_down(const char *uri, const ap_config *cfg, const char *local_dir,
                             ap_store_sync_stats *stats, ap_error *err);

/* Selects an object by its key relative to the prefix. */
typedef bool (*ap_store_select_fn)(const char *name, void *context);

/* ap_store_sync_down for only the objects that select accepts; stats count
 * those alone. Local copies of objects that still exist but are not selected
 * are kept. */
ap_status ap_store_sync_select(const char *uri, const ap_config *cfg, const char *local_dir,
                               ap_store_select_fn select, void *context, ap_store_sync_stats *stats,
                               ap_error *err);

/* The local folder for the S3 URI uri: store.cache_dir/AREA/BUCKET/PREFIX. */
ap_status ap_store_cache_path(const ap_config *cfg, const char *area, const char *uri,
                              char out[AP_PATH_MAX], ap_error *err);

/* Copy every regular file below local_dir to uri (an S3 prefix or a local
 * folder), keeping relative paths, except the names in skip (NULL-ended,
 * matched against the first path segment). Files whose remote copy has the
 * same size and MD5 ETag are not uploaded again. */
ap_status ap_store_sync_up(const char *local_dir, const char *uri, const ap_config *cfg,
                           const char *const *skip, ap_store_sync_stats *stats, ap_error *err);

/* Return in local_dir_out the local folder holding the data of uri: the path
 * itself for a local URI, or, for s3://bucket/prefix, its copy under
 * store.cache_dir/s3/bucket/prefix after ap_store_sync_down. */
ap_status ap_store_materialize(const char *uri, const ap_config *cfg,
                               char local_dir_out[AP_PATH_MAX], ap_error *err);

/* A run folder kept in S3: output_dir is s3://..., the stages write to a
 * local staging folder, and each upload copies the run folder back. */
typedef struct {
    bool remote;               /* output_dir was an s3:// URI */
    char uri[AP_PATH_MAX];     /* the original output_dir */
    char staging[AP_PATH_MAX]; /* the local folder that replaced it */
} ap_store_outputs;

/* When cfg->output_dir is s3://..., point it at
 * store.cache_dir/runs/BUCKET/PREFIX and download the run folder
 * (output_dir/run_name) that earlier runs left there, so a rerun on another
 * machine resumes. Does nothing for a local output_dir. */
ap_status ap_store_outputs_begin(ap_config *cfg, ap_store_outputs *outputs, ap_error *err);

/* Upload the run folder (not its decoded-image cache folder) when outputs
 * is remote. */
ap_status ap_store_outputs_upload(const ap_store_outputs *outputs, const ap_config *cfg,
                                  ap_error *err);

#endif
