/* The blob store layer: URIs, keys that must not leave their folder, and
 * syncing between local folders and S3 (moto on loopback) with the cache
 * that downloads only new or changed objects. The S3 part skips (77) when
 * moto is not installed. */

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/config/config.h"
#include "pipeline/store/store.h"
#include "s3_check.h"

#define BUCKET "store-test"

static char work_dir[4096];

static void test_uri_parse(void)
{
    ap_store_uri uri;
    ap_error err = {0};
    CHECK_INT_EQ(ap_store_uri_parse("s3://bees/data/wasp-trap", &uri, &err), AP_OK);
    CHECK_INT_EQ(uri.kind, AP_STORE_S3);
    CHECK_STR_EQ(uri.bucket, "bees");
    CHECK_STR_EQ(uri.prefix, "data/wasp-trap/");
    CHECK_INT_EQ(ap_store_uri_parse("s3://bees", &uri, &err), AP_OK);
    CHECK_STR_EQ(uri.prefix, "");
    CHECK_INT_EQ(ap_store_uri_parse("s3://bees/date=2026-12-04/", &uri, &err), AP_OK);
    CHECK_STR_EQ(uri.prefix, "date=2026-12-04/");
    CHECK_INT_EQ(ap_store_uri_parse("file:///data/bees", &uri, &err), AP_OK);
    CHECK_INT_EQ(uri.kind, AP_STORE_FILE);
    CHECK_STR_EQ(uri.path, "/data/bees");
    CHECK_INT_EQ(ap_store_uri_parse("relative/folder", &uri, &err), AP_OK);
    CHECK_STR_EQ(uri.path, "relative/folder");

    CHECK_INT_EQ(ap_store_uri_parse("s3://Bad_Bucket/x", &uri, &err), AP_ERR_INVALID);
    CHECK_CONTAINS(err.message, "bucket name");
    CHECK_INT_EQ(ap_store_uri_parse("s3://bees/a/../b", &uri, &err), AP_ERR_INVALID);
    CHECK_INT_EQ(ap_store_uri_parse("file://relative", &uri, &err), AP_ERR_INVALID);
    CHECK_INT_EQ(ap_store_uri_parse("gs://bees/x", &uri, &err), AP_ERR_INVALID);
    CHECK_CONTAINS(err.message, "unsupported URI scheme");

    /* Messages mask the userinfo, which may be a secret. */
    CHECK_INT_EQ(ap_store_uri_parse("s3://tok3n@bees/x", &uri, &err), AP_ERR_INVALID);
    CHECK_CONTAINS(err.message, "takes no user name");
    CHECK_CONTAINS(err.message, "s3://***@bees/x");
    CHECK(strstr(err.message, "tok3n") == NULL);
    CHECK_INT_EQ(ap_store_uri_parse("gs://tok3n@bees/x", &uri, &err), AP_ERR_INVALID);
    CHECK(strstr(err.message, "tok3n") == NULL);
    CHECK_INT_EQ(ap_store_uri_parse("file://tok3n@host/x", &uri, &err), AP_ERR_INVALID);
    CHECK(strstr(err.message, "tok3n") == NULL);
}

static void test_key_checks(void)
{
    static const char *const good[] = {"a.jpg", "images/a b.jpg", "date=2026-12-04/x+y.png",
                                       "caf\xc3\xa9/..hidden", "a/.b/c"};
    static const char *const bad[] = {"",      "/etc/passwd", "../x", "a/../../x", "a//b",
                                      "a/./b", "a/",          "..",   "a\nb"};
    ap_error err = {0};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        CHECK_INT_EQ(ap_store_check_key(good[i], &err), AP_OK);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_INT_EQ(ap_store_check_key(bad[i], &err), AP_ERR_INVALID);
        if (err.code != AP_ERR_INVALID)
            fprintf(stderr, "  accepted %s\n", bad[i]);
    }
}

/* A symbolic link planted inside the folder cannot redirect a write. */
static void test_local_path_rejects_links(void)
{
    char root[4200], outside[4200], link_path[4300], out[8192];
    snprintf(root, sizeof(root), "%s/root", work_dir);
    snprintf(outside, sizeof(outside), "%s/outside", work_dir);
    snprintf(link_path, sizeof(link_path), "%s/escape", root);
    ap_error err = {0};
    CHECK_INT_EQ(ap_mkdirs(root, &err), AP_OK);
    CHECK_INT_EQ(ap_mkdirs(outside, &err), AP_OK);
    CHECK_INT_EQ(symlink(outside, link_path), 0);
    CHECK_INT_EQ(ap_store_local_path(root, "escape/x.jpg", out, sizeof(out), &err), AP_ERR_INVALID);
    CHECK_CONTAINS(err.message, "symbolic link");
    CHECK_INT_EQ(ap_store_local_path(root, "escape", out, sizeof(out), &err), AP_ERR_INVALID);
    CHECK_INT_EQ(ap_store_local_path(root, "ok/deeper/x.jpg", out, sizeof(out), &err), AP_OK);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[8192];
    ap_error err = {0};
    CHECK_INT_EQ(ap_store_local_path(dir, name, path, sizeof(path), &err), AP_OK);
    CHECK_INT_EQ(ap_write_atomic(path, text, strlen(text), &err), AP_OK);
}

static bool has_text(const char *dir, const char *name, const char *text)
{
    char path[8192];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    uint8_t *data = NULL;
    size_t size = 0;
    ap_error err = {0};
    bool same = ap_read_file(path, 1 << 20, &data, &size, &err) == AP_OK && size == strlen(text) &&
                memcmp(data, text, size) == 0;
    free(data);
    return same;
}

static void make_config(ap_config *cfg)
{
    ap_config_defaults(cfg);
    ap_error err = {0};
    CHECK_INT_EQ(ap_config_set(cfg, "store.path_style=true", &err), AP_OK);
    char setting[4400];
    snprintf(setting, sizeof(setting), "store.cache_dir=%s/cache", work_dir);
    CHECK_INT_EQ(ap_config_set(cfg, setting, &err), AP_OK);
}

/* Push a folder, materialise it, and sync again after changes. */
static void test_sync_round_trip(void)
{
    static ap_config cfg;
    make_config(&cfg);
    char source[4200];
    snprintf(source, sizeof(source), "%s/source", work_dir);
    write_text(source, "labels.csv", "file,wasp\na b.jpg,1\n");
    write_text(source, "images/a b.jpg", "image one");
    write_text(source, "images/date=2026-12-04/x+y.jpg", "image two");
    write_text(source, "images/caf\xc3\xa9.jpg", "image three");

    ap_store_sync_stats stats;
    ap_error err = {0};
    ap_status status =
        ap_store_sync_up(source, "s3://" BUCKET "/sets/trap", &cfg, NULL, &stats, &err);
    CHECK_INT_EQ(status, AP_OK);
    if (status != AP_OK)
        fprintf(stderr, "sync up: %s\n", err.message);
    CHECK_INT_EQ(stats.transferred, 4);

    /* Pushing again sends nothing: sizes and MD5 ETags match. */
    CHECK_INT_EQ(ap_store_sync_up(source, "s3://" BUCKET "/sets/trap", &cfg, NULL, &stats, &err),
                 AP_OK);
    CHECK_INT_EQ(stats.transferred, 0);
    CHECK_INT_EQ(stats.reused, 4);
    CHECK_INT_EQ(stats.requests.puts, 0);

    char local[AP_PATH_MAX];
    CHECK_INT_EQ(ap_store_materialize("s3://" BUCKET "/sets/trap", &cfg, local, &err), AP_OK);
    char expected[8192];
    snprintf(expected, sizeof(expected), "%s/cache/s3/" BUCKET "/sets/trap", work_dir);
    CHECK_STR_EQ(local, expected);
    CHECK(has_text(local, "labels.csv", "file,wasp\na b.jpg,1\n"));
    CHECK(has_text(local, "images/a b.jpg", "image one"));
    CHECK(has_text(local, "images/date=2026-12-04/x+y.jpg", "image two"));
    CHECK(has_text(local, "images/caf\xc3\xa9.jpg", "image three"));

    /* The second sync downloads nothing. */
    CHECK_INT_EQ(ap_store_sync_down("s3://" BUCKET "/sets/trap", &cfg, local, &stats, &err), AP_OK);
    CHECK_INT_EQ(stats.objects, 4);
    CHECK_INT_EQ(stats.reused, 4);
    CHECK_INT_EQ(stats.requests.gets, 0);

    /* One changed, one new, one deleted object: one GET each for the first two. */
    write_text(source, "images/a b.jpg", "image one, retaken");
    write_text(source, "images/new.jpg", "image four");
    char gone[8192];
    snprintf(gone, sizeof(gone), "%s/images/caf\xc3\xa9.jpg", source);
    CHECK_INT_EQ(unlink(gone), 0);
    CHECK_INT_EQ(ap_store_sync_up(source, "s3://" BUCKET "/sets/trap", &cfg, NULL, &stats, &err),
                 AP_OK);
    CHECK_INT_EQ(stats.transferred, 2);
    ap_s3_options options;
    ap_store_s3_options(&cfg, &options);
    ap_s3_client *client = NULL;
    CHECK_INT_EQ(ap_s3_open(&options, &client, &err), AP_OK);
    CHECK_INT_EQ(ap_s3_delete(client, BUCKET, "sets/trap/images/caf\xc3\xa9.jpg", &err), AP_OK);

    CHECK_INT_EQ(ap_store_sync_down("s3://" BUCKET "/sets/trap", &cfg, local, &stats, &err), AP_OK);
    CHECK_INT_EQ(stats.requests.gets, 2);
    CHECK_INT_EQ(stats.transferred, 2);
    CHECK_INT_EQ(stats.removed, 1);
    CHECK(has_text(local, "images/a b.jpg", "image one, retaken"));
    CHECK(has_text(local, "images/new.jpg", "image four"));
    char removed[8192];
    snprintf(removed, sizeof(removed), "%s/images/caf\xc3\xa9.jpg", local);
    CHECK(!ap_path_exists(removed));

    /* A local copy damaged on disk (another size) is fetched again. */
    write_text(local, "images/new.jpg", "damaged");
    CHECK_INT_EQ(ap_store_sync_down("s3://" BUCKET "/sets/trap", &cfg, local, &stats, &err), AP_OK);
    CHECK_INT_EQ(stats.requests.gets, 1);
    CHECK(has_text(local, "images/new.jpg", "image four"));

    /* A key with ".." in it is refused before anything is written. */
    ap_status put = ap_s3_put_memory(client, BUCKET, "evil/../../escaped.txt", "x", 1, NULL, &err);
    CHECK_INT_EQ(put, AP_OK);
    if (put != AP_OK)
        fprintf(stderr, "put: %s\n", err.message);
    char evil_dir[4300];
    snprintf(evil_dir, sizeof(evil_dir), "%s/evil-copy", work_dir);
    CHECK_INT_EQ(ap_store_sync_down("s3://" BUCKET "/evil", &cfg, evil_dir, &stats, &err),
                 AP_ERR_INVALID);
    CHECK_CONTAINS(err.message, "..");
    char escaped[4400];
    snprintf(escaped, sizeof(escaped), "%s/escaped.txt", work_dir);
    CHECK(!ap_path_exists(escaped));
    ap_s3_close(client);

    /* An empty prefix is an error for data, not an empty dataset. */
    CHECK_INT_EQ(ap_store_materialize("s3://" BUCKET "/nothing/here", &cfg, local, &err),
                 AP_ERR_NOT_FOUND);
    CHECK_CONTAINS(err.message, "contains no objects");
}

static void test_local_materialize(void)
{
    static ap_config cfg;
    make_config(&cfg);
    char local[AP_PATH_MAX];
    ap_error err = {0};
    CHECK_INT_EQ(ap_store_materialize("/data/sets/x", &cfg, local, &err), AP_OK);
    CHECK_STR_EQ(local, "/data/sets/x");
    CHECK_INT_EQ(ap_store_materialize("file:///data/sets/y", &cfg, local, &err), AP_OK);
    CHECK_STR_EQ(local, "/data/sets/y");
}

int main(void)
{
    const char *dir = check_temp_dir("s3-store");
    if (dir == NULL)
        return 1;
    snprintf(work_dir, sizeof(work_dir), "%s", dir);
    test_uri_parse();
    test_key_checks();
    test_local_path_rejects_links();
    test_local_materialize();

    char server_dir[4200];
    snprintf(server_dir, sizeof(server_dir), "%s/server", work_dir);
    int started = s3_test_server_start(server_dir, BUCKET);
    if (started == 77) {
        fprintf(stderr, "SKIP: moto is not installed; the S3 sync checks did not run\n");
        return check_failures > 0 ? 1 : 77;
    }
    CHECK_INT_EQ(started, 0);
    if (started == 0)
        test_sync_round_trip();
    s3_test_server_stop(server_dir);
    return check_finish();
}
