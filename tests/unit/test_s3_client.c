/* The S3 client against a real S3 implementation (moto) on loopback that
 * checks every signature: odd keys, ranged gets, listings past one page,
 * multipart puts, temporary credentials, and wrong credentials. Skips (77)
 * when moto is not installed. */

#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/store/s3.h"
#include "s3_check.h"

#define BUCKET "apiary-test"

static char work_dir[4096];

static ap_s3_client *open_client(void)
{
    ap_s3_options options;
    ap_s3_options_default(&options);
    options.addressing = AP_S3_ADDRESSING_PATH;
    options.backoff_initial_ms = 10;
    options.backoff_max_ms = 100;
    options.part_size = 5 << 20;
    options.multipart_threshold = 5 << 20;
    ap_s3_client *client = NULL;
    ap_error err = {0};
    ap_status status = ap_s3_open(&options, &client, &err);
    CHECK_INT_EQ(status, AP_OK);
    if (status != AP_OK)
        fprintf(stderr, "ap_s3_open: %s\n", err.message);
    return client;
}

static void write_file(const char *path, const void *data, size_t size)
{
    ap_error err = {0};
    CHECK_INT_EQ(ap_write_atomic(path, data, size, &err), AP_OK);
}

static int count_files(const char *dir)
{
    DIR *handle = opendir(dir);
    int count = 0;
    struct dirent *entry;
    while (handle != NULL && (entry = readdir(handle)) != NULL)
        if (entry->d_name[0] != '.')
            count++;
    if (handle != NULL)
        closedir(handle);
    return count;
}

/* Keys that need encoding in the path and the query round-trip unchanged. */
static void test_odd_keys(ap_s3_client *client)
{
    static const char *const keys[] = {
        "plain.txt",
        "with space/and  two.txt",
        "date=2026-12-04/hive=7/x.jpg",
        "plus+sign&amp;=equals.png",
        "caf\xc3\xa9/\xf0\x9f\x90\x9d bee.jpg",
        "tilde~and%percent!*'()",
    };
    ap_error err = {0};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        char body[256];
        int size = snprintf(body, sizeof(body), "content of %s", keys[i]);
        ap_status status =
            ap_s3_put_memory(client, BUCKET, keys[i], body, (size_t)size, NULL, &err);
        CHECK_INT_EQ(status, AP_OK);
        if (status != AP_OK)
            fprintf(stderr, "put %s: %s\n", keys[i], err.message);
        uint8_t *data = NULL;
        size_t got = 0;
        status = ap_s3_get_memory(client, BUCKET, keys[i], -1, -1, 1 << 20, &data, &got, &err);
        CHECK_INT_EQ(status, AP_OK);
        CHECK_INT_EQ(got, size);
        CHECK(data != NULL);
        if (data != NULL)
            CHECK(memcmp(data, body, (size_t)size) == 0);
        free(data);

        ap_s3_object info;
        CHECK_INT_EQ(ap_s3_head(client, BUCKET, keys[i], &info, &err), AP_OK);
        CHECK_INT_EQ(info.size, size);
        CHECK_INT_EQ(strlen(info.etag), 32);
    }

    ap_s3_listing listing;
    CHECK_INT_EQ(ap_s3_list(client, BUCKET, "", &listing, &err), AP_OK);
    CHECK_INT_EQ(listing.count, sizeof(keys) / sizeof(keys[0]));
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        bool found = false;
        for (size_t j = 0; j < listing.count; j++)
            found = found || strcmp(listing.objects[j].key, keys[i]) == 0;
        CHECK(found);
        if (!found)
            fprintf(stderr, "key not listed: %s\n", keys[i]);
    }
    ap_s3_listing_free(&listing);

    CHECK_INT_EQ(ap_s3_list(client, BUCKET, "date=2026-12-04/", &listing, &err), AP_OK);
    CHECK_INT_EQ(listing.count, 1);
    if (listing.count == 1)
        CHECK_STR_EQ(listing.objects[0].key, "date=2026-12-04/hive=7/x.jpg");
    ap_s3_listing_free(&listing);

    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        CHECK_INT_EQ(ap_s3_delete(client, BUCKET, keys[i], &err), AP_OK);
    CHECK_INT_EQ(ap_s3_list(client, BUCKET, "", &listing, &err), AP_OK);
    CHECK_INT_EQ(listing.count, 0);
    ap_s3_listing_free(&listing);
}

static void test_ranged_get(ap_s3_client *client)
{
    const char *body = "0123456789abcdefghij";
    ap_error err = {0};
    CHECK_INT_EQ(ap_s3_put_memory(client, BUCKET, "range/digits", body, 20, NULL, &err), AP_OK);
    uint8_t *data = NULL;
    size_t size = 0;
    CHECK_INT_EQ(ap_s3_get_memory(client, BUCKET, "range/digits", 5, 9, 100, &data, &size, &err),
                 AP_OK);
    CHECK_INT_EQ(size, 5);
    CHECK(data != NULL);
    if (data != NULL)
        CHECK(memcmp(data, "56789", 5) == 0);
    free(data);

    char path[4200];
    snprintf(path, sizeof(path), "%s/range.bin", work_dir);
    ap_s3_download item = {.key = "range/digits", .path = path, .first = 10, .last = 19};
    CHECK_INT_EQ(ap_s3_get_files(client, BUCKET, &item, 1, &err), AP_OK);
    CHECK(item.done);
    uint8_t *file = NULL;
    CHECK_INT_EQ(ap_read_file(path, 100, &file, &size, &err), AP_OK);
    CHECK_INT_EQ(size, 10);
    CHECK(file != NULL);
    if (file != NULL)
        CHECK(memcmp(file, "abcdefghij", 10) == 0);
    free(file);
}

/* 1,003 keys span two pages of ListObjectsV2 (1,000 keys each). */
static void test_listing_pages(ap_s3_client *client)
{
    enum { KEYS = 1003 };
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/many", work_dir);
    ap_error err = {0};
    CHECK_INT_EQ(ap_mkdirs(dir, &err), AP_OK);
    static char paths[KEYS][4300], keys[KEYS][64];
    static ap_s3_upload uploads[KEYS];
    for (int i = 0; i < KEYS; i++) {
        snprintf(paths[i], sizeof(paths[i]), "%s/%d", dir, i);
        snprintf(keys[i], sizeof(keys[i]), "many/key %04d=x", i);
        write_file(paths[i], keys[i], strlen(keys[i]));
        uploads[i] = (ap_s3_upload){.path = paths[i], .key = keys[i]};
    }
    ap_s3_stats before = ap_s3_get_stats(client);
    ap_status status = ap_s3_put_files(client, BUCKET, uploads, KEYS, &err);
    CHECK_INT_EQ(status, AP_OK);
    if (status != AP_OK)
        fprintf(stderr, "put_files: %s\n", err.message);
    ap_s3_stats after = ap_s3_get_stats(client);
    CHECK_INT_EQ(after.puts - before.puts, KEYS);

    ap_s3_listing listing;
    CHECK_INT_EQ(ap_s3_list(client, BUCKET, "many/", &listing, &err), AP_OK);
    CHECK_INT_EQ(listing.count, KEYS);
    CHECK_INT_EQ(ap_s3_get_stats(client).lists - after.lists, 2);
    for (size_t i = 0; i < listing.count && i < KEYS; i++) {
        CHECK_STR_EQ(listing.objects[i].key, keys[i]);
        CHECK_INT_EQ(listing.objects[i].size, strlen(keys[i]));
    }
    ap_s3_listing_free(&listing);
}

/* An 11 MiB file goes up in three parts and comes back identical. */
static void test_multipart_put(ap_s3_client *client)
{
    size_t size = (11u << 20) + 12345;
    uint8_t *data = malloc(size);
    uint32_t state = 12345;
    for (size_t i = 0; i < size; i++) {
        state = state * 1664525u + 1013904223u;
        data[i] = (uint8_t)(state >> 24);
    }
    char source[4200], copy[4200];
    snprintf(source, sizeof(source), "%s/large.bin", work_dir);
    snprintf(copy, sizeof(copy), "%s/large.copy", work_dir);
    write_file(source, data, size);

    ap_error err = {0};
    ap_s3_stats before = ap_s3_get_stats(client);
    ap_s3_upload upload = {.path = source, .key = "large/object.bin"};
    ap_status status = ap_s3_put_files(client, BUCKET, &upload, 1, &err);
    CHECK_INT_EQ(status, AP_OK);
    if (status != AP_OK)
        fprintf(stderr, "multipart put: %s\n", err.message);
    ap_s3_stats after = ap_s3_get_stats(client);
    CHECK_INT_EQ(after.puts - before.puts, 3);
    CHECK_INT_EQ(after.posts - before.posts, 2);
    CHECK_CONTAINS(upload.etag, "-3");

    ap_s3_object info;
    CHECK_INT_EQ(ap_s3_head(client, BUCKET, "large/object.bin", &info, &err), AP_OK);
    CHECK_INT_EQ(info.size, size);
    CHECK_STR_EQ(info.etag, upload.etag);

    ap_s3_download download = {.key = "large/object.bin", .path = copy, .first = -1};
    CHECK_INT_EQ(ap_s3_get_files(client, BUCKET, &download, 1, &err), AP_OK);
    char expected[65], actual[65];
    ap_sha256_hex(data, size, expected);
    CHECK_INT_EQ(ap_sha256_file(copy, actual, &err), AP_OK);
    CHECK_STR_EQ(actual, expected);
    free(data);
}

static void test_missing_object(ap_s3_client *client)
{
    char dir[4200], path[4300];
    snprintf(dir, sizeof(dir), "%s/missing", work_dir);
    snprintf(path, sizeof(path), "%s/none.bin", dir);
    ap_error err = {0};
    CHECK_INT_EQ(ap_mkdirs(dir, &err), AP_OK);
    ap_s3_stats before = ap_s3_get_stats(client);
    ap_s3_download item = {.key = "does/not/exist", .path = path, .first = -1};
    CHECK_INT_EQ(ap_s3_get_files(client, BUCKET, &item, 1, &err), AP_ERR_NOT_FOUND);
    CHECK_CONTAINS(err.message, "404");
    CHECK_CONTAINS(err.message, "s3://" BUCKET "/does/not/exist");
    CHECK(!item.done);
    CHECK_INT_EQ(ap_s3_get_stats(client).requests - before.requests, 1);
    CHECK_INT_EQ(count_files(dir), 0);

    ap_s3_object info;
    CHECK_INT_EQ(ap_s3_head(client, BUCKET, "does/not/exist", &info, &err), AP_ERR_NOT_FOUND);
}

/* A wrong secret or key is reported once, with what to check, and without
 * the secret. */
static void test_wrong_credentials(void)
{
    char *key = strdup(getenv("AWS_ACCESS_KEY_ID"));
    char *secret = strdup(getenv("AWS_SECRET_ACCESS_KEY"));
    ap_error err = {0};

    setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-at-all", 1);
    ap_s3_client *client = open_client();
    ap_s3_listing listing;
    CHECK_INT_EQ(ap_s3_list(client, BUCKET, "", &listing, &err), AP_ERR_INVALID);
    CHECK_CONTAINS(err.message, "403");
    CHECK_CONTAINS(err.message, "SignatureDoesNotMatch");
    CHECK_CONTAINS(err.message, "AWS_SECRET_ACCESS_KEY");
    CHECK(strstr(err.message, "not-the-secret-at-all") == NULL);
    CHECK_INT_EQ(ap_s3_get_stats(client).requests, 1);

    /* Many downloads stop at the first 403 instead of trying every one. */
    static ap_s3_download items[50];
    static char paths[50][4300];
    for (int i = 0; i < 50; i++) {
        snprintf(paths[i], sizeof(paths[i]), "%s/denied-%d", work_dir, i);
        items[i] = (ap_s3_download){.key = "many/key 0001=x", .path = paths[i], .first = -1};
    }
    ap_s3_stats before = ap_s3_get_stats(client);
    CHECK_INT_EQ(ap_s3_get_files(client, BUCKET, items, 50, &err), AP_ERR_INVALID);
    long sent = ap_s3_get_stats(client).requests - before.requests;
    CHECK(sent <= 8);
    if (sent > 8)
        fprintf(stderr, "%ld requests after a 403, expected at most the concurrency (8)\n", sent);
    ap_s3_close(client);

    setenv("AWS_SECRET_ACCESS_KEY", secret, 1);
    setenv("AWS_ACCESS_KEY_ID", "AKIAUNKNOWNKEY000000", 1);
    client = open_client();
    CHECK_INT_EQ(ap_s3_list(client, BUCKET, "", &listing, &err), AP_ERR_INVALID);
    CHECK_CONTAINS(err.message, "InvalidAccessKeyId");
    CHECK_CONTAINS(err.message, "AWS_ACCESS_KEY_ID");
    CHECK(strstr(err.message, secret) == NULL);
    ap_s3_close(client);

    setenv("AWS_ACCESS_KEY_ID", key, 1);
    free(key);
    free(secret);
}

/* Temporary credentials sign with x-amz-security-token. */
static void test_session_token(void)
{
    char *key = strdup(getenv("AWS_ACCESS_KEY_ID"));
    char *secret = strdup(getenv("AWS_SECRET_ACCESS_KEY"));
    setenv("AWS_ACCESS_KEY_ID", getenv("SESSION_ACCESS_KEY_ID"), 1);
    setenv("AWS_SECRET_ACCESS_KEY", getenv("SESSION_SECRET_ACCESS_KEY"), 1);
    setenv("AWS_SESSION_TOKEN", getenv("SESSION_TOKEN"), 1);
    ap_s3_client *client = open_client();
    ap_error err = {0};
    CHECK_INT_EQ(ap_s3_put_memory(client, BUCKET, "session/x", "abc", 3, NULL, &err), AP_OK);
    ap_s3_object info;
    CHECK_INT_EQ(ap_s3_head(client, BUCKET, "session/x", &info, &err), AP_OK);
    ap_s3_close(client);

    setenv("AWS_SESSION_TOKEN", "a-wrong-token", 1);
    client = open_client();
    CHECK_INT_EQ(ap_s3_head(client, BUCKET, "session/x", &info, &err), AP_ERR_INVALID);
    ap_s3_close(client);

    unsetenv("AWS_SESSION_TOKEN");
    setenv("AWS_ACCESS_KEY_ID", key, 1);
    setenv("AWS_SECRET_ACCESS_KEY", secret, 1);
    free(key);
    free(secret);
}

static void test_options_checked(void)
{
    ap_s3_options options;
    ap_s3_options_default(&options);
    options.part_size = 1 << 20;
    ap_s3_client *client = NULL;
    ap_error err = {0};
    CHECK_INT_EQ(ap_s3_open(&options, &client, &err), AP_ERR_INVALID);
    CHECK_CONTAINS(err.message, "part size");

    ap_s3_options_default(&options);
    snprintf(options.endpoint, sizeof(options.endpoint), "ftp://127.0.0.1:9");
    CHECK_INT_EQ(ap_s3_open(&options, &client, &err), AP_ERR_INVALID);
    CHECK_CONTAINS(err.message, "ftp://127.0.0.1:9");

    snprintf(options.endpoint, sizeof(options.endpoint), "http://user:pw@127.0.0.1:9");
    CHECK_INT_EQ(ap_s3_open(&options, &client, &err), AP_ERR_INVALID);
    CHECK(strstr(err.message, "pw@") == NULL);
}

int main(void)
{
    const char *dir = check_temp_dir("s3-client");
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

    test_options_checked();
    ap_s3_client *client = open_client();
    if (client != NULL) {
        test_odd_keys(client);
        test_ranged_get(client);
        test_listing_pages(client);
        test_multipart_put(client);
        test_missing_object(client);
        ap_s3_close(client);
    }
    test_wrong_credentials();
    test_session_token();
    s3_test_server_stop(server_dir);
    return check_finish();
}
