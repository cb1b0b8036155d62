/* Fuzz the readers of S3 XML replies: ListObjectsV2 pages, the
 * CreateMultipartUpload reply and error documents. */

#include <stdlib.h>
#include <string.h>

#include "pipeline/store/s3_internal.h"
#include "tests/fuzz/fuzz_support.h"

static void parse_list(const char *xml, size_t size)
{
    s3_list_page page = {0};
    ap_error err = {0};
    ap_status status = s3_xml_parse_list(xml, size, &page, &err);
    fuzz_note("S3 listing: %s, %zu objects", status == AP_OK ? "parsed" : err.message, page.count);
    if (status == AP_OK) {
        FUZZ_REQUIRE(!page.truncated || page.continuation != NULL,
                     "a truncated page without a continuation token");
        for (size_t i = 0; i < page.count; i++) {
            FUZZ_REQUIRE(page.objects[i].key != NULL, "object %zu has no key", i);
            FUZZ_REQUIRE(page.objects[i].size >= 0, "object %zu has size %lld", i,
                         (long long)page.objects[i].size);
            FUZZ_REQUIRE(strlen(page.objects[i].etag) < sizeof(page.objects[i].etag),
                         "ETag overran its buffer");
        }
    } else {
        FUZZ_REQUIRE(err.message[0] != '\0', "listing error without a message");
    }
    for (size_t i = 0; i < page.count; i++)
        free(page.objects[i].key);
    free(page.objects);
    free(page.continuation);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *xml = (const char *)data;
    parse_list(xml, size);

    char *upload_id = NULL;
    ap_error err = {0};
    if (s3_xml_parse_upload_id(xml, size, &upload_id, &err) == AP_OK)
        FUZZ_REQUIRE(upload_id != NULL && upload_id[0] != '\0', "an empty upload id");
    else
        FUZZ_REQUIRE(upload_id == NULL, "an upload id after a failure");
    free(upload_id);

    char code[64], message[256];
    if (s3_xml_parse_error(xml, size, code, sizeof(code), message, sizeof(message))) {
        FUZZ_REQUIRE(strlen(code) < sizeof(code), "error code overran its buffer");
        FUZZ_REQUIRE(strchr(message, '\n') == NULL, "a line break in the error message");
    }
    return 0;
}
