#ifndef APIARY_TESTS_PNG_CHECK_H
#define APIARY_TESTS_PNG_CHECK_H

/* Writing the synthetic PNG images of the dataset tests. */

#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Write a side x side RGB image to path, or exit the test when that fails. */
static inline void check_write_png(const char *path, int side, const uint8_t *pixels)
{
    png_image image;
    memset(&image, 0, sizeof(image));
    image.version = PNG_IMAGE_VERSION;
    image.width = (png_uint_32)side;
    image.height = (png_uint_32)side;
    image.format = PNG_FORMAT_RGB;
    if (!png_image_write_to_file(&image, path, 0, pixels, 0, NULL)) {
        fprintf(stderr, "cannot write %s: %s\n", path, image.message);
        exit(1);
    }
}

#endif
