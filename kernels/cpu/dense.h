#ifndef APIARY_KERNELS_CPU_DENSE_H
#define APIARY_KERNELS_CPU_DENSE_H

#include <stdint.h>

/* Fully connected layer: out[n][o] = sum_i in[n][i] * weight[o][i] + bias[o].
 * in is batch x in_features, weight out_features x in_features (row-major),
 * out batch x out_features; bias may be NULL for a layer without one. Each
 * output is summed by one thread in a fixed order, so the result does not
 * depend on the number of threads. */
void ap_cpu_dense_forward(const float *in, const float *weight, const float *bias, int batch,
                          int in_features, int out_features, float *out);

/* Gradients: d_in (may be NULL), d_weight and d_bias are set, not
 * accumulated. d_bias may be NULL when the layer has no bias. Deterministic
 * in the same way as the forward pass. */
void ap_cpu_dense_backward(const float *in, const float *weight, const float *d_out, int batch,
                           int in_features, int out_features, float *d_in, float *d_weight,
                           float *d_bias);

/* Inverted dropout with a counter-based generator keyed by (seed, stream):
 * keeps value i when ap_rng_uniform(seed, stream, i) >= rate, which happens
 * with probability 1 - rate, and scales it by 1 / (1 - rate). The others
 * become 0. A rate of 0 or less leaves values unchanged and a rate of 1 or
 * more drops them all. mask (size values) records the scale applied, for the
 * backward pass. */
void ap_cpu_dropout_forward(float *values, float *mask, long size, float rate, uint64_t seed,
                            uint64_t stream);

/* Multiplies d_values by the mask that the forward pass recorded. */
void ap_cpu_dropout_backward(float *d_values, const float *mask, long size);

#endif
