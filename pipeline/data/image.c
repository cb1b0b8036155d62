#include "pipeline/data/image.h"

#include <ctype.h>
#include <png.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

#include "pipeline/common/fsutil.h"

static const uint8_t jpeg_signature[3] = {0xFF, 0xD8, 0xFF};
static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

static bool starts_with(const uint8_t *data, size_t size, const void *prefix, size_t prefix_size)
{
    return size >= prefix_size && memcmp(data, prefix, prefix_size) == 0;
}

static bool looks_like_text(const uint8_t *data, size_t size)
{
    size_t checked = size < 64 ? size : 64;
    for (size_t i = 0; i < checked; i++) {
        if (!isprint(data[i]) && !isspace(data[i]))
            return false;
    }
    return true;
}

/* Names what unsupported content appears to be, for the error message. */
static const char *describe_content(const uint8_t *data, size_t size)
{
    if (starts_with(data, size, "GIF8", 4))
        return "a GIF image";
    if (starts_with(data, size, "BM", 2))
        return "a BMP image";
    if (starts_with(data, size, "RIFF", 4) && size >= 12 && memcmp(data + 8, "WEBP", 4) == 0)
        return "a WebP image";
    if (starts_with(data, size, "II*\0", 4) || starts_with(data, size, "MM\0*", 4))
        return "a TIFF image";
    if (looks_like_text(data, size))
        return "text";
    return "unknown binary data";
}

static ap_status reject_unknown_format(const uint8_t *data, size_t size, ap_error *err)
{
    if (size == 0)
        return ap_error_set(err, AP_ERR_FORMAT, "unsupported image: the file is empty");

    char first_bytes[3 * 8 + 1] = "";
    size_t shown = size < 8 ? size : 8, used = 0;
    for (size_t i = 0; i < shown; i++)
        used += (size_t)snprintf(first_bytes + used, sizeof(first_bytes) - used, "%s%02x",
                                 i > 0 ? " " : "", data[i]);
    return ap_error_set(err, AP_ERR_FORMAT,
                        "unsupported image: found %s (first bytes %s), expected JPEG or PNG",
                        describe_content(data, size), first_bytes);
}

/* Rejects an image whose pixel count exceeds the limit. It runs before any
 * pixel buffer is allocated, so a small file cannot claim gigabytes. */
static ap_status check_dimensions(const char *format, int64_t width, int64_t height,
                                  const ap_image_limits *limits, ap_error *err)
{
    if (width <= 0 || height <= 0)
        return ap_error_set(err, AP_ERR_FORMAT, "invalid %s image size %lldx%lld", format,
                            (long long)width, (long long)height);
    /* Both sides are below 2^31 in JPEG and PNG, so the product fits in int64_t. */
    int64_t pixels = width * height;
    if (pixels > limits->max_pixels)
        return ap_error_set(err, AP_ERR_LIMIT,
                            "%s image is %lldx%lld = %lld pixels, over the limit of %lld pixels "
                            "(data.max_image_pixels)",
                            format, (long long)width, (long long)height, (long long)pixels,
                            (long long)limits->max_pixels);
    return AP_OK;
}

static ap_status decode_jpeg(tjhandle decoder, const uint8_t *data, size_t size,
                             const ap_image_limits *limits, ap_image *out, ap_error *err)
{
    int width = 0, height = 0, subsampling = 0, colorspace = 0;
    if (tjDecompressHeader3(decoder, data, (unsigned long)size, &width, &height, &subsampling,
                            &colorspace) != 0)
        return ap_error_set(err, AP_ERR_FORMAT, "corrupt or truncated JPEG header: %s",
                            tjGetErrorStr2(decoder));
    if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK)
        return ap_error_set(
            err, AP_ERR_FORMAT,
            "unsupported CMYK JPEG: convert the image to RGB "
            "(for example with ImageMagick: convert in.jpg -colorspace sRGB out.jpg)");
    ap_status status = check_dimensions("JPEG", width, height, limits, err);
    if (status != AP_OK)
        return status;

    out->pixels = malloc((size_t)width * (size_t)height * 3);
    if (out->pixels == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %dx%d RGB pixels", width, height);
    /* A warning such as "premature end of data" would otherwise leave the
     * rest of the image grey and still return pixels, so every warning stops
     * decoding and rejects the file. LIMITSCANS rejects progressive JPEGs
     * with an unreasonable number of scans, a known way to make a small file
     * very slow to decode (turbojpeg.h, libjpeg-turbo 2.1). */
    int flags = TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS;
    if (tjDecompress2(decoder, data, (unsigned long)size, out->pixels, width, 0, height, TJPF_RGB,
                      flags) != 0) {
        const char *kind =
            tjGetErrorCode(decoder) == TJERR_WARNING ? "corrupt or truncated" : "undecodable";
        return ap_error_set(err, AP_ERR_FORMAT, "%s JPEG data: %s", kind, tjGetErrorStr2(decoder));
    }
    out->width = width;
    out->height = height;
    return AP_OK;
}

static ap_status decode_jpeg_content(const uint8_t *data, size_t size,
                                     const ap_image_limits *limits, ap_image *out, ap_error *err)
{
    tjhandle decoder = tjInitDecompress();
    if (decoder == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot create a JPEG decoder: %s",
                            tjGetErrorStr2(NULL));
    ap_status status = decode_jpeg(decoder, data, size, limits, out, err);
    tjDestroy(decoder);
    return status;
}

/* State of one PNG decode. It lives in the caller of the function that
 * calls setjmp, so its members keep their values after a longjmp. */
typedef struct {
    png_structp png;
    png_infop info;
    const uint8_t *data;
    size_t size;
    size_t offset;
    ap_image *image; /* output; libpng writes RGB or RGBA rows into its pixels */
    png_bytep *rows;
    ap_status status;
    char message[256];
} png_decode;

static void read_png_bytes(png_structp png, png_bytep out, size_t length)
{
    png_decode *decode = png_get_io_ptr(png);
    if (length > decode->size - decode->offset)
        png_error(png, "unexpected end of data, the file is truncated");
    memcpy(out, decode->data + decode->offset, length);
    decode->offset += length;
}

static void fail_png(png_structp png, png_const_charp message)
{
    png_decode *decode = png_get_error_ptr(png);
    snprintf(decode->message, sizeof(decode->message), "%s", message);
    png_longjmp(png, 1);
}

/* Warnings (a bad CRC in an ancillary chunk, an unknown chunk) do not affect
 * the pixels, and library code never prints, so they are dropped. */
static void ignore_png_warning(png_structp png, png_const_charp message)
{
    (void)png;
    (void)message;
}

/* Requests 8-bit RGB or RGBA from libpng whatever the stored color type. */
static void request_rgb8(png_structp png, png_infop info)
{
    int color_type = png_get_color_type(png, info);
    int bit_depth = png_get_bit_depth(png, info);
    if (color_type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS))
        png_set_tRNS_to_alpha(png);
    if (bit_depth == 16)
        png_set_scale_16(png); /* rounds to the nearest 8-bit value instead of truncating */
    if (color_type == PNG_COLOR_TYPE_GRAY || color_type == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
}

/* Converts RGBA to RGB in place, compositing onto black: color * alpha / 255,
 * rounded. Pixel i moves from byte 4i to byte 3i, so no write reaches a
 * pixel that is still to be read. */
static void composite_onto_black(uint8_t *pixels, size_t pixel_count)
{
    for (size_t i = 0; i < pixel_count; i++) {
        const uint8_t *rgba = pixels + 4 * i;
        unsigned red = rgba[0], green = rgba[1], blue = rgba[2], alpha = rgba[3];
        uint8_t *rgb = pixels + 3 * i;
        rgb[0] = (uint8_t)((red * alpha + 127) / 255);
        rgb[1] = (uint8_t)((green * alpha + 127) / 255);
        rgb[2] = (uint8_t)((blue * alpha + 127) / 255);
    }
}

/* Decodes into decode->image. Returns false after a libpng error (message in
 * decode->message) or a limit error (decode->status set, err filled). */
static bool read_png(png_decode *decode, const ap_image_limits *limits, ap_error *err)
{
    if (setjmp(png_jmpbuf(decode->png)))
        return false;
    png_set_read_fn(decode->png, decode, read_png_bytes);
    png_read_info(decode->png, decode->info);
    png_uint_32 width = png_get_image_width(decode->png, decode->info);
    png_uint_32 height = png_get_image_height(decode->png, decode->info);
    decode->status = check_dimensions("PNG", width, height, limits, err);
    if (decode->status != AP_OK)
        return false;

    request_rgb8(decode->png, decode->info);
    int channels = png_get_channels(decode->png, decode->info);
    size_t row_bytes = png_get_rowbytes(decode->png, decode->info);
    if ((channels != 3 && channels != 4) || row_bytes != (size_t)width * (size_t)channels)
        png_error(decode->png, "unexpected pixel layout after conversion to 8-bit RGB");

    size_t pixel_count = (size_t)width * height;
    decode->rows = malloc(height * sizeof(png_bytep));
    decode->image->pixels = malloc(pixel_count * (size_t)channels);
    if (decode->rows == NULL || decode->image->pixels == NULL) {
        decode->status =
            ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %ux%u PNG pixels", width, height);
        return false;
    }
    for (png_uint_32 y = 0; y < height; y++)
        decode->rows[y] = decode->image->pixels + (size_t)y * row_bytes;
    png_read_image(decode->png, decode->rows);
    /* Reading up to IEND rejects a file cut after its last image row. */
    png_read_end(decode->png, NULL);

    if (channels == 4) {
        composite_onto_black(decode->image->pixels, pixel_count);
        uint8_t *shrunk = realloc(decode->image->pixels, pixel_count * 3);
        if (shrunk != NULL)
            decode->image->pixels = shrunk;
    }
    decode->image->width = (int)width;
    decode->image->height = (int)height;
    return true;
}

static ap_status decode_png_content(const uint8_t *data, size_t size, const ap_image_limits *limits,
                                    ap_image *out, ap_error *err)
{
    png_decode decode = {.data = data, .size = size, .image = out, .status = AP_OK};
    decode.png =
        png_create_read_struct(PNG_LIBPNG_VER_STRING, &decode, fail_png, ignore_png_warning);
    if (decode.png != NULL)
        decode.info = png_create_info_struct(decode.png);
    if (decode.png == NULL || decode.info == NULL) {
        png_destroy_read_struct(&decode.png, NULL, NULL);
        return ap_error_set(err, AP_ERR_NOMEM, "cannot create a PNG decoder");
    }

    bool ok = read_png(&decode, limits, err);
    png_destroy_read_struct(&decode.png, &decode.info, NULL);
    free(decode.rows);
    if (ok)
        return AP_OK;
    if (decode.status != AP_OK)
        return decode.status;
    return ap_error_set(err, AP_ERR_FORMAT, "corrupt or truncated PNG data: %s", decode.message);
}

/* Decodes into out. On failure out->pixels may hold a buffer to free. */
static ap_status decode_image(const uint8_t *data, size_t size, const ap_image_limits *limits,
                              ap_image *out, ap_error *err)
{
    if (data == NULL && size > 0)
        return ap_error_set(err, AP_ERR_INVALID, "image data is NULL but its size is %zu", size);
    if (size > limits->max_bytes)
        return ap_error_set(err, AP_ERR_LIMIT,
                            "image is %zu bytes, over the limit of %zu bytes "
                            "(data.max_image_bytes)",
                            size, limits->max_bytes);
    if (starts_with(data, size, jpeg_signature, sizeof(jpeg_signature)))
        return decode_jpeg_content(data, size, limits, out, err);
    if (starts_with(data, size, png_signature, sizeof(png_signature)))
        return decode_png_content(data, size, limits, out, err);
    return reject_unknown_format(data, size, err);
}

ap_status ap_image_decode(const uint8_t *data, size_t size, const ap_image_limits *limits,
                          ap_image *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    ap_status status = decode_image(data, size, limits, out, err);
    if (status != AP_OK)
        ap_image_free(out);
    return status;
}

ap_status ap_image_load(const char *path, const ap_image_limits *limits, ap_image *out,
                        ap_error *err)
{
    memset(out, 0, sizeof(*out));
    uint8_t *data = NULL;
    size_t size = 0;
    /* Read errors already name the path. */
    ap_status status = ap_read_file(path, limits->max_bytes, &data, &size, err);
    if (status != AP_OK)
        return status;
    status = ap_image_decode(data, size, limits, out, err);
    free(data);
    if (status != AP_OK)
        ap_error_prefix(err, "%s", path);
    return status;
}

void ap_image_free(ap_image *image)
{
    if (image == NULL)
        return;
    free(image->pixels);
    image->pixels = NULL;
    image->width = 0;
    image->height = 0;
}
