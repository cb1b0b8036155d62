/* Fuzz the multipart/form-data reader of the prediction endpoint. The first
 * line of the input is the Content-Type header value and the rest is the
 * request body. Every part must lie inside the body. */

#include <string.h>

#include "pipeline/serve/multipart.h"
#include "tests/fuzz/fuzz_support.h"

#include <stdlib.h>

#define MAX_PARTS 8

static void check_part(const ap_multipart_part *part, const uint8_t *body, size_t size)
{
    FUZZ_REQUIRE(part->data >= body && part->data + part->size <= body + size,
                 "part %s lies outside the body", part->name);
    FUZZ_REQUIRE(part->has_filename || part->filename[0] == '\0',
                 "a file name %s without the filename parameter", part->filename);
    FUZZ_REQUIRE(strlen(part->content_type) < sizeof(part->content_type),
                 "Content-Type overran its buffer");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *header, *body;
    size_t header_size, body_size;
    fuzz_split(data, size, "\n", &header, &header_size, &body, &body_size);
    char *content_type = fuzz_text(header, header_size);
    (void)ap_media_type_is(content_type, "multipart/form-data");

    char boundary[AP_MULTIPART_BOUNDARY_MAX + 1];
    ap_error err = {0};
    if (ap_multipart_boundary(content_type, boundary, &err) != AP_OK) {
        fuzz_note("Content-Type: %s", err.message);
        FUZZ_REQUIRE(err.message[0] != '\0', "boundary error without a message");
        free(content_type);
        return 0;
    }
    free(content_type);
    size_t length = strlen(boundary);
    FUZZ_REQUIRE(length > 0 && length <= AP_MULTIPART_BOUNDARY_MAX, "a boundary of %zu bytes",
                 length);

    /* A copy of exactly body_size bytes, so reading past the body is caught. */
    uint8_t *copy = malloc(body_size > 0 ? body_size : 1);
    FUZZ_REQUIRE(copy != NULL, "out of memory");
    if (body_size > 0)
        memcpy(copy, body, body_size);
    ap_multipart_part parts[MAX_PARTS];
    size_t count = 0;
    ap_status status =
        ap_multipart_parse(copy, body_size, boundary, parts, MAX_PARTS, &count, &err);
    fuzz_note("multipart: %s, %zu parts", status == AP_OK ? "parsed" : err.message, count);
    if (status == AP_OK) {
        FUZZ_REQUIRE(count <= MAX_PARTS, "%zu parts in room for %d", count, MAX_PARTS);
        for (size_t i = 0; i < count; i++)
            check_part(&parts[i], copy, body_size);
    } else {
        FUZZ_REQUIRE(status == AP_ERR_INVALID || status == AP_ERR_LIMIT, "parse failed with %s: %s",
                     ap_status_name(status), err.message);
        FUZZ_REQUIRE(err.message[0] != '\0', "parse error without a message");
    }
    free(copy);
    return 0;
}
