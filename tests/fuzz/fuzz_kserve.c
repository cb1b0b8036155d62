/* Fuzz the decoder of KServe v2 inference requests (JSON bodies) for a
 * model with an 8x6 input and at most 4 images per request. */

#include <string.h>

#include "pipeline/serve/kserve.h"
#include "tests/fuzz/fuzz_support.h"

static const ap_kserve_limits limits = {.width = 8, .height = 6, .max_images = 4};

static void check_request(const ap_kserve_request *request)
{
    FUZZ_REQUIRE(request->count >= 1 && request->count <= limits.max_images,
                 "%zu images in a request", request->count);
    FUZZ_REQUIRE(request->want_probabilities || request->want_decisions, "no output requested");
    if (request->has_pixels) {
        FUZZ_REQUIRE(request->pixels != NULL, "pixel input without pixels");
        volatile unsigned sum = 0;
        size_t bytes = request->count * (size_t)limits.height * (size_t)limits.width * 3;
        for (size_t i = 0; i < bytes; i++)
            sum += request->pixels[i];
        (void)sum;
        return;
    }
    FUZZ_REQUIRE(request->images != NULL, "image input without images");
    for (size_t i = 0; i < request->count; i++) {
        volatile unsigned sum = 0;
        for (size_t b = 0; b < request->images[i].size; b++)
            sum += request->images[i].data[b];
        (void)sum;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ap_kserve_request request;
    ap_error err = {0};
    ap_status status = ap_kserve_parse_request((const char *)data, size, &limits, &request, &err);
    fuzz_note("KServe request: %s", status == AP_OK ? "decoded" : err.message);
    if (status == AP_OK) {
        check_request(&request);
    } else {
        FUZZ_REQUIRE(status == AP_ERR_INVALID || status == AP_ERR_LIMIT || status == AP_ERR_NOMEM,
                     "decode failed with %s: %s", ap_status_name(status), err.message);
        FUZZ_REQUIRE(err.message[0] != '\0', "decode error without a message");
    }
    ap_kserve_request_free(&request);
    return 0;
}
