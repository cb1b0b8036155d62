#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "kernels/cuda/convert.h"
#include "tests/gpu/gpu_test.h"

/* The float and bf16 conversions against a CPU reference of IEEE
 * round-to-nearest-even on the upper 16 bits. Both are exact functions of
 * their input, so every bit must match. */

static cudaStream_t stream;

static uint32_t float_bits(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof(bits));
    return bits;
}

static float bits_float(uint32_t bits)
{
    float value;
    memcpy(&value, &bits, sizeof(value));
    return value;
}

/* Round to the nearest bf16, ties to even; a NaN keeps its sign and becomes
 * a quiet NaN. Rounding up past the largest bf16 carries into the exponent
 * and gives infinity, as IEEE rounding does. */
static uint16_t reference_bf16(float value)
{
    uint32_t bits = float_bits(value);
    if (isnan(value))
        return (uint16_t)((bits >> 16) | 0x0040u);
    uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
    return (uint16_t)((bits + rounding) >> 16);
}

static int is_bf16_nan(uint16_t bits)
{
    return (bits & 0x7f80u) == 0x7f80u && (bits & 0x007fu) != 0;
}

/* Special values come first: zeros, ties to even (up and down), the
 * largest float that rounds to a finite bf16 and one that rounds to
 * infinity, infinities, NaN and subnormals. Random floats of every
 * magnitude follow. */
static void fill_inputs(float *values, size_t size)
{
    const uint32_t special[] = {
        0x00000000u, 0x80000000u, 0x3f808000u, 0x3f818000u, 0x3f808001u, 0x7f7f7fffu, 0x7f7f8000u,
        0x7f800000u, 0xff800000u, 0x7fc00000u, 0x00000001u, 0x807fffffu, 0x3f800000u, 0xbf7fffffu,
    };
    size_t count = sizeof(special) / sizeof(special[0]);
    for (size_t i = 0; i < size; i++) {
        uint32_t bits = (uint32_t)rand() << 16 ^ (uint32_t)rand();
        if (i < count)
            bits = special[i];
        values[i] = bits_float(bits);
    }
}

static void test_round_trip(size_t size)
{
    float *values = gpu_test_host(size * sizeof(float));
    uint16_t *half = gpu_test_host(size * sizeof(uint16_t));
    float *widened = gpu_test_host(size * sizeof(float));
    float *d_values = NULL, *d_widened = NULL;
    uint16_t *d_half = NULL;
    ap_error err = {0};
    if (values == NULL || half == NULL || widened == NULL)
        goto cleanup;
    fill_inputs(values, size);
    d_values = gpu_test_device(values, size * sizeof(float));
    d_half = gpu_test_device(NULL, size * sizeof(uint16_t));
    d_widened = gpu_test_device(NULL, size * sizeof(float));
    if (d_values == NULL || d_half == NULL || d_widened == NULL)
        goto cleanup;
    if (!GPU_STATUS_OK(ap_cuda_float_to_bf16(d_values, d_half, size, stream, &err), &err) ||
        !gpu_test_read(half, d_half, size * sizeof(uint16_t), stream))
        goto cleanup;

    size_t wrong = 0;
    for (size_t i = 0; i < size; i++) {
        uint16_t expected = reference_bf16(values[i]);
        int same = isnan(values[i]) ? is_bf16_nan(half[i]) : half[i] == expected;
        if (!same && wrong++ < 5)
            fprintf(stderr, "bf16 of %a (0x%08x): 0x%04x, expected 0x%04x\n", (double)values[i],
                    float_bits(values[i]), half[i], expected);
    }
    CHECK_INT_EQ(wrong, 0);

    /* Widening is exact: the bf16 bits become the upper half of the float. */
    if (!GPU_STATUS_OK(ap_cuda_bf16_to_float(d_half, d_widened, size, false, stream, &err), &err) ||
        !gpu_test_read(widened, d_widened, size * sizeof(float), stream))
        goto cleanup;
    wrong = 0;
    for (size_t i = 0; i < size; i++)
        wrong += float_bits(widened[i]) != (uint32_t)half[i] << 16;
    CHECK_INT_EQ(wrong, 0);

    /* Accumulate adds into the target: widened + widened is 2 x widened,
     * exact except where it overflows to infinity or stays NaN, which both
     * sides share. */
    if (!GPU_STATUS_OK(ap_cuda_bf16_to_float(d_half, d_widened, size, true, stream, &err), &err) ||
        !gpu_test_read(widened, d_widened, size * sizeof(float), stream))
        goto cleanup;
    wrong = 0;
    for (size_t i = 0; i < size; i++) {
        float single = bits_float((uint32_t)half[i] << 16);
        float expected = single + single;
        wrong +=
            isnan(expected) ? !isnan(widened[i]) : float_bits(widened[i]) != float_bits(expected);
    }
    CHECK_INT_EQ(wrong, 0);

cleanup:
    cudaFree(d_values);
    cudaFree(d_half);
    cudaFree(d_widened);
    free(values);
    free(half);
    free(widened);
}

static void test_invalid_arguments(void)
{
    ap_error err = {0};
    float *d_values = gpu_test_device(NULL, 4 * sizeof(float));
    if (d_values == NULL)
        return;
    CHECK_INT_EQ(ap_cuda_float_to_bf16(d_values, NULL, 4, stream, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "float_to_bf16");
    CHECK_INT_EQ(ap_cuda_bf16_to_float(NULL, d_values, 4, false, stream, &err), AP_ERR_INVALID);
    CHECK_INT_EQ(ap_cuda_float_to_bf16(d_values, (uint16_t *)d_values, 0, stream, &err), AP_OK);
    cudaFree(d_values);
}

int main(void)
{
    if (gpu_test_skip())
        return 77;
    if (!GPU_CUDA_OK(cudaStreamCreate(&stream)))
        return check_finish();
    srand(77);
    test_round_trip(20);
    test_round_trip(1u << 20);
    test_invalid_arguments();
    GPU_CUDA_OK(cudaStreamDestroy(stream));
    return check_finish();
}
