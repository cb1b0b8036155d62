/* Fuzz JPEG and PNG decoding under small limits, then resize the decoded
 * image both ways (shrink and enlarge, stretch and letterbox). */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/data/image.h"
#include "tests/fuzz/fuzz_support.h"

/* Small enough that a fuzzer-made header cannot ask for much memory. */
#define MAX_PIXELS (1 << 20)

static const int sizes[][2] = {{7, 5}, {64, 48}, {1, 1}};

/* The message about unsupported content shows its first bytes (up to 8) in hex. */
static void check_first_bytes(const char *message, size_t size)
{
    const char *listed = strstr(message, "(first bytes ");
    if (listed == NULL)
        return;
    size_t expected = size < 8 ? size : 8, count = 0;
    for (const char *p = listed + strlen("(first bytes "); *p != ')' && *p != '\0'; p++)
        count += isxdigit((unsigned char)p[0]) && !isxdigit((unsigned char)p[1]) ? 1 : 0;
    FUZZ_REQUIRE(count == expected, "the message shows %zu of the first %zu bytes: %s", count,
                 expected, message);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ap_image_limits limits = {.max_bytes = 1 << 20, .max_pixels = MAX_PIXELS};
    ap_image image = {0};
    ap_error err = {0};
    ap_status status = ap_image_decode(data, size, &limits, &image, &err);
    fuzz_note("image: %s, %dx%d", status == AP_OK ? "decoded" : err.message, image.width,
              image.height);
    if (status != AP_OK) {
        FUZZ_REQUIRE(status == AP_ERR_FORMAT || status == AP_ERR_LIMIT || status == AP_ERR_NOMEM,
                     "decode failed with %s: %s", ap_status_name(status), err.message);
        FUZZ_REQUIRE(err.message[0] != '\0', "decode error without a message");
        check_first_bytes(err.message, size);
        ap_image_free(&image);
        return 0;
    }
    FUZZ_REQUIRE(image.width > 0 && image.height > 0, "decoded a %dx%d image", image.width,
                 image.height);
    FUZZ_REQUIRE((int64_t)image.width * image.height <= MAX_PIXELS,
                 "decoded %dx%d over the pixel limit", image.width, image.height);

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        int width = sizes[i][0], height = sizes[i][1];
        uint8_t *out = malloc((size_t)width * height * 3);
        FUZZ_REQUIRE(out != NULL, "out of memory");
        ap_resize_mode modes[] = {AP_RESIZE_STRETCH, AP_RESIZE_LETTERBOX};
        for (int m = 0; m < 2; m++) {
            status = ap_image_resize(&image, width, height, modes[m], out, &err);
            FUZZ_REQUIRE(status == AP_OK, "resize of %dx%d to %dx%d failed: %s", image.width,
                         image.height, width, height, err.message);
        }
        free(out);
    }
    ap_image_free(&image);
    return 0;
}
