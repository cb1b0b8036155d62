#ifndef APIARY_STORE_S3_H
#define APIARY_STORE_S3_H

/* An S3 API client over libcurl with AWS Signature V4: list, head, get
 * (whole or a byte range), put (multipart for large files), delete. Many
 * transfers run at once on one curl multi handle. A request that fails with
 * a connection error, timeout, stall, HTTP 5xx or 429, or the SlowDown,
 * InternalError or RequestTimeout error code is retried with exponential
 * backoff and jitter, up to a limit. Other errors (403, 404, ...) are not.
 * Downloads are checked against Content-Length and, for objects uploaded in
 * one piece, against the ETag (the MD5 of the content), and land in their
 * file atomically: a failed download never leaves a partial file.
 *
 * Credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
 * AWS_SESSION_TOKEN. They never appear in errors. TLS peers are always
 * verified. A client is used by one thread at a time. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/common/status.h"

#define AP_S3_URL_MAX  1024
#define AP_S3_ETAG_MAX 80

typedef enum {
    AP_S3_ADDRESSING_AUTO = 0, /* virtual-hosted for *.amazonaws.com and DNS-safe names */
    AP_S3_ADDRESSING_PATH,     /* http://endpoint/bucket/key */
    AP_S3_ADDRESSING_VIRTUAL,  /* http://bucket.endpoint/key */
} ap_s3_addressing;

typedef struct {
    /* scheme://host[:port]; "" takes AWS_ENDPOINT_URL_S3, then AWS_ENDPOINT_URL,
     * then https://s3.REGION.amazonaws.com */
    char endpoint[AP_S3_URL_MAX];
    char region[64]; /* "" takes AWS_REGION, then AWS_DEFAULT_REGION, then us-east-1 */
    ap_s3_addressing addressing;
    char ca_bundle[AP_S3_URL_MAX]; /* PEM file of trusted CAs; "" uses the system's */
    int concurrency;               /* transfers in flight at once, 1 to 256 */
    int retries;                   /* attempts after the first one, 0 to 100 */
    long backoff_initial_ms;       /* delay before the first retry, doubled each time */
    long backoff_max_ms;
    long connect_timeout_ms;
    long stall_timeout_s;        /* abort an attempt that moves no byte for this long */
    int64_t multipart_threshold; /* files of this size or more are put in parts */
    int64_t part_size;           /* at least 5 MiB, the S3 minimum */
} ap_s3_options;

/* Fill options with the defaults: endpoint and region from the environment,
 * auto addressing, 8 transfers, 5 retries, 200 ms to 20 s backoff, 10 s
 * connect timeout, 60 s stall timeout, 64 MiB threshold and 16 MiB parts. */
void ap_s3_options_default(ap_s3_options *options);

typedef struct {
    char *key;
    int64_t size;
    char etag[AP_S3_ETAG_MAX]; /* without the quotes */
} ap_s3_object;

typedef struct {
    ap_s3_object *objects; /* sorted by key, as S3 lists them */
    size_t count;
} ap_s3_listing;

/* Requests this client sent, counting every attempt. */
typedef struct {
    long requests;
    long retries; /* attempts after a failed one */
    long gets;    /* GET of an object (listings are counted in lists) */
    long puts;    /* PUT of an object or a part */
    long lists;
    long heads;
    long deletes;
    long posts; /* multipart create and complete */
    int64_t bytes_received;
    int64_t bytes_sent;
} ap_s3_stats;

typedef struct ap_s3_client ap_s3_client;

/* Create a client. Fails when the credentials are missing, the endpoint is
 * not http:// or https://, or an option is out of range. */
ap_status ap_s3_open(const ap_s3_options *options, ap_s3_client **out, ap_error *err);
void ap_s3_close(ap_s3_client *client);
ap_s3_stats ap_s3_get_stats(const ap_s3_client *client);

/* List every object whose key starts with prefix, page after page
 * (ListObjectsV2 with continuation tokens). */
ap_status ap_s3_list(ap_s3_client *client, const char *bucket, const char *prefix,
                     ap_s3_listing *out, ap_error *err);
void ap_s3_listing_free(ap_s3_listing *listing);

/* Size and ETag of one object (out->key is left NULL). A missing object is
 * AP_ERR_NOT_FOUND. */
ap_status ap_s3_head(ap_s3_client *client, const char *bucket, const char *key, ap_s3_object *out,
                     ap_error *err);

/* One download: the object key to the local file path, or only bytes first
 * to last (inclusive) when first >= 0. */
typedef struct {
    const char *key;
    const char *path;
    int64_t first;
    int64_t last;
    char etag[AP_S3_ETAG_MAX]; /* set on success */
    int64_t size;              /* bytes written, set on success */
    bool done;
} ap_s3_download;

/* Download every item, options.concurrency at a time. Stops starting new
 * downloads after the first one fails for good, and returns that error;
 * items that finished have done set. */
ap_status ap_s3_get_files(ap_s3_client *client, const char *bucket, ap_s3_download *items,
                          size_t count, ap_error *err);

/* Read an object, or bytes first to last when first >= 0, into a malloc'd
 * buffer with a NUL byte after the content. Fails with AP_ERR_LIMIT above
 * max_size bytes. */
ap_status ap_s3_get_memory(ap_s3_client *client, const char *bucket, const char *key, int64_t first,
                           int64_t last, size_t max_size, uint8_t **data, size_t *size,
                           ap_error *err);

/* One upload: the local file path to the object key. */
typedef struct {
    const char *path;
    const char *key;
    const char *content_type;  /* NULL: application/octet-stream */
    char etag[AP_S3_ETAG_MAX]; /* set on success */
    bool done;
} ap_s3_upload;

/* Upload every item: small files options.concurrency at a time, then each
 * large file in parts sent concurrently. A multipart upload that fails is
 * aborted on the server. Checks each returned ETag against the MD5 of what
 * was sent. */
ap_status ap_s3_put_files(ap_s3_client *client, const char *bucket, ap_s3_upload *items,
                          size_t count, ap_error *err);

ap_status ap_s3_put_memory(ap_s3_client *client, const char *bucket, const char *key,
                           const void *data, size_t size, const char *content_type, ap_error *err);

/* Delete an object; deleting a missing object succeeds, as in S3. */
ap_status ap_s3_delete(ap_s3_client *client, const char *bucket, const char *key, ap_error *err);

#endif
