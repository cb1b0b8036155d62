/* The MLflow REST client. One curl easy handle per client is reset and reused
 * for every request, so connections to the server stay open between calls. */

#include "pipeline/registry/mlflow_http.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/common/log.h"

#define API_PREFIX         "/api/2.0/mlflow/"
#define ARTIFACTS_PREFIX   "/api/2.0/mlflow-artifacts/artifacts/"
#define RESPONSE_MAX       (64u << 20)
#define ERROR_BODY_MAX     (64u << 10)
#define SERVER_MESSAGE_MAX 300
/* An artifact transfer slower than LOW_SPEED_BYTES per second for
 * LOW_SPEED_SECONDS is aborted and retried, long before its total timeout. */
#define LOW_SPEED_BYTES   1024
#define LOW_SPEED_SECONDS 60

#define SET_OPTION(result, curl, option, value)                                                    \
    do {                                                                                           \
        if ((result) == CURLE_OK)                                                                  \
            (result) = curl_easy_setopt((curl), (option), (value));                                \
    } while (0)

typedef struct {
    char *data;
    size_t size;
    size_t capacity;
    size_t max;
    bool truncated;
} byte_buffer;

/* Where a response body goes. API replies and error replies go to body, and
 * the 2xx body of a download goes through the hash into file. */
typedef struct {
    CURL *curl;
    byte_buffer body;
    bool download;
    ap_sha256_ctx *hash;
    long long size;
    ap_atomic_file *file;
    bool write_failed;
    ap_error write_error;
    long retry_after_ms;
} response_sink;

/* One request, sent the same way on every try. */
typedef struct {
    const char *method;
    char *url;
    char label[512]; /* "METHOD PATH" for messages */
    const char *body;
    size_t body_size;
    int upload_fd;
    long long upload_size;
    long timeout_ms;
    bool transfer;
    struct curl_slist *headers;
} request_spec;

typedef struct {
    CURLcode code;
    long http_status;
    bool sent; /* request bytes reached the connection */
    char curl_message[CURL_ERROR_SIZE];
} try_result;

/* ---- Setup ---- */

static ap_status parse_url(mlflow_client *client, const char *url, ap_error *err)
{
    const char *scheme = NULL, *rest = NULL;
    if (strncmp(url, "http://", 7) == 0) {
        scheme = "http";
        rest = url + 7;
    } else if (strncmp(url, "https://", 8) == 0) {
        scheme = "https";
        rest = url + 8;
    } else if (strncmp(url, "mlflow://", 9) == 0) {
        scheme = "http";
        rest = url + 9;
    } else {
        return ap_error_set(err, AP_ERR_INVALID,
                            "MLflow URL %.200s has an unsupported scheme; use "
                            "http://HOST[:PORT][/PATH], https://... or mlflow://... (plain HTTP)",
                            url);
    }
    size_t authority = strcspn(rest, "/");
    const char *at = memchr(rest, '@', authority);
    if (at != NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "MLflow URL %s://...@%.*s contains credentials; remove them and set "
                            "MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
                            "MLFLOW_TRACKING_PASSWORD",
                            scheme, (int)(authority - (size_t)(at + 1 - rest)), at + 1);
    if (authority == 0)
        return ap_error_set(err, AP_ERR_INVALID, "MLflow URL %.200s has no host", url);
    if (strpbrk(rest, "?# \t\r\n") != NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "MLflow URL %.200s contains a query, fragment or space; give only "
                            "scheme, host, port and path",
                            url);
    size_t length = strlen(rest);
    while (length > authority && rest[length - 1] == '/')
        length--;
    if (snprintf(client->base_url, sizeof(client->base_url), "%s://%.*s", scheme, (int)length,
                 rest) >= (int)sizeof(client->base_url))
        return ap_error_set(err, AP_ERR_INVALID, "MLflow URL %.80s... is longer than %d bytes", url,
                            MLFLOW_URL_MAX - 1);
    return AP_OK;
}

static ap_status check_options(const ap_mlflow_options *options, ap_error *err)
{
    if (options->max_attempts < 1 || options->max_attempts > 100)
        return ap_error_set(err, AP_ERR_INVALID,
                            "MLflow max_attempts %d is out of range; use 1 to 100",
                            options->max_attempts);
    if (options->connect_timeout_ms <= 0 || options->request_timeout_ms <= 0 ||
        options->transfer_timeout_ms <= 0 || options->ready_timeout_ms <= 0)
        return ap_error_set(err, AP_ERR_INVALID, "MLflow timeouts must be positive");
    if (options->backoff_initial_ms < 0 || options->backoff_max_ms < options->backoff_initial_ms)
        return ap_error_set(err, AP_ERR_INVALID,
                            "MLflow backoff of %ld ms up to %ld ms is invalid; use 0 <= initial "
                            "<= max",
                            options->backoff_initial_ms, options->backoff_max_ms);
    return AP_OK;
}

static bool has_line_break(const char *text)
{
    return strpbrk(text, "\r\n") != NULL;
}

/* Append "Authorization: Bearer TOKEN" to both header lists. */
static ap_status add_bearer_header(mlflow_client *client, const char *token, ap_error *err)
{
    if (has_line_break(token))
        return ap_error_set(err, AP_ERR_INVALID,
                            "MLFLOW_TRACKING_TOKEN contains a line break; set it to the token "
                            "alone");
    size_t size = strlen(token) + 32;
    char *header = malloc(size);
    if (header == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot build the authorization header");
    snprintf(header, size, "Authorization: Bearer %s", token);
    struct curl_slist *json = curl_slist_append(client->json_headers, header);
    if (json != NULL)
        client->json_headers = json;
    struct curl_slist *binary =
        json != NULL ? curl_slist_append(client->binary_headers, header) : NULL;
    if (binary != NULL)
        client->binary_headers = binary;
    memset(header, 0, size);
    free(header);
    if (json == NULL || binary == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot build the authorization header");
    return AP_OK;
}

static ap_status read_credentials(mlflow_client *client, ap_error *err)
{
    const char *token = getenv("MLFLOW_TRACKING_TOKEN");
    const char *user = getenv("MLFLOW_TRACKING_USERNAME");
    const char *password = getenv("MLFLOW_TRACKING_PASSWORD");
    const char *ca_file = getenv("MLFLOW_TRACKING_SERVER_CERT_PATH");
    const char *insecure = getenv("MLFLOW_TRACKING_INSECURE_TLS");
    client->insecure_tls = insecure != NULL && strcasecmp(insecure, "true") == 0;
    if (ca_file != NULL && ca_file[0] != '\0' && (client->ca_file = strdup(ca_file)) == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot copy MLFLOW_TRACKING_SERVER_CERT_PATH");
    if (token != NULL && token[0] != '\0')
        return add_bearer_header(client, token, err);
    bool has_user = user != NULL && user[0] != '\0';
    bool has_password = password != NULL && password[0] != '\0';
    if (!has_user && !has_password)
        return AP_OK;
    if (!has_user || !has_password)
        return ap_error_set(err, AP_ERR_INVALID,
                            "only one of MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                            "is set; set both for basic auth, or neither");
    client->username = strdup(user);
    client->password = strdup(password);
    if (client->username == NULL || client->password == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot copy the MLflow credentials");
    return AP_OK;
}

static ap_status build_headers(mlflow_client *client, ap_error *err)
{
    static const char *const json_lines[] = {"Content-Type: application/json",
                                             "Accept: application/json", "Expect:"};
    static const char *const binary_lines[] = {"Content-Type: application/octet-stream", "Expect:"};
    for (size_t i = 0; i < sizeof(json_lines) / sizeof(json_lines[0]); i++) {
        struct curl_slist *grown = curl_slist_append(client->json_headers, json_lines[i]);
        if (grown == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot build the request headers");
        client->json_headers = grown;
    }
    for (size_t i = 0; i < sizeof(binary_lines) / sizeof(binary_lines[0]); i++) {
        struct curl_slist *grown = curl_slist_append(client->binary_headers, binary_lines[i]);
        if (grown == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot build the request headers");
        client->binary_headers = grown;
    }
    return AP_OK;
}

ap_status mlflow_client_init(mlflow_client *client, const char *url,
                             const ap_mlflow_options *options, ap_error *err)
{
    memset(client, 0, sizeof(*client));
    client->options = *options;
    client->options.cache_dir = NULL;
    ap_status status = parse_url(client, url, err);
    if (status == AP_OK)
        status = check_options(options, err);
    if (status != AP_OK)
        return status;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return ap_error_set(err, AP_ERR_BACKEND, "cannot initialise libcurl");
    client->curl = curl_easy_init();
    if (client->curl == NULL) {
        curl_global_cleanup();
        return ap_error_set(err, AP_ERR_NOMEM, "cannot create a libcurl handle");
    }
    status = build_headers(client, err);
    if (status == AP_OK)
        status = read_credentials(client, err);
    if (status != AP_OK) {
        mlflow_client_cleanup(client);
        return status;
    }
    if (client->insecure_tls && strncmp(client->base_url, "https:", 6) == 0)
        AP_WARN("MLFLOW_TRACKING_INSECURE_TLS=true: the TLS certificate of %s is not verified, "
                "so anyone on the network path can read and change the registry traffic; set "
                "MLFLOW_TRACKING_SERVER_CERT_PATH to the server's CA file instead",
                client->base_url);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    client->jitter_seed = (unsigned int)now.tv_nsec ^ (unsigned int)getpid();
    return AP_OK;
}

static void free_secret(char *secret)
{
    if (secret != NULL)
        memset(secret, 0, strlen(secret));
    free(secret);
}

void mlflow_client_cleanup(mlflow_client *client)
{
    if (client->curl == NULL)
        return;
    curl_easy_cleanup(client->curl);
    curl_slist_free_all(client->json_headers);
    curl_slist_free_all(client->binary_headers);
    free_secret(client->username);
    free_secret(client->password);
    free(client->ca_file);
    curl_global_cleanup();
    memset(client, 0, sizeof(*client));
}

/* ---- Backoff ---- */

static void sleep_ms(long milliseconds)
{
    struct timespec pause = {milliseconds / 1000, (milliseconds % 1000) * 1000000L};
    while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
        ;
}

void mlflow_backoff(mlflow_client *client, int attempt, long retry_after_ms)
{
    long max = client->options.backoff_max_ms;
    long delay = client->options.backoff_initial_ms;
    for (int i = 1; i < attempt && delay < max; i++)
        delay *= 2;
    if (delay > max)
        delay = max;
    /* Half the delay is fixed and half random, so clients that failed
     * together do not all come back at the same moment. */
    long wait = delay / 2 + (long)((unsigned long)rand_r(&client->jitter_seed) %
                                   (unsigned long)(delay - delay / 2 + 1));
    if (retry_after_ms > wait)
        wait = retry_after_ms < max ? retry_after_ms : max;
    sleep_ms(wait);
}

/* ---- Response bodies ---- */

static bool buffer_append(byte_buffer *buffer, const char *data, size_t size)
{
    if (buffer->size + size > buffer->max) {
        buffer->truncated = true;
        size = buffer->max - buffer->size;
    }
    if (buffer->size + size + 1 > buffer->capacity) {
        size_t capacity = buffer->capacity > 0 ? buffer->capacity : 4096;
        while (capacity < buffer->size + size + 1)
            capacity *= 2;
        char *grown = realloc(buffer->data, capacity);
        if (grown == NULL)
            return false;
        buffer->data = grown;
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->size, data, size);
    buffer->size += size;
    buffer->data[buffer->size] = '\0';
    return true;
}

static size_t write_body(char *data, size_t size, size_t count, void *user)
{
    response_sink *sink = user;
    size_t bytes = size * count;
    long status = 0;
    if (sink->download)
        curl_easy_getinfo(sink->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status >= 200 && status < 300) {
        ap_sha256_update(sink->hash, data, bytes);
        sink->size += (long long)bytes;
        if (sink->file != NULL &&
            ap_atomic_write(sink->file, data, bytes, &sink->write_error) != AP_OK) {
            sink->write_failed = true;
            return 0;
        }
        return bytes;
    }
    if (!buffer_append(&sink->body, data, bytes)) {
        sink->write_failed = true;
        ap_error_set(&sink->write_error, AP_ERR_NOMEM, "cannot store a reply of %zu bytes",
                     sink->body.size + bytes);
        return 0;
    }
    /* An API reply larger than the limit is an error, but an error page is just cut. */
    return sink->body.truncated && !sink->download ? 0 : bytes;
}

/* Read "Retry-After: SECONDS". The HTTP-date form is ignored. */
static size_t read_header(char *data, size_t size, size_t count, void *user)
{
    response_sink *sink = user;
    size_t bytes = size * count;
    static const char name[] = "retry-after:";
    if (bytes > sizeof(name) && bytes < 64 && strncasecmp(data, name, sizeof(name) - 1) == 0) {
        char value[64];
        memcpy(value, data + sizeof(name) - 1, bytes - (sizeof(name) - 1));
        value[bytes - (sizeof(name) - 1)] = '\0';
        char *end = NULL;
        long seconds = strtol(value, &end, 10);
        while (end != NULL && (*end == ' ' || *end == '\r' || *end == '\n'))
            end++;
        if (end != NULL && *end == '\0' && seconds >= 0 && seconds < 86400)
            sink->retry_after_ms = seconds * 1000;
    }
    return bytes;
}

static size_t read_upload(char *buffer, size_t size, size_t count, void *user)
{
    int fd = *(const int *)user;
    for (;;) {
        ssize_t got = read(fd, buffer, size * count);
        if (got >= 0)
            return (size_t)got;
        if (errno != EINTR)
            return CURL_READFUNC_ABORT;
    }
}

/* Clear what an earlier try left: the body, the hash, the file, the upload position. */
static ap_status sink_reset(response_sink *sink, const request_spec *spec, ap_error *err)
{
    sink->body.size = 0;
    sink->body.truncated = false;
    sink->retry_after_ms = 0;
    if (sink->body.data != NULL)
        sink->body.data[0] = '\0';
    if (sink->download) {
        char ignored[65];
        if (sink->hash != NULL)
            ap_sha256_end(sink->hash, ignored);
        sink->hash = ap_sha256_begin();
        sink->size = 0;
        if (sink->hash == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot start a sha256 hash");
        if (sink->file != NULL &&
            (ftruncate(sink->file->fd, 0) != 0 || lseek(sink->file->fd, 0, SEEK_SET) != 0))
            return ap_error_set(err, AP_ERR_IO, "cannot rewind %s: %s", sink->file->temp_path,
                                strerror(errno));
    }
    if (spec->upload_fd >= 0 && lseek(spec->upload_fd, 0, SEEK_SET) != 0)
        return ap_error_set(err, AP_ERR_IO, "cannot rewind the file to upload: %s",
                            strerror(errno));
    return AP_OK;
}

static void sink_free(response_sink *sink)
{
    if (sink->hash != NULL) {
        char ignored[65];
        ap_sha256_end(sink->hash, ignored);
        sink->hash = NULL;
    }
    free(sink->body.data);
    sink->body.data = NULL;
}

/* ---- One try ---- */

static CURLcode set_common_options(mlflow_client *client, const request_spec *spec,
                                   response_sink *sink, char *curl_message)
{
    CURL *curl = client->curl;
    CURLcode result = CURLE_OK;
    SET_OPTION(result, curl, CURLOPT_URL, spec->url);
    SET_OPTION(result, curl, CURLOPT_NOSIGNAL, 1L);
    SET_OPTION(result, curl, CURLOPT_CONNECTTIMEOUT_MS, client->options.connect_timeout_ms);
    SET_OPTION(result, curl, CURLOPT_TIMEOUT_MS, spec->timeout_ms);
    SET_OPTION(result, curl, CURLOPT_PROTOCOLS_STR, "http,https");
    SET_OPTION(result, curl, CURLOPT_FOLLOWLOCATION, 0L);
    SET_OPTION(result, curl, CURLOPT_ERRORBUFFER, curl_message);
    SET_OPTION(result, curl, CURLOPT_WRITEFUNCTION, write_body);
    SET_OPTION(result, curl, CURLOPT_WRITEDATA, sink);
    SET_OPTION(result, curl, CURLOPT_HEADERFUNCTION, read_header);
    SET_OPTION(result, curl, CURLOPT_HEADERDATA, sink);
    SET_OPTION(result, curl, CURLOPT_HTTPHEADER, spec->headers);
    if (client->username != NULL) {
        SET_OPTION(result, curl, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        SET_OPTION(result, curl, CURLOPT_USERNAME, client->username);
        SET_OPTION(result, curl, CURLOPT_PASSWORD, client->password);
    }
    if (client->ca_file != NULL)
        SET_OPTION(result, curl, CURLOPT_CAINFO, client->ca_file);
    if (client->insecure_tls) {
        SET_OPTION(result, curl, CURLOPT_SSL_VERIFYPEER, 0L);
        SET_OPTION(result, curl, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (spec->transfer) {
        SET_OPTION(result, curl, CURLOPT_LOW_SPEED_LIMIT, (long)LOW_SPEED_BYTES);
        SET_OPTION(result, curl, CURLOPT_LOW_SPEED_TIME, (long)LOW_SPEED_SECONDS);
    }
    return result;
}

static CURLcode set_method_options(CURL *curl, request_spec *spec)
{
    CURLcode result = CURLE_OK;
    if (strcmp(spec->method, "GET") == 0) {
        SET_OPTION(result, curl, CURLOPT_HTTPGET, 1L);
    } else if (spec->upload_fd >= 0) {
        SET_OPTION(result, curl, CURLOPT_UPLOAD, 1L);
        SET_OPTION(result, curl, CURLOPT_READFUNCTION, read_upload);
        SET_OPTION(result, curl, CURLOPT_READDATA, &spec->upload_fd);
        SET_OPTION(result, curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)spec->upload_size);
    } else {
        SET_OPTION(result, curl, CURLOPT_POSTFIELDS, spec->body);
        SET_OPTION(result, curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)spec->body_size);
        if (strcmp(spec->method, "POST") != 0)
            SET_OPTION(result, curl, CURLOPT_CUSTOMREQUEST, spec->method);
    }
    return result;
}

static void perform_try(mlflow_client *client, request_spec *spec, response_sink *sink,
                        try_result *result)
{
    memset(result, 0, sizeof(*result));
    curl_easy_reset(client->curl);
    result->code = set_common_options(client, spec, sink, result->curl_message);
    if (result->code == CURLE_OK)
        result->code = set_method_options(client->curl, spec);
    if (result->code != CURLE_OK)
        return;
    result->code = curl_easy_perform(client->curl);
    long request_size = 0;
    curl_easy_getinfo(client->curl, CURLINFO_RESPONSE_CODE, &result->http_status);
    curl_easy_getinfo(client->curl, CURLINFO_REQUEST_SIZE, &request_size);
    result->sent = request_size > 0;
}

/* ---- Failures ---- */

static bool curl_code_transient(CURLcode code)
{
    switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

static bool http_status_transient(long status)
{
    return status == 408 || status == 429 || (status >= 500 && status != 501);
}

/* Copy text into out without control characters, cut at max bytes. */
static void copy_printable(char *out, size_t size, const char *text, size_t max)
{
    size_t length = 0;
    for (const char *p = text; *p != '\0' && length + 1 < size && length < max; p++)
        out[length++] = (unsigned char)*p < 0x20 ? ' ' : *p;
    out[length] = '\0';
}

/* Read MLflow's {"error_code", "message"} from an error reply, or the start of
 * any other body. */
static void describe_reply(const byte_buffer *body, mlflow_failure *failure, char *message,
                           size_t size)
{
    message[0] = '\0';
    if (body->data == NULL || body->size == 0)
        return;
    json_t *reply = json_loadb(body->data, body->size, 0, NULL);
    const char *code = json_string_value(json_object_get(reply, "error_code"));
    const char *text = json_string_value(json_object_get(reply, "message"));
    if (code != NULL)
        copy_printable(failure->error_code, sizeof(failure->error_code), code,
                       sizeof(failure->error_code) - 1);
    copy_printable(message, size, text != NULL ? text : body->data, SERVER_MESSAGE_MAX);
    json_decref(reply);
}

static ap_status status_for_reply(long http_status, const char *error_code)
{
    if (http_status == 404 || strcmp(error_code, "RESOURCE_DOES_NOT_EXIST") == 0)
        return AP_ERR_NOT_FOUND;
    if (http_status_transient(http_status))
        return AP_ERR_IO;
    return AP_ERR_INVALID;
}

static const char *hint_for_reply(long http_status)
{
    if (http_status == 401 || http_status == 403)
        return "; check MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and "
               "MLFLOW_TRACKING_PASSWORD";
    if (http_status >= 300 && http_status < 400)
        return "; redirects are not followed, so give the URL the server redirects to";
    if (http_status_transient(http_status))
        return "; check the MLflow server's log";
    return "";
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + 1e-9 * (double)(now.tv_nsec - start->tv_nsec);
}

static ap_status report_failure(const request_spec *spec, const response_sink *sink,
                                const try_result *result, int tries, double seconds,
                                mlflow_failure *failure, ap_error *err)
{
    char tries_text[64] = "";
    if (tries > 1)
        snprintf(tries_text, sizeof(tries_text), " after %d tries in %.1f s", tries, seconds);
    if (result->code != CURLE_OK) {
        failure->http_status = 0;
        const char *detail = result->curl_message[0] != '\0' ? result->curl_message
                                                             : curl_easy_strerror(result->code);
        const char *hint = result->code == CURLE_PEER_FAILED_VERIFICATION
                               ? "if the server uses a private certificate authority, set "
                                 "MLFLOW_TRACKING_SERVER_CERT_PATH to its PEM file"
                               : "check that the MLflow server is running and reachable";
        return ap_error_set(err, AP_ERR_IO, "%s failed%s: %s; %s", spec->label, tries_text, detail,
                            hint);
    }
    char message[SERVER_MESSAGE_MAX + 1];
    failure->http_status = result->http_status;
    describe_reply(&sink->body, failure, message, sizeof(message));
    return ap_error_set(err, status_for_reply(result->http_status, failure->error_code),
                        "%s returned HTTP %ld%s%s%s%s%s%s", spec->label, result->http_status,
                        tries_text, failure->error_code[0] != '\0' ? " " : "", failure->error_code,
                        message[0] != '\0' ? ": " : "", message,
                        hint_for_reply(result->http_status));
}

/* Send spec, retrying transient failures as retry allows. */
static ap_status run_request(mlflow_client *client, request_spec *spec, response_sink *sink,
                             mlflow_retry retry, mlflow_failure *failure, ap_error *err)
{
    mlflow_failure ignored;
    if (failure == NULL)
        failure = &ignored;
    memset(failure, 0, sizeof(*failure));
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    sink->curl = client->curl;
    try_result result;
    bool transient = false, unsent = false;
    int tries = 0;
    for (;;) {
        ap_status status = sink_reset(sink, spec, err);
        if (status != AP_OK)
            return status;
        tries++;
        perform_try(client, spec, sink, &result);
        if (sink->write_failed) {
            if (err != NULL)
                *err = sink->write_error;
            return sink->write_error.code;
        }
        if (result.code == CURLE_OK && result.http_status >= 200 && result.http_status < 300)
            return AP_OK;
        if (result.code == CURLE_WRITE_ERROR && sink->body.truncated)
            return ap_error_set(err, AP_ERR_LIMIT, "%s returned a reply larger than %u bytes",
                                spec->label, RESPONSE_MAX);
        bool failed_in_curl = result.code != CURLE_OK;
        transient = failed_in_curl ? curl_code_transient(result.code)
                                   : http_status_transient(result.http_status);
        unsent = failed_in_curl ? !result.sent : result.http_status == 429;
        bool may_retry = transient && (retry == MLFLOW_IDEMPOTENT || unsent);
        if (!may_retry || tries >= client->options.max_attempts)
            break;
        mlflow_backoff(client, tries, sink->retry_after_ms);
    }
    ap_status status =
        report_failure(spec, sink, &result, tries, seconds_since(&start), failure, err);
    failure->outcome_unknown = transient && !unsent;
    return status;
}

/* ---- Requests ---- */

static char *join_url(const char *base, const char *prefix, const char *path, const char *query)
{
    size_t size = strlen(base) + strlen(prefix) + strlen(path) + (query ? strlen(query) : 0) + 2;
    char *url = malloc(size);
    if (url != NULL)
        snprintf(url, size, "%s%s%s%s%s", base, prefix, path, query ? "?" : "", query ? query : "");
    return url;
}

/* "METHOD /PATH/PREFIX/ENDPOINT": the URL's path, without scheme, host or query. */
static void set_label(request_spec *spec, const char *base_url, const char *prefix,
                      const char *path)
{
    const char *after_scheme = strstr(base_url, "://");
    const char *base_path = after_scheme != NULL ? strchr(after_scheme + 3, '/') : NULL;
    snprintf(spec->label, sizeof(spec->label), "%s %s%s%.300s", spec->method,
             base_path != NULL ? base_path : "", prefix, path);
}

static ap_status append_query_pair(CURL *curl, byte_buffer *query, const char *key,
                                   const char *value)
{
    char *escaped_key = curl_easy_escape(curl, key, 0);
    char *escaped_value = curl_easy_escape(curl, value, 0);
    bool ok = escaped_key != NULL && escaped_value != NULL;
    ok = ok && (query->size == 0 || buffer_append(query, "&", 1));
    ok = ok && buffer_append(query, escaped_key, strlen(escaped_key));
    ok = ok && buffer_append(query, "=", 1);
    ok = ok && buffer_append(query, escaped_value, strlen(escaped_value));
    curl_free(escaped_key);
    curl_free(escaped_value);
    return ok ? AP_OK : AP_ERR_NOMEM;
}

static ap_status build_query(CURL *curl, const json_t *request, byte_buffer *query, ap_error *err)
{
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)request, key, value)
    {
        char number[32];
        const char *text = json_string_value(value);
        if (json_is_integer(value)) {
            snprintf(number, sizeof(number), "%" JSON_INTEGER_FORMAT, json_integer_value(value));
            text = number;
        }
        if (text == NULL)
            return ap_error_set(err, AP_ERR_INVALID, "query field %s is not a string or integer",
                                key);
        if (append_query_pair(curl, query, key, text) != AP_OK)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot build a query string");
    }
    return AP_OK;
}

static ap_status parse_reply(const request_spec *spec, const byte_buffer *body, json_t **response,
                             ap_error *err)
{
    json_error_t parse_error;
    json_t *reply = json_loadb(body->data != NULL ? body->data : "{}",
                               body->data != NULL ? body->size : 2, 0, &parse_error);
    if (!json_is_object(reply)) {
        json_decref(reply);
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s returned a reply that is not a JSON object (%s); check that the "
                            "URL points at an MLflow server",
                            spec->label, reply == NULL ? parse_error.text : "other JSON value");
    }
    *response = reply;
    return AP_OK;
}

ap_status mlflow_call(mlflow_client *client, const char *method, const char *endpoint,
                      const json_t *request, mlflow_retry retry, json_t **response,
                      mlflow_failure *failure, ap_error *err)
{
    if (response != NULL)
        *response = NULL;
    request_spec spec = {.method = method,
                         .upload_fd = -1,
                         .timeout_ms = client->options.request_timeout_ms,
                         .headers = client->json_headers};
    set_label(&spec, client->base_url, API_PREFIX, endpoint);
    byte_buffer query = {.max = RESPONSE_MAX};
    char *body = NULL;
    ap_status status = AP_OK;
    bool is_get = strcmp(method, "GET") == 0;
    if (is_get && request != NULL)
        status = build_query(client->curl, request, &query, err);
    if (status == AP_OK && !is_get) {
        body = request != NULL ? json_dumps(request, JSON_COMPACT) : strdup("{}");
        if (body == NULL)
            status = ap_error_set(err, AP_ERR_NOMEM, "cannot encode the body of %s", spec.label);
    }
    if (status == AP_OK) {
        spec.url = join_url(client->base_url, API_PREFIX, endpoint, query.size ? query.data : NULL);
        if (spec.url == NULL)
            status = ap_error_set(err, AP_ERR_NOMEM, "cannot build the URL of %s", spec.label);
    }
    spec.body = body;
    spec.body_size = body != NULL ? strlen(body) : 0;
    response_sink sink = {.body = {.max = RESPONSE_MAX}};
    if (status == AP_OK)
        status = run_request(client, &spec, &sink, retry, failure, err);
    if (status == AP_OK && response != NULL)
        status = parse_reply(&spec, &sink.body, response, err);
    sink_free(&sink);
    free(spec.url);
    free(body);
    free(query.data);
    return status;
}

/* Escape every segment of a slash-separated path. */
static char *escape_path(CURL *curl, const char *path)
{
    byte_buffer out = {.max = 1u << 20};
    const char *segment = path;
    for (;;) {
        size_t length = strcspn(segment, "/");
        char *escaped = curl_easy_escape(curl, segment, (int)length);
        bool ok = escaped != NULL && buffer_append(&out, escaped, strlen(escaped));
        curl_free(escaped);
        if (ok && segment[length] == '/')
            ok = buffer_append(&out, "/", 1);
        if (!ok || out.truncated) {
            free(out.data);
            return NULL;
        }
        if (segment[length] == '\0')
            return out.data;
        segment += length + 1;
    }
}

static ap_status artifact_request(mlflow_client *client, const char *method,
                                  const char *artifact_path, request_spec *spec, ap_error *err)
{
    *spec = (request_spec){.method = method,
                           .upload_fd = -1,
                           .timeout_ms = client->options.transfer_timeout_ms,
                           .transfer = true,
                           .headers = client->binary_headers};
    set_label(spec, client->base_url, ARTIFACTS_PREFIX, artifact_path);
    char *escaped = escape_path(client->curl, artifact_path);
    spec->url =
        escaped != NULL ? join_url(client->base_url, ARTIFACTS_PREFIX, escaped, NULL) : NULL;
    free(escaped);
    if (spec->url == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot build the URL of %s", spec->label);
    return AP_OK;
}

ap_status mlflow_upload(mlflow_client *client, const char *artifact_path, const char *local_path,
                        ap_error *err)
{
    request_spec spec;
    ap_status status = artifact_request(client, "PUT", artifact_path, &spec, err);
    if (status != AP_OK)
        return status;
    spec.upload_fd = open(local_path, O_RDONLY | O_CLOEXEC);
    struct stat info;
    if (spec.upload_fd < 0) {
        status = ap_error_set(err, errno == ENOENT ? AP_ERR_NOT_FOUND : AP_ERR_IO,
                              "cannot open %s to upload it: %s", local_path, strerror(errno));
    } else if (fstat(spec.upload_fd, &info) != 0 || !S_ISREG(info.st_mode)) {
        status =
            ap_error_set(err, AP_ERR_IO, "cannot upload %s: it is not a regular file", local_path);
    } else {
        spec.upload_size = (long long)info.st_size;
        response_sink sink = {.body = {.max = ERROR_BODY_MAX}};
        status = run_request(client, &spec, &sink, MLFLOW_IDEMPOTENT, NULL, err);
        sink_free(&sink);
    }
    if (spec.upload_fd >= 0)
        close(spec.upload_fd);
    free(spec.url);
    return status;
}

ap_status mlflow_download(mlflow_client *client, const char *artifact_path, ap_atomic_file *file,
                          char sha256[65], long long *size, ap_error *err)
{
    request_spec spec;
    ap_status status = artifact_request(client, "GET", artifact_path, &spec, err);
    if (status != AP_OK)
        return status;
    response_sink sink = {.body = {.max = ERROR_BODY_MAX}, .download = true, .file = file};
    status = run_request(client, &spec, &sink, MLFLOW_IDEMPOTENT, NULL, err);
    if (status == AP_OK) {
        ap_sha256_end(sink.hash, sha256);
        sink.hash = NULL;
        *size = sink.size;
    }
    sink_free(&sink);
    free(spec.url);
    return status;
}
