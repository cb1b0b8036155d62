#include <dirent.h>
#include <omp.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <turbojpeg.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/data/image.h"
#include "tests/unit/check.h"

static const ap_image_limits default_limits = {64u << 20, 100000000};

typedef struct {
    uint8_t *data;
    size_t size;
} byte_buffer;

static void append_bytes(byte_buffer *buffer, const void *data, size_t size)
{
    buffer->data = realloc(buffer->data, buffer->size + size);
    if (buffer->data == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    memcpy(buffer->data + buffer->size, data, size);
    buffer->size += size;
}

static void write_png_bytes(png_structp png, png_bytep data, size_t length)
{
    append_bytes(png_get_io_ptr(png), data, length);
}

static void flush_nothing(png_structp png)
{
    (void)png;
}

typedef struct {
    int width;
    int height;
    int color_type;
    int bit_depth;
    int interlace;
    const uint8_t *samples; /* rows in the PNG's own layout, 16-bit samples big-endian */
    const png_color *palette;
    int palette_size;
    const uint8_t *alpha_of_index; /* tRNS for palette images */
    int alpha_count;
} png_spec;

static byte_buffer encode_png(const png_spec *spec)
{
    byte_buffer out = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (png == NULL || info == NULL || setjmp(png_jmpbuf(png))) {
        fprintf(stderr, "test PNG encoder failed\n");
        exit(1);
    }
    png_set_write_fn(png, &out, write_png_bytes, flush_nothing);
    png_set_IHDR(png, info, (png_uint_32)spec->width, (png_uint_32)spec->height, spec->bit_depth,
                 spec->color_type, spec->interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (spec->palette != NULL)
        png_set_PLTE(png, info, spec->palette, spec->palette_size);
    if (spec->alpha_of_index != NULL)
        png_set_tRNS(png, info, spec->alpha_of_index, spec->alpha_count, NULL);
    png_write_info(png, info);
    size_t row_bytes = png_get_rowbytes(png, info);
    png_bytep *rows = malloc((size_t)spec->height * sizeof(png_bytep));
    for (int y = 0; y < spec->height; y++)
        rows[y] = (png_bytep)spec->samples + (size_t)y * row_bytes;
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    return out;
}

static byte_buffer encode_jpeg(const uint8_t *pixels, int width, int height, int pixel_format,
                               int subsampling, int quality)
{
    tjhandle encoder = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long jpeg_size = 0;
    if (encoder == NULL || tjCompress2(encoder, pixels, width, 0, height, pixel_format, &jpeg,
                                       &jpeg_size, subsampling, quality, 0) != 0) {
        fprintf(stderr, "test JPEG encoder failed: %s\n", tjGetErrorStr2(encoder));
        exit(1);
    }
    byte_buffer out = {0};
    append_bytes(&out, jpeg, jpeg_size);
    tjFree(jpeg);
    tjDestroy(encoder);
    return out;
}

static uint8_t *gradient_rgb(int width, int height)
{
    uint8_t *pixels = malloc((size_t)width * height * 3);
    for (int y = 0; y < height; y++) {
        for (int x = 0; x < width; x++) {
            uint8_t *p = pixels + ((size_t)y * width + x) * 3;
            p[0] = (uint8_t)(x * 255 / (width - 1));
            p[1] = (uint8_t)(y * 255 / (height - 1));
            p[2] = (uint8_t)((x + y) * 255 / (width + height - 2));
        }
    }
    return pixels;
}

static void check_pixel(const ap_image *image, int x, int y, int red, int green, int blue)
{
    const uint8_t *p = image->pixels + ((size_t)y * image->width + x) * 3;
    CHECK_INT_EQ(p[0], red);
    CHECK_INT_EQ(p[1], green);
    CHECK_INT_EQ(p[2], blue);
}

static ap_status decode_buffer(const byte_buffer *buffer, ap_image *image, ap_error *err)
{
    return ap_image_decode(buffer->data, buffer->size, &default_limits, image, err);
}

static void test_png_rgb(void)
{
    const uint8_t samples[] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30, 40, 50, 60, 70, 80, 90};
    png_spec spec = {.width = 3,
                     .height = 2,
                     .color_type = PNG_COLOR_TYPE_RGB,
                     .bit_depth = 8,
                     .samples = samples};
    byte_buffer png = encode_png(&spec);
    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(decode_buffer(&png, &image, &err), AP_OK);
    CHECK_INT_EQ(image.width, 3);
    CHECK_INT_EQ(image.height, 2);
    if (image.pixels != NULL)
        CHECK(memcmp(image.pixels, samples, sizeof(samples)) == 0);
    ap_image_free(&image);
    free(png.data);
}

/* Alpha is composited onto black: round(color * alpha / 255). */
static void test_png_rgba_onto_black(void)
{
    const uint8_t samples[] = {200, 100, 50, 255, 200, 100, 50, 0, 200, 3, 50, 128};
    png_spec spec = {.width = 3,
                     .height = 1,
                     .color_type = PNG_COLOR_TYPE_RGBA,
                     .bit_depth = 8,
                     .samples = samples};
    byte_buffer png = encode_png(&spec);
    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(decode_buffer(&png, &image, &err), AP_OK);
    if (image.pixels != NULL) {
        check_pixel(&image, 0, 0, 200, 100, 50);
        check_pixel(&image, 1, 0, 0, 0, 0);
        check_pixel(&image, 2, 0, 100, 2, 25); /* 100.4, 1.506, 25.1 */
    }
    ap_image_free(&image);
    free(png.data);
}

static void test_png_grey(void)
{
    const uint8_t samples[] = {0, 77, 255, 128};
    png_spec spec = {.width = 2,
                     .height = 2,
                     .color_type = PNG_COLOR_TYPE_GRAY,
                     .bit_depth = 8,
                     .samples = samples};
    byte_buffer png = encode_png(&spec);
    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(decode_buffer(&png, &image, &err), AP_OK);
    if (image.pixels != NULL) {
        check_pixel(&image, 0, 0, 0, 0, 0);
        check_pixel(&image, 1, 0, 77, 77, 77);
        check_pixel(&image, 0, 1, 255, 255, 255);
        check_pixel(&image, 1, 1, 128, 128, 128);
    }
    ap_image_free(&image);
    free(png.data);
}

static void test_png_grey_alpha(void)
{
    const uint8_t samples[] = {100, 255, 100, 0, 254, 51};
    png_spec spec = {.width = 3,
                     .height = 1,
                     .color_type = PNG_COLOR_TYPE_GRAY_ALPHA,
                     .bit_depth = 8,
                     .samples = samples};
    byte_buffer png = encode_png(&spec);
    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(decode_buffer(&png, &image, &err), AP_OK);
    if (image.pixels != NULL) {
        check_pixel(&image, 0, 0, 100, 100, 100);
        check_pixel(&image, 1, 0, 0, 0, 0);
        check_pixel(&image, 2, 0, 51, 51, 51); /* 254 * 51 / 255 = 50.8 */
    }
    ap_image_free(&image);
    free(png.data);
}

static void test_png_grey_one_bit(void)
{
    const uint8_t samples[] = {0xA0}; /* 1 0 1 0 */
    png_spec spec = {.width = 4,
                     .height = 1,
                     .color_type = PNG_COLOR_TYPE_GRAY,
                     .bit_depth = 1,
                     .samples = samples};
    byte_buffer png = encode_png(&spec);
    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(decode_buffer(&png, &image, &err), AP_OK);
    if (image.pixels != NULL) {
        check_pixel(&image, 0, 0, 255, 255, 255);
        check_pixel(&image, 1, 0, 0, 0, 0);
        check_pixel(&image, 2, 0, 255, 255, 255);
    }
    ap_image_free(&image);
    free(png.data);
}

static void test_png_palette_with_transparency(void)
{
    const png_color palette[] = {{10, 20, 30}, {250, 128, 0}, {90, 90, 90}};
    const uint8_t alpha[] = {255, 255, 0}; /* index 2 is fully transparent */
    const uint8_t samples[] = {0, 1, 2, 1};
    png_spec spec = {.width = 4,
                     .height = 1,
                     .color_type = PNG_COLOR_TYPE_PALETTE,
                     .bit_depth = 8,
                     .samples = samples,
                     .palette = palette,
                     .palette_size = 3,
                     .alpha_of_index = alpha,
                     .alpha_count = 3};
    byte_buffer png = encode_png(&spec);
    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(decode_buffer(&png, &image, &err), AP_OK);
    if (image.pixels != NULL) {
        check_pixel(&image, 0, 0, 10, 20, 30);
        check_pixel(&image, 1, 0, 250, 128, 0);
        check_pixel(&image, 2, 0, 0, 0, 0);
        check_pixel(&image, 3, 0, 250, 128, 0);
    }
    ap_image_free(&image);
    free(png.data);
}

/* 16-bit samples v * 257 (high byte equal to low byte) reduce to exactly v.
 * Other samples round to the nearest 8-bit value instead of losing the low byte. */
static void test_png_sixteen_bit(void)
{
    const uint16_t values[] = {0,         1 * 257, 127 * 257, 128 * 257, 254 * 257,
                               255 * 257, 0x12F0,  0x00FF,    0};
    uint8_t samples[18];
    for (int i = 0; i < 9; i++) {
        samples[2 * i] = (uint8_t)(values[i] >> 8);
        samples[2 * i + 1] = (uint8_t)values[i];
    }
    png_spec spec = {.width = 3,
                     .height = 1,
                     .color_type = PNG_COLOR_TYPE_RGB,
                     .bit_depth = 16,
                     .samples = samples};
    byte_buffer png = encode_png(&spec);
    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(decode_buffer(&png, &image, &err), AP_OK);
    if (image.pixels != NULL) {
        check_pixel(&image, 0, 0, 0, 1, 127);
        check_pixel(&image, 1, 0, 128, 254, 255);
        check_pixel(&image, 2, 0, 19, 1, 0); /* 4848 / 257 = 18.9, 255 / 257 = 0.99 */
    }
    ap_image_free(&image);
    free(png.data);
}

static void test_png_interlaced(void)
{
    uint8_t *pixels = gradient_rgb(11, 9);
    png_spec spec = {.width = 11,
                     .height = 9,
                     .color_type = PNG_COLOR_TYPE_RGB,
                     .bit_depth = 8,
                     .interlace = PNG_INTERLACE_ADAM7,
                     .samples = pixels};
    byte_buffer png = encode_png(&spec);
    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(decode_buffer(&png, &image, &err), AP_OK);
    if (image.pixels != NULL)
        CHECK(memcmp(image.pixels, pixels, 11 * 9 * 3) == 0);
    ap_image_free(&image);
    free(png.data);
    free(pixels);
}

/* Quality 95 without chroma subsampling keeps a smooth gradient within a few
 * levels. The tolerance of 6 allows for DCT quantisation of the diagonal ramp. */
static void test_jpeg_gradient(void)
{
    int width = 64, height = 48;
    uint8_t *pixels = gradient_rgb(width, height);
    byte_buffer jpeg = encode_jpeg(pixels, width, height, TJPF_RGB, TJSAMP_444, 95);
    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(decode_buffer(&jpeg, &image, &err), AP_OK);
    CHECK_INT_EQ(image.width, width);
    CHECK_INT_EQ(image.height, height);
    int max_difference = 0;
    for (size_t i = 0; image.pixels != NULL && i < (size_t)width * height * 3; i++) {
        int difference = abs((int)image.pixels[i] - (int)pixels[i]);
        if (difference > max_difference)
            max_difference = difference;
    }
    CHECK(image.pixels != NULL);
    CHECK_NEAR(max_difference, 0, 6);
    ap_image_free(&image);
    free(jpeg.data);
    free(pixels);
}

static void test_jpeg_grey(void)
{
    uint8_t grey[16 * 8];
    for (int i = 0; i < 16 * 8; i++)
        grey[i] = (uint8_t)(i * 2);
    byte_buffer jpeg = encode_jpeg(grey, 16, 8, TJPF_GRAY, TJSAMP_GRAY, 95);
    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(decode_buffer(&jpeg, &image, &err), AP_OK);
    for (int i = 0; image.pixels != NULL && i < 16 * 8; i++) {
        CHECK_INT_EQ(image.pixels[3 * i], image.pixels[3 * i + 1]);
        CHECK_INT_EQ(image.pixels[3 * i], image.pixels[3 * i + 2]);
        CHECK_NEAR(image.pixels[3 * i], grey[i], 4);
    }
    ap_image_free(&image);
    free(jpeg.data);
}

static void test_jpeg_cmyk_rejected(void)
{
    uint8_t cmyk[8 * 8 * 4];
    for (int i = 0; i < 8 * 8 * 4; i++)
        cmyk[i] = (uint8_t)(i * 3);
    byte_buffer jpeg = encode_jpeg(cmyk, 8, 8, TJPF_CMYK, TJSAMP_444, 90);
    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(decode_buffer(&jpeg, &image, &err), AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, "CMYK");
    CHECK(image.pixels == NULL);
    free(jpeg.data);
}

static void check_truncations_rejected(const byte_buffer *full, const char *label)
{
    size_t cuts[] = {0,
                     1,
                     2,
                     5,
                     9,
                     20,
                     40,
                     full->size / 4,
                     full->size / 2,
                     full->size - 12,
                     full->size - 2,
                     full->size - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        ap_image image;
        ap_error err = {0};
        ap_status status = ap_image_decode(full->data, cuts[i], &default_limits, &image, &err);
        if (status != AP_ERR_FORMAT)
            fprintf(stderr, "%s cut to %zu of %zu bytes: %s\n", label, cuts[i], full->size,
                    status == AP_OK ? "decoded" : err.message);
        CHECK_INT_EQ(status, AP_ERR_FORMAT);
        CHECK(image.pixels == NULL);
    }
}

static void test_truncated_rejected(void)
{
    uint8_t *pixels = gradient_rgb(40, 30);
    byte_buffer jpeg = encode_jpeg(pixels, 40, 30, TJPF_RGB, TJSAMP_420, 90);
    check_truncations_rejected(&jpeg, "JPEG");
    png_spec spec = {.width = 40,
                     .height = 30,
                     .color_type = PNG_COLOR_TYPE_RGB,
                     .bit_depth = 8,
                     .samples = pixels};
    byte_buffer png = encode_png(&spec);
    check_truncations_rejected(&png, "PNG");
    free(jpeg.data);
    free(png.data);
    free(pixels);
}

static void check_unsupported(const void *data, size_t size, const char *expected_text)
{
    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(ap_image_decode(data, size, &default_limits, &image, &err), AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, expected_text);
    CHECK(image.pixels == NULL);
}

static void test_unsupported_content(void)
{
    uint8_t random_bytes[4096];
    uint32_t state = 12345;
    for (size_t i = 0; i < sizeof(random_bytes); i++) {
        state = state * 1664525u + 1013904223u;
        random_bytes[i] = (uint8_t)(state >> 24);
    }
    random_bytes[0] = 0x00; /* keep it from starting with a JPEG or PNG signature by chance */
    check_unsupported(random_bytes, sizeof(random_bytes), "unknown binary data");
    check_unsupported("", 0, "empty");
    const char gif[] = "GIF89a\x01\x00\x01\x00\x80\x00\x00";
    check_unsupported(gif, sizeof(gif) - 1, "GIF");
    check_unsupported("BM\x3a\x00\x00\x00", 6, "BMP");
    const char text[] = "file,wasp\nimage.jpg,1\n";
    check_unsupported(text, sizeof(text) - 1, "text");

    /* A valid signature followed by garbage is corrupt, not unsupported. */
    uint8_t fake_png[64];
    memcpy(fake_png, "\x89PNG\r\n\x1a\n", 8);
    memcpy(fake_png + 8, random_bytes, sizeof(fake_png) - 8);
    check_unsupported(fake_png, sizeof(fake_png), "PNG");
    uint8_t fake_jpeg[64] = {0xFF, 0xD8, 0xFF};
    memcpy(fake_jpeg + 3, random_bytes, sizeof(fake_jpeg) - 3);
    check_unsupported(fake_jpeg, sizeof(fake_jpeg), "JPEG");
}

static uint32_t crc32_of(const uint8_t *data, size_t size)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < size; i++) {
        crc ^= data[i];
        for (int bit = 0; bit < 8; bit++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return crc ^ 0xFFFFFFFFu;
}

static void put_be32(uint8_t *out, uint32_t value)
{
    out[0] = (uint8_t)(value >> 24);
    out[1] = (uint8_t)(value >> 16);
    out[2] = (uint8_t)(value >> 8);
    out[3] = (uint8_t)value;
}

/* Signature, then an IHDR claiming 100000 x 100000 RGB with a valid CRC,
 * then an empty IDAT and IEND: 10^10 pixels (30 GB decoded) in 57 bytes. */
static void test_png_pixel_limit(void)
{
    uint8_t file[8 + 25 + 12 + 12];
    memcpy(file, "\x89PNG\r\n\x1a\n", 8);
    uint8_t *ihdr = file + 8;
    put_be32(ihdr, 13);
    memcpy(ihdr + 4, "IHDR", 4);
    put_be32(ihdr + 8, 100000);
    put_be32(ihdr + 12, 100000);
    const uint8_t rest[5] = {8, PNG_COLOR_TYPE_RGB, 0, 0, 0};
    memcpy(ihdr + 16, rest, 5);
    put_be32(ihdr + 21, crc32_of(ihdr + 4, 17));
    uint8_t *idat = ihdr + 25;
    put_be32(idat, 0);
    memcpy(idat + 4, "IDAT", 4);
    put_be32(idat + 8, crc32_of(idat + 4, 4));
    uint8_t *iend = idat + 12;
    put_be32(iend, 0);
    memcpy(iend + 4, "IEND", 4);
    put_be32(iend + 8, crc32_of(iend + 4, 4));

    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(ap_image_decode(file, sizeof(file), &default_limits, &image, &err), AP_ERR_LIMIT);
    CHECK_STR_CONTAINS(err.message, "10000000000 pixels");
    CHECK(image.pixels == NULL);
}

/* Patches the frame size of a small baseline JPEG to 60000 x 60000. */
static void test_jpeg_pixel_limit(void)
{
    uint8_t *pixels = gradient_rgb(16, 16);
    byte_buffer jpeg = encode_jpeg(pixels, 16, 16, TJPF_RGB, TJSAMP_444, 90);
    bool patched = false;
    for (size_t i = 0; i + 9 < jpeg.size && !patched; i++) {
        if (jpeg.data[i] == 0xFF && jpeg.data[i + 1] == 0xC0) {
            jpeg.data[i + 5] = 0xEA; /* height 0xEA60 = 60000 */
            jpeg.data[i + 6] = 0x60;
            jpeg.data[i + 7] = 0xEA;
            jpeg.data[i + 8] = 0x60;
            patched = true;
        }
    }
    CHECK(patched);
    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(decode_buffer(&jpeg, &image, &err), AP_ERR_LIMIT);
    CHECK_STR_CONTAINS(err.message, "3600000000 pixels");
    free(jpeg.data);
    free(pixels);
}

static void test_byte_limit(void)
{
    uint8_t *pixels = gradient_rgb(16, 16);
    byte_buffer jpeg = encode_jpeg(pixels, 16, 16, TJPF_RGB, TJSAMP_444, 90);
    ap_image_limits limits = {jpeg.size - 1, 1000000};
    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(ap_image_decode(jpeg.data, jpeg.size, &limits, &image, &err), AP_ERR_LIMIT);
    CHECK_STR_CONTAINS(err.message, "over the limit");
    free(jpeg.data);
    free(pixels);
}

static void write_file(const char *path, const byte_buffer *buffer)
{
    ap_error err = {0};
    if (ap_write_atomic(path, buffer->data, buffer->size, &err) != AP_OK) {
        fprintf(stderr, "%s\n", err.message);
        exit(1);
    }
}

static void test_load_by_content_not_name(const char *folder)
{
    const uint8_t samples[] = {1, 2, 3, 4, 5, 6};
    png_spec spec = {.width = 2,
                     .height = 1,
                     .color_type = PNG_COLOR_TYPE_RGB,
                     .bit_depth = 8,
                     .samples = samples};
    byte_buffer png = encode_png(&spec);
    char path[4200];
    snprintf(path, sizeof(path), "%s/really_a_png.jpg", folder);
    write_file(path, &png);
    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(ap_image_load(path, &default_limits, &image, &err), AP_OK);
    if (image.pixels != NULL)
        CHECK(memcmp(image.pixels, samples, sizeof(samples)) == 0);
    ap_image_free(&image);
    free(png.data);
}

static void test_load_errors_name_path(const char *folder)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/missing.png", folder);
    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(ap_image_load(path, &default_limits, &image, &err), AP_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(err.message, path);

    byte_buffer text = {0};
    append_bytes(&text, "not an image", 12);
    snprintf(path, sizeof(path), "%s/notes.png", folder);
    write_file(path, &text);
    CHECK_INT_EQ(ap_image_load(path, &default_limits, &image, &err), AP_ERR_FORMAT);
    CHECK(strncmp(err.message, path, strlen(path)) == 0);
    CHECK_STR_CONTAINS(err.message, "text");
    free(text.data);
}

/* Returns the first file in folder whose name ends with extension, or NULL. */
static char *first_file_with_extension(const char *folder, const char *extension)
{
    DIR *dir = opendir(folder);
    if (dir == NULL)
        return NULL;
    char *found = NULL;
    struct dirent *entry;
    while (found == NULL && (entry = readdir(dir)) != NULL) {
        size_t length = strlen(entry->d_name), ext_length = strlen(extension);
        if (length > ext_length &&
            strcasecmp(entry->d_name + length - ext_length, extension) == 0) {
            found = malloc(strlen(folder) + length + 2);
            sprintf(found, "%s/%s", folder, entry->d_name);
        }
    }
    closedir(dir);
    return found;
}

/* Compares with a decode by the TurboJPEG API called directly. */
static void test_real_jpeg(const char *data_dir)
{
    char folder[4200];
    snprintf(folder, sizeof(folder), "%s/wasp-trap/images", data_dir);
    char *path = first_file_with_extension(folder, ".jpg");
    CHECK(path != NULL);
    if (path == NULL)
        return;
    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(ap_image_load(path, &default_limits, &image, &err), AP_OK);

    uint8_t *data = NULL;
    size_t size = 0;
    CHECK_INT_EQ(ap_read_file(path, 64u << 20, &data, &size, &err), AP_OK);
    tjhandle decoder = tjInitDecompress();
    int width = 0, height = 0, subsampling = 0, colorspace = 0;
    tjDecompressHeader3(decoder, data, size, &width, &height, &subsampling, &colorspace);
    CHECK_INT_EQ(image.width, width);
    CHECK_INT_EQ(image.height, height);
    uint8_t *expected = malloc((size_t)width * height * 3);
    CHECK_INT_EQ(tjDecompress2(decoder, data, size, expected, width, 0, height, TJPF_RGB, 0), 0);
    if (image.pixels != NULL && image.width == width && image.height == height)
        CHECK(memcmp(image.pixels, expected, (size_t)width * height * 3) == 0);
    tjDestroy(decoder);
    free(expected);
    free(data);
    ap_image_free(&image);
    free(path);
}

/* Compares with libpng's simplified API, exact for 8-bit RGB without alpha. */
static void test_real_png(const char *data_dir)
{
    char folder[4200];
    snprintf(folder, sizeof(folder), "%s/hive-health/images", data_dir);
    char *path = first_file_with_extension(folder, ".png");
    CHECK(path != NULL);
    if (path == NULL)
        return;
    ap_image image;
    ap_error err = {0};
    CHECK_INT_EQ(ap_image_load(path, &default_limits, &image, &err), AP_OK);
    CHECK_INT_EQ(image.width, 100);
    CHECK_INT_EQ(image.height, 100);

    png_image reference;
    memset(&reference, 0, sizeof(reference));
    reference.version = PNG_IMAGE_VERSION;
    CHECK(png_image_begin_read_from_file(&reference, path) != 0);
    reference.format = PNG_FORMAT_RGB;
    uint8_t *expected = malloc(PNG_IMAGE_SIZE(reference));
    CHECK(png_image_finish_read(&reference, NULL, expected, 0, NULL) != 0);
    if (image.pixels != NULL && image.width == 100 && image.height == 100)
        CHECK(memcmp(image.pixels, expected, 100 * 100 * 3) == 0);
    free(expected);
    ap_image_free(&image);
    free(path);
}

static ap_image make_image(int width, int height)
{
    ap_image image = {width, height, malloc((size_t)width * height * 3)};
    uint32_t state = (uint32_t)(width * 7919 + height);
    for (size_t i = 0; i < (size_t)width * height * 3; i++) {
        state = state * 1664525u + 1013904223u;
        image.pixels[i] = (uint8_t)(state >> 24);
    }
    return image;
}

static void fill_constant(ap_image *image, uint8_t red, uint8_t green, uint8_t blue)
{
    for (size_t i = 0; i < (size_t)image->width * image->height; i++) {
        image->pixels[3 * i] = red;
        image->pixels[3 * i + 1] = green;
        image->pixels[3 * i + 2] = blue;
    }
}

static void test_resize_identity(void)
{
    ap_image image = make_image(7, 5);
    uint8_t out[7 * 5 * 3];
    ap_error err = {0};
    CHECK_INT_EQ(ap_image_resize(&image, 7, 5, AP_RESIZE_STRETCH, out, &err), AP_OK);
    CHECK(memcmp(out, image.pixels, sizeof(out)) == 0);
    CHECK_INT_EQ(ap_image_resize(&image, 7, 5, AP_RESIZE_LETTERBOX, out, &err), AP_OK);
    CHECK(memcmp(out, image.pixels, sizeof(out)) == 0);
    ap_image_free(&image);
}

static void test_resize_constant_stays_constant(void)
{
    ap_image image = make_image(13, 7);
    fill_constant(&image, 10, 200, 77);
    const int sizes[][2] = {{5, 3}, {29, 17}, {4, 19}, {13, 1}, {1, 1}};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        int width = sizes[s][0], height = sizes[s][1];
        uint8_t *out = malloc((size_t)width * height * 3);
        ap_error err = {0};
        CHECK_INT_EQ(ap_image_resize(&image, width, height, AP_RESIZE_STRETCH, out, &err), AP_OK);
        for (int i = 0; i < width * height; i++) {
            CHECK_INT_EQ(out[3 * i], 10);
            CHECK_INT_EQ(out[3 * i + 1], 200);
            CHECK_INT_EQ(out[3 * i + 2], 77);
        }
        free(out);
    }
    ap_image_free(&image);
}

/* Halving each side averages each 2x2 block, rounding halves up. */
static void test_resize_halving_averages(void)
{
    ap_image image = make_image(8, 6);
    uint8_t out[4 * 3 * 3];
    ap_error err = {0};
    CHECK_INT_EQ(ap_image_resize(&image, 4, 3, AP_RESIZE_STRETCH, out, &err), AP_OK);
    for (int y = 0; y < 3; y++) {
        for (int x = 0; x < 4; x++) {
            for (int c = 0; c < 3; c++) {
                int sum = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++)
                        sum += image.pixels[((2 * y + dy) * 8 + 2 * x + dx) * 3 + c];
                CHECK_INT_EQ(out[(y * 4 + x) * 3 + c], (sum + 2) / 4);
            }
        }
    }
    ap_image_free(&image);
}

/* Enlarging 2 pixels to 4 samples at source positions 0, 0.25, 0.75, 1. */
static void test_resize_enlarge_bilinear(void)
{
    ap_image image = make_image(2, 1);
    fill_constant(&image, 0, 0, 0);
    image.pixels[3] = 255;
    uint8_t out[4 * 3];
    ap_error err = {0};
    CHECK_INT_EQ(ap_image_resize(&image, 4, 1, AP_RESIZE_STRETCH, out, &err), AP_OK);
    CHECK_INT_EQ(out[0], 0);
    CHECK_INT_EQ(out[3], 64);  /* 63.75 */
    CHECK_INT_EQ(out[6], 191); /* 191.25 */
    CHECK_INT_EQ(out[9], 255);
    ap_image_free(&image);
}

static bool pixel_is(const uint8_t *out, int width, int x, int y, int red, int green, int blue)
{
    const uint8_t *p = out + ((size_t)y * width + x) * 3;
    return p[0] == red && p[1] == green && p[2] == blue;
}

/* A 20x10 red image letterboxed into 10x10 fills rows 2..6 (10x5, centred). */
static void test_resize_letterbox_centres(void)
{
    ap_image wide = make_image(20, 10);
    fill_constant(&wide, 255, 0, 0);
    uint8_t out[10 * 10 * 3];
    ap_error err = {0};
    CHECK_INT_EQ(ap_image_resize(&wide, 10, 10, AP_RESIZE_LETTERBOX, out, &err), AP_OK);
    for (int y = 0; y < 10; y++) {
        bool inside = y >= 2 && y < 7;
        for (int x = 0; x < 10; x++) {
            bool ok =
                inside ? pixel_is(out, 10, x, y, 255, 0, 0) : pixel_is(out, 10, x, y, 0, 0, 0);
            if (!ok)
                fprintf(stderr, "letterbox pixel (%d, %d) is wrong\n", x, y);
            CHECK(ok);
        }
    }

    /* A tall 6x18 image in a 12x12 box becomes 4x12 starting at column 4. */
    ap_image tall = make_image(6, 18);
    fill_constant(&tall, 0, 0, 200);
    uint8_t box[12 * 12 * 3];
    CHECK_INT_EQ(ap_image_resize(&tall, 12, 12, AP_RESIZE_LETTERBOX, box, &err), AP_OK);
    for (int x = 0; x < 12; x++) {
        bool inside = x >= 4 && x < 8;
        CHECK(pixel_is(box, 12, x, 0, 0, 0, inside ? 200 : 0));
        CHECK(pixel_is(box, 12, x, 11, 0, 0, inside ? 200 : 0));
    }
    ap_image_free(&wide);
    ap_image_free(&tall);
}

/* Stretching ignores the aspect ratio: left half red, right half blue stay halves. */
static void test_resize_stretch_fills(void)
{
    ap_image image = make_image(20, 10);
    for (int y = 0; y < 10; y++) {
        for (int x = 0; x < 20; x++) {
            uint8_t *p = image.pixels + (y * 20 + x) * 3;
            p[0] = x < 10 ? 255 : 0;
            p[1] = 0;
            p[2] = x < 10 ? 0 : 255;
        }
    }
    uint8_t out[10 * 10 * 3];
    ap_error err = {0};
    CHECK_INT_EQ(ap_image_resize(&image, 10, 10, AP_RESIZE_STRETCH, out, &err), AP_OK);
    for (int y = 0; y < 10; y++) {
        for (int x = 0; x < 10; x++)
            CHECK(pixel_is(out, 10, x, y, x < 5 ? 255 : 0, 0, x < 5 ? 0 : 255));
    }
    ap_image_free(&image);
}

/* Large images resize with several threads; rows must not depend on that. */
static void test_resize_large_thread_independent(void)
{
    ap_image image = make_image(1500, 1000);
    uint8_t *single = malloc(96 * 96 * 3), *multiple = malloc(96 * 96 * 3);
    ap_error err = {0};
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    CHECK_INT_EQ(ap_image_resize(&image, 96, 96, AP_RESIZE_LETTERBOX, single, &err), AP_OK);
    omp_set_num_threads(2);
    CHECK_INT_EQ(ap_image_resize(&image, 96, 96, AP_RESIZE_LETTERBOX, multiple, &err), AP_OK);
    omp_set_num_threads(threads);
    CHECK(memcmp(single, multiple, 96 * 96 * 3) == 0);
    free(single);
    free(multiple);
    ap_image_free(&image);
}

static void test_resize_invalid_arguments(void)
{
    ap_image image = make_image(4, 4);
    uint8_t out[16 * 3];
    ap_error err = {0};
    CHECK_INT_EQ(ap_image_resize(&image, 0, 4, AP_RESIZE_STRETCH, out, &err), AP_ERR_INVALID);
    CHECK_INT_EQ(ap_image_resize(&image, 4, 4, (ap_resize_mode)7, out, &err), AP_ERR_INVALID);
    ap_image empty = {0, 0, NULL};
    CHECK_INT_EQ(ap_image_resize(&empty, 4, 4, AP_RESIZE_STRETCH, out, &err), AP_ERR_INVALID);
    ap_image_free(&image);
}

int main(void)
{
    test_png_rgb();
    test_png_rgba_onto_black();
    test_png_grey();
    test_png_grey_alpha();
    test_png_grey_one_bit();
    test_png_palette_with_transparency();
    test_png_sixteen_bit();
    test_png_interlaced();
    test_jpeg_gradient();
    test_jpeg_grey();
    test_jpeg_cmyk_rejected();
    test_truncated_rejected();
    test_unsupported_content();
    test_png_pixel_limit();
    test_jpeg_pixel_limit();
    test_byte_limit();
    test_resize_identity();
    test_resize_constant_stays_constant();
    test_resize_halving_averages();
    test_resize_enlarge_bilinear();
    test_resize_letterbox_centres();
    test_resize_stretch_fills();
    test_resize_large_thread_independent();
    test_resize_invalid_arguments();

    const char *folder = check_temp_dir("image");
    CHECK(folder != NULL);
    if (folder != NULL) {
        test_load_by_content_not_name(folder);
        test_load_errors_name_path(folder);
    }

    const char *data_dir = check_data_dir();
    if (data_dir != NULL) {
        test_real_jpeg(data_dir);
        test_real_png(data_dir);
    } else {
        fprintf(stderr, "APIARY_DATA_DIR is not set: skipping the real JPEG and PNG checks\n");
    }
    return check_finish();
}
