/* The S3 client: settings, credentials, and the setup of each request. The
 * loop that sends requests and retries them is in s3_engine.c. */

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/store/s3_internal.h"

#define MIB              ((int64_t)1 << 20)
#define HASH_BUFFER_SIZE (1 << 16)

void ap_s3_options_default(ap_s3_options *options)
{
    memset(options, 0, sizeof(*options));
    options->addressing = AP_S3_ADDRESSING_AUTO;
    options->concurrency = 8;
    options->retries = 5;
    options->backoff_initial_ms = 200;
    options->backoff_max_ms = 20000;
    options->connect_timeout_ms = 10000;
    options->stall_timeout_s = 60;
    options->multipart_threshold = 64 * MIB;
    options->part_size = 16 * MIB;
}

void s3_describe(const char *bucket, const char *key, char *out, size_t size)
{
    snprintf(out, size, "s3://%s/%s", bucket, key ? key : "");
}

static const char *first_set(const char *a, const char *b)
{
    const char *value = getenv(a);
    if (value != NULL && value[0] != '\0')
        return value;
    value = b ? getenv(b) : NULL;
    return value != NULL && value[0] != '\0' ? value : NULL;
}

static ap_status check_options(const ap_s3_options *o, ap_error *err)
{
    if (o->concurrency < 1 || o->concurrency > 256)
        return ap_error_set(err, AP_ERR_INVALID, "S3 concurrency %d is out of range; use 1 to 256",
                            o->concurrency);
    if (o->retries < 0 || o->retries > 100)
        return ap_error_set(err, AP_ERR_INVALID, "S3 retries %d is out of range; use 0 to 100",
                            o->retries);
    if (o->backoff_initial_ms < 0 || o->backoff_max_ms < o->backoff_initial_ms)
        return ap_error_set(err, AP_ERR_INVALID,
                            "S3 backoff of %ld ms up to %ld ms is invalid; use 0 <= initial <= max",
                            o->backoff_initial_ms, o->backoff_max_ms);
    if (o->connect_timeout_ms <= 0 || o->stall_timeout_s <= 0)
        return ap_error_set(err, AP_ERR_INVALID, "S3 timeouts must be positive");
    if (o->part_size < 5 * MIB || o->part_size > 5 * 1024 * MIB ||
        o->multipart_threshold < o->part_size)
        return ap_error_set(err, AP_ERR_INVALID,
                            "S3 part size %lld is invalid; use 5 MiB to 5 GiB, and a multipart "
                            "threshold of at least the part size",
                            (long long)o->part_size);
    return AP_OK;
}

/* Split scheme://host[:port][/] into the client; any other path, a user
 * name, a query or a fragment is rejected. */
static ap_status parse_endpoint(ap_s3_client *client, const char *endpoint, ap_error *err)
{
    const char *rest;
    if (strncmp(endpoint, "https://", 8) == 0) {
        snprintf(client->scheme, sizeof(client->scheme), "https");
        rest = endpoint + 8;
    } else if (strncmp(endpoint, "http://", 7) == 0) {
        snprintf(client->scheme, sizeof(client->scheme), "http");
        rest = endpoint + 7;
    } else {
        return ap_error_set(err, AP_ERR_INVALID,
                            "S3 endpoint %.200s is not an http:// or https:// URL; set "
                            "store.endpoint or AWS_ENDPOINT_URL to https://HOST[:PORT]",
                            endpoint);
    }
    size_t authority = strcspn(rest, "/?#");
    const char *at = memchr(rest, '@', authority);
    if (at != NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "S3 endpoint %s://...@%.*s contains credentials; remove them and set "
                            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                            client->scheme, (int)(authority - (size_t)(at + 1 - rest)), at + 1);
    if (authority == 0 || strpbrk(rest, " \t\r\n") != NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "S3 endpoint %.200s has no host, or contains spaces; give "
                            "scheme://HOST[:PORT] only",
                            endpoint);
    if (rest[authority] != '\0' && strcmp(rest + authority, "/") != 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "S3 endpoint %.200s has a path, query or fragment; give "
                            "scheme://HOST[:PORT] only",
                            endpoint);
    if (authority >= sizeof(client->authority))
        return ap_error_set(err, AP_ERR_INVALID, "S3 endpoint host %.80s... is too long", rest);
    memcpy(client->authority, rest, authority);
    client->authority[authority] = '\0';
    for (char *p = client->authority; *p != '\0'; p++)
        *p = (char)tolower((unsigned char)*p);
    const char *suffix = ".amazonaws.com";
    char host[512];
    snprintf(host, sizeof(host), "%.*s", (int)strcspn(client->authority, ":"), client->authority);
    size_t length = strlen(host);
    client->amazon_endpoint =
        length > strlen(suffix) && strcmp(host + length - strlen(suffix), suffix) == 0;
    return AP_OK;
}

static ap_status resolve_location(ap_s3_client *client, ap_error *err)
{
    ap_s3_options *o = &client->options;
    if (o->region[0] == '\0') {
        const char *region = first_set("AWS_REGION", "AWS_DEFAULT_REGION");
        snprintf(o->region, sizeof(o->region), "%s", region ? region : "us-east-1");
    }
    for (const char *p = o->region; *p != '\0'; p++)
        if (!isalnum((unsigned char)*p) && *p != '-')
            return ap_error_set(err, AP_ERR_INVALID,
                                "S3 region %.64s is invalid; use a name like us-east-1", o->region);
    if (o->endpoint[0] == '\0') {
        const char *endpoint = first_set("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL");
        if (endpoint != NULL)
            snprintf(o->endpoint, sizeof(o->endpoint), "%s", endpoint);
        else
            snprintf(o->endpoint, sizeof(o->endpoint), "https://s3.%s.amazonaws.com", o->region);
    }
    return parse_endpoint(client, o->endpoint, err);
}

static ap_status read_credentials(ap_s3_client *client, ap_error *err)
{
    const char *key = getenv("AWS_ACCESS_KEY_ID");
    const char *secret = getenv("AWS_SECRET_ACCESS_KEY");
    const char *token = getenv("AWS_SESSION_TOKEN");
    if (key == NULL || key[0] == '\0' || secret == NULL || secret[0] == '\0')
        return ap_error_set(err, AP_ERR_INVALID,
                            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                            "(and AWS_SESSION_TOKEN for temporary credentials)");
    if (strpbrk(key, "\r\n/ ") != NULL || strpbrk(secret, "\r\n") != NULL ||
        (token != NULL && strpbrk(token, "\r\n") != NULL))
        return ap_error_set(err, AP_ERR_INVALID,
                            "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN "
                            "contains a line break, or the key id a space or '/'; set each to "
                            "the value alone");
    client->access_key_id = strdup(key);
    client->secret_access_key = strdup(secret);
    if (token != NULL && token[0] != '\0')
        client->session_token = strdup(token);
    if (client->access_key_id == NULL || client->secret_access_key == NULL ||
        (token != NULL && token[0] != '\0' && client->session_token == NULL))
        return ap_error_set(err, AP_ERR_NOMEM, "cannot copy the S3 credentials");
    return AP_OK;
}

ap_status ap_s3_open(const ap_s3_options *options, ap_s3_client **out, ap_error *err)
{
    *out = NULL;
    ap_status status = check_options(options, err);
    if (status != AP_OK)
        return status;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return ap_error_set(err, AP_ERR_BACKEND, "cannot initialise libcurl");
    ap_s3_client *client = calloc(1, sizeof(*client));
    if (client == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the S3 client");
    client->options = *options;
    client->jitter_state = (unsigned int)time(NULL) ^ (unsigned int)getpid();
    status = resolve_location(client, err);
    if (status == AP_OK)
        status = read_credentials(client, err);
    if (status == AP_OK && (client->multi = curl_multi_init()) == NULL)
        status = ap_error_set(err, AP_ERR_BACKEND, "cannot create a curl multi handle");
    if (status == AP_OK)
        curl_multi_setopt(client->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                          (long)client->options.concurrency);
    if (status != AP_OK) {
        ap_s3_close(client);
        return status;
    }
    *out = client;
    return AP_OK;
}

static void free_secret(char *secret)
{
    if (secret != NULL) {
        memset(secret, 0, strlen(secret));
        free(secret);
    }
}

void ap_s3_close(ap_s3_client *client)
{
    if (client == NULL)
        return;
    if (client->multi != NULL)
        curl_multi_cleanup(client->multi);
    free(client->access_key_id);
    free_secret(client->secret_access_key);
    free_secret(client->session_token);
    free(client);
}

ap_s3_stats ap_s3_get_stats(const ap_s3_client *client)
{
    return client->stats;
}

/* ---- Request setup ---- */

static void to_hex(const unsigned char *bytes, size_t size, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < size; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * size] = '\0';
}

/* SHA-256 (for the signature) and MD5 (to check the returned ETag) of the body. */
static ap_status hash_body(s3_op *op, ap_error *err)
{
    EVP_MD_CTX *sha = EVP_MD_CTX_new(), *md5 = EVP_MD_CTX_new();
    ap_status status = AP_OK;
    if (sha == NULL || md5 == NULL || !EVP_DigestInit_ex(sha, EVP_sha256(), NULL) ||
        !EVP_DigestInit_ex(md5, EVP_md5(), NULL))
        status = ap_error_set(err, AP_ERR_BACKEND, "cannot start SHA-256 and MD5 in OpenSSL");
    if (status == AP_OK && op->body == S3_BODY_MEMORY) {
        EVP_DigestUpdate(sha, op->body_data, (size_t)op->body_size);
        EVP_DigestUpdate(md5, op->body_data, (size_t)op->body_size);
    } else if (status == AP_OK && op->body == S3_BODY_FILE) {
        FILE *file = fopen(op->body_path, "rb");
        if (file == NULL || fseeko(file, (off_t)op->body_offset, SEEK_SET) != 0)
            status = ap_error_set(err, AP_ERR_IO, "cannot read %s", op->body_path);
        unsigned char *buffer = malloc(HASH_BUFFER_SIZE);
        if (status == AP_OK && buffer == NULL)
            status = ap_error_set(err, AP_ERR_NOMEM, "cannot allocate a read buffer");
        int64_t left = op->body_size;
        while (status == AP_OK && left > 0) {
            size_t want = left < HASH_BUFFER_SIZE ? (size_t)left : HASH_BUFFER_SIZE;
            size_t got = fread(buffer, 1, want, file);
            if (got == 0)
                status = ap_error_set(err, AP_ERR_IO,
                                      "%s ended before byte %lld; was it changed "
                                      "during the upload?",
                                      op->body_path, (long long)(op->body_offset + op->body_size));
            EVP_DigestUpdate(sha, buffer, got);
            EVP_DigestUpdate(md5, buffer, got);
            left -= (int64_t)got;
        }
        if (file != NULL)
            fclose(file);
        free(buffer);
    }
    unsigned char digest[32];
    unsigned int length = 0;
    if (status == AP_OK) {
        EVP_DigestFinal_ex(sha, digest, &length);
        to_hex(digest, 32, op->payload_hash);
        EVP_DigestFinal_ex(md5, digest, &length);
        to_hex(digest, 16, op->body_md5);
    }
    EVP_MD_CTX_free(sha);
    EVP_MD_CTX_free(md5);
    return status;
}

ap_status s3_op_prepare(s3_op *op, ap_error *err)
{
    op->state = S3_OP_WAITING;
    op->attempt = 0;
    op->not_before_ms = 0;
    op->result = AP_OK;
    if (op->body == S3_BODY_NONE)
        op->body_size = 0;
    return hash_body(op, err);
}

static bool dns_safe_bucket(const char *bucket)
{
    for (const char *p = bucket; *p != '\0'; p++)
        if (!islower((unsigned char)*p) && !isdigit((unsigned char)*p) && *p != '-')
            return false;
    return bucket[0] != '\0';
}

static bool use_virtual_host(const ap_s3_client *client, const char *bucket)
{
    switch (client->options.addressing) {
    case AP_S3_ADDRESSING_PATH:
        return false;
    case AP_S3_ADDRESSING_VIRTUAL:
        return true;
    case AP_S3_ADDRESSING_AUTO:
        break;
    }
    /* Names with dots would not match the wildcard TLS certificate. */
    return client->amazon_endpoint && dns_safe_bucket(bucket);
}

/* Build the encoded path, the host and the URL of op. */
static ap_status build_target(ap_s3_client *client, s3_op *op, char **path, char *host,
                              size_t host_size, ap_error *err)
{
    bool virtual_host = use_virtual_host(client, op->bucket);
    const char *key = op->key ? op->key : "";
    char *encoded_key = ap_sigv4_encode(key, strlen(key), true);
    char *encoded_bucket = ap_sigv4_encode(op->bucket, strlen(op->bucket), false);
    store_text text = {0};
    if (virtual_host) {
        snprintf(host, host_size, "%s.%s", op->bucket, client->authority);
        store_text_appendf(&text, "/%s", encoded_key ? encoded_key : "");
    } else {
        snprintf(host, host_size, "%s", client->authority);
        store_text_appendf(&text, "/%s%s%s", encoded_bucket ? encoded_bucket : "",
                           op->key ? "/" : "", encoded_key ? encoded_key : "");
    }
    *path = store_text_take(&text);

    store_text_appendf(&text, "%s://%s%s", client->scheme, host, *path ? *path : "");
    for (size_t i = 0; i < op->query_count; i++) {
        const char *name = op->query[i].name, *value = op->query[i].value;
        char *encoded_name = ap_sigv4_encode(name, strlen(name), false);
        char *encoded_value = value ? ap_sigv4_encode(value, strlen(value), false) : NULL;
        store_text_appendf(&text, "%c%s", i == 0 ? '?' : '&', encoded_name ? encoded_name : "");
        if (encoded_value != NULL && encoded_value[0] != '\0')
            store_text_appendf(&text, "=%s", encoded_value);
        else if (value != NULL && value[0] != '\0')
            text.failed = true;
        free(encoded_name);
        free(encoded_value);
    }
    free(op->url);
    op->url = store_text_take(&text);
    bool ok = encoded_key && encoded_bucket && *path && op->url;
    free(encoded_key);
    free(encoded_bucket);
    if (!ok)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot build the URL of an S3 request");
    return AP_OK;
}

/* Append "name: value", or "name:" for an empty value, which tells curl to
 * leave that header out. */
static struct curl_slist *append_header(struct curl_slist *list, bool *ok, const char *name,
                                        const char *value)
{
    if (!*ok)
        return list;
    store_text text = {0};
    store_text_appendf(&text, "%s:%s%s", name, value[0] ? " " : "", value);
    char *line = store_text_take(&text);
    struct curl_slist *grown = line ? curl_slist_append(list, line) : NULL;
    if (line != NULL)
        memset(line, 0, strlen(line));
    free(line);
    if (grown == NULL) {
        *ok = false;
        return list;
    }
    return grown;
}

/* Sign op for this attempt and set its header list. */
static ap_status sign_request(ap_s3_client *client, s3_op *op, ap_error *err)
{
    char host[640], date[17], range[96] = "";
    char *path = NULL;
    ap_status status = build_target(client, op, &path, host, sizeof(host), err);
    if (status != AP_OK) {
        free(path);
        return status;
    }
    ap_sigv4_format_date(time(NULL), date);
    if (op->range_first >= 0)
        snprintf(range, sizeof(range), "bytes=%lld-%lld", (long long)op->range_first,
                 (long long)op->range_last);

    ap_sigv4_pair headers[4] = {{"host", host}, {"x-amz-content-sha256", op->payload_hash}};
    size_t header_count = 2;
    if (range[0] != '\0')
        headers[header_count++] = (ap_sigv4_pair){"range", range};
    if (op->content_type != NULL)
        headers[header_count++] = (ap_sigv4_pair){"content-type", op->content_type};
    ap_sigv4_request request = {
        .method = op->method,
        .canonical_uri = path,
        .query = op->query,
        .query_count = op->query_count,
        .headers = headers,
        .header_count = header_count,
        .payload_hash = op->payload_hash,
        .amz_date = date,
    };
    ap_sigv4_credentials credentials = {
        .access_key_id = client->access_key_id,
        .secret_access_key = client->secret_access_key,
        .session_token = client->session_token,
        .region = client->options.region,
        .service = "s3",
    };
    ap_sigv4_result signature;
    status = ap_sigv4_sign(&request, &credentials, &signature, err);
    free(path);
    if (status != AP_OK)
        return status;

    bool ok = true;
    struct curl_slist *list = NULL;
    list = append_header(list, &ok, "Host", host);
    list = append_header(list, &ok, "x-amz-date", date);
    list = append_header(list, &ok, "x-amz-content-sha256", op->payload_hash);
    list = append_header(list, &ok, "Authorization", signature.authorization);
    if (client->session_token != NULL)
        list = append_header(list, &ok, "x-amz-security-token", client->session_token);
    if (range[0] != '\0')
        list = append_header(list, &ok, "Range", range);
    /* Without a type curl would send its form type for a POST body. */
    list = append_header(list, &ok, "Content-Type", op->content_type ? op->content_type : "");
    list = append_header(list, &ok, "Expect", "");
    list = append_header(list, &ok, "Accept-Encoding", "identity");
    ap_sigv4_result_free(&signature);
    curl_slist_free_all(op->header_list);
    op->header_list = list;
    if (!ok)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot build the headers of an S3 request");
    return AP_OK;
}

/* ---- Transfer callbacks ---- */

static void parse_header_value(const char *line, size_t size, char *out, size_t out_size)
{
    const char *colon = memchr(line, ':', size);
    if (colon == NULL)
        return;
    const char *start = colon + 1, *end = line + size;
    while (start < end && (*start == ' ' || *start == '\t'))
        start++;
    while (end > start && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    snprintf(out, out_size, "%.*s", (int)(end - start), start);
}

static bool header_is(const char *line, size_t size, const char *name)
{
    size_t length = strlen(name);
    return size > length && line[length] == ':' && strncasecmp(line, name, length) == 0;
}

static size_t on_header(char *line, size_t item_size, size_t count, void *user)
{
    s3_op *op = user;
    size_t size = item_size * count;
    char value[256] = "";
    if (size >= 5 && strncmp(line, "HTTP/", 5) == 0) {
        /* A new status line (after 100 Continue, say) starts a new set of headers. */
        op->etag[0] = op->content_range[0] = op->bucket_region[0] = '\0';
        op->content_length = -1;
        op->retry_after_s = -1;
    } else if (header_is(line, size, "ETag")) {
        parse_header_value(line, size, value, sizeof(value));
        size_t length = strlen(value);
        if (length >= 2 && value[0] == '"' && value[length - 1] == '"')
            snprintf(op->etag, sizeof(op->etag), "%.*s", (int)(length - 2), value + 1);
        else
            snprintf(op->etag, sizeof(op->etag), "%.*s", AP_S3_ETAG_MAX - 1, value);
    } else if (header_is(line, size, "Content-Length")) {
        parse_header_value(line, size, value, sizeof(value));
        char *end = NULL;
        long long length = strtoll(value, &end, 10);
        op->content_length = (end != value && *end == '\0' && length >= 0) ? length : -1;
    } else if (header_is(line, size, "Content-Range")) {
        parse_header_value(line, size, op->content_range, sizeof(op->content_range));
    } else if (header_is(line, size, "Retry-After")) {
        parse_header_value(line, size, value, sizeof(value));
        char *end = NULL;
        long seconds = strtol(value, &end, 10);
        op->retry_after_s = (end != value && *end == '\0' && seconds >= 0) ? seconds : -1;
    } else if (header_is(line, size, "x-amz-bucket-region")) {
        parse_header_value(line, size, op->bucket_region, sizeof(op->bucket_region));
    }
    return size;
}

static size_t on_body(char *data, size_t item_size, size_t count, void *user)
{
    s3_op *op = user;
    size_t size = item_size * count;
    long status = 0;
    curl_easy_getinfo(op->easy, CURLINFO_RESPONSE_CODE, &status);
    op->received += (int64_t)size;
    bool success = status >= 200 && status < 300;
    if (success && op->sink == S3_SINK_FILE) {
        ap_error ignored;
        if (!op->file_open || ap_atomic_write(&op->file, data, size, &ignored) != AP_OK) {
            op->write_failed = true;
            return 0;
        }
        EVP_DigestUpdate(op->md5, data, size);
        return size;
    }
    size_t limit = success ? op->sink_max : S3_ERROR_BODY_MAX;
    if (op->response.size + size > limit) {
        op->sink_overflow = true;
        return success ? 0 : size;
    }
    store_text_append(&op->response, data, size);
    if (op->response.failed) {
        op->write_failed = true;
        return 0;
    }
    return size;
}

static size_t on_upload(char *buffer, size_t item_size, size_t count, void *user)
{
    s3_op *op = user;
    size_t want = item_size * count;
    if ((int64_t)want > op->upload_left)
        want = (size_t)op->upload_left;
    if (want == 0)
        return 0;
    size_t got = fread(buffer, 1, want, op->upload);
    if (got == 0)
        return CURL_READFUNC_ABORT;
    op->upload_left -= (int64_t)got;
    return got;
}

static int on_seek(void *user, curl_off_t offset, int origin)
{
    s3_op *op = user;
    if (origin != SEEK_SET || offset < 0 || offset > op->body_size)
        return CURL_SEEKFUNC_CANTSEEK;
    if (op->upload != NULL && fseeko(op->upload, (off_t)(op->body_offset + offset), SEEK_SET) != 0)
        return CURL_SEEKFUNC_FAIL;
    op->upload_left = op->body_size - offset;
    return CURL_SEEKFUNC_OK;
}

static size_t on_memory_upload(char *buffer, size_t item_size, size_t count, void *user)
{
    s3_op *op = user;
    size_t want = item_size * count;
    if ((int64_t)want > op->upload_left)
        want = (size_t)op->upload_left;
    memcpy(buffer, op->body_data + (op->body_size - op->upload_left), want);
    op->upload_left -= (int64_t)want;
    return want;
}

#define SET_OPTION(result, curl, option, value)                                                    \
    do {                                                                                           \
        if ((result) == CURLE_OK)                                                                  \
            (result) = curl_easy_setopt((curl), (option), (value));                                \
    } while (0)

static CURLcode set_transfer_options(ap_s3_client *client, s3_op *op)
{
    CURL *curl = op->easy;
    const ap_s3_options *o = &client->options;
    CURLcode r = CURLE_OK;
    SET_OPTION(r, curl, CURLOPT_URL, op->url);
    SET_OPTION(r, curl, CURLOPT_HTTPHEADER, op->header_list);
    SET_OPTION(r, curl, CURLOPT_PRIVATE, op);
    SET_OPTION(r, curl, CURLOPT_ERRORBUFFER, op->curl_message);
    SET_OPTION(r, curl, CURLOPT_NOSIGNAL, 1L);
    SET_OPTION(r, curl, CURLOPT_PROTOCOLS_STR, "http,https");
    SET_OPTION(r, curl, CURLOPT_FOLLOWLOCATION, 0L);
    /* Keys may hold "." and ".." segments; curl would remove them and break the signature. */
    SET_OPTION(r, curl, CURLOPT_PATH_AS_IS, 1L);
    SET_OPTION(r, curl, CURLOPT_SSL_VERIFYPEER, 1L);
    SET_OPTION(r, curl, CURLOPT_SSL_VERIFYHOST, 2L);
    if (o->ca_bundle[0] != '\0')
        SET_OPTION(r, curl, CURLOPT_CAINFO, o->ca_bundle);
    SET_OPTION(r, curl, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    /* Less than one byte per second for stall_timeout_s aborts the attempt,
     * whether the server stalls before its reply or in the middle of a body. */
    SET_OPTION(r, curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    SET_OPTION(r, curl, CURLOPT_LOW_SPEED_TIME, o->stall_timeout_s);
    SET_OPTION(r, curl, CURLOPT_HEADERFUNCTION, on_header);
    SET_OPTION(r, curl, CURLOPT_HEADERDATA, op);
    SET_OPTION(r, curl, CURLOPT_WRITEFUNCTION, on_body);
    SET_OPTION(r, curl, CURLOPT_WRITEDATA, op);
    if (strcmp(op->method, "HEAD") == 0) {
        SET_OPTION(r, curl, CURLOPT_NOBODY, 1L);
    } else if (strcmp(op->method, "PUT") == 0 || strcmp(op->method, "POST") == 0) {
        SET_OPTION(r, curl, CURLOPT_UPLOAD, 1L);
        SET_OPTION(r, curl, CURLOPT_CUSTOMREQUEST, op->method);
        SET_OPTION(r, curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)op->body_size);
        SET_OPTION(r, curl, CURLOPT_READDATA, op);
        SET_OPTION(r, curl, CURLOPT_SEEKDATA, op);
        SET_OPTION(r, curl, CURLOPT_SEEKFUNCTION, on_seek);
        SET_OPTION(r, curl, CURLOPT_READFUNCTION,
                   op->body == S3_BODY_FILE ? on_upload : on_memory_upload);
    } else if (strcmp(op->method, "GET") != 0) {
        SET_OPTION(r, curl, CURLOPT_CUSTOMREQUEST, op->method);
    }
    return r;
}

/* Reset the response state and open the body file and the download file. */
static ap_status open_attempt_files(s3_op *op, ap_error *err)
{
    op->http_status = 0;
    op->etag[0] = op->content_range[0] = op->bucket_region[0] = '\0';
    op->content_length = -1;
    op->retry_after_s = -1;
    op->received = 0;
    op->sink_overflow = op->write_failed = false;
    op->curl_message[0] = '\0';
    store_text_clear(&op->response);
    op->upload_left = op->body_size;
    if (op->body == S3_BODY_FILE) {
        op->upload = fopen(op->body_path, "rb");
        if (op->upload == NULL || fseeko(op->upload, (off_t)op->body_offset, SEEK_SET) != 0)
            return ap_error_set(err, AP_ERR_IO, "cannot read %s", op->body_path);
    }
    if (op->sink == S3_SINK_FILE) {
        ap_status status = ap_atomic_open(&op->file, op->sink_path, err);
        if (status != AP_OK)
            return status;
        op->file_open = true;
        op->md5 = EVP_MD_CTX_new();
        if (op->md5 == NULL || !EVP_DigestInit_ex(op->md5, EVP_md5(), NULL))
            return ap_error_set(err, AP_ERR_BACKEND, "cannot start MD5 in OpenSSL");
    }
    return AP_OK;
}

ap_status s3_attempt_begin(ap_s3_client *client, s3_op *op, ap_error *err)
{
    ap_status status = sign_request(client, op, err);
    if (status == AP_OK)
        status = open_attempt_files(op, err);
    if (status == AP_OK && (op->easy = curl_easy_init()) == NULL)
        status = ap_error_set(err, AP_ERR_BACKEND, "cannot create a curl handle");
    if (status == AP_OK && set_transfer_options(client, op) != CURLE_OK)
        status = ap_error_set(err, AP_ERR_BACKEND, "cannot set curl options for %s", op->method);
    return status;
}
