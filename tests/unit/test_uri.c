#include <stdbool.h>
#include <string.h>

#include "pipeline/common/uri.h"
#include "pipeline/config/config.h"
#include "tests/unit/check.h"

static void expect_password(const char *text, bool expected)
{
    bool actual = ap_uri_has_password(text);
    if (actual != expected) {
        fprintf(stderr, "ap_uri_has_password(\"%s\") == %d, expected %d\n", text, actual, expected);
        check_failures++;
    }
}

static void test_has_password(void)
{
    expect_password("https://bob:s3cretPW@127.0.0.1:9/x.zip", true);
    expect_password("s3://bob:s3cretPW@bucket/x", true);
    expect_password("http://bee:hive-secret@127.0.0.1:5000", true);
    expect_password("https://:secret@host/x", true);
    expect_password("https://bob@host/x", false);
    expect_password("https://host:8443/x", false);
    expect_password("s3://bucket/a:b@c", false);
    expect_password("https://host/x?user=a:b@c", false);
    expect_password("https://host#a:b@c", false);
    expect_password("/data/bees", false);
    expect_password("bob:secret@host", false);
}

static void expect_redacted(const char *text, const char *expected)
{
    char out[256];
    ap_uri_redact(text, out, sizeof(out));
    if (strcmp(out, expected) != 0) {
        fprintf(stderr, "ap_uri_redact(\"%s\") == \"%s\", expected \"%s\"\n", text, out, expected);
        check_failures++;
    }
}

static void test_redact(void)
{
    expect_redacted("https://bob:s3cretPW@127.0.0.1:9/x.zip", "https://***@127.0.0.1:9/x.zip");
    expect_redacted("https://token@host/x.zip?a=1", "https://***@host/x.zip?***");
    expect_redacted("https://host/x.zip?X-Amz-Signature=abc&X-Amz-Expires=60",
                    "https://host/x.zip?***");
    expect_redacted("https://host/x.zip?token=t#part", "https://host/x.zip?***#part");
    expect_redacted("https://host/x.zip?", "https://host/x.zip?");
    expect_redacted("/data/bees?x", "/data/bees?x");
    expect_redacted("s3://bob@bucket/x", "s3://***@bucket/x");
    expect_redacted("https://a@b@host", "https://***@host");
    expect_redacted("https://host/x@y", "https://host/x@y");
    expect_redacted("s3://bucket/a:b@c", "s3://bucket/a:b@c");
    expect_redacted("/data/bees", "/data/bees");
}

/* A short buffer cuts the masked copy, so a truncated URI shows no secret. */
static void test_redact_truncates(void)
{
    char out[12];
    ap_uri_redact("https://bob:s3cretPW@host/x.zip", out, sizeof(out));
    CHECK(strcmp(out, "https://***") == 0);
    CHECK(strstr(out, "s3cret") == NULL);
}

/* The config check rejects a password with the shared message and does not
 * repeat it. */
static void test_config_uses_check(void)
{
    ap_config cfg;
    ap_config_defaults(&cfg);
    ap_error err = {0};
    CHECK_INT_EQ(ap_config_set(&cfg, "store.endpoint=https://:secret@127.0.0.1:9000", &err),
                 AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, AP_URI_PASSWORD_MESSAGE);
    CHECK(strstr(err.message, "secret@") == NULL);
}

int main(void)
{
    test_has_password();
    test_redact();
    test_redact_truncates();
    test_config_uses_check();
    return check_finish();
}
