#ifndef APIARY_COMMON_FSUTIL_H
#define APIARY_COMMON_FSUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/common/status.h"

/* Create path and any missing parents (mode 0755). */
ap_status ap_mkdirs(const char *path, ap_error *err);

/* Write data to path atomically: write a temporary file beside it, fsync,
 * rename over path and fsync the folder. On failure path is unchanged. */
ap_status ap_write_atomic(const char *path, const void *data, size_t size, ap_error *err);

/* An atomic writer for large files written in pieces. */
typedef struct {
    char final_path[4096];
    char temp_path[4096];
    int fd;
} ap_atomic_file;

ap_status ap_atomic_open(ap_atomic_file *file, const char *path, ap_error *err);
ap_status ap_atomic_write(ap_atomic_file *file, const void *data, size_t size, ap_error *err);
/* fsync and rename into place. */
ap_status ap_atomic_commit(ap_atomic_file *file, ap_error *err);
/* Remove the temporary file; safe after a failed write or commit. */
void ap_atomic_abort(ap_atomic_file *file);

/* Read a whole file into a malloc'd buffer with a terminating NUL byte
 * (not counted in *size). Fails with AP_ERR_LIMIT above max_size bytes. */
ap_status ap_read_file(const char *path, size_t max_size, uint8_t **data, size_t *size,
                       ap_error *err);

/* Remove path and, when it is a folder, everything below it. Symbolic links
 * are removed, never followed. A missing path is not an error. */
ap_status ap_remove_tree(const char *path, ap_error *err);

/* Join a folder and a relative name into out; fails when out is too small. */
ap_status ap_path_join(char *out, size_t out_size, const char *dir, const char *name,
                       ap_error *err);

/* True when path exists. */
int ap_path_exists(const char *path);

/* SHA-256 of a buffer or a file, as 64 lowercase hex digits and a NUL. */
void ap_sha256_hex(const void *data, size_t size, char hex[65]);
ap_status ap_sha256_file(const char *path, char hex[65], ap_error *err);

/* Incremental SHA-256 for hashing several inputs together. */
typedef struct ap_sha256_ctx ap_sha256_ctx;
ap_sha256_ctx *ap_sha256_begin(void);
void ap_sha256_update(ap_sha256_ctx *ctx, const void *data, size_t size);
/* Write the digest as hex and free ctx. */
void ap_sha256_end(ap_sha256_ctx *ctx, char hex[65]);

#endif
