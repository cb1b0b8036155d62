#include "kernels/cpu/preprocess.h"

#include <stdbool.h>
#include <stddef.h>

/* Generator index of each draw within an image's AP_AUGMENT_DRAWS_PER_IMAGE slots. */
enum {
    DRAW_FLIP_HORIZONTAL = 0,
    DRAW_FLIP_VERTICAL = 1,
    DRAW_ROTATE_180 = 2,
    DRAW_BRIGHTNESS = 3,
    DRAW_CONTRAST = 4,
};

/* Bytes summed in a 32-bit accumulator before it is folded into the 64-bit
 * total: 65536 * 255 stays below 2^32, and the narrow inner sum vectorises. */
#define SUM_BLOCK_BYTES 65536

static const ap_augment_params identity_params = {0, 0, 0, 0.0f, 1.0f};

static uint64_t sum_bytes(const uint8_t *bytes, size_t size)
{
    uint64_t total = 0;
    for (size_t start = 0; start < size; start += SUM_BLOCK_BYTES) {
        size_t end = size - start < SUM_BLOCK_BYTES ? size : start + SUM_BLOCK_BYTES;
        uint32_t block_sum = 0;
#pragma omp simd reduction(+ : block_sum)
        for (size_t i = start; i < end; i++)
            block_sum += bytes[i];
        total += block_sum;
    }
    return total;
}

static void build_channel_table(const ap_augment_params *params, float image_mean,
                                float channel_mean, float channel_std, float table[256])
{
    for (int pixel = 0; pixel < 256; pixel++)
        table[pixel] = ap_preprocess_value((uint8_t)pixel, image_mean, params->contrast,
                                           params->brightness, channel_mean, channel_std);
}

/* Writes one output plane (channel of an image) row by row, reading the
 * source row that the flips select. flip_columns reads each row backwards. */
static void write_channel_plane(const uint8_t *image, int height, int width, int channel,
                                bool flip_rows, bool flip_columns, const float table[256],
                                float *plane)
{
    for (int y = 0; y < height; y++) {
        int source_y = flip_rows ? height - 1 - y : y;
        const uint8_t *row = image + (size_t)source_y * (size_t)width * 3 + channel;
        float *out_row = plane + (size_t)y * (size_t)width;
        if (flip_columns) {
            const uint8_t *last = row + (size_t)(width - 1) * 3;
            for (int x = 0; x < width; x++)
                out_row[x] = table[*(last - (ptrdiff_t)x * 3)];
        } else {
            for (int x = 0; x < width; x++)
                out_row[x] = table[row[(size_t)x * 3]];
        }
    }
}

void ap_cpu_preprocess(const uint8_t *images, int count, int height, int width,
                       const ap_augment_params *params, const float mean[3], const float std[3],
                       float *out)
{
    const size_t plane_size = (size_t)height * (size_t)width;
    const size_t image_bytes = plane_size * 3;
    const long task_count = (long)count * 3;

    /* One task per (image, channel). A static schedule gives each thread one
     * contiguous range of tasks, so a thread usually handles all channels of
     * an image and sums its bytes for the contrast mean only once. */
#pragma omp parallel
    {
        long mean_image = -1;
        float image_mean = 0.0f;
#pragma omp for schedule(static)
        for (long task = 0; task < task_count; task++) {
            long image_index = task / 3;
            int channel = (int)(task % 3);
            const uint8_t *image = images + (size_t)image_index * image_bytes;
            const ap_augment_params *augment =
                params != NULL ? &params[image_index] : &identity_params;

            if (augment->contrast != 1.0f && mean_image != image_index) {
                image_mean = ap_preprocess_image_mean(sum_bytes(image, image_bytes), image_bytes);
                mean_image = image_index;
            }
            float table[256];
            build_channel_table(augment, image_mean, mean[channel], std[channel], table);

            bool flip_rows = (augment->flip_vertical != 0) != (augment->rotate_180 != 0);
            bool flip_columns = (augment->flip_horizontal != 0) != (augment->rotate_180 != 0);
            float *plane = out + (size_t)task * plane_size;
            write_channel_plane(image, height, width, channel, flip_rows, flip_columns, table,
                                plane);
        }
    }
}

/* Maps a uniform [0, 1) draw to [-1, 1). */
static float draw_signed(uint64_t seed, uint64_t stream, uint64_t index)
{
    return 2.0f * ap_rng_uniform(seed, stream, index) - 1.0f;
}

static uint8_t draw_coin(uint64_t seed, uint64_t stream, uint64_t index)
{
    return ap_rng_uniform(seed, stream, index) < 0.5f;
}

void ap_augment_draw(uint64_t seed, uint64_t stream, int count, int flips, float brightness,
                     float contrast, ap_augment_params *params)
{
    for (int i = 0; i < count; i++) {
        uint64_t base = (uint64_t)i * AP_AUGMENT_DRAWS_PER_IMAGE;
        ap_augment_params *image = &params[i];
        image->flip_horizontal = flips ? draw_coin(seed, stream, base + DRAW_FLIP_HORIZONTAL) : 0;
        image->flip_vertical = flips ? draw_coin(seed, stream, base + DRAW_FLIP_VERTICAL) : 0;
        image->rotate_180 = flips ? draw_coin(seed, stream, base + DRAW_ROTATE_180) : 0;
        image->brightness = brightness * draw_signed(seed, stream, base + DRAW_BRIGHTNESS);
        image->contrast = 1.0f + contrast * draw_signed(seed, stream, base + DRAW_CONTRAST);
    }
}
