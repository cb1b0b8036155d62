/* The S3 client behind a proxy that drops connections, stalls, answers
 * 500, 503 or SlowDown, truncates and corrupts bodies
 * (tests/tools/s3_fault_proxy.py), in front of moto on loopback: each
 * download is retried and succeeds, or fails with a clear message, and never
 * leaves a partial file. Skips (77) when moto is not installed. */

#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/store/s3.h"
#include "s3_check.h"

#define BUCKET      "faults"
#define OBJECT_SIZE 200000

static char work_dir[4096];
static char upstream[256];
static uint8_t object[OBJECT_SIZE];
static int scenario;

/* Start a proxy with the given rules (space separated); returns its port. */
static int start_proxy(const char *rules, const char *log)
{
    char tools[4096], command[16384], rule_args[2048] = "";
    s3_test_tools_dir(tools, sizeof(tools));
    char copy[1024];
    snprintf(copy, sizeof(copy), "%s", rules);
    for (char *rule = strtok(copy, " "); rule != NULL; rule = strtok(NULL, " ")) {
        size_t used = strlen(rule_args);
        snprintf(rule_args + used, sizeof(rule_args) - used, " --rule '%s'", rule);
    }
    if (snprintf(command, sizeof(command),
                 "exec python3 '%s/s3_fault_proxy.py' --upstream '%s' --stall-seconds 20 "
                 "--lifetime 120 --log '%s'%s",
                 tools, upstream, log, rule_args) >= (int)sizeof(command))
        return -1;
    FILE *pipe = popen(command, "r");
    int port = -1;
    if (pipe == NULL || fscanf(pipe, "%d", &port) != 1)
        return -1;
    /* The proxy keeps running; it exits when this process does. */
    return port;
}

static ap_s3_client *client_through(int port, int retries)
{
    ap_s3_options options;
    ap_s3_options_default(&options);
    snprintf(options.endpoint, sizeof(options.endpoint), "http://127.0.0.1:%d", port);
    options.addressing = AP_S3_ADDRESSING_PATH;
    options.retries = retries;
    options.backoff_initial_ms = 20;
    options.backoff_max_ms = 200;
    options.stall_timeout_s = 1;
    options.part_size = 5 << 20;
    options.multipart_threshold = 5 << 20;
    ap_s3_client *client = NULL;
    ap_error err = {0};
    CHECK_INT_EQ(ap_s3_open(&options, &client, &err), AP_OK);
    return client;
}

static int count_entries(const char *dir)
{
    DIR *handle = opendir(dir);
    int count = 0;
    struct dirent *entry;
    while (handle != NULL && (entry = readdir(handle)) != NULL)
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0)
            count++;
    if (handle != NULL)
        closedir(handle);
    return count;
}

static bool file_matches(const char *path, const uint8_t *expected, size_t size)
{
    uint8_t *data = NULL;
    size_t got = 0;
    ap_error err = {0};
    bool same = ap_read_file(path, 1 << 24, &data, &got, &err) == AP_OK && got == size &&
                memcmp(data, expected, size) == 0;
    free(data);
    return same;
}

/* Download "blob" through a proxy with rules; expect success and the retries. */
static void check_recovers(const char *rules, long expected_retries)
{
    char dir[4200], path[4300], log[4300];
    snprintf(dir, sizeof(dir), "%s/case-%d", work_dir, ++scenario);
    snprintf(path, sizeof(path), "%s/blob", dir);
    snprintf(log, sizeof(log), "%s.log", dir);
    ap_error err = {0};
    CHECK_INT_EQ(ap_mkdirs(dir, &err), AP_OK);
    int port = start_proxy(rules, log);
    CHECK(port > 0);
    ap_s3_client *client = client_through(port, 5);
    if (client == NULL || port <= 0)
        return;
    ap_s3_download item = {.key = "blob", .path = path, .first = -1};
    ap_status status = ap_s3_get_files(client, BUCKET, &item, 1, &err);
    CHECK_INT_EQ(status, AP_OK);
    if (status != AP_OK)
        fprintf(stderr, "  rules %s: %s\n", rules, err.message);
    CHECK(file_matches(path, object, OBJECT_SIZE));
    CHECK_INT_EQ(ap_s3_get_stats(client).retries, expected_retries);
    CHECK_INT_EQ(count_entries(dir), 1);
    ap_s3_close(client);
}

static void test_transient_faults_recover(void)
{
    check_recovers("GET:/faults/blob:503:2", 2);
    check_recovers("GET:/faults/blob:500:1", 1);
    check_recovers("GET:/faults/blob:slowdown:3", 3);
    check_recovers("GET:/faults/blob:drop:2", 2);
    check_recovers("GET:/faults/blob:truncate:1", 1);
    check_recovers("GET:/faults/blob:corrupt:1", 1);
    check_recovers("GET:/faults/blob:stall:1", 1);
    check_recovers("GET:/faults/blob:drop:1 GET:/faults/blob:truncate:1", 2);
}

/* A fault that never ends: bounded attempts, a clear error, no file. */
static void test_persistent_fault_fails_cleanly(void)
{
    char dir[4200], path[4300], log[4300];
    snprintf(dir, sizeof(dir), "%s/persistent", work_dir);
    snprintf(path, sizeof(path), "%s/blob", dir);
    snprintf(log, sizeof(log), "%s.log", dir);
    ap_error err = {0};
    CHECK_INT_EQ(ap_mkdirs(dir, &err), AP_OK);
    int port = start_proxy("GET:/faults/blob:truncate:100", log);
    ap_s3_client *client = client_through(port, 2);
    if (client == NULL)
        return;
    ap_s3_download item = {.key = "blob", .path = path, .first = -1};
    CHECK_INT_EQ(ap_s3_get_files(client, BUCKET, &item, 1, &err), AP_ERR_IO);
    CHECK_CONTAINS(err.message, "gave up after 3 attempts");
    CHECK_CONTAINS(err.message, "s3://" BUCKET "/blob");
    CHECK_INT_EQ(ap_s3_get_stats(client).requests, 3);
    CHECK(!item.done);
    CHECK_INT_EQ(count_entries(dir), 0);
    ap_s3_close(client);

    /* 503 forever on a listing, with 0 retries: exactly one request. */
    port = start_proxy("GET:list-type:503:100", log);
    client = client_through(port, 0);
    ap_s3_listing listing;
    CHECK_INT_EQ(ap_s3_list(client, BUCKET, "", &listing, &err), AP_ERR_IO);
    CHECK_CONTAINS(err.message, "503");
    CHECK_CONTAINS(err.message, "ServiceUnavailable");
    CHECK_INT_EQ(ap_s3_get_stats(client).requests, 1);
    ap_s3_close(client);
}

/* Puts retry too; a multipart upload whose part keeps failing is aborted. */
static void test_put_faults(void)
{
    char log[4300], source[4300];
    snprintf(log, sizeof(log), "%s/put.log", work_dir);
    int port = start_proxy("PUT:/faults/small:503:1 PUT:partNumber=2:500:100", log);
    ap_s3_client *client = client_through(port, 2);
    if (client == NULL)
        return;
    ap_error err = {0};
    CHECK_INT_EQ(ap_s3_put_memory(client, BUCKET, "small", object, 1000, NULL, &err), AP_OK);
    CHECK_INT_EQ(ap_s3_get_stats(client).retries, 1);

    size_t size = (6u << 20) + 17;
    uint8_t *large = malloc(size);
    for (size_t i = 0; i < size; i++)
        large[i] = (uint8_t)(i * 7);
    snprintf(source, sizeof(source), "%s/large.bin", work_dir);
    CHECK_INT_EQ(ap_write_atomic(source, large, size, &err), AP_OK);
    free(large);
    ap_s3_upload upload = {.path = source, .key = "large"};
    CHECK_INT_EQ(ap_s3_put_files(client, BUCKET, &upload, 1, &err), AP_ERR_IO);
    CHECK_CONTAINS(err.message, "gave up after 3 attempts");
    CHECK(!upload.done);
    CHECK(ap_s3_get_stats(client).deletes >= 1);
    ap_s3_close(client);

    uint8_t *text = NULL;
    size_t text_size = 0;
    CHECK_INT_EQ(ap_read_file(log, 1 << 20, &text, &text_size, &err), AP_OK);
    CHECK_CONTAINS((const char *)text, "DELETE /faults/large?uploadId=");
    free(text);
}

/* A listing past one page survives a fault on its second page. */
static void test_list_page_fault(void)
{
    char log[4300];
    snprintf(log, sizeof(log), "%s/list.log", work_dir);
    int port = start_proxy("GET:continuation-token:503:1", log);
    ap_s3_client *client = client_through(port, 3);
    if (client == NULL)
        return;
    ap_error err = {0};
    static char keys[1005][32];
    ap_s3_client *direct = client_through(port, 3);
    for (int i = 0; i < 1005 && direct != NULL; i++) {
        snprintf(keys[i], sizeof(keys[i]), "pages/%04d", i);
        if (ap_s3_put_memory(direct, BUCKET, keys[i], "x", 1, NULL, &err) != AP_OK) {
            CHECK_INT_EQ(err.code, AP_OK);
            break;
        }
    }
    ap_s3_close(direct);
    ap_s3_listing listing;
    CHECK_INT_EQ(ap_s3_list(client, BUCKET, "pages/", &listing, &err), AP_OK);
    CHECK_INT_EQ(listing.count, 1005);
    CHECK_INT_EQ(ap_s3_get_stats(client).retries, 1);
    ap_s3_listing_free(&listing);
    ap_s3_close(client);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const char *dir = check_temp_dir("s3-faults");
    if (dir == NULL)
        return 1;
    snprintf(work_dir, sizeof(work_dir), "%s", dir);
    char server_dir[4200];
    snprintf(server_dir, sizeof(server_dir), "%s/server", work_dir);
    int started = s3_test_server_start(server_dir, BUCKET);
    if (started == 77) {
        fprintf(stderr, "SKIP: moto is not installed; run scripts/install-test-tools\n");
        return 77;
    }
    CHECK_INT_EQ(started, 0);
    if (started != 0)
        return check_finish();
    snprintf(upstream, sizeof(upstream), "%s", getenv("AWS_ENDPOINT_URL"));

    uint32_t state = 99;
    for (size_t i = 0; i < OBJECT_SIZE; i++) {
        state = state * 1664525u + 1013904223u;
        object[i] = (uint8_t)(state >> 24);
    }
    ap_s3_options options;
    ap_s3_options_default(&options);
    options.addressing = AP_S3_ADDRESSING_PATH;
    ap_s3_client *client = NULL;
    ap_error err = {0};
    CHECK_INT_EQ(ap_s3_open(&options, &client, &err), AP_OK);
    CHECK_INT_EQ(ap_s3_put_memory(client, BUCKET, "blob", object, OBJECT_SIZE, NULL, &err), AP_OK);
    ap_s3_close(client);

    test_transient_faults_recover();
    test_persistent_fault_fails_cleanly();
    test_put_faults();
    test_list_page_fault();
    s3_test_server_stop(server_dir);
    return check_finish();
}
