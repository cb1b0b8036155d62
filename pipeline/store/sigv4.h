#ifndef APIARY_STORE_SIGV4_H
#define APIARY_STORE_SIGV4_H

/* AWS Signature Version 4 for the Authorization header, as the S3 API uses
 * it: the canonical request, the string to sign, the signing key derived
 * from the secret, and the header value. Paths are signed as sent, without
 * the path normalisation other AWS services apply. */

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "pipeline/common/status.h"

/* A query parameter or header. Query names and values are raw (not
 * percent-encoded); the signer encodes them. */
typedef struct {
    const char *name;
    const char *value;
} ap_sigv4_pair;

typedef struct {
    const char *access_key_id;
    const char *secret_access_key;
    const char *session_token; /* NULL or "" when the credentials are not temporary */
    const char *region;
    const char *service; /* "s3" */
} ap_sigv4_credentials;

typedef struct {
    const char *method;
    /* The path exactly as sent on the request line: each segment encoded with
     * ap_sigv4_encode and '/' kept. */
    const char *canonical_uri;
    const ap_sigv4_pair *query;
    size_t query_count;
    /* Headers to sign besides x-amz-date and x-amz-security-token, which the
     * signer adds: at least host. Names in any case; values are trimmed. */
    const ap_sigv4_pair *headers;
    size_t header_count;
    const char *payload_hash; /* hex SHA-256 of the body, as in x-amz-content-sha256 */
    const char *amz_date;     /* request time as YYYYMMDDTHHMMSSZ (UTC) */
} ap_sigv4_request;

typedef struct {
    char *canonical_request; /* malloc'd */
    char *string_to_sign;    /* malloc'd */
    char signature[65];
    char *authorization; /* malloc'd value of the Authorization header */
} ap_sigv4_result;

/* Sign request with credentials. Fails on a header without a name, a
 * duplicate header, or a line break in a header value. */
ap_status ap_sigv4_sign(const ap_sigv4_request *request, const ap_sigv4_credentials *credentials,
                        ap_sigv4_result *out, ap_error *err);
void ap_sigv4_result_free(ap_sigv4_result *result);

/* Percent-encode size bytes of text as SigV4 requires: every byte except
 * A-Z, a-z, 0-9, '-', '.', '_' and '~' becomes %XX (upper-case hex), and
 * '/' is kept when keep_slash is set (object key paths). Returns a malloc'd
 * string, or NULL when memory runs out. */
char *ap_sigv4_encode(const char *text, size_t size, bool keep_slash);

/* Format a time as YYYYMMDDTHHMMSSZ in UTC. */
void ap_sigv4_format_date(time_t when, char amz_date[17]);

#endif
