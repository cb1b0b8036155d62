#include <stdlib.h>
#include <string.h>

#include "pipeline/serve/base64.h"
#include "pipeline/serve/kserve.h"
#include "tests/unit/check.h"

/* A tiny model input keeps the UINT8 tensors short: 2x2 RGB = 12 values. */
static const ap_kserve_limits limits = {.width = 2, .height = 2, .max_images = 3};

static ap_status parse(const char *body, ap_kserve_request *request, ap_error *err)
{
    return ap_kserve_parse_request(body, strlen(body), &limits, request, err);
}

static void test_base64(void)
{
    static const struct {
        const char *text;
        const char *decoded;
    } valid[] = {
        {"aGVsbG8=", "hello"}, {"aGVsbG8", "hello"},     {"", ""}, {"YQ==", "a"}, {"YWI=", "ab"},
        {"YWJj", "abc"},       {"+/+/", "\xfb\xff\xbf"},
    };
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        uint8_t *out = NULL;
        size_t size = 0;
        ap_error err = {0};
        CHECK_INT_EQ(ap_base64_decode(valid[i].text, strlen(valid[i].text), &out, &size, &err),
                     AP_OK);
        CHECK_INT_EQ(size, strlen(valid[i].decoded));
        CHECK(out != NULL);
        CHECK(out == NULL || memcmp(out, valid[i].decoded, size) == 0);
        free(out);
    }
    static const struct {
        const char *text;
        const char *message;
    } invalid[] = {
        {"a", "truncated"},
        {"aGV$bG8=", "offset 3"},
        {"aGVsbG8==", "not a multiple of 4"},
        {"====", "not in the standard alphabet"},
        {"aGVs\nbG8", "offset 4"},
        {"-_-_", "offset 0"},
        {"YQ=a", "offset 2"},
        {"!!!notb64", "character 0x21 at offset 0"},
        {"YWJj\n", "character 0x0a at offset 4"},
    };
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        uint8_t *out = NULL;
        size_t size = 0;
        ap_error err = {0};
        CHECK_INT_EQ(ap_base64_decode(invalid[i].text, strlen(invalid[i].text), &out, &size, &err),
                     AP_ERR_INVALID);
        CHECK(out == NULL);
        CHECK_STR_CONTAINS(err.message, invalid[i].message);
    }
}

static void test_bytes_input(void)
{
    ap_kserve_request request;
    ap_error err = {0};
    CHECK_INT_EQ(parse("{\"id\": \"r-1\", \"inputs\": [{\"name\": \"image\", \"shape\": [2], "
                       "\"datatype\": \"BYTES\", \"data\": [\"aGVsbG8=\", \"YWJj\"]}]}",
                       &request, &err),
                 AP_OK);
    CHECK(!request.has_pixels);
    CHECK_INT_EQ(request.count, 2);
    CHECK(request.id != NULL);
    CHECK(request.id == NULL || strcmp(request.id, "r-1") == 0);
    CHECK(request.want_probabilities);
    CHECK(request.want_decisions);
    CHECK_INT_EQ(request.images[0].size, 5);
    CHECK(memcmp(request.images[0].data, "hello", 5) == 0);
    CHECK_INT_EQ(request.images[1].size, 3);
    ap_kserve_request_free(&request);

    /* [N, 1] with data nested to the shape, and one requested output */
    CHECK_INT_EQ(parse("{\"inputs\": [{\"name\": \"image\", \"shape\": [2, 1], \"datatype\": "
                       "\"BYTES\", \"data\": [[\"YQ==\"], [\"YWI=\"]]}], \"outputs\": [{\"name\": "
                       "\"decisions\"}]}",
                       &request, &err),
                 AP_OK);
    CHECK_INT_EQ(request.count, 2);
    CHECK(request.id == NULL);
    CHECK(!request.want_probabilities);
    CHECK(request.want_decisions);
    CHECK_INT_EQ(request.images[1].size, 2);
    ap_kserve_request_free(&request);
}

static void test_pixels_input(void)
{
    ap_kserve_request request;
    ap_error err = {0};
    CHECK_INT_EQ(parse("{\"inputs\": [{\"name\": \"pixels\", \"shape\": [1, 2, 2, 3], "
                       "\"datatype\": \"UINT8\", \"data\": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, "
                       "255]}]}",
                       &request, &err),
                 AP_OK);
    CHECK(request.has_pixels);
    CHECK_INT_EQ(request.count, 1);
    CHECK_INT_EQ(request.pixels[1], 1);
    CHECK_INT_EQ(request.pixels[11], 255);
    ap_kserve_request_free(&request);

    CHECK_INT_EQ(parse("{\"inputs\": [{\"name\": \"pixels\", \"shape\": [1, 2, 2, 3], "
                       "\"datatype\": \"UINT8\", \"data\": [[[[0, 1, 2], [3, 4, 5]], "
                       "[[6, 7, 8], [9, 10, 11]]]]}], \"outputs\": []}",
                       &request, &err),
                 AP_OK);
    CHECK_INT_EQ(request.pixels[0], 0);
    CHECK_INT_EQ(request.pixels[5], 5);
    CHECK_INT_EQ(request.pixels[11], 11);
    CHECK(request.want_probabilities);
    CHECK(request.want_decisions);
    ap_kserve_request_free(&request);
}

/* Each malformed request fails with the expected status and a message naming the problem. */
static void test_malformed(void)
{
    static const char twelve[] = "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]";
    char numeric_id[256];
    snprintf(numeric_id, sizeof(numeric_id),
             "{\"inputs\": [{\"name\": \"pixels\", \"shape\": [1, 2, 2, 3], \"datatype\": "
             "\"UINT8\", \"data\": %s}], \"id\": 7}",
             twelve);
    const struct {
        const char *body;
        ap_status status;
        const char *message;
    } cases[] = {
        {"{\"inputs\": [", AP_ERR_INVALID, "not valid JSON"},
        {"", AP_ERR_INVALID, "not valid JSON"},
        {"[1, 2]", AP_ERR_INVALID, "must be a JSON object"},
        {"{\"inputs\": [], \"inputs\": []}", AP_ERR_INVALID, "not valid JSON"},
        {"{}", AP_ERR_INVALID, "exactly one input"},
        {"{\"inputs\": {}}", AP_ERR_INVALID, "exactly one input"},
        {"{\"inputs\": [1]}", AP_ERR_INVALID, "must be an object"},
        {"{\"inputs\": [{\"name\": \"tensor\", \"datatype\": \"BYTES\", \"shape\": [1], "
         "\"data\": []}]}",
         AP_ERR_INVALID, "\"tensor\" is not an input of this model"},
        {"{\"inputs\": [{\"name\": \"pixels\", \"datatype\": \"FP32\", \"shape\": [1, 2, 2, 3], "
         "\"data\": [0.5]}]}",
         AP_ERR_INVALID, "has datatype FP32; it takes UINT8"},
        {"{\"inputs\": [{\"name\": \"image\", \"datatype\": \"UINT8\", \"shape\": [1], "
         "\"data\": [0]}]}",
         AP_ERR_INVALID, "has datatype UINT8; it takes BYTES"},
        {"{\"inputs\": [{\"name\": \"pixels\", \"datatype\": \"UINT8\", \"shape\": [1, 3, 2, 3], "
         "\"data\": []}]}",
         AP_ERR_INVALID, "it takes [N, 2, 2, 3]"},
        {"{\"inputs\": [{\"name\": \"pixels\", \"datatype\": \"UINT8\", \"shape\": [1, 2, 2], "
         "\"data\": []}]}",
         AP_ERR_INVALID, "has shape [1, 2, 2]"},
        {"{\"inputs\": [{\"name\": \"image\", \"datatype\": \"BYTES\", \"shape\": [1, 2], "
         "\"data\": [\"YQ==\", \"YQ==\"]}]}",
         AP_ERR_INVALID, "it takes [N] or [N, 1]"},
        {"{\"inputs\": [{\"name\": \"image\", \"datatype\": \"BYTES\", \"shape\": [0], "
         "\"data\": []}]}",
         AP_ERR_INVALID, "positive integer"},
        {"{\"inputs\": [{\"name\": \"image\", \"datatype\": \"BYTES\", \"shape\": \"1\", "
         "\"data\": []}]}",
         AP_ERR_INVALID, "\"shape\" must be an array"},
        {"{\"inputs\": [{\"name\": \"image\", \"datatype\": \"BYTES\", \"shape\": [2], "
         "\"data\": [\"YQ==\"]}]}",
         AP_ERR_INVALID, "has 1 elements, but shape [2] needs 2"},
        {"{\"inputs\": [{\"name\": \"image\", \"datatype\": \"BYTES\", \"shape\": [1]}]}",
         AP_ERR_INVALID, "has no \"data\""},
        {"{\"inputs\": [{\"name\": \"image\", \"datatype\": \"BYTES\", \"shape\": [1], "
         "\"data\": \"YQ==\"}]}",
         AP_ERR_INVALID, "\"data\" must be an array"},
        {"{\"inputs\": [{\"name\": \"image\", \"datatype\": \"BYTES\", \"shape\": [1], "
         "\"data\": [5]}]}",
         AP_ERR_INVALID, "element 0 is not a string"},
        {"{\"inputs\": [{\"name\": \"image\", \"datatype\": \"BYTES\", \"shape\": [1], "
         "\"data\": [\"Y$==\"]}]}",
         AP_ERR_INVALID, "data element 0: invalid base64"},
        {"{\"inputs\": [{\"name\": \"pixels\", \"datatype\": \"UINT8\", \"shape\": [1, 2, 2, 3], "
         "\"data\": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 256]}]}",
         AP_ERR_INVALID, "element 11 is not an integer from 0 to 255"},
        {"{\"inputs\": [{\"name\": \"pixels\", \"datatype\": \"UINT8\", \"shape\": [1, 2, 2, 3], "
         "\"data\": [-1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]}]}",
         AP_ERR_INVALID, "element 0 is not an integer"},
        {"{\"inputs\": [{\"name\": \"pixels\", \"datatype\": \"UINT8\", \"shape\": [1, 2, 2, 3], "
         "\"data\": [0.5, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]}]}",
         AP_ERR_INVALID, "element 0 is not an integer"},
        {"{\"inputs\": [{\"name\": \"pixels\", \"datatype\": \"UINT8\", \"shape\": [1, 2, 2, 3], "
         "\"data\": [[[[0, 1, 2], [3, 4]], [[6, 7, 8], [9, 10, 11]]]]}]}",
         AP_ERR_INVALID, "nested data at depth 3"},
        {"{\"inputs\": [{\"name\": \"image\", \"datatype\": \"BYTES\", \"shape\": [4], "
         "\"data\": [\"YQ==\", \"YQ==\", \"YQ==\", \"YQ==\"]}]}",
         AP_ERR_LIMIT, "more than the limit of 3"},
        {"{\"inputs\": [{\"name\": \"image\", \"datatype\": \"BYTES\", \"shape\": [1], "
         "\"parameters\": {\"binary_data_size\": 4}, \"data\": []}]}",
         AP_ERR_INVALID, "binary tensor data is not supported"},
        {"{\"outputs\": [{\"name\": \"logits\"}], \"inputs\": []}", AP_ERR_INVALID,
         "\"logits\" is not an output"},
        {"{\"outputs\": [{\"name\": \"decisions\", \"parameters\": {\"binary_data\": true}}], "
         "\"inputs\": []}",
         AP_ERR_INVALID, "binary tensor data is not supported"},
        {"{\"outputs\": {}, \"inputs\": []}", AP_ERR_INVALID, "\"outputs\" must be an array"},
        {"{\"parameters\": [], \"inputs\": []}", AP_ERR_INVALID,
         "\"parameters\" must be an object"},
        {numeric_id, AP_ERR_INVALID, "\"id\" must be a string"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ap_kserve_request request;
        ap_error err = {0};
        ap_status status = parse(cases[i].body, &request, &err);
        if (status != cases[i].status || strstr(err.message, cases[i].message) == NULL)
            fprintf(stderr, "case %zu: %s\n", i, cases[i].body);
        CHECK_INT_EQ(status, cases[i].status);
        CHECK_STR_CONTAINS(err.message, cases[i].message);
        ap_kserve_request_free(&request);
    }
}

/* A body of many small numbers is rejected before jansson parses it. */
static void test_value_count_limit(void)
{
    size_t values = 3 * 2 * 2 * 3 + 1024 + 10;
    char *body = malloc(values * 2 + 100);
    strcpy(body, "{\"inputs\": [{\"name\": \"pixels\", \"data\": [0");
    for (size_t i = 1; i < values; i++)
        strcat(body, ",0");
    strcat(body, "]}]}");
    ap_kserve_request request;
    ap_error err = {0};
    CHECK_INT_EQ(parse(body, &request, &err), AP_ERR_LIMIT);
    CHECK_STR_CONTAINS(err.message, "more than 3 images of 2x2 pixels need");
    ap_kserve_request_free(&request);
    free(body);
}

int main(void)
{
    test_base64();
    test_bytes_input();
    test_pixels_input();
    test_malformed();
    test_value_count_limit();
    return check_finish();
}
