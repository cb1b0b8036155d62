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

int main(void)
{
    const char *dir = check_temp_dir("dataset-fetch");
    if (dir == NULL)
        fail_setup("cannot create a temporary folder");
    snprintf(work_dir, sizeof(work_dir), "%s", dir);
    test_fetch_rejects_password();
    return check_finish();
}
