/* AWS Signature Version 4 against the published AWS examples
 * (tests/fixtures/sigv4_vectors.h), and the S3 rules for encoding keys. */

#include <stdlib.h>
#include <string.h>

#include "s3_check.h"
#include "pipeline/store/sigv4.h"
#include "tests/fixtures/sigv4_vectors.h"

static size_t count_pairs(const char *const pairs[][2])
{
    size_t count = 0;
    while (count < SIGV4_MAX_PAIRS && pairs[count][0] != NULL)
        count++;
    return count;
}

static void check_vector(const sigv4_vector *vector)
{
    ap_sigv4_pair query[SIGV4_MAX_PAIRS], headers[SIGV4_MAX_PAIRS];
    size_t query_count = count_pairs(vector->query);
    size_t header_count = count_pairs(vector->headers);
    for (size_t i = 0; i < query_count; i++)
        query[i] = (ap_sigv4_pair){vector->query[i][0], vector->query[i][1]};
    for (size_t i = 0; i < header_count; i++)
        headers[i] = (ap_sigv4_pair){vector->headers[i][0], vector->headers[i][1]};
    char *path = ap_sigv4_encode(vector->path, strlen(vector->path), true);
    ap_sigv4_request request = {
        .method = vector->method,
        .canonical_uri = path,
        .query = query,
        .query_count = query_count,
        .headers = headers,
        .header_count = header_count,
        .payload_hash = vector->payload_hash,
        .amz_date = vector->amz_date,
    };
    ap_sigv4_credentials credentials = {
        .access_key_id = vector->access_key_id,
        .secret_access_key = vector->secret_access_key,
        .session_token = vector->session_token,
        .region = vector->region,
        .service = vector->service,
    };
    ap_sigv4_result result;
    ap_error err = {0};
    ap_status status = ap_sigv4_sign(&request, &credentials, &result, &err);
    CHECK_INT_EQ(status, AP_OK);
    if (status != AP_OK) {
        fprintf(stderr, "%s: %s\n", vector->name, err.message);
        free(path);
        return;
    }
    int failures_before = check_failures;
    if (vector->canonical_request != NULL)
        CHECK_STR_EQ(result.canonical_request, vector->canonical_request);
    if (vector->string_to_sign != NULL)
        CHECK_STR_EQ(result.string_to_sign, vector->string_to_sign);
    CHECK_STR_EQ(result.signature, vector->signature);

    char expected[1024];
    snprintf(expected, sizeof(expected),
             "AWS4-HMAC-SHA256 Credential=%s/%.8s/%s/%s/aws4_request, SignedHeaders=%s, "
             "Signature=%s",
             vector->access_key_id, vector->amz_date, vector->region, vector->service,
             vector->signed_headers, vector->signature);
    CHECK_STR_EQ(result.authorization, expected);
    if (check_failures > failures_before)
        fprintf(stderr, "  in vector %s\n", vector->name);
    ap_sigv4_result_free(&result);
    free(path);
}

static void test_published_vectors(void)
{
    for (size_t i = 0; i < SIGV4_VECTOR_COUNT; i++)
        check_vector(&sigv4_vectors[i]);
}

static void check_encoding(const char *raw, bool keep_slash, const char *expected)
{
    char *encoded = ap_sigv4_encode(raw, strlen(raw), keep_slash);
    CHECK_STR_EQ(encoded, expected);
    free(encoded);
}

/* S3 object keys: every path segment encoded, '/' kept, no other byte left
 * raw besides the unreserved ones, and nothing encoded twice. */
static void test_key_encoding(void)
{
    check_encoding("images/a b.jpg", true, "images/a%20b.jpg");
    check_encoding("date=2026-12-04/x+y.png", true, "date%3D2026-12-04/x%2By.png");
    check_encoding("caf\xc3\xa9/\xf0\x9f\x90\x9d.jpg", true, "caf%C3%A9/%F0%9F%90%9D.jpg");
    check_encoding("100%/a~b_c-d.e", true, "100%25/a~b_c-d.e");
    check_encoding("a/b", false, "a%2Fb");
    check_encoding("!*'();:@&=+$,?#[]", true,
                   "%21%2A%27%28%29%3B%3A%40%26%3D%2B%24%2C%3F%23%5B%5D");
}

static ap_sigv4_request simple_request(const ap_sigv4_pair *headers, size_t header_count)
{
    return (ap_sigv4_request){
        .method = "GET",
        .canonical_uri = "/",
        .headers = headers,
        .header_count = header_count,
        .payload_hash = EMPTY_SHA256,
        .amz_date = SUITE_DATE,
    };
}

static const ap_sigv4_credentials suite_credentials = {
    .access_key_id = SUITE_KEY,
    .secret_access_key = SUITE_SECRET,
    .region = "us-east-1",
    .service = "service",
};

/* Header values are trimmed and inner runs of spaces become one space. */
static void test_header_values_trimmed(void)
{
    ap_sigv4_pair headers[] = {{"Host", "example.amazonaws.com"}, {"My-Header1", "  a   b   c  "}};
    ap_sigv4_request request = simple_request(headers, 2);
    ap_sigv4_result result;
    ap_error err = {0};
    CHECK_INT_EQ(ap_sigv4_sign(&request, &suite_credentials, &result, &err), AP_OK);
    CHECK_CONTAINS(result.canonical_request, "\nmy-header1:a b c\n");
    ap_sigv4_result_free(&result);
}

static void test_bad_headers_rejected(void)
{
    ap_sigv4_pair twice[] = {{"Host", "a"}, {"host", "b"}};
    ap_sigv4_request request = simple_request(twice, 2);
    ap_sigv4_result result;
    ap_error err = {0};
    CHECK_INT_EQ(ap_sigv4_sign(&request, &suite_credentials, &result, &err), AP_ERR_INVALID);
    CHECK_CONTAINS(err.message, "given twice");

    ap_sigv4_pair broken[] = {{"Host", "a\r\nX-Injected: 1"}};
    request = simple_request(broken, 1);
    CHECK_INT_EQ(ap_sigv4_sign(&request, &suite_credentials, &result, &err), AP_ERR_INVALID);
    CHECK_CONTAINS(err.message, "line break");
}

/* A different secret gives a different signature, and the secret never
 * appears in what the signer returns. */
static void test_secret_not_in_output(void)
{
    ap_sigv4_pair headers[] = {{"Host", "example.amazonaws.com"}};
    ap_sigv4_request request = simple_request(headers, 1);
    ap_sigv4_credentials other = suite_credentials;
    other.secret_access_key = "another-secret";
    ap_sigv4_result a, b;
    ap_error err = {0};
    CHECK_INT_EQ(ap_sigv4_sign(&request, &suite_credentials, &a, &err), AP_OK);
    CHECK_INT_EQ(ap_sigv4_sign(&request, &other, &b, &err), AP_OK);
    CHECK(strcmp(a.signature, b.signature) != 0);
    CHECK(strstr(a.authorization, SUITE_SECRET) == NULL);
    CHECK(strstr(a.canonical_request, SUITE_SECRET) == NULL);
    CHECK(strstr(a.string_to_sign, SUITE_SECRET) == NULL);
    ap_sigv4_result_free(&a);
    ap_sigv4_result_free(&b);
}

static void test_date_format(void)
{
    char date[17];
    ap_sigv4_format_date((time_t)1440938160, date);
    CHECK_STR_EQ(date, SUITE_DATE);
    ap_sigv4_format_date((time_t)0, date);
    CHECK_STR_EQ(date, "19700101T000000Z");
}

int main(void)
{
    test_published_vectors();
    test_key_encoding();
    test_header_values_trimmed();
    test_bad_headers_rejected();
    test_secret_not_in_output();
    test_date_format();
    return check_finish();
}
