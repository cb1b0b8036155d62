#ifndef APIARY_KERNELS_CPU_RNG_H
#define APIARY_KERNELS_CPU_RNG_H

#include <stdint.h>

/* Functions in kernels/cpu headers that CUDA kernels share are compiled for
 * both the host and the device when nvcc reads them. */
#ifdef __CUDACC__
#define AP_HOST_DEVICE __host__ __device__
#else
#define AP_HOST_DEVICE
#endif

/* Float arithmetic rounded after every operation. On the device these stop
 * nvcc from fusing a multiply and an add. GCC does not fuse them in ISO C mode
 * (-std=c11), so shared formulas give bitwise-identical results on CPU and
 * GPU. The host AP_ROUNDED_SQRT needs <math.h>. */
#ifdef __CUDA_ARCH__
#define AP_ROUNDED_ADD(a, b) __fadd_rn((a), (b))
#define AP_ROUNDED_SUB(a, b) __fsub_rn((a), (b))
#define AP_ROUNDED_MUL(a, b) __fmul_rn((a), (b))
#define AP_ROUNDED_DIV(a, b) __fdiv_rn((a), (b))
#define AP_ROUNDED_SQRT(a)   __fsqrt_rn((a))
#else
#define AP_ROUNDED_ADD(a, b) ((a) + (b))
#define AP_ROUNDED_SUB(a, b) ((a) - (b))
#define AP_ROUNDED_MUL(a, b) ((a) * (b))
#define AP_ROUNDED_DIV(a, b) ((a) / (b))
#define AP_ROUNDED_SQRT(a)   sqrtf((a))
#endif

/* Counter-based random numbers (SplitMix64 mixing of seed, stream and index):
 * any element can be drawn independently, so results do not depend on the
 * thread count and CUDA kernels can reproduce them exactly. */

static inline AP_HOST_DEVICE uint64_t ap_rng_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static inline AP_HOST_DEVICE uint64_t ap_rng_u64(uint64_t seed, uint64_t stream, uint64_t index)
{
    return ap_rng_mix(ap_rng_mix(ap_rng_mix(seed) ^ stream) ^ index);
}

/* Uniform float in [0, 1) with 24 random bits. */
static inline AP_HOST_DEVICE float ap_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index)
{
    return (float)(ap_rng_u64(seed, stream, index) >> 40) * (1.0f / 16777216.0f);
}

#endif
