#ifndef APIARY_KERNELS_CPU_DENSE_H
#define APIARY_KERNELS_CPU_DENSE_H

#include <stdint.h>

/* Fully connected layer: out[n][o] = sum_i in[n][i] * weight[o][i] + bias[o]. */
void ap_cpu_dense_forward(const float *in, const float *weight, const float *bias, int batch,
                          int in_features, int out_features, float *out);

/* Gradients: d_in (may be NULL) is set; d_weight and d_bias are set (not accumulated). */
void ap_cpu_dense_backward(const float *in, const float *weight, const float *d_out, int batch,
                           int in_features, int out_features, float *d_in, float *d_weight,
                           float *d_bias);

/* Inverted dropout with a counter-based generator keyed by (seed, stream):
 * keeps each value with probability 1 - rate and scales it by 1 / (1 - rate).
 * mask (size values) records the scale applied, for the backward pass. */
void ap_cpu_dropout_forward(float *values, float *mask, long size, float rate, uint64_t seed,
                            uint64_t stream);
void ap_cpu_dropout_backward(float *d_values, const float *mask, long size);

#endif
