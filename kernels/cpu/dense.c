#include "kernels/cpu/dense.h"

#include <stddef.h>
#include <string.h>

#include "kernels/cpu/rng.h"

/* Columns of d_weight that one backward task owns: tasks then split wide
 * layers with few outputs across threads, and 256 floats fill whole cache
 * lines. */
#define WEIGHT_COLUMN_BLOCK 256

/* Minimum multiply-adds for a parallel dense pass. A classifier head over
 * pooled features runs faster on one thread than a thread team starts and
 * joins. The threshold is an estimate, not tuned. */
#define DENSE_PARALLEL_MIN 262144L

/* Minimum value count for a parallel dropout pass. */
#define DROPOUT_PARALLEL_MIN 65536L

void ap_cpu_dense_forward(const float *in, const float *weight, const float *bias, int batch,
                          int in_features, int out_features, float *out)
{
    const long work = (long)batch * in_features * out_features;
#pragma omp parallel for collapse(2) schedule(static) if (work >= DENSE_PARALLEL_MIN)
    for (int n = 0; n < batch; n++) {
        for (int o = 0; o < out_features; o++) {
            const float *x = in + (size_t)n * (size_t)in_features;
            const float *w = weight + (size_t)o * (size_t)in_features;
            float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
            for (int i = 0; i < in_features; i++)
                sum += x[i] * w[i];
            out[(size_t)n * (size_t)out_features + o] = bias != NULL ? sum + bias[o] : sum;
        }
    }
}

/* d_in[n][i] = sum_o d_out[n][o] * weight[o][i], one row of d_in per task. */
static void dense_backward_input(const float *weight, const float *d_out, int batch,
                                 int in_features, int out_features, float *d_in)
{
    const long work = (long)batch * in_features * out_features;
#pragma omp parallel for schedule(static) if (work >= DENSE_PARALLEL_MIN)
    for (int n = 0; n < batch; n++) {
        float *row = d_in + (size_t)n * (size_t)in_features;
        memset(row, 0, (size_t)in_features * sizeof(*row));
        for (int o = 0; o < out_features; o++) {
            float scale = d_out[(size_t)n * (size_t)out_features + o];
            const float *w = weight + (size_t)o * (size_t)in_features;
#pragma omp simd
            for (int i = 0; i < in_features; i++)
                row[i] += scale * w[i];
        }
    }
}

/* d_weight[o][i] = sum_n d_out[n][o] * in[n][i], one block of a row per task. */
static void dense_backward_weight(const float *in, const float *d_out, int batch, int in_features,
                                  int out_features, float *d_weight)
{
    const int blocks = (in_features + WEIGHT_COLUMN_BLOCK - 1) / WEIGHT_COLUMN_BLOCK;
    const long work = (long)batch * in_features * out_features;

#pragma omp parallel for collapse(2) schedule(static) if (work >= DENSE_PARALLEL_MIN)
    for (int o = 0; o < out_features; o++) {
        for (int block = 0; block < blocks; block++) {
            int begin = block * WEIGHT_COLUMN_BLOCK;
            int end = begin + WEIGHT_COLUMN_BLOCK < in_features ? begin + WEIGHT_COLUMN_BLOCK
                                                                : in_features;
            float *row = d_weight + (size_t)o * (size_t)in_features;
            memset(row + begin, 0, (size_t)(end - begin) * sizeof(*row));
            for (int n = 0; n < batch; n++) {
                float scale = d_out[(size_t)n * (size_t)out_features + o];
                const float *x = in + (size_t)n * (size_t)in_features;
#pragma omp simd
                for (int i = begin; i < end; i++)
                    row[i] += scale * x[i];
            }
        }
    }
}

static void dense_backward_bias(const float *d_out, int batch, int out_features, float *d_bias)
{
    for (int o = 0; o < out_features; o++) {
        float sum = 0.0f;
        for (int n = 0; n < batch; n++)
            sum += d_out[(size_t)n * (size_t)out_features + o];
        d_bias[o] = sum;
    }
}

void ap_cpu_dense_backward(const float *in, const float *weight, const float *d_out, int batch,
                           int in_features, int out_features, float *d_in, float *d_weight,
                           float *d_bias)
{
    if (d_in != NULL)
        dense_backward_input(weight, d_out, batch, in_features, out_features, d_in);
    dense_backward_weight(in, d_out, batch, in_features, out_features, d_weight);
    if (d_bias != NULL)
        dense_backward_bias(d_out, batch, out_features, d_bias);
}

void ap_cpu_dropout_forward(float *values, float *mask, long size, float rate, uint64_t seed,
                            uint64_t stream)
{
    if (rate <= 0.0f) {
#pragma omp parallel for simd schedule(static) if (size >= DROPOUT_PARALLEL_MIN)
        for (long i = 0; i < size; i++)
            mask[i] = 1.0f;
        return;
    }
    const float scale = rate < 1.0f ? 1.0f / (1.0f - rate) : 0.0f;

#pragma omp parallel for schedule(static) if (size >= DROPOUT_PARALLEL_MIN)
    for (long i = 0; i < size; i++) {
        float mask_value = ap_rng_uniform(seed, stream, (uint64_t)i) >= rate ? scale : 0.0f;
        mask[i] = mask_value;
        values[i] *= mask_value;
    }
}

void ap_cpu_dropout_backward(float *d_values, const float *mask, long size)
{
#pragma omp parallel for simd schedule(static) if (size >= DROPOUT_PARALLEL_MIN)
    for (long i = 0; i < size; i++)
        d_values[i] *= mask[i];
}
