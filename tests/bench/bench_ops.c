/* The ops and peak modes of bench_apiary: each oneDNN primitive of the
 * training network timed alone, against the FLOP/s of a loop of independent
 * fused multiply-adds that never touches memory. */

#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/nn/net_internal.h"
#include "tests/bench/bench_apiary.h"

/* Independent accumulators: more than FMA latency times issue width on
 * current x86 cores (4 cycles x 2 pipes), so the loop is throughput-bound. */
#define PEAK_ACCUMULATORS 12
#define PEAK_ITERATIONS   20000000L

__attribute__((target("avx512f"))) static float fma_loop_avx512(long iterations)
{
    __m512 acc[PEAK_ACCUMULATORS];
    for (int k = 0; k < PEAK_ACCUMULATORS; k++)
        acc[k] = _mm512_set1_ps(0.001f * (float)k);
    const __m512 scale = _mm512_set1_ps(0.9999999f);
    const __m512 offset = _mm512_set1_ps(1e-7f);
    /* Unrolled so that the accumulators stay in registers. */
    for (long i = 0; i < iterations; i++)
#pragma GCC unroll 16
        for (int k = 0; k < PEAK_ACCUMULATORS; k++)
            acc[k] = _mm512_fmadd_ps(acc[k], scale, offset);
    float sum = 0.0f;
    for (int k = 0; k < PEAK_ACCUMULATORS; k++)
        sum += _mm512_reduce_add_ps(acc[k]);
    return sum;
}

__attribute__((target("avx2,fma"))) static float fma_loop_avx2(long iterations)
{
    __m256 acc[PEAK_ACCUMULATORS];
    for (int k = 0; k < PEAK_ACCUMULATORS; k++)
        acc[k] = _mm256_set1_ps(0.001f * (float)k);
    const __m256 scale = _mm256_set1_ps(0.9999999f);
    const __m256 offset = _mm256_set1_ps(1e-7f);
    for (long i = 0; i < iterations; i++)
#pragma GCC unroll 16
        for (int k = 0; k < PEAK_ACCUMULATORS; k++)
            acc[k] = _mm256_fmadd_ps(acc[k], scale, offset);
    float lanes[8], sum = 0.0f;
    for (int k = 0; k < PEAK_ACCUMULATORS; k++) {
        _mm256_storeu_ps(lanes, acc[k]);
        for (int l = 0; l < 8; l++)
            sum += lanes[l];
    }
    return sum;
}

/* FLOP/s of every thread running the loop at once, with `width` float lanes. */
static double measure_peak(int width, long iterations)
{
    volatile float sink = 0.0f;
    double start = bench_now();
#pragma omp parallel
    {
        float value = width == 16 ? fma_loop_avx512(iterations) : fma_loop_avx2(iterations);
#pragma omp atomic
        sink += value;
    }
    double seconds = bench_now() - start;
    (void)sink;
    return 2.0 * width * PEAK_ACCUMULATORS * (double)iterations * omp_get_max_threads() / seconds;
}

/* The best of a few runs: a shared machine only ever makes a run slower. */
static double peak_flops(const char **isa)
{
    bool avx512 = __builtin_cpu_supports("avx512f");
    *isa = avx512 ? "avx512" : "avx2";
    double best = 0.0;
    for (int run = 0; run < 10; run++) {
        double flops = measure_peak(avx512 ? 16 : 8, PEAK_ITERATIONS / 10);
        if (flops > best)
            best = flops;
    }
    return best;
}

ap_status bench_run_peak(const bench_options *options, ap_error *err)
{
    const char *isa = NULL;
    double flops = peak_flops(&isa);
    printf("{\"bench\":\"peak\",\"tool\":\"apiary\",\"device\":\"cpu\",\"threads\":%d,"
           "\"isa\":\"%s\",\"gflops\":%.3f}\n",
           options->threads, isa, flops / 1e9);
    return AP_OK;
}

/* One op to time: a closure over a layer and the work it does per call. */
typedef enum {
    OP_CONV_FWD,
    OP_CONV_BWD_DATA,
    OP_CONV_BWD_WEIGHTS,
    OP_BN_FWD,
    OP_BN_BWD,
    OP_POOL_FWD,
    OP_POOL_BWD
} op_kind;

static const char *const op_names[] = {
    "conv forward",        "conv backward data", "conv backward weights", "batch norm forward",
    "batch norm backward", "pool forward",       "pool backward"};

typedef struct {
    op_kind kind;
    const char *layer;
    nn_conv *conv;
    nn_bn *bn;
    nn_pool *pool;
    dnnl_memory_t target; /* conv backward data: the input gradient */
    double flops;         /* per call, for the whole batch */
} op_case;

static ap_status run_op(nn_context *ctx, const op_case *op, ap_error *err)
{
    switch (op->kind) {
    case OP_CONV_FWD:
        return nn_conv_forward(ctx, op->conv, err);
    case OP_CONV_BWD_DATA:
        return nn_conv_backward_data(ctx, op->conv, op->target, err);
    case OP_CONV_BWD_WEIGHTS:
        return nn_conv_backward_weights(ctx, op->conv, err);
    case OP_BN_FWD:
        return nn_bn_forward(ctx, op->bn, true, err);
    case OP_BN_BWD:
        return nn_bn_backward(ctx, op->bn, err);
    case OP_POOL_FWD:
        return nn_pool_forward(ctx, op->pool, true, err);
    case OP_POOL_BWD:
        return nn_pool_backward(ctx, op->pool, err);
    }
    return AP_OK;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median seconds of one call over `calls` timed calls, after `warmup` calls. */
static ap_status time_op(nn_context *ctx, const op_case *op, int warmup, int calls, double *seconds,
                         ap_error *err)
{
    double *times = malloc((size_t)calls * sizeof(double));
    if (times == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "bench: out of memory");
    ap_status status = AP_OK;
    for (int i = 0; i < warmup + calls && status == AP_OK; i++) {
        double start = bench_now();
        status = run_op(ctx, op, err);
        if (status == AP_OK)
            status = nn_wait(ctx, op->layer, err);
        if (i >= warmup)
            times[i - warmup] = bench_now() - start;
    }
    if (status == AP_OK) {
        qsort(times, (size_t)calls, sizeof(double), compare_doubles);
        *seconds = times[calls / 2];
    }
    free(times);
    return status;
}

/* Kernel taps along one axis that land inside the input, summed over the
 * output positions of that axis. */
static int64_t taps_inside(int64_t input, int64_t output, int kernel, int stride, int padding)
{
    int64_t taps = 0;
    for (int64_t o = 0; o < output; o++)
        for (int k = 0; k < kernel; k++) {
            int64_t at = o * stride - padding + k;
            taps += at >= 0 && at < input;
        }
    return taps;
}

/* Multiply-adds of one image that read the input rather than its zero
 * padding. oneDNN skips the padded taps, so counting them (as
 * nn_conv.macs_per_image does) would overstate the work of small maps:
 * by 19% for a 3x3 kernel over 8x8 maps. */
static double useful_macs_per_image(const nn_conv *conv)
{
    const int64_t *in = conv->input->md.dims;
    const int64_t *out = conv->output.md.dims;
    const int64_t *weight = conv->weight->shape;
    int64_t rows = taps_inside(in[2], out[2], conv->kernel, conv->stride, conv->padding);
    int64_t columns = taps_inside(in[3], out[3], conv->kernel, conv->stride, conv->padding);
    return (double)weight[0] * (double)weight[1] * (double)rows * (double)columns;
}

/* NOTE: batch norm and pooling FLOPs are estimates per value: batch norm
 * forward 5 (sum, sum of squares, subtract, multiply, add) plus 1 for a fused
 * ReLU, backward 8; max pooling one comparison per window element. */
static size_t add_conv_cases(op_case *cases, size_t count, nn_conv *conv, dnnl_memory_t target,
                             int batch)
{
    double flops = 2.0 * useful_macs_per_image(conv) * batch;
    cases[count++] = (op_case){OP_CONV_FWD, conv->name, conv, NULL, NULL, NULL, flops};
    if (target != NULL)
        cases[count++] = (op_case){OP_CONV_BWD_DATA, conv->name, conv, NULL, NULL, target, flops};
    cases[count++] = (op_case){OP_CONV_BWD_WEIGHTS, conv->name, conv, NULL, NULL, NULL, flops};
    return count;
}

static size_t add_bn_cases(op_case *cases, size_t count, nn_bn *bn)
{
    double values = (double)bn->values_per_channel * bn->channels;
    double forward = values * (bn->relu ? 6.0 : 5.0);
    cases[count++] = (op_case){OP_BN_FWD, bn->name, NULL, bn, NULL, NULL, forward};
    cases[count++] = (op_case){OP_BN_BWD, bn->name, NULL, bn, NULL, NULL, values * 8.0};
    return count;
}

static size_t add_pool_cases(op_case *cases, size_t count, nn_pool *pool, double window)
{
    const int64_t *dims = pool->output.md.dims;
    double outputs = (double)dims[0] * (double)dims[1] * (double)dims[2] * (double)dims[3];
    cases[count++] = (op_case){OP_POOL_FWD, pool->name, NULL, NULL, pool, NULL, outputs * window};
    cases[count++] = (op_case){OP_POOL_BWD, pool->name, NULL, NULL, pool, NULL, outputs * window};
    return count;
}

static size_t collect_cases(ap_net *net, op_case *cases)
{
    size_t count = 0;
    count = add_conv_cases(cases, count, &net->stem_conv, NULL, net->batch);
    count = add_bn_cases(cases, count, &net->stem_bn);
    count = add_pool_cases(cases, count, &net->stem_pool, 9.0);
    for (int i = 0; i < net->block_count; i++) {
        nn_block *block = &net->blocks[i];
        count = add_conv_cases(cases, count, &block->conv1, block->input->diff, net->batch);
        count = add_bn_cases(cases, count, &block->bn1);
        count = add_conv_cases(cases, count, &block->conv2, block->bn1.output.diff, net->batch);
        count = add_bn_cases(cases, count, &block->bn2);
        if (block->projection) {
            count = add_conv_cases(cases, count, &block->shortcut_conv, block->shortcut_grad,
                                   net->batch);
            count = add_bn_cases(cases, count, &block->shortcut_bn);
        }
    }
    return count;
}

/* Run one training step so that every buffer contains computed values. */
static ap_status prime_net(ap_net *net, ap_error *err)
{
    size_t inputs = net->input.floats;
    size_t logits = (size_t)net->batch * (size_t)net->spec.label_count;
    float *input = calloc(inputs, sizeof(float));
    float *output = calloc(2 * logits, sizeof(float));
    ap_status status = AP_OK;
    if (input == NULL || output == NULL)
        status = ap_error_set(err, AP_ERR_NOMEM, "bench: out of memory");
    for (size_t i = 0; i < inputs && status == AP_OK; i++)
        input[i] = (float)((i * 7919) % 255) / 255.0f - 0.5f;
    for (size_t i = 0; i < logits && status == AP_OK; i++)
        output[logits + i] = 0.01f;
    if (status == AP_OK)
        status = ap_net_forward(net, input, true, 1, 0, output, err);
    if (status == AP_OK)
        status = ap_net_backward(net, output + logits, err);
    free(input);
    free(output);
    return status;
}

static ap_status time_cases(ap_net *net, const bench_options *options, double peak, const char *isa,
                            ap_error *err)
{
    op_case cases[64 + 16 * AP_NET_MAX_STAGES * 4];
    size_t count = collect_cases(net, cases);
    double total = 0.0;
    for (size_t i = 0; i < count; i++) {
        double seconds = 0.0;
        NN_TRY(time_op(&net->ctx, &cases[i], options->warmup, options->steps, &seconds, err));
        double gflops = cases[i].flops / seconds / 1e9;
        total += seconds;
        printf("{\"bench\":\"ops\",\"tool\":\"apiary\",\"device\":\"cpu\",\"threads\":%d,"
               "\"batch\":%d,\"layer\":\"%s\",\"op\":\"%s\",\"milliseconds\":%.4f,"
               "\"gflops\":%.3f,\"peak_share\":%.4f,\"peak_gflops\":%.3f,\"isa\":\"%s\"}\n",
               options->threads, net->batch, cases[i].layer, op_names[cases[i].kind], seconds * 1e3,
               gflops, gflops * 1e9 / peak, peak / 1e9, isa);
    }
    printf("{\"bench\":\"ops_total\",\"tool\":\"apiary\",\"device\":\"cpu\",\"threads\":%d,"
           "\"milliseconds\":%.4f}\n",
           options->threads, total * 1e3);
    return AP_OK;
}

ap_status bench_run_ops(const bench_options *options, ap_error *err)
{
    ap_config cfg;
    NN_TRY(bench_load_config(options, &cfg, err));
    const char *isa = NULL;
    double peak = peak_flops(&isa);
    ap_net *net = NULL;
    ap_status status = bench_create_net(&cfg, &net, err);
    if (status == AP_OK)
        status = prime_net(net, err);
    if (status == AP_OK)
        status = time_cases(net, options, peak, isa, err);
    ap_net_destroy(net);
    return status;
}
