/* Dataset fetching without a network: request checks, moving unpacked
 * files into place, and failed fetches of an archive that is already
 * downloaded. Downloads over HTTP are covered by
 * tests/e2e/test_s3_dataset_fetch.sh and test_dataset_fetch_errors.sh. */

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/store/dataset_fetch.h"
#include "tests/unit/check.h"

#define SHA_ZEROS "0000000000000000000000000000000000000000000000000000000000000000"

static char work_dir[4096];

static void fail_setup(const char *step)
{
    fprintf(stderr, "test setup failed: %s\n", step);
    exit(1);
}

/* A password in the URL is rejected before anything is created, and the
 * message masks it. */
static void test_fetch_rejects_password(void)
{
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/password", work_dir);
    ap_dataset_fetch_request request = {
        .url = "https://bob:s3cretPW@127.0.0.1:9/x.zip",
        .sha256 = SHA_ZEROS,
        .size = -1,
        .dir = dir,
        .retries = 0,
        .stall_timeout_s = 1,
    };
    ap_dataset_fetch_result result;
    ap_error err = {0};
    CHECK_INT_EQ(ap_dataset_fetch(&request, &result, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "contains a password");
    CHECK_STR_CONTAINS(err.message, "https://***@127.0.0.1:9/x.zip");
    CHECK(strstr(err.message, "s3cretPW") == NULL);
    CHECK(!ap_path_exists(dir));
}

static void expect_check_error(const char *url, const char *sha256, const char *expected)
{
    ap_dataset_fetch_request request = {.url = url, .sha256 = sha256, .size = -1, .dir = "unused"};
    ap_error err = {0};
    CHECK_INT_EQ(ap_dataset_check_request(&request, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, expected);
}

static void test_check_request(void)
{
    ap_dataset_fetch_request request = {
        .url = "https://example.org/x.zip", .sha256 = SHA_ZEROS, .size = -1, .dir = "unused"};
    ap_error err = {0};
    CHECK_INT_EQ(ap_dataset_check_request(&request, &err), AP_OK);
    request.url = "http://127.0.0.1:8000/x.zip";
    CHECK_INT_EQ(ap_dataset_check_request(&request, &err), AP_OK);
    request.url = "http://user@[::1]:8000/x.zip";
    CHECK_INT_EQ(ap_dataset_check_request(&request, &err), AP_OK);

    expect_check_error("https://example.org/x.zip", NULL, "--sha256 HEX");
    expect_check_error("https://example.org/x.zip", "abc", "expected 64 hex digits");
    expect_check_error("https://example.org/x.zip", SHA_ZEROS "0", "expected 64 hex digits");
    expect_check_error("ftp://127.0.0.1/x.zip", SHA_ZEROS, "use https://");
    expect_check_error("file:///tmp/x.zip", SHA_ZEROS, "use https://");
    expect_check_error("http://example.org/x.zip", SHA_ZEROS, "plain http:// to 127.0.0.1");
    /* The host follows the userinfo, so a user name cannot pose as a loopback host. */
    expect_check_error("http://127.0.0.1@example.org/x.zip", SHA_ZEROS, "is not supported");
}

static void make_folder(const char *path)
{
    char command[4400];
    snprintf(command, sizeof(command), "mkdir -p '%s'", path);
    if (system(command) != 0)
        fail_setup(path);
}

static void write_text(const char *path, const char *text)
{
    ap_error err = {0};
    if (ap_write_atomic(path, text, strlen(text), &err) != AP_OK)
        fail_setup(err.message);
}

/* The content of a small text file, or "" when it cannot be read. */
static const char *read_text(const char *path)
{
    static char text[256];
    text[0] = '\0';
    FILE *file = fopen(path, "r");
    if (file == NULL)
        return text;
    size_t length = fread(text, 1, sizeof(text) - 1, file);
    text[length] = '\0';
    fclose(file);
    return text;
}

/* The paths below dir, with their types, one a line and sorted, so that two
 * listings differ when anything was added or removed. */
static const char *list_tree(const char *dir)
{
    static char listing[8192];
    char command[4400];
    snprintf(command, sizeof(command), "cd '%s' && find . -printf '%%y %%p\\n' | LC_ALL=C sort",
             dir);
    FILE *pipe = popen(command, "r");
    if (pipe == NULL)
        fail_setup("cannot list a folder");
    size_t length = fread(listing, 1, sizeof(listing) - 1, pipe);
    listing[length] = '\0';
    pclose(pipe);
    return listing;
}

/* Write a tar archive with the given entry names and contents. */
static void write_tar(const char *path, const char *const *names, const char *const *contents,
                      int count)
{
    struct archive *archive = archive_write_new();
    if (archive == NULL || archive_write_set_format_pax_restricted(archive) != ARCHIVE_OK ||
        archive_write_open_filename(archive, path) != ARCHIVE_OK)
        fail_setup("cannot write a tar archive");
    for (int i = 0; i < count; i++) {
        struct archive_entry *entry = archive_entry_new();
        archive_entry_set_pathname(entry, names[i]);
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_perm(entry, 0644);
        archive_entry_set_size(entry, (la_int64_t)strlen(contents[i]));
        if (archive_write_header(archive, entry) != ARCHIVE_OK ||
            archive_write_data(archive, contents[i], strlen(contents[i])) < 0)
            fail_setup(archive_error_string(archive));
        archive_entry_free(entry);
    }
    if (archive_write_close(archive) != ARCHIVE_OK)
        fail_setup("cannot close a tar archive");
    archive_write_free(archive);
}

/* New entries move, files replace files and folders merge into folders. */
static void test_merge_moves_files(void)
{
    char staging[4200], dir[4200], path[4400];
    snprintf(staging, sizeof(staging), "%s/merge-staging", work_dir);
    snprintf(dir, sizeof(dir), "%s/merge-target", work_dir);
    snprintf(path, sizeof(path), "%s/images/sub", staging);
    make_folder(path);
    snprintf(path, sizeof(path), "%s/images/sub/a.jpg", staging);
    write_text(path, "new image");
    snprintf(path, sizeof(path), "%s/labels.csv", staging);
    write_text(path, "new labels");
    snprintf(path, sizeof(path), "%s/images", dir);
    make_folder(path);
    snprintf(path, sizeof(path), "%s/images/old.jpg", dir);
    write_text(path, "old image");
    snprintf(path, sizeof(path), "%s/labels.csv", dir);
    write_text(path, "old labels");

    ap_error err = {0};
    ap_status status = ap_dataset_merge(staging, dir, &err);
    if (status != AP_OK)
        fprintf(stderr, "merge failed: %s\n", err.message);
    CHECK_INT_EQ(status, AP_OK);
    snprintf(path, sizeof(path), "%s/images/sub/a.jpg", dir);
    CHECK_STR_CONTAINS(read_text(path), "new image");
    snprintf(path, sizeof(path), "%s/images/old.jpg", dir);
    CHECK_STR_CONTAINS(read_text(path), "old image");
    snprintf(path, sizeof(path), "%s/labels.csv", dir);
    CHECK_STR_CONTAINS(read_text(path), "new labels");
}

/* A file against a folder, or a symbolic link in the target, fails before
 * anything moves. */
static void test_merge_conflict_moves_nothing(void)
{
    char staging[4200], dir[4200], outside[4200], path[4400];
    snprintf(staging, sizeof(staging), "%s/conflict-staging", work_dir);
    snprintf(dir, sizeof(dir), "%s/conflict-target", work_dir);
    snprintf(outside, sizeof(outside), "%s/conflict-outside", work_dir);
    snprintf(path, sizeof(path), "%s/images", staging);
    make_folder(path);
    snprintf(path, sizeof(path), "%s/a.txt", staging);
    write_text(path, "a");
    snprintf(path, sizeof(path), "%s/images/b.jpg", staging);
    write_text(path, "b");
    make_folder(dir);
    make_folder(outside);
    snprintf(path, sizeof(path), "%s/images", dir);
    write_text(path, "a file where the archive has a folder");

    char before[8192];
    snprintf(before, sizeof(before), "%s", list_tree(dir));
    ap_error err = {0};
    CHECK_INT_EQ(ap_dataset_merge(staging, dir, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "images is a file");
    CHECK(strcmp(list_tree(dir), before) == 0);

    /* A link to a folder outside: nothing is written through it. */
    unlink(path);
    if (symlink(outside, path) != 0)
        fail_setup("cannot create a symbolic link");
    snprintf(before, sizeof(before), "%s", list_tree(dir));
    CHECK_INT_EQ(ap_dataset_merge(staging, dir, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "images is a symbolic link");
    CHECK(strcmp(list_tree(dir), before) == 0);
    snprintf(path, sizeof(path), "%s/b.jpg", outside);
    CHECK(!ap_path_exists(path));
}

/* A rejected archive adds nothing to a folder with files of its own, and
 * the error names the archive and the entry. The archive was there before,
 * so it stays. */
static void test_fetch_rejected_archive(void)
{
    char dir[4200], path[4400];
    snprintf(dir, sizeof(dir), "%s/rejected", work_dir);
    snprintf(path, sizeof(path), "%s/.download", dir);
    make_folder(path);
    snprintf(path, sizeof(path), "%s/mine.txt", dir);
    write_text(path, "mine");
    static const char *const names[] = {"ok/labels.csv", "../../escaped.txt"};
    static const char *const contents[] = {"file,wasp\na.jpg,1\n", "escaped"};
    snprintf(path, sizeof(path), "%s/.download/escape.tar", dir);
    write_tar(path, names, contents, 2);
    char sha256[65];
    ap_error err = {0};
    if (ap_sha256_file(path, sha256, &err) != AP_OK)
        fail_setup(err.message);

    char before[8192];
    snprintf(before, sizeof(before), "%s", list_tree(dir));
    CHECK_STR_CONTAINS(before, "f ./mine.txt");
    /* The archive is in place, so the closed loopback port is never contacted. */
    ap_dataset_fetch_request request = {
        .url = "http://127.0.0.1:9/escape.tar",
        .sha256 = sha256,
        .size = -1,
        .dir = dir,
        .retries = 0,
        .stall_timeout_s = 1,
    };
    ap_dataset_fetch_result result;
    CHECK_INT_EQ(ap_dataset_fetch(&request, &result, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "escape.tar");
    CHECK_STR_CONTAINS(err.message, "../../escaped.txt");
    CHECK(strcmp(list_tree(dir), before) == 0);
    snprintf(path, sizeof(path), "%s/escaped.txt", work_dir);
    CHECK(!ap_path_exists(path));
}

/* A folder tree goes, but not what a symbolic link in it points to. */
static void test_remove_tree(void)
{
    char dir[4200], outside[4200], path[4400];
    snprintf(dir, sizeof(dir), "%s/remove/a/b", work_dir);
    make_folder(dir);
    snprintf(outside, sizeof(outside), "%s/remove-outside", work_dir);
    make_folder(outside);
    snprintf(path, sizeof(path), "%s/keep.txt", outside);
    write_text(path, "keep");
    snprintf(path, sizeof(path), "%s/file.txt", dir);
    write_text(path, "x");
    snprintf(path, sizeof(path), "%s/link", dir);
    if (symlink(outside, path) != 0)
        fail_setup("cannot create a symbolic link");

    snprintf(dir, sizeof(dir), "%s/remove", work_dir);
    ap_error err = {0};
    CHECK_INT_EQ(ap_remove_tree(dir, &err), AP_OK);
    CHECK(!ap_path_exists(dir));
    snprintf(path, sizeof(path), "%s/keep.txt", outside);
    CHECK(ap_path_exists(path));
    CHECK_INT_EQ(ap_remove_tree(dir, &err), AP_OK);
}

int main(void)
{
    const char *dir = check_temp_dir("dataset-fetch");
    if (dir == NULL)
        fail_setup("cannot create a temporary folder");
    snprintf(work_dir, sizeof(work_dir), "%s", dir);
    test_fetch_rejects_password();
    test_check_request();
    test_merge_moves_files();
    test_merge_conflict_moves_nothing();
    test_fetch_rejected_archive();
    test_remove_tree();
    return check_finish();
}
