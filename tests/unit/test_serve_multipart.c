#include <string.h>

#include "pipeline/serve/multipart.h"
#include "tests/unit/check.h"

#define MAX_PARTS 4

static ap_multipart_part parts[MAX_PARTS];

/* Parse text (which may hold NUL bytes, hence the size) with boundary "b". */
static ap_status parse(const char *text, size_t size, size_t *count, ap_error *err)
{
    return ap_multipart_parse((const uint8_t *)text, size, "b", parts, MAX_PARTS, count, err);
}

#define PARSE(literal, count, err) parse(literal, sizeof(literal) - 1, count, err)

static void test_boundary(void)
{
    char boundary[AP_MULTIPART_BOUNDARY_MAX + 1];
    ap_error err = {0};
    CHECK_INT_EQ(ap_multipart_boundary("multipart/form-data; boundary=abc123", boundary, &err),
                 AP_OK);
    CHECK(strcmp(boundary, "abc123") == 0);
    CHECK_INT_EQ(
        ap_multipart_boundary("Multipart/Form-Data;charset=x; BOUNDARY=\"a b;c\"", boundary, &err),
        AP_OK);
    CHECK(strcmp(boundary, "a b;c") == 0);
    CHECK_INT_EQ(ap_multipart_boundary("multipart/form-data", boundary, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "boundary");
    CHECK_INT_EQ(ap_multipart_boundary("multipart/form-data; boundary=\"\"", boundary, &err),
                 AP_ERR_INVALID);
    CHECK_INT_EQ(ap_multipart_boundary("text/plain; boundary=abc", boundary, &err), AP_ERR_INVALID);
    CHECK_INT_EQ(ap_multipart_boundary("multipart/form-datax; boundary=abc", boundary, &err),
                 AP_ERR_INVALID);
    CHECK_INT_EQ(ap_multipart_boundary("multipart/form-data; boundary=\"abc", boundary, &err),
                 AP_ERR_INVALID);

    char header[128], longest[AP_MULTIPART_BOUNDARY_MAX + 2];
    memset(longest, 'x', AP_MULTIPART_BOUNDARY_MAX);
    longest[AP_MULTIPART_BOUNDARY_MAX] = '\0';
    snprintf(header, sizeof(header), "multipart/form-data; boundary=%s", longest);
    CHECK_INT_EQ(ap_multipart_boundary(header, boundary, &err), AP_OK);
    CHECK_INT_EQ(strlen(boundary), AP_MULTIPART_BOUNDARY_MAX);
    strcat(longest, "x");
    snprintf(header, sizeof(header), "multipart/form-data; boundary=%s", longest);
    CHECK_INT_EQ(ap_multipart_boundary(header, boundary, &err), AP_ERR_INVALID);
}

static void test_media_type(void)
{
    CHECK(ap_media_type_is("image/jpeg", "image/jpeg"));
    CHECK(ap_media_type_is("Image/JPEG; quality=9", "image/jpeg"));
    CHECK(ap_media_type_is(" image/png ;x=y", "image/png"));
    CHECK(!ap_media_type_is("image/jpegx", "image/jpeg"));
    CHECK(!ap_media_type_is("image/jpeg x", "image/jpeg"));
    CHECK(!ap_media_type_is("", "image/jpeg"));
    CHECK(!ap_media_type_is(NULL, "image/jpeg"));
}

static void test_two_files(void)
{
    /* a preamble, binary content with NUL and CRLF, padding after a delimiter, an epilogue */
    static const char body[] =
        "preamble\r\n"
        "--b\r\n"
        "Content-Disposition: form-data; name=\"file\"; filename=\"one.jpg\"\r\n"
        "Content-Type: image/jpeg\r\n"
        "\r\n"
        "AB\0\r\nC--b-\r\n"
        "--b  \r\n"
        "content-disposition: FORM-DATA; filename=\"q\\\"uote.png\"; name=pic\r\n"
        "\r\n"
        "xyz\r\n"
        "--b--\r\n"
        "epilogue";
    size_t count = 0;
    ap_error err = {0};
    CHECK_INT_EQ(PARSE(body, &count, &err), AP_OK);
    CHECK_INT_EQ(count, 2);
    CHECK(strcmp(parts[0].name, "file") == 0);
    CHECK(parts[0].has_filename);
    CHECK(strcmp(parts[0].filename, "one.jpg") == 0);
    CHECK(strcmp(parts[0].content_type, "image/jpeg") == 0);
    CHECK_INT_EQ(parts[0].size, 10);
    CHECK(memcmp(parts[0].data, "AB\0\r\nC--b-", 10) == 0);
    CHECK(strcmp(parts[1].name, "pic") == 0);
    CHECK(strcmp(parts[1].filename, "q\"uote.png") == 0);
    CHECK(parts[1].content_type[0] == '\0');
    CHECK_INT_EQ(parts[1].size, 3);
    CHECK(memcmp(parts[1].data, "xyz", 3) == 0);
}

static void test_field_and_empty_content(void)
{
    static const char body[] = "--b\r\n"
                               "Content-Disposition: form-data; name=\"note\"\r\n"
                               "\r\n"
                               "\r\n"
                               "--b--";
    size_t count = 0;
    ap_error err = {0};
    CHECK_INT_EQ(PARSE(body, &count, &err), AP_OK);
    CHECK_INT_EQ(count, 1);
    CHECK(!parts[0].has_filename);
    CHECK(strcmp(parts[0].name, "note") == 0);
    CHECK_INT_EQ(parts[0].size, 0);
}

/* Each malformed body fails with the expected status and a message naming the problem. */
static void test_malformed(void)
{
    static const struct {
        const char *body;
        ap_status status;
        const char *message;
    } cases[] = {
        {"no delimiter at all", AP_ERR_INVALID, "does not contain the boundary"},
        {"--b--\r\n", AP_ERR_INVALID, "no parts"},
        {"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nabc", AP_ERR_INVALID, "truncated"},
        {"--b\r\nContent-Disposition: form-data; name=a\r\nabc", AP_ERR_INVALID,
         "do not end with an empty line"},
        {"--b\r\n\r\nabc\r\n--b--", AP_ERR_INVALID, "no Content-Disposition"},
        {"--b\r\nContent-Type: image/png\r\n\r\nabc\r\n--b--", AP_ERR_INVALID,
         "no Content-Disposition"},
        {"--b\r\nContent-Disposition: attachment; filename=a\r\n\r\nabc\r\n--b--", AP_ERR_INVALID,
         "is not form-data"},
        {"--b\r\nContent-Disposition: form-data; filename=\"open\r\n\r\nabc\r\n--b--",
         AP_ERR_INVALID, "malformed Content-Disposition"},
        {"--b\r\nno colon here\r\n\r\nabc\r\n--b--", AP_ERR_INVALID, "has no name and colon"},
        {"--bjunk\r\n", AP_ERR_INVALID, "not followed by CRLF"},
        {"--b", AP_ERR_INVALID, "not followed by CRLF"},
        {"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nabc\r\n--bX", AP_ERR_INVALID,
         "not followed by CRLF"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t count = 0;
        ap_error err = {0};
        ap_status status = parse(cases[i].body, strlen(cases[i].body), &count, &err);
        if (status != cases[i].status)
            fprintf(stderr, "case %zu: %s\n", i, cases[i].body);
        CHECK_INT_EQ(status, cases[i].status);
        CHECK_STR_CONTAINS(err.message, cases[i].message);
    }
}

static void test_too_many_parts(void)
{
    char body[1024] = "";
    for (int i = 0; i < MAX_PARTS + 1; i++)
        strcat(body, "--b\r\nContent-Disposition: form-data; name=f; filename=x\r\n\r\nz\r\n");
    strcat(body, "--b--");
    size_t count = 0;
    ap_error err = {0};
    CHECK_INT_EQ(parse(body, strlen(body), &count, &err), AP_ERR_LIMIT);
    CHECK_STR_CONTAINS(err.message, "more than 4 parts");
}

static void test_long_headers(void)
{
    static char body[20000];
    strcpy(body, "--b\r\nContent-Disposition: form-data; name=a\r\nX-Filler: ");
    size_t used = strlen(body);
    memset(body + used, 'y', 10000);
    strcpy(body + used + 10000, "\r\n\r\nabc\r\n--b--");
    size_t count = 0;
    ap_error err = {0};
    CHECK_INT_EQ(parse(body, strlen(body), &count, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "headers are longer than");

    char name[400] = "--b\r\nContent-Disposition: form-data; name=a; filename=\"";
    memset(name + strlen(name), 'n', 300);
    strcat(name, "\"\r\n\r\nabc\r\n--b--");
    CHECK_INT_EQ(parse(name, strlen(name), &count, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "longer than 255 bytes");
}

int main(void)
{
    test_boundary();
    test_media_type();
    test_two_files();
    test_field_and_empty_content();
    test_malformed();
    test_too_many_parts();
    test_long_headers();
    return check_finish();
}
