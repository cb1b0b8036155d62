#ifndef APIARY_KERNELS_CUDA_CONVERT_H
#define APIARY_KERNELS_CUDA_CONVERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "pipeline/common/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Conversions between float and bfloat16 for the bf16 convolutions of the
 * GPU network. A bf16 value is stored as its 16 bits (the upper half of the
 * float with the same sign, exponent and top 7 mantissa bits), so C callers
 * need no CUDA type. Pointers are device memory of size values; work is
 * queued on stream. Each returns AP_OK, AP_ERR_INVALID for a NULL buffer or
 * a size beyond one launch, or AP_ERR_BACKEND when the launch fails, with err
 * (may be NULL) filled. */

/* out = in rounded to the nearest bf16, ties to even; NaN stays NaN and
 * values beyond the bf16 range become infinities. */
ap_status ap_cuda_float_to_bf16(const float *in, uint16_t *out, size_t size, cudaStream_t stream,
                                ap_error *err);

/* out = in widened to float, exactly; added to out when accumulate is true. */
ap_status ap_cuda_bf16_to_float(const uint16_t *in, float *out, size_t size, bool accumulate,
                                cudaStream_t stream, ap_error *err);

#ifdef __cplusplus
}
#endif

#endif
