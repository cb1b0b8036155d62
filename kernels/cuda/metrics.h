#ifndef APIARY_KERNELS_CUDA_METRICS_H
#define APIARY_KERNELS_CUDA_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "pipeline/common/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Entries of one label's counts, in the order of the fields of ap_confusion. */
enum {
    AP_CUDA_TRUE_POSITIVE = 0,
    AP_CUDA_FALSE_POSITIVE,
    AP_CUDA_TRUE_NEGATIVE,
    AP_CUDA_FALSE_NEGATIVE,
    AP_CUDA_UNKNOWN,
    AP_CUDA_CONFUSION_FIELDS
};

/* GPU version of ap_confusion_count (pipeline/eval/confusion.h) for every
 * label at once. Adds to counts (device, labels x AP_CUDA_CONFUSION_FIELDS)
 * the confusion counts of count rows of probabilities and targets (device,
 * count x labels) at threshold. The rules are the same: a negative target is
 * unknown, 1 is positive, any other value negative, and a probability at
 * or above the threshold predicts positive. Counts are integers, so the
 * order of the additions does not change them. Returns AP_OK,
 * AP_ERR_INVALID for a bad argument, or AP_ERR_BACKEND when the launch
 * fails, with err (may be NULL) filled. */
ap_status ap_cuda_confusion_add(const float *probabilities, const int8_t *targets, size_t count,
                                int labels, float threshold, unsigned long long *counts,
                                cudaStream_t stream, ap_error *err);

#ifdef __cplusplus
}
#endif

#endif
