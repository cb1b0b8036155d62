#ifndef APIARY_STORE_S3_INTERNAL_H
#define APIARY_STORE_S3_INTERNAL_H

/* The request engine behind pipeline/store/s3.h: one S3 request described
 * once (s3_op) and sent, signed afresh, on every attempt. Private to
 * pipeline/store. */

#include <stdbool.h>
#include <stdint.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/store/s3.h"
#include "pipeline/store/sigv4.h"
#include "pipeline/store/store_text.h"

#define S3_QUERY_MAX        6
#define S3_ERROR_BODY_MAX   (64u << 10)
#define S3_RESPONSE_MAX_DEF (16u << 20)

typedef enum { S3_BODY_NONE, S3_BODY_MEMORY, S3_BODY_FILE } s3_body_kind;
typedef enum { S3_SINK_MEMORY, S3_SINK_FILE } s3_sink_kind;
typedef enum { S3_OP_WAITING, S3_OP_RUNNING, S3_OP_DONE } s3_op_state;

typedef struct {
    /* The request, filled by the caller. */
    const char *method;
    const char *bucket;
    const char *key; /* NULL for a request on the bucket */
    ap_sigv4_pair query[S3_QUERY_MAX];
    size_t query_count;
    int64_t range_first; /* < 0: no Range header */
    int64_t range_last;
    const char *content_type;
    s3_body_kind body;
    const uint8_t *body_data; /* S3_BODY_MEMORY */
    const char *body_path;    /* S3_BODY_FILE: body_size bytes from body_offset */
    int64_t body_offset;
    int64_t body_size;
    s3_sink_kind sink;
    const char *sink_path; /* S3_SINK_FILE: written atomically */
    size_t sink_max;       /* S3_SINK_MEMORY: largest body accepted */
    bool expect_etag_md5;  /* check a returned ETag against the MD5 of the body sent */

    /* The response of the last attempt. */
    long http_status;
    char etag[AP_S3_ETAG_MAX];
    int64_t content_length; /* -1 when the header was missing */
    char content_range[96];
    long retry_after_s; /* -1 when the header was missing */
    char bucket_region[64];
    store_text response; /* memory sink, or the body of an error */
    char body_md5[33];   /* MD5 of the request body, hex */

    /* Engine state. */
    s3_op_state state;
    int attempt;
    int64_t not_before_ms;
    CURL *easy;
    struct curl_slist *header_list;
    char *url;
    FILE *upload;
    int64_t upload_left;
    char payload_hash[65];
    ap_atomic_file file;
    bool file_open;
    EVP_MD_CTX *md5;
    int64_t received;
    bool sink_overflow;
    bool write_failed;
    char curl_message[CURL_ERROR_SIZE];

    /* The outcome once state is S3_OP_DONE. */
    ap_status result;
    ap_error error;
} s3_op;

struct ap_s3_client {
    ap_s3_options options;
    char scheme[8];
    char authority[512]; /* host[:port] of the endpoint */
    bool amazon_endpoint;
    char *access_key_id;
    char *secret_access_key;
    char *session_token;
    CURLM *multi;
    ap_s3_stats stats;
    unsigned int jitter_state;
};

/* Prepare op for sending: hash the body. Call once before s3_run. */
ap_status s3_op_prepare(s3_op *op, ap_error *err);

/* Sign op for its next attempt and make its easy handle (s3_client.c). */
ap_status s3_attempt_begin(ap_s3_client *client, s3_op *op, ap_error *err);

/* Send every op, options.concurrency at a time, each with its retries.
 * Returns the first error of an op that failed for good, after which no new
 * op is started; ops in flight are finished. */
ap_status s3_run(ap_s3_client *client, s3_op *ops, size_t count, ap_error *err);

/* Release what s3_run left in op (the response buffer). */
void s3_op_cleanup(s3_op *op);

/* "s3://bucket/key" for messages, truncated to fit. */
void s3_describe(const char *bucket, const char *key, char *out, size_t size);

/* Parse responses (s3_xml.c). Each fails with AP_ERR_FORMAT on a body that
 * is not the expected XML. */
typedef struct {
    ap_s3_object *objects;
    size_t count;
    size_t capacity;
    bool truncated;
    char *continuation; /* NextContinuationToken, malloc'd, or NULL */
} s3_list_page;

ap_status s3_xml_parse_list(const char *xml, size_t size, s3_list_page *page, ap_error *err);
ap_status s3_xml_parse_upload_id(const char *xml, size_t size, char **upload_id, ap_error *err);
/* Read Code and Message of an <Error> document into the buffers; false when
 * xml is not one. */
bool s3_xml_parse_error(const char *xml, size_t size, char *code, size_t code_size, char *message,
                        size_t message_size);
/* Build the CompleteMultipartUpload body from the part ETags. */
char *s3_xml_complete_body(char (*etags)[AP_S3_ETAG_MAX], int part_count);

#endif
