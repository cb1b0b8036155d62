#ifndef APIARY_SERVE_KSERVE_H
#define APIARY_SERVE_KSERVE_H

/* Decoding of KServe v2 (Open Inference Protocol) inference requests in
 * their JSON form. A request sends one of the model's two inputs:
 *   "image"  BYTES [N] or [N, 1], each element a base64-encoded JPEG or PNG file
 *   "pixels" UINT8 [N, H, W, 3], RGB pixels at the model's input size
 * Tensor data may be flat in row-major order or nested to the shape. The
 * outputs are "probabilities" (FP32 [N, labels]) and "decisions"
 * (BOOL [N, labels]), and a request may name the ones it wants in "outputs". */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/common/status.h"

#define AP_KSERVE_INPUT_IMAGE          "image"
#define AP_KSERVE_INPUT_PIXELS         "pixels"
#define AP_KSERVE_OUTPUT_PROBABILITIES "probabilities"
#define AP_KSERVE_OUTPUT_DECISIONS     "decisions"

typedef struct {
    int width; /* the model's input size in pixels */
    int height;
    size_t max_images; /* N limit; more fail with AP_ERR_LIMIT */
} ap_kserve_limits;

typedef struct {
    uint8_t *data;
    size_t size;
} ap_kserve_bytes;

typedef struct {
    char *id; /* the request's "id", NULL when it has none */
    bool want_probabilities;
    bool want_decisions;
    bool has_pixels;         /* the input is "pixels", else "image" */
    size_t count;            /* N, the number of images */
    uint8_t *pixels;         /* has_pixels: count x height x width x 3 */
    ap_kserve_bytes *images; /* otherwise: count encoded image files */
} ap_kserve_request;

/* Decode an inference request body. Malformed JSON, a missing or unknown
 * field value, or a wrong datatype, shape or data length fails with
 * AP_ERR_INVALID and a message that names the field. More than max_images
 * images, or more JSON values than that many images need, fail with
 * AP_ERR_LIMIT. Free out with ap_kserve_request_free, also after a failure. */
ap_status ap_kserve_parse_request(const char *body, size_t size, const ap_kserve_limits *limits,
                                  ap_kserve_request *out, ap_error *err);
void ap_kserve_request_free(ap_kserve_request *request);

#endif
