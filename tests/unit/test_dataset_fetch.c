/* Dataset fetching without a network. Downloads over HTTP are covered by
 * tests/e2e/test_s3_dataset_fetch.sh and test_dataset_fetch_errors.sh. */

#include <string.h>

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

int main(void)
{
    const char *dir = check_temp_dir("dataset-fetch");
    if (dir == NULL)
        fail_setup("cannot create a temporary folder");
    snprintf(work_dir, sizeof(work_dir), "%s", dir);
    test_fetch_rejects_password();
    test_check_request();
    return check_finish();
}
