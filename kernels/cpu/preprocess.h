#ifndef APIARY_KERNELS_CPU_PREPROCESS_H
#define APIARY_KERNELS_CPU_PREPROCESS_H

#include <stdint.h>

/* Per-image augmentation drawn on the host so CPU and GPU apply the same. */
typedef struct {
    uint8_t flip_horizontal;
    uint8_t flip_vertical;
    uint8_t rotate_180;
    float brightness; /* added to every normalised channel value, in [0,1] pixel units */
    float contrast;   /* factor applied around the image mean; 1 leaves it unchanged */
} ap_augment_params;

/* Convert count uint8 RGB images (HWC, row-major) to float NCHW:
 * (pixel / 255 - mean[c]) / std[c]. With params (one per image, may be NULL)
 * flips, rotation, contrast and brightness are applied first, in that order,
 * on the [0,1] values. */
void ap_cpu_preprocess(const uint8_t *images, int count, int height, int width,
                       const ap_augment_params *params, const float mean[3], const float std[3],
                       float *out);

/* Draw params for count images from a counter-based generator keyed by
 * (seed, stream): the same key gives the same draws on every thread count. */
void ap_augment_draw(uint64_t seed, uint64_t stream, int count, int flips, float brightness,
                     float contrast, ap_augment_params *params);

#endif
