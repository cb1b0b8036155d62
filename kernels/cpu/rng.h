#ifndef APIARY_KERNELS_CPU_RNG_H
#define APIARY_KERNELS_CPU_RNG_H

#include <stdint.h>

/* Counter-based random numbers (SplitMix64 mixing of seed, stream and index):
 * any element can be drawn independently, so results do not depend on the
 * thread count and CUDA kernels can reproduce them exactly. */

static inline uint64_t ap_rng_mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static inline uint64_t ap_rng_u64(uint64_t seed, uint64_t stream, uint64_t index)
{
    return ap_rng_mix(ap_rng_mix(ap_rng_mix(seed) ^ stream) ^ index);
}

/* Uniform float in [0, 1) with 24 random bits. */
static inline float ap_rng_uniform(uint64_t seed, uint64_t stream, uint64_t index)
{
    return (float)(ap_rng_u64(seed, stream, index) >> 40) * (1.0f / 16777216.0f);
}

#endif
