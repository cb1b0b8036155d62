/* Fuzz the MLflow registry backend's handling of server replies. A small
 * HTTP server on 127.0.0.1, started once, replies to every request with the
 * next reply taken from the input. The first input byte picks the registry
 * operation, and the rest is a list of replies separated by lines "@@". A
 * reply that starts with three digits and a space has that HTTP status, any
 * other has 200. When the replies run out, the server replies 404.
 *
 * Each operation makes one try per request and waits at most a millisecond
 * for a new version to become READY, so no input sleeps long. */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/registry/mlflow_registry.h"
#include "tests/fuzz/fuzz_support.h"

#define SEPARATOR         "\n@@\n"
#define MAX_REPLIES       64
#define REQUEST_MAX_BYTES (1 << 20)
#define MODEL             "bees"

typedef struct {
    int status;
    const uint8_t *body;
    size_t size;
} reply;

static const char exhausted_body[] =
    "{\"error_code\": \"RESOURCE_DOES_NOT_EXIST\", \"message\": \"no reply left\"}";

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static uint8_t *input_copy; /* the current input; replies point into it */
static reply replies[MAX_REPLIES];
static size_t reply_count, next_reply;
static int server_port;
static char folder[1024]; /* version files for register and the download cache */

/* ---- The server ---- */

/* Read the request head and its Content-Length body. False when the client hung up. */
static bool read_request(int fd)
{
    char head[16384];
    size_t used = 0;
    char *end = NULL;
    while (end == NULL) {
        if (used + 1 >= sizeof(head))
            return false;
        ssize_t got = recv(fd, head + used, sizeof(head) - 1 - used, 0);
        if (got <= 0)
            return false;
        used += (size_t)got;
        head[used] = '\0';
        end = strstr(head, "\r\n\r\n");
    }
    long long length = 0;
    for (char *line = strstr(head, "\r\n"); line != NULL && line < end;
         line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, "content-length:", 15) == 0)
            length = strtoll(line + 17, NULL, 10);
        if (strncasecmp(line + 2, "expect: 100-continue", 20) == 0)
            send(fd, "HTTP/1.1 100 Continue\r\n\r\n", 25, MSG_NOSIGNAL);
    }
    fuzz_note("request: %.*s", (int)strcspn(head, "\r"), head);
    long long left = length - (long long)(used - (size_t)(end + 4 - head));
    while (left > 0 && length < REQUEST_MAX_BYTES) {
        ssize_t got = recv(fd, head, sizeof(head), 0);
        if (got <= 0)
            return false;
        left -= got;
    }
    return true;
}

/* Copy the next reply under the lock, so the input may change meanwhile. */
static char *take_reply(int *status, size_t *size)
{
    pthread_mutex_lock(&lock);
    reply next = {404, (const uint8_t *)exhausted_body, sizeof(exhausted_body) - 1};
    if (next_reply < reply_count)
        next = replies[next_reply++];
    char *body = malloc(next.size + 1);
    if (body != NULL && next.size > 0)
        memcpy(body, next.body, next.size);
    pthread_mutex_unlock(&lock);
    *status = next.status;
    *size = next.size;
    return body;
}

static void send_all(int fd, const char *data, size_t size)
{
    while (size > 0) {
        ssize_t sent = send(fd, data, size, MSG_NOSIGNAL);
        if (sent <= 0)
            return;
        data += sent;
        size -= (size_t)sent;
    }
}

static void serve_request(int fd)
{
    if (!read_request(fd))
        return;
    int status;
    size_t size;
    char *body = take_reply(&status, &size);
    if (body == NULL)
        return;
    char head[256];
    int length = snprintf(head, sizeof(head),
                          "HTTP/1.1 %d Fuzz\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                          status, size);
    send_all(fd, head, (size_t)length);
    send_all(fd, body, size);
    free(body);
}

static void *accept_requests(void *argument)
{
    int listener = *(int *)argument;
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return NULL;
        }
        serve_request(fd);
        close(fd);
    }
}

static void start_server(void)
{
    static int listener;
    listener = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = 0};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t address_size = sizeof(address);
    FUZZ_REQUIRE(listener >= 0, "socket: %s", strerror(errno));
    FUZZ_REQUIRE(bind(listener, (struct sockaddr *)&address, sizeof(address)) == 0, "bind: %s",
                 strerror(errno));
    FUZZ_REQUIRE(listen(listener, 16) == 0, "listen: %s", strerror(errno));
    FUZZ_REQUIRE(getsockname(listener, (struct sockaddr *)&address, &address_size) == 0,
                 "getsockname: %s", strerror(errno));
    server_port = ntohs(address.sin_port);
    pthread_t thread;
    FUZZ_REQUIRE(pthread_create(&thread, NULL, accept_requests, &listener) == 0,
                 "cannot start the server");
    pthread_detach(thread);
}

/* ---- Replies from the input ---- */

static void load_replies(const uint8_t *data, size_t size)
{
    pthread_mutex_lock(&lock);
    free(input_copy);
    input_copy = malloc(size > 0 ? size : 1);
    FUZZ_REQUIRE(input_copy != NULL, "out of memory");
    if (size > 0)
        memcpy(input_copy, data, size);
    reply_count = 0;
    next_reply = 0;
    const uint8_t *rest = input_copy;
    size_t rest_size = size;
    while (reply_count < MAX_REPLIES) {
        reply *next = &replies[reply_count++];
        const uint8_t *tail;
        size_t tail_size;
        fuzz_split(rest, rest_size, SEPARATOR, &next->body, &next->size, &tail, &tail_size);
        next->status = 200;
        if (next->size >= 4 && next->body[3] == ' ' && next->body[0] >= '1' &&
            next->body[0] <= '5' && memchr("0123456789", next->body[1], 10) != NULL &&
            memchr("0123456789", next->body[2], 10) != NULL) {
            next->status =
                (next->body[0] - '0') * 100 + (next->body[1] - '0') * 10 + (next->body[2] - '0');
            next->body += 4;
            next->size -= 4;
        }
        if (tail == rest + rest_size)
            break;
        rest = tail;
        rest_size = tail_size;
    }
    pthread_mutex_unlock(&lock);
}

/* ---- Files for register ---- */

static void write_version_files(void)
{
    snprintf(folder, sizeof(folder), "%s", fuzz_temp_path("mlflow"));
    fuzz_make_folder(folder);
    char path[1200], sha256[65], report[256];
    static const char weights[] = "not really weights";
    ap_sha256_hex(weights, sizeof(weights) - 1, sha256);
    snprintf(path, sizeof(path), "%s/model.safetensors", folder);
    fuzz_write_file(path, weights, sizeof(weights) - 1);
    snprintf(path, sizeof(path), "%s/model_card.json", folder);
    static const char card[] = "{\"format\": \"apiary-model-card\", \"labels\": [\"wasps\"]}";
    fuzz_write_file(path, card, sizeof(card) - 1);
    int length =
        snprintf(report, sizeof(report), "{\"passed\": true, \"model_sha256\": \"%s\"}", sha256);
    snprintf(path, sizeof(path), "%s/report.json", folder);
    fuzz_write_file(path, report, (size_t)length);
}

static ap_status register_version(ap_registry *registry, ap_error *err)
{
    char model[1200], card[1200], report[1200];
    snprintf(model, sizeof(model), "%s/model.safetensors", folder);
    snprintf(card, sizeof(card), "%s/model_card.json", folder);
    snprintf(report, sizeof(report), "%s/report.json", folder);
    ap_registry_new_version request = {
        .model_path = model, .model_card_path = card, .report_path = report};
    int version = 0;
    ap_status status = ap_registry_register(registry, MODEL, &request, &version, err);
    if (status == AP_OK)
        FUZZ_REQUIRE(version >= 1, "registered version %d", version);
    return status;
}

/* ---- Operations ---- */

static ap_status list_versions(ap_registry *registry, ap_error *err)
{
    ap_registry_version_info *versions = NULL;
    size_t count = 0;
    ap_status status = ap_registry_list(registry, MODEL, &versions, &count, err);
    if (status == AP_OK)
        for (size_t i = 0; i < count; i++) {
            FUZZ_REQUIRE(versions[i].version >= 1, "listed version %d", versions[i].version);
            FUZZ_REQUIRE(i == 0 || versions[i].version > versions[i - 1].version,
                         "versions out of order: %d after %d", versions[i].version,
                         versions[i - 1].version);
        }
    ap_registry_free_versions(versions, count);
    return status;
}

static ap_status show_version(ap_registry *registry, ap_error *err)
{
    json_t *record = NULL;
    ap_status status = ap_registry_show(registry, MODEL, 1, &record, err);
    if (status == AP_OK)
        FUZZ_REQUIRE(json_is_object(record), "a version record that is not an object");
    json_decref(record);
    return status;
}

static ap_status show_history(ap_registry *registry, ap_error *err)
{
    json_t *history = NULL;
    ap_status status = ap_registry_history(registry, MODEL, &history, err);
    if (status == AP_OK)
        FUZZ_REQUIRE(json_is_array(history), "a history that is not an array");
    json_decref(history);
    return status;
}

static ap_status run_operation(ap_registry *registry, int operation, ap_error *err)
{
    int version = 0;
    char path[4096];
    ap_registry_move move = {.reason = "fuzz", .forced = operation % 2 == 1};
    switch (operation) {
    case 0:
        return ap_registry_get_alias(registry, MODEL, AP_REGISTRY_CHAMPION, &version, err);
    case 1:
        return list_versions(registry, err);
    case 2:
        return show_version(registry, err);
    case 3:
        return ap_registry_verify(registry, MODEL, 1, err);
    case 4:
        return show_history(registry, err);
    case 5:
        return ap_registry_file_path(registry, MODEL, 1, AP_REGISTRY_MODEL_FILE, path, sizeof(path),
                                     err);
    case 6:
    case 7:
        return ap_registry_set_alias(registry, MODEL, AP_REGISTRY_CHAMPION, 2, &move, &version,
                                     err);
    case 8:
    case 9:
        return ap_registry_rollback(registry, MODEL, AP_REGISTRY_CHAMPION, 0, &move, &version, err);
    default:
        return register_version(registry, err);
    }
}

#define OPERATION_COUNT 11

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if (server_port == 0) {
        start_server();
        write_version_files();
    }
    load_replies(data + 1, size - 1);
    /* Files cached by an earlier input would change what this one does. */
    char cache[1200];
    snprintf(cache, sizeof(cache), "%s/cache", folder);
    fuzz_remove_tree(cache);

    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", server_port);
    ap_mlflow_options options;
    ap_mlflow_options_default(&options);
    options.max_attempts = 1;
    options.connect_timeout_ms = 2000;
    options.request_timeout_ms = 5000;
    options.transfer_timeout_ms = 5000;
    options.ready_timeout_ms = 1;
    options.cache_dir = cache;

    ap_registry *registry = NULL;
    ap_error err = {0};
    ap_status status = ap_mlflow_registry_open_with(url, &options, &registry, &err);
    FUZZ_REQUIRE(status == AP_OK, "cannot open the registry: %s", err.message);
    status = run_operation(registry, data[0] % OPERATION_COUNT, &err);
    fuzz_note("MLflow operation %d: %s", data[0] % OPERATION_COUNT,
              status == AP_OK ? "done" : err.message);
    if (status != AP_OK)
        FUZZ_REQUIRE(err.message[0] != '\0', "operation %d failed without a message",
                     data[0] % OPERATION_COUNT);
    ap_registry_close(registry);
    return 0;
}
