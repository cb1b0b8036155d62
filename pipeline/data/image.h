#ifndef APIARY_DATA_IMAGE_H
#define APIARY_DATA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"

/* Image decoding (JPEG through TurboJPEG, PNG through libpng) and resizing.
 * The format is detected from the content, never from the file name. */

typedef struct {
    int width;
    int height;
    uint8_t *pixels; /* height * width * 3 bytes, RGB, row-major */
} ap_image;

typedef struct {
    size_t max_bytes;    /* encoded size limit */
    int64_t max_pixels;  /* width * height limit, checked before any allocation */
} ap_image_limits;

/* Decode JPEG or PNG bytes to 8-bit RGB. Grey is expanded, alpha is
 * composited onto black, 16-bit PNG is reduced to 8 bits. Corrupt, truncated
 * or unsupported content fails with AP_ERR_FORMAT; too large with AP_ERR_LIMIT. */
ap_status ap_image_decode(const uint8_t *data, size_t size, const ap_image_limits *limits,
                          ap_image *out, ap_error *err);

/* Read and decode a file; messages name the path. */
ap_status ap_image_load(const char *path, const ap_image_limits *limits, ap_image *out,
                        ap_error *err);

/* Resize src into dst (width * height * 3 bytes, RGB) with bilinear
 * filtering (area averaging when shrinking). Stretch ignores the aspect
 * ratio; letterbox keeps it and fills the borders with black. */
ap_status ap_image_resize(const ap_image *src, int width, int height, ap_resize_mode mode,
                          uint8_t *dst, ap_error *err);

void ap_image_free(ap_image *image);

#endif
