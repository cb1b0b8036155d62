#ifndef APIARY_KERNELS_CUDA_PREPROCESS_H
#define APIARY_KERNELS_CUDA_PREPROCESS_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "kernels/cpu/preprocess.h"
#include "pipeline/common/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* GPU version of ap_cpu_preprocess with the same steps and bitwise-identical
 * float arithmetic. All pointers except mean and std (host arrays of three)
 * are device memory; work is queued on stream and runs asynchronously.
 *   images:      uint8 RGB HWC images of height x width, back to back
 *   indices:     count positions into images for a batch gathered from a
 *                resident data set, or NULL for images 0..count-1; each
 *                must be a valid position, since the kernel cannot check
 *   params:      count ap_augment_params, or NULL for no augmentation
 *   image_means: count floats of scratch that receive the mean of each image
 *                whose contrast is not 1; required when params is not NULL
 *   out:         count x 3 x height x width floats
 * Returns AP_OK, AP_ERR_INVALID for a bad argument, or AP_ERR_BACKEND when
 * the launch fails, with err (may be NULL) filled. */
ap_status ap_cuda_preprocess(const uint8_t *images, const int32_t *indices, int count, int height,
                             int width, const ap_augment_params *params, const float mean[3],
                             const float std[3], float *image_means, float *out,
                             cudaStream_t stream, ap_error *err);

#ifdef __cplusplus
}
#endif

#endif
