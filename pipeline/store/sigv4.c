#include "pipeline/store/sigv4.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "pipeline/store/store_text.h"

#define ALGORITHM "AWS4-HMAC-SHA256"

/* The headers of one request in canonical form: lower-case names, values
 * trimmed with inner runs of spaces reduced to one, sorted by name. */
typedef struct {
    char *name;
    char *value;
} canonical_header;

typedef struct {
    char *name; /* encoded */
    char *value;
} canonical_param;

static bool is_unreserved(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

char *ap_sigv4_encode(const char *text, size_t size, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(3 * size + 1);
    if (out == NULL)
        return NULL;
    size_t used = 0;
    for (size_t i = 0; i < size; i++) {
        unsigned char c = (unsigned char)text[i];
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            out[used++] = (char)c;
        } else {
            out[used++] = '%';
            out[used++] = hex[c >> 4];
            out[used++] = hex[c & 15];
        }
    }
    out[used] = '\0';
    return out;
}

void ap_sigv4_format_date(time_t when, char amz_date[17])
{
    struct tm utc;
    gmtime_r(&when, &utc);
    strftime(amz_date, 17, "%Y%m%dT%H%M%SZ", &utc);
}

static void to_hex(const unsigned char *bytes, size_t size, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < size; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * size] = '\0';
}

static void sha256_hex(const char *text, size_t size, char out[65])
{
    unsigned char digest[32];
    unsigned int length = 0;
    EVP_Digest(text, size, digest, &length, EVP_sha256(), NULL);
    to_hex(digest, 32, out);
}

static bool hmac_sha256(const void *key, size_t key_size, const char *data, unsigned char out[32])
{
    unsigned int length = 0;
    return HMAC(EVP_sha256(), key, (int)key_size, (const unsigned char *)data, strlen(data), out,
                &length) != NULL &&
           length == 32;
}

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request") */
static bool derive_signing_key(const ap_sigv4_credentials *credentials, const char *date,
                               unsigned char key[32])
{
    size_t secret_size = strlen(credentials->secret_access_key) + 5;
    char *secret = malloc(secret_size);
    if (secret == NULL)
        return false;
    snprintf(secret, secret_size, "AWS4%s", credentials->secret_access_key);
    unsigned char date_key[32], region_key[32], service_key[32];
    bool ok = hmac_sha256(secret, strlen(secret), date, date_key) &&
              hmac_sha256(date_key, 32, credentials->region, region_key) &&
              hmac_sha256(region_key, 32, credentials->service, service_key) &&
              hmac_sha256(service_key, 32, "aws4_request", key);
    memset(secret, 0, secret_size);
    free(secret);
    memset(date_key, 0, sizeof(date_key));
    memset(region_key, 0, sizeof(region_key));
    memset(service_key, 0, sizeof(service_key));
    return ok;
}

static char *canonical_header_value(const char *value)
{
    size_t size = strlen(value);
    char *out = malloc(size + 1);
    if (out == NULL)
        return NULL;
    size_t used = 0;
    bool space = false;
    for (const char *p = value; *p != '\0'; p++) {
        if (*p == ' ' || *p == '\t') {
            space = used > 0;
            continue;
        }
        if (space)
            out[used++] = ' ';
        space = false;
        out[used++] = *p;
    }
    out[used] = '\0';
    return out;
}

static int compare_headers(const void *a, const void *b)
{
    return strcmp(((const canonical_header *)a)->name, ((const canonical_header *)b)->name);
}

static int compare_params(const void *a, const void *b)
{
    const canonical_param *x = a, *y = b;
    int order = strcmp(x->name, y->name);
    return order != 0 ? order : strcmp(x->value, y->value);
}

static ap_status add_header(canonical_header *headers, size_t *count, const char *name,
                            const char *value, ap_error *err)
{
    if (name == NULL || name[0] == '\0' || value == NULL)
        return ap_error_set(err, AP_ERR_INVALID, "SigV4: a header has no name or no value");
    if (strpbrk(value, "\r\n") != NULL)
        return ap_error_set(err, AP_ERR_INVALID, "SigV4: header %s contains a line break", name);
    canonical_header *header = &headers[*count];
    header->name = strdup(name);
    header->value = canonical_header_value(value);
    (*count)++;
    if (header->name == NULL || header->value == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "SigV4: cannot copy header %s", name);
    for (char *p = header->name; *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    return AP_OK;
}

static ap_status collect_headers(const ap_sigv4_request *request,
                                 const ap_sigv4_credentials *credentials, canonical_header *headers,
                                 size_t *count, ap_error *err)
{
    ap_status status = AP_OK;
    for (size_t i = 0; status == AP_OK && i < request->header_count; i++)
        status =
            add_header(headers, count, request->headers[i].name, request->headers[i].value, err);
    if (status == AP_OK)
        status = add_header(headers, count, "x-amz-date", request->amz_date, err);
    if (status == AP_OK && credentials->session_token != NULL &&
        credentials->session_token[0] != '\0')
        status =
            add_header(headers, count, "x-amz-security-token", credentials->session_token, err);
    if (status != AP_OK)
        return status;
    qsort(headers, *count, sizeof(*headers), compare_headers);
    for (size_t i = 1; i < *count; i++)
        if (strcmp(headers[i - 1].name, headers[i].name) == 0)
            return ap_error_set(err, AP_ERR_INVALID, "SigV4: header %s is given twice",
                                headers[i].name);
    return AP_OK;
}

static ap_status collect_params(const ap_sigv4_request *request, canonical_param *params,
                                ap_error *err)
{
    for (size_t i = 0; i < request->query_count; i++) {
        const char *name = request->query[i].name;
        const char *value = request->query[i].value ? request->query[i].value : "";
        params[i].name = ap_sigv4_encode(name, strlen(name), false);
        params[i].value = ap_sigv4_encode(value, strlen(value), false);
        if (params[i].name == NULL || params[i].value == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "SigV4: cannot encode the query");
    }
    qsort(params, request->query_count, sizeof(*params), compare_params);
    return AP_OK;
}

static void append_canonical_request(store_text *text, const ap_sigv4_request *request,
                                     const canonical_param *params, const canonical_header *headers,
                                     size_t header_count)
{
    store_text_appendf(text, "%s\n%s\n", request->method, request->canonical_uri);
    for (size_t i = 0; i < request->query_count; i++)
        store_text_appendf(text, "%s%s=%s", i > 0 ? "&" : "", params[i].name, params[i].value);
    store_text_append_string(text, "\n");
    for (size_t i = 0; i < header_count; i++)
        store_text_appendf(text, "%s:%s\n", headers[i].name, headers[i].value);
    store_text_append_string(text, "\n");
    for (size_t i = 0; i < header_count; i++)
        store_text_appendf(text, "%s%s", i > 0 ? ";" : "", headers[i].name);
    store_text_appendf(text, "\n%s", request->payload_hash);
}

static char *signed_header_list(const canonical_header *headers, size_t count)
{
    store_text text = {0};
    for (size_t i = 0; i < count; i++)
        store_text_appendf(&text, "%s%s", i > 0 ? ";" : "", headers[i].name);
    return store_text_take(&text);
}

static ap_status finish_signature(const ap_sigv4_request *request,
                                  const ap_sigv4_credentials *credentials,
                                  const canonical_header *headers, size_t header_count,
                                  ap_sigv4_result *out, ap_error *err)
{
    char date[9];
    snprintf(date, sizeof(date), "%.8s", request->amz_date);
    char request_hash[65];
    sha256_hex(out->canonical_request, strlen(out->canonical_request), request_hash);

    store_text text = {0};
    store_text_appendf(&text, "%s\n%s\n%s/%s/%s/aws4_request\n%s", ALGORITHM, request->amz_date,
                       date, credentials->region, credentials->service, request_hash);
    out->string_to_sign = store_text_take(&text);
    if (out->string_to_sign == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "SigV4: cannot build the string to sign");

    unsigned char key[32], signature[32];
    bool ok = derive_signing_key(credentials, date, key) &&
              hmac_sha256(key, sizeof(key), out->string_to_sign, signature);
    memset(key, 0, sizeof(key));
    if (!ok)
        return ap_error_set(err, AP_ERR_BACKEND, "SigV4: HMAC-SHA256 failed in OpenSSL");
    to_hex(signature, 32, out->signature);

    char *signed_headers = signed_header_list(headers, header_count);
    store_text_appendf(&text,
                       "%s Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, "
                       "Signature=%s",
                       ALGORITHM, credentials->access_key_id, date, credentials->region,
                       credentials->service, signed_headers ? signed_headers : "", out->signature);
    free(signed_headers);
    out->authorization = signed_headers ? store_text_take(&text) : NULL;
    store_text_free(&text);
    if (out->authorization == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "SigV4: cannot build the Authorization header");
    return AP_OK;
}

static ap_status check_request(const ap_sigv4_request *request,
                               const ap_sigv4_credentials *credentials, ap_error *err)
{
    if (request->method == NULL || request->canonical_uri == NULL ||
        request->payload_hash == NULL || request->amz_date == NULL ||
        strlen(request->amz_date) != 16)
        return ap_error_set(err, AP_ERR_INVALID,
                            "SigV4: the request needs a method, path, payload hash and a "
                            "YYYYMMDDTHHMMSSZ date");
    if (credentials->access_key_id == NULL || credentials->secret_access_key == NULL ||
        credentials->region == NULL || credentials->service == NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "SigV4: the credentials need an access key, a secret, a region "
                            "and a service");
    return AP_OK;
}

ap_status ap_sigv4_sign(const ap_sigv4_request *request, const ap_sigv4_credentials *credentials,
                        ap_sigv4_result *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    ap_status status = check_request(request, credentials, err);
    if (status != AP_OK)
        return status;
    size_t header_capacity = request->header_count + 2;
    canonical_header *headers = calloc(header_capacity, sizeof(*headers));
    canonical_param *params = calloc(request->query_count + 1, sizeof(*params));
    size_t header_count = 0;
    if (headers == NULL || params == NULL)
        status = ap_error_set(err, AP_ERR_NOMEM, "SigV4: cannot allocate the request");
    if (status == AP_OK)
        status = collect_headers(request, credentials, headers, &header_count, err);
    if (status == AP_OK)
        status = collect_params(request, params, err);
    if (status == AP_OK) {
        store_text text = {0};
        append_canonical_request(&text, request, params, headers, header_count);
        out->canonical_request = store_text_take(&text);
        if (out->canonical_request == NULL)
            status = ap_error_set(err, AP_ERR_NOMEM, "SigV4: cannot build the canonical request");
    }
    if (status == AP_OK)
        status = finish_signature(request, credentials, headers, header_count, out, err);

    for (size_t i = 0; headers != NULL && i < header_count; i++) {
        free(headers[i].name);
        free(headers[i].value);
    }
    for (size_t i = 0; params != NULL && i < request->query_count; i++) {
        free(params[i].name);
        free(params[i].value);
    }
    free(headers);
    free(params);
    if (status != AP_OK)
        ap_sigv4_result_free(out);
    return status;
}

void ap_sigv4_result_free(ap_sigv4_result *result)
{
    free(result->canonical_request);
    free(result->string_to_sign);
    free(result->authorization);
    memset(result, 0, sizeof(*result));
}
