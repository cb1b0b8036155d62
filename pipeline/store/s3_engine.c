/* The loop that sends S3 requests on one curl multi handle, checks each
 * response, and retries what failed for a transient reason. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "pipeline/store/s3_internal.h"

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    if (ms <= 0)
        return;
    struct timespec t = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000};
    nanosleep(&t, NULL);
}

/* Release the easy handle and files of the attempt that just ended. */
static void end_attempt(ap_s3_client *client, s3_op *op)
{
    if (op->easy != NULL) {
        curl_multi_remove_handle(client->multi, op->easy);
        curl_easy_cleanup(op->easy);
        op->easy = NULL;
    }
    if (op->upload != NULL) {
        fclose(op->upload);
        op->upload = NULL;
    }
    if (op->file_open) {
        ap_atomic_abort(&op->file);
        op->file_open = false;
    }
    EVP_MD_CTX_free(op->md5);
    op->md5 = NULL;
    curl_slist_free_all(op->header_list);
    op->header_list = NULL;
}

void s3_op_cleanup(s3_op *op)
{
    store_text_free(&op->response);
    free(op->url);
    op->url = NULL;
}

/* Curl failures that a new attempt may not meet: the network, the server
 * closing or stalling, a body shorter than announced. */
static bool transient_curl_error(CURLcode code)
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
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_WEIRD_SERVER_REPLY:
        return true;
    default:
        return false;
    }
}

static bool transient_response(long status, const char *code)
{
    if (status == 429 || status == 500 || status == 502 || status == 503 || status == 504 ||
        status == 408)
        return true;
    return strcmp(code, "SlowDown") == 0 || strcmp(code, "InternalError") == 0 ||
           strcmp(code, "RequestTimeout") == 0 || strcmp(code, "ServiceUnavailable") == 0;
}

/* What to do about an S3 error code, for the message. */
static const char *error_hint(const s3_op *op, const char *code)
{
    if (strcmp(code, "SignatureDoesNotMatch") == 0)
        return "check AWS_SECRET_ACCESS_KEY, and that nothing between here and the server "
               "rewrites requests";
    if (strcmp(code, "InvalidAccessKeyId") == 0)
        return "check AWS_ACCESS_KEY_ID";
    if (strcmp(code, "InvalidToken") == 0 || strcmp(code, "ExpiredToken") == 0 ||
        strcmp(code, "TokenRefreshRequired") == 0)
        return "renew the temporary credentials or unset AWS_SESSION_TOKEN";
    if (strcmp(code, "AccessDenied") == 0 || (op->http_status == 403 && code[0] == '\0'))
        return "the credentials are not allowed this request; check the bucket policy or use "
               "other credentials";
    if (strcmp(code, "NoSuchBucket") == 0)
        return "check the bucket name";
    if (strcmp(code, "RequestTimeTooSkewed") == 0)
        return "this machine's clock is off; synchronise it";
    if (strcmp(code, "AuthorizationHeaderMalformed") == 0 || op->bucket_region[0] != '\0' ||
        op->http_status == 301)
        return "the bucket is in another region; set store.region (or AWS_REGION) to it";
    return NULL;
}

static ap_status status_for_http(long http_status)
{
    if (http_status == 404)
        return AP_ERR_NOT_FOUND;
    if (http_status == 400 || http_status == 401 || http_status == 403 || http_status == 301)
        return AP_ERR_INVALID;
    return AP_ERR_IO;
}

static ap_status fail_response(s3_op *op, bool *retry, ap_error *err)
{
    char code[128] = "", message[300] = "", where[600];
    if (op->response.data != NULL)
        s3_xml_parse_error(op->response.data, op->response.size, code, sizeof(code), message,
                           sizeof(message));
    *retry = transient_response(op->http_status, code);
    s3_describe(op->bucket, op->key, where, sizeof(where));
    const char *hint = error_hint(op, code);
    char region[96] = "";
    if (op->bucket_region[0] != '\0')
        snprintf(region, sizeof(region), " (bucket region %s)", op->bucket_region);
    return ap_error_set(err, status_for_http(op->http_status),
                        "S3 %s %s failed: HTTP %ld%s%s%s%s%s%s%s", op->method, where,
                        op->http_status, code[0] ? " " : "", code, message[0] ? ": " : "", message,
                        region, hint ? "; " : "", hint ? hint : "");
}

static bool md5_etag(const char *etag)
{
    if (strlen(etag) != 32)
        return false;
    for (const char *p = etag; *p != '\0'; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
            return false;
    return true;
}

/* Check a downloaded body (length, range, MD5) and move it into place. A
 * mismatch is worth another attempt: the bytes were damaged on the way. */
static ap_status finish_download(s3_op *op, bool *retry, ap_error *err)
{
    char where[600];
    s3_describe(op->bucket, op->key, where, sizeof(where));
    *retry = true;
    if (op->content_length >= 0 && op->received != op->content_length)
        return ap_error_set(err, AP_ERR_IO, "S3 GET %s: received %lld bytes of %lld", where,
                            (long long)op->received, (long long)op->content_length);
    if (op->range_first >= 0) {
        char expected[96];
        snprintf(expected, sizeof(expected), "bytes %lld-%lld/", (long long)op->range_first,
                 (long long)op->range_first + op->received - 1);
        if (op->http_status != 206 || strncmp(op->content_range, expected, strlen(expected)) != 0)
            return ap_error_set(err, AP_ERR_IO,
                                "S3 GET %s: asked for bytes %lld-%lld but got HTTP %ld with "
                                "Content-Range \"%s\"",
                                where, (long long)op->range_first, (long long)op->range_last,
                                op->http_status, op->content_range);
    }
    if (op->sink == S3_SINK_FILE) {
        unsigned char digest[16];
        unsigned int length = 0;
        char md5[33];
        EVP_DigestFinal_ex(op->md5, digest, &length);
        static const char digits[] = "0123456789abcdef";
        for (int i = 0; i < 16; i++) {
            md5[2 * i] = digits[digest[i] >> 4];
            md5[2 * i + 1] = digits[digest[i] & 15];
        }
        md5[32] = '\0';
        if (op->range_first < 0 && md5_etag(op->etag) && strcasecmp(md5, op->etag) != 0)
            return ap_error_set(err, AP_ERR_IO,
                                "S3 GET %s: the content's MD5 %s differs from its ETag %s", where,
                                md5, op->etag);
        *retry = false;
        op->file_open = false;
        return ap_atomic_commit(&op->file, err);
    }
    *retry = false;
    return AP_OK;
}

static ap_status finish_attempt(s3_op *op, CURLcode code, bool *retry, ap_error *err)
{
    char where[600];
    s3_describe(op->bucket, op->key, where, sizeof(where));
    *retry = false;
    curl_easy_getinfo(op->easy, CURLINFO_RESPONSE_CODE, &op->http_status);
    if (op->write_failed)
        return ap_error_set(err, AP_ERR_IO, "S3 %s %s: cannot store the response (%s)", op->method,
                            where, op->sink == S3_SINK_FILE ? op->sink_path : "out of memory");
    if (op->sink_overflow)
        return ap_error_set(err, AP_ERR_LIMIT, "S3 %s %s: the response is larger than %zu bytes",
                            op->method, where, op->sink_max);
    if (code == CURLE_PEER_FAILED_VERIFICATION) {
        const char *url = NULL;
        curl_easy_getinfo(op->easy, CURLINFO_EFFECTIVE_URL, &url);
        return ap_error_set(err, AP_ERR_IO,
                            "S3 %s %s failed: the TLS certificate of %.200s is not trusted (%s); "
                            "if the endpoint uses a private certificate authority, set "
                            "store.ca_bundle to its PEM file",
                            op->method, where, url != NULL ? url : "the endpoint",
                            op->curl_message[0] ? op->curl_message : curl_easy_strerror(code));
    }
    if (code != CURLE_OK) {
        *retry = transient_curl_error(code);
        return ap_error_set(err, AP_ERR_IO, "S3 %s %s failed: %s", op->method, where,
                            op->curl_message[0] ? op->curl_message : curl_easy_strerror(code));
    }
    if (op->http_status < 200 || op->http_status >= 300)
        return fail_response(op, retry, err);
    if (op->expect_etag_md5 && op->etag[0] != '\0' && md5_etag(op->etag) &&
        strcasecmp(op->etag, op->body_md5) != 0) {
        *retry = true;
        return ap_error_set(err, AP_ERR_IO,
                            "S3 %s %s: the server's ETag %s is not the MD5 %s of what was sent",
                            op->method, where, op->etag, op->body_md5);
    }
    if (strcmp(op->method, "GET") == 0)
        return finish_download(op, retry, err);
    return AP_OK;
}

/* Exponential backoff with equal jitter: half the delay is fixed, half
 * random. A server's Retry-After is honoured up to backoff_max_ms. */
static int64_t backoff_ms(ap_s3_client *client, const s3_op *op)
{
    const ap_s3_options *o = &client->options;
    int64_t delay = o->backoff_initial_ms;
    for (int i = 1; i < op->attempt && delay < o->backoff_max_ms; i++)
        delay *= 2;
    if (delay > o->backoff_max_ms)
        delay = o->backoff_max_ms;
    int64_t half = delay / 2;
    int64_t jittered =
        half + (half > 0 ? (int64_t)(rand_r(&client->jitter_state) % (half + 1)) : 0);
    if (op->retry_after_s >= 0 && op->retry_after_s * 1000 > jittered)
        jittered = op->retry_after_s * 1000 < o->backoff_max_ms ? op->retry_after_s * 1000
                                                                : o->backoff_max_ms;
    return jittered;
}

static void count_request(ap_s3_client *client, const s3_op *op)
{
    ap_s3_stats *stats = &client->stats;
    stats->requests++;
    if (op->attempt > 1)
        stats->retries++;
    if (strcmp(op->method, "GET") == 0 && op->key != NULL)
        stats->gets++;
    else if (strcmp(op->method, "GET") == 0)
        stats->lists++;
    else if (strcmp(op->method, "PUT") == 0)
        stats->puts++;
    else if (strcmp(op->method, "HEAD") == 0)
        stats->heads++;
    else if (strcmp(op->method, "DELETE") == 0)
        stats->deletes++;
    else
        stats->posts++;
}

/* Scheduling state of one s3_run call. */
typedef struct {
    ap_s3_client *client;
    s3_op *ops;
    size_t count;
    size_t next_new; /* ops before this index have been started at least once */
    s3_op **waiting; /* ops waiting for their retry time */
    size_t waiting_count;
    int running;
    bool stopped; /* an op failed for good: start nothing more */
    ap_status first_status;
    ap_error first_error;
} run_state;

static void stop_run(run_state *run, s3_op *op)
{
    op->state = S3_OP_DONE;
    if (!run->stopped) {
        run->stopped = true;
        run->first_status = op->result;
        run->first_error = op->error;
    }
}

static void start_op(run_state *run, s3_op *op)
{
    op->attempt++;
    op->state = S3_OP_RUNNING;
    count_request(run->client, op);
    run->client->stats.bytes_sent += op->body_size;
    op->result = s3_attempt_begin(run->client, op, &op->error);
    if (op->result == AP_OK && curl_multi_add_handle(run->client->multi, op->easy) != CURLM_OK)
        op->result = ap_error_set(&op->error, AP_ERR_BACKEND, "cannot add a curl transfer");
    if (op->result != AP_OK) {
        end_attempt(run->client, op);
        stop_run(run, op);
        return;
    }
    run->running++;
}

static void start_ready_ops(run_state *run)
{
    int limit = run->client->options.concurrency;
    int64_t now = now_ms();
    for (size_t i = 0; i < run->waiting_count && !run->stopped && run->running < limit;) {
        s3_op *op = run->waiting[i];
        if (op->not_before_ms > now) {
            i++;
            continue;
        }
        run->waiting[i] = run->waiting[--run->waiting_count];
        start_op(run, op);
    }
    /* Ops waiting for a retry keep their place, so a failing server sees no
     * more than concurrency requests at a time. */
    while (!run->stopped && run->running + (int)run->waiting_count < limit &&
           run->next_new < run->count)
        start_op(run, &run->ops[run->next_new++]);
}

static void retry_later(run_state *run, s3_op *op)
{
    op->state = S3_OP_WAITING;
    op->not_before_ms = now_ms() + backoff_ms(run->client, op);
    run->waiting[run->waiting_count++] = op;
}

static void handle_completion(run_state *run, CURLMsg *message)
{
    s3_op *op = NULL;
    curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, (char **)&op);
    bool retry = false;
    op->result = finish_attempt(op, message->data.result, &retry, &op->error);
    run->client->stats.bytes_received += op->received;
    end_attempt(run->client, op);
    run->running--;
    if (op->result == AP_OK) {
        op->state = S3_OP_DONE;
        return;
    }
    if (retry && op->attempt <= run->client->options.retries && !run->stopped) {
        retry_later(run, op);
        return;
    }
    if (retry)
        ap_error_prefix(&op->error, "gave up after %d attempts", op->attempt);
    stop_run(run, op);
}

/* End every transfer after the multi handle itself failed. */
static void abort_running(run_state *run, CURLMcode code)
{
    for (size_t i = 0; i < run->next_new; i++) {
        s3_op *op = &run->ops[i];
        if (op->state != S3_OP_RUNNING)
            continue;
        end_attempt(run->client, op);
        op->result = ap_error_set(&op->error, AP_ERR_BACKEND, "curl multi interface failed: %s",
                                  curl_multi_strerror(code));
        stop_run(run, op);
    }
    run->running = 0;
}

static int64_t next_retry_ms(const run_state *run)
{
    int64_t earliest = INT64_MAX;
    for (size_t i = 0; i < run->waiting_count; i++)
        if (run->waiting[i]->not_before_ms < earliest)
            earliest = run->waiting[i]->not_before_ms;
    return earliest;
}

static bool run_finished(const run_state *run)
{
    if (run->running > 0)
        return false;
    return run->stopped || (run->waiting_count == 0 && run->next_new == run->count);
}

ap_status s3_run(ap_s3_client *client, s3_op *ops, size_t count, ap_error *err)
{
    run_state run = {.client = client, .ops = ops, .count = count};
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers */
    run.waiting = calloc((size_t)client->options.concurrency + 1, sizeof(*run.waiting));
    if (run.waiting == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the S3 transfer queue");
    for (;;) {
        start_ready_ops(&run);
        if (run_finished(&run))
            break;
        if (run.running == 0) {
            sleep_ms(next_retry_ms(&run) - now_ms());
            continue;
        }
        int still_running = 0;
        CURLMcode code = curl_multi_perform(client->multi, &still_running);
        CURLMsg *message;
        int left = 0;
        while ((message = curl_multi_info_read(client->multi, &left)) != NULL)
            if (message->msg == CURLMSG_DONE)
                handle_completion(&run, message);
        if (code != CURLM_OK) {
            abort_running(&run, code);
            break;
        }
        int64_t timeout = 1000;
        if (run.waiting_count > 0) {
            int64_t until = next_retry_ms(&run) - now_ms();
            timeout = until < timeout ? (until > 0 ? until : 0) : timeout;
        }
        if (run.running > 0)
            curl_multi_poll(client->multi, NULL, 0, (int)timeout, NULL);
    }
    /* Ops still waiting for a retry when the run stopped keep their last error. */
    for (size_t i = 0; i < run.waiting_count; i++)
        run.waiting[i]->state = S3_OP_DONE;
    free(run.waiting);
    if (run.stopped) {
        if (err != NULL)
            *err = run.first_error;
        return run.first_status;
    }
    return AP_OK;
}
