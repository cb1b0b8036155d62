#ifndef APIARY_KERNELS_CPU_PREPROCESS_H
#define APIARY_KERNELS_CPU_PREPROCESS_H

#include <stdint.h>

#include "kernels/cpu/rng.h"

/* Per-image augmentation drawn on the host so CPU and GPU apply the same. */
typedef struct {
    uint8_t flip_horizontal;
    uint8_t flip_vertical;
    uint8_t rotate_180;
    float brightness; /* added to every [0,1] pixel value before normalisation */
    float contrast;   /* factor applied around the image mean; 1 leaves it unchanged */
} ap_augment_params;

/* Convert count uint8 RGB images (HWC, row-major) to float NCHW:
 * (pixel / 255 - mean[c]) / std[c]. With params (one per image, may be NULL)
 * the following steps run first, in this order, on the [0,1] values:
 *   1. horizontal flip, vertical flip and 180-degree rotation; they commute,
 *      and a rotation combined with a flip is the other flip;
 *   2. contrast: v = (v - m) * contrast + m, where m is the mean of the image
 *      over all pixels and all three channels (skipped when contrast is 1);
 *   3. brightness: v = v + brightness;
 *   4. clamp to [0, 1], as a camera would saturate.
 * The result does not depend on the number of OpenMP threads. */
void ap_cpu_preprocess(const uint8_t *images, int count, int height, int width,
                       const ap_augment_params *params, const float mean[3], const float std[3],
                       float *out);

/* Draw params for count images from a counter-based generator keyed by
 * (seed, stream): the same key gives the same draws on every thread count.
 * Image i uses generator indices i * AP_AUGMENT_DRAWS_PER_IMAGE + 0..4 for
 * horizontal flip, vertical flip, rotation, brightness and contrast. Each
 * flip and the rotation happen with probability 0.5 when flips is non-zero.
 * Brightness is uniform in [-brightness, brightness), and the contrast
 * factor is uniform in [1 - contrast, 1 + contrast). */
void ap_augment_draw(uint64_t seed, uint64_t stream, int count, int flips, float brightness,
                     float contrast, ap_augment_params *params);

/* Generator indices reserved per image, so that later draws can be added
 * without changing existing ones. */
#define AP_AUGMENT_DRAWS_PER_IMAGE 8

/* Computes the output for one pixel value of one channel, given that image's
 * mean in [0,1] units (used only when contrast is not 1). Both the CPU and
 * the CUDA kernel build their lookup tables with it. */
static inline AP_HOST_DEVICE float ap_preprocess_value(uint8_t pixel, float image_mean,
                                                       float contrast, float brightness,
                                                       float channel_mean, float channel_std)
{
    float value = AP_ROUNDED_DIV((float)pixel, 255.0f);
    if (contrast != 1.0f) {
        float centred = AP_ROUNDED_SUB(value, image_mean);
        value = AP_ROUNDED_ADD(AP_ROUNDED_MUL(centred, contrast), image_mean);
    }
    value = AP_ROUNDED_ADD(value, brightness);
    value = value < 0.0f ? 0.0f : value;
    value = value > 1.0f ? 1.0f : value;
    return AP_ROUNDED_DIV(AP_ROUNDED_SUB(value, channel_mean), channel_std);
}

/* Returns the mean [0,1] value of an image from the exact sum of its bytes.
 * CPU and GPU both call it, so their contrast steps use the same mean. */
static inline AP_HOST_DEVICE float ap_preprocess_image_mean(uint64_t byte_sum, uint64_t byte_count)
{
    return (float)((double)byte_sum / (255.0 * (double)byte_count));
}

#endif
