/* Layers of the CPU network, one at a time: forward against plain C
 * references, backward against central differences. Inputs are given in
 * plain NCHW and reordered into plain, blocked and padded-blocked formats. */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl_debug.h>

#include "kernels/cpu/rng.h"
#include "pipeline/nn/layers.h"
#include "tests/unit/check.h"

#define REQUIRE_OK(call)                                                                           \
    do {                                                                                           \
        ap_error require_err = {0};                                                                \
        ap_error *err = &require_err;                                                              \
        if ((call) != AP_OK) {                                                                     \
            fprintf(stderr, "%s:%d: %s failed: %s\n", __FILE__, __LINE__, #call,                   \
                    require_err.message);                                                          \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

#define CHECK_STR_EQ(actual, expected)                                                             \
    do {                                                                                           \
        if (strcmp((actual), (expected)) != 0) {                                                   \
            fprintf(stderr, "%s:%d: %s is \"%s\", expected \"%s\"\n", __FILE__, __LINE__, #actual, \
                    (actual), (expected));                                                         \
            check_failures++;                                                                      \
        }                                                                                          \
    } while (0)

/* Central differences with a step of 1e-2 on float32 layers. Each output is
 * rounded to about 6e-8 relative, so over a few hundred outputs the loss
 * carries an error near 1e-6, and the difference quotient about 1e-4 of the
 * gradient scale. The curvature term is O(step^2), also about 1e-4. A
 * tolerance of 2e-3 of the largest gradient leaves margin for both and still
 * fails on a wrong factor, a missing term or a misplaced index. */
#define FD_STEP      1e-2
#define FD_TOLERANCE 2e-3
#define FD_SAMPLES   12

static nn_context ctx;

/* A plain NCHW copy of an activation, with reorders both ways. */
typedef struct {
    nn_act *act;
    size_t count;
    float *values;
    dnnl_memory_t plain;
    nn_op to_act;
    nn_op from_act;
} plain_view;

static uint64_t test_seed = 1;

static float random_uniform(float low, float high)
{
    return low + (high - low) * ap_rng_uniform(2024, 7, test_seed++);
}

static void fill_random(float *values, size_t count, float low, float high)
{
    for (size_t i = 0; i < count; i++)
        values[i] = random_uniform(low, high);
}

static size_t dims_count(const dnnl_dims_t dims, int ndims)
{
    size_t count = 1;
    for (int i = 0; i < ndims; i++)
        count *= (size_t)dims[i];
    return count;
}

/* Bind the primitives created so far to the shared scratchpad. */
static void finish_setup(void)
{
    REQUIRE_OK(nn_context_finish(&ctx, err));
}

static void view_init(plain_view *view, nn_act *act)
{
    dnnl_memory_desc_t md;
    view->act = act;
    view->count = dims_count(act->md.dims, act->md.ndims);
    view->values = calloc(view->count, sizeof(float));
    REQUIRE_OK(nn_md_plain(&md, act->md.ndims, act->md.dims, "test", err));
    REQUIRE_OK(nn_memory_create(&ctx, &md, view->values, "test", &view->plain, err));
    REQUIRE_OK(nn_reorder_create(&ctx, &md, &act->md, "test", "to layer", &view->to_act, err));
    REQUIRE_OK(nn_reorder_create(&ctx, &act->md, &md, "test", "from layer", &view->from_act, err));
    finish_setup();
}

static void view_free(plain_view *view)
{
    free(view->values);
}

/* Copy the plain values into the activation's data (or gradient). */
static void view_load(plain_view *view, bool gradient)
{
    dnnl_memory_t target = gradient ? view->act->diff : view->act->data;
    REQUIRE_OK(nn_reorder_run(&ctx, &view->to_act, view->plain, target, err));
    REQUIRE_OK(nn_wait(&ctx, "test", err));
}

static void view_store(plain_view *view, bool gradient)
{
    dnnl_memory_t source = gradient ? view->act->diff : view->act->data;
    REQUIRE_OK(nn_reorder_run(&ctx, &view->from_act, source, view->plain, err));
    REQUIRE_OK(nn_wait(&ctx, "test", err));
}

static void make_act(nn_act *act, int64_t n, int64_t c, int64_t h, int64_t w, dnnl_format_tag_t tag)
{
    dnnl_dims_t dims = {n, c, h, w};
    dnnl_memory_desc_t md;
    if (dnnl_memory_desc_init_by_tag(&md, 4, dims, dnnl_f32, tag) != dnnl_success) {
        fprintf(stderr, "cannot describe a %s tensor\n", dnnl_fmt_tag2str(tag));
        exit(1);
    }
    REQUIRE_OK(nn_act_create(&ctx, &md, "test", act, err));
}

static ap_net_tensor make_tensor(const char *name, int ndim, const int64_t *shape)
{
    ap_net_tensor tensor;
    memset(&tensor, 0, sizeof(tensor));
    snprintf(tensor.name, sizeof(tensor.name), "%s", name);
    tensor.ndim = ndim;
    tensor.size = 1;
    for (int i = 0; i < ndim; i++) {
        tensor.shape[i] = shape[i];
        tensor.size *= (size_t)shape[i];
    }
    tensor.data = calloc(tensor.size, sizeof(float));
    tensor.grad = calloc(tensor.size, sizeof(float));
    return tensor;
}

static void free_tensor(ap_net_tensor *tensor)
{
    free(tensor->data);
    free(tensor->grad);
}

static double weighted_sum(const float *values, const float *weights, size_t count)
{
    double sum = 0.0;
    for (size_t i = 0; i < count; i++)
        sum += (double)values[i] * weights[i];
    return sum;
}

typedef double (*loss_fn)(void *state);

static double central_difference(loss_fn loss, void *state, float *value, double step)
{
    float saved = *value;
    *value = (float)(saved + step);
    float up = *value;
    double loss_up = loss(state);
    *value = (float)(saved - step);
    float down = *value;
    double loss_down = loss(state);
    *value = saved;
    return (loss_up - loss_down) / ((double)up - (double)down);
}

/* Compare analytic[i] with central differences of loss over values[i] at a
 * spread of indices. Where the differences at the step and at half the step
 * disagree, the sample straddles a kink (ReLU, maximum) and is skipped. At
 * most a quarter of the samples may be skipped. */
static void check_gradient(const char *what, loss_fn loss, void *state, float *values,
                           const float *analytic, size_t count)
{
    double scale = 1e-6;
    for (size_t i = 0; i < count; i++)
        scale = fmax(scale, fabs(analytic[i]));
    size_t samples = count < FD_SAMPLES ? count : FD_SAMPLES;
    size_t skipped = 0;
    for (size_t s = 0; s < samples; s++) {
        size_t index = (s * count) / samples + (s * 7) % (count / samples);
        double numeric = central_difference(loss, state, &values[index], FD_STEP);
        double half = central_difference(loss, state, &values[index], FD_STEP / 2);
        if (fabs(numeric - half) > FD_TOLERANCE * scale) {
            skipped++;
            continue;
        }
        double error = fabs(numeric - analytic[index]) / scale;
        if (!(error <= FD_TOLERANCE)) {
            fprintf(stderr, "%s[%zu]: analytic %.7g, numeric %.7g, error %.3g of scale %.3g\n",
                    what, index, (double)analytic[index], numeric, error, scale);
        }
        CHECK(error <= FD_TOLERANCE);
    }
    if (skipped * 4 > samples)
        fprintf(stderr, "%s: %zu of %zu samples straddle a kink\n", what, skipped, samples);
    CHECK(skipped * 4 <= samples);
}

/* ---- convolution ---- */

static void reference_conv(const float *in, const float *weight, int n, int c, int h, int w,
                           int out_c, int kernel, int stride, float *out)
{
    int pad = kernel / 2;
    int oh = (h + 2 * pad - kernel) / stride + 1;
    int ow = (w + 2 * pad - kernel) / stride + 1;
    for (int b = 0; b < n; b++)
        for (int o = 0; o < out_c; o++)
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++) {
                    double sum = 0.0;
                    for (int i = 0; i < c; i++)
                        for (int ky = 0; ky < kernel; ky++)
                            for (int kx = 0; kx < kernel; kx++) {
                                int iy = y * stride - pad + ky;
                                int ix = x * stride - pad + kx;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w)
                                    continue;
                                sum += (double)in[((b * c + i) * h + iy) * w + ix] *
                                       weight[((o * c + i) * kernel + ky) * kernel + kx];
                            }
                    out[((b * out_c + o) * oh + y) * ow + x] = (float)sum;
                }
}

typedef struct {
    nn_conv conv;
    plain_view in;
    plain_view out;
    float *loss_weights;
} conv_case;

static double conv_loss(void *state)
{
    conv_case *test = state;
    view_load(&test->in, false);
    REQUIRE_OK(nn_conv_forward(&ctx, &test->conv, err));
    view_store(&test->out, false);
    return weighted_sum(test->out.values, test->loss_weights, test->out.count);
}

static void test_conv(int n, int c, int h, int w, int out_c, int kernel, int stride,
                      dnnl_format_tag_t tag)
{
    fprintf(stderr, "conv %dx%dx%dx%d -> %d, kernel %d, stride %d, %s\n", n, c, h, w, out_c, kernel,
            stride, dnnl_fmt_tag2str(tag));
    conv_case test;
    memset(&test, 0, sizeof(test));
    nn_act input;
    make_act(&input, n, c, h, w, tag);
    int64_t shape[4] = {out_c, c, kernel, kernel};
    ap_net_tensor weight = make_tensor("conv.weight", 4, shape);
    fill_random(weight.data, weight.size, -0.5f, 0.5f);
    snprintf(test.conv.name, sizeof(test.conv.name), "conv");
    REQUIRE_OK(nn_conv_create(&ctx, &test.conv, &input, &weight, stride, true, err));
    view_init(&test.in, &input);
    view_init(&test.out, &test.conv.output);
    fill_random(test.in.values, test.in.count, -1.0f, 1.0f);

    /* forward */
    int oh = (h + 2 * (kernel / 2) - kernel) / stride + 1;
    int ow = (w + 2 * (kernel / 2) - kernel) / stride + 1;
    CHECK_INT_EQ(test.conv.output.md.dims[2], oh);
    CHECK_INT_EQ(test.conv.output.md.dims[3], ow);
    float *expected = calloc(test.out.count, sizeof(float));
    reference_conv(test.in.values, weight.data, n, c, h, w, out_c, kernel, stride, expected);
    test.loss_weights = calloc(test.out.count, sizeof(float));
    fill_random(test.loss_weights, test.out.count, -1.0f, 1.0f);
    conv_loss(&test);
    double max_error = 0.0;
    for (size_t i = 0; i < test.out.count; i++)
        max_error = fmax(max_error, fabs(test.out.values[i] - expected[i]));
    /* Sums of at most c * kernel^2 products of values below 1: float rounding stays
     * far below 1e-4. */
    CHECK_NEAR(max_error, 0.0, 1e-4);

    /* backward */
    memcpy(test.out.values, test.loss_weights, test.out.count * sizeof(float));
    view_load(&test.out, true);
    REQUIRE_OK(nn_conv_backward_weights(&ctx, &test.conv, err));
    REQUIRE_OK(nn_conv_backward_data(&ctx, &test.conv, input.diff, err));
    plain_view grad_in;
    view_init(&grad_in, &input);
    view_store(&grad_in, true);
    check_gradient("conv weight", conv_loss, &test, weight.data, weight.grad, weight.size);
    check_gradient("conv input", conv_loss, &test, test.in.values, grad_in.values, test.in.count);

    view_free(&grad_in);
    view_free(&test.in);
    view_free(&test.out);
    free(expected);
    free(test.loss_weights);
    free_tensor(&weight);
}

/* ---- batch norm ---- */

typedef struct {
    nn_bn bn;
    plain_view in;
    plain_view out;
    float *loss_weights;
    bool training;
} bn_case;

static double bn_loss(void *state)
{
    bn_case *test = state;
    view_load(&test->in, false);
    REQUIRE_OK(nn_bn_forward(&ctx, &test->bn, test->training, err));
    view_store(&test->out, false);
    return weighted_sum(test->out.values, test->loss_weights, test->out.count);
}

static ap_net_tensor *make_bn_tensors(int channels)
{
    static const char *names[4] = {"bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"};
    int64_t shape[1] = {channels};
    ap_net_tensor *tensors = calloc(4, sizeof(*tensors));
    for (int i = 0; i < 4; i++)
        tensors[i] = make_tensor(names[i], 1, shape);
    for (int i = 0; i < channels; i++) {
        tensors[0].data[i] = 1.0f;
        tensors[3].data[i] = 1.0f;
    }
    return tensors;
}

static void free_bn_tensors(ap_net_tensor *tensors)
{
    for (int i = 0; i < 4; i++)
        free_tensor(&tensors[i]);
    free(tensors);
}

/* Per-channel mean and biased variance of plain NCHW values, in double. */
static void channel_stats(const float *values, int n, int c, int hw, double *mean, double *var)
{
    for (int ch = 0; ch < c; ch++) {
        double sum = 0.0;
        double sum_sq = 0.0;
        for (int b = 0; b < n; b++)
            for (int i = 0; i < hw; i++) {
                double v = values[((size_t)b * c + ch) * hw + i];
                sum += v;
                sum_sq += v * v;
            }
        double count = (double)n * hw;
        mean[ch] = sum / count;
        var[ch] = sum_sq / count - mean[ch] * mean[ch];
    }
}

static void test_bn_statistics(dnnl_format_tag_t tag)
{
    fprintf(stderr, "batch norm statistics, %s\n", dnnl_fmt_tag2str(tag));
    enum { N = 3, C = 12, H = 5, W = 4 };
    bn_case test;
    memset(&test, 0, sizeof(test));
    nn_act input;
    make_act(&input, N, C, H, W, tag);
    ap_net_tensor *tensors = make_bn_tensors(C);
    snprintf(test.bn.name, sizeof(test.bn.name), "bn");
    REQUIRE_OK(nn_bn_create(&ctx, &test.bn, &input, false, tensors, NULL, err));
    view_init(&test.in, &input);
    view_init(&test.out, &test.bn.output);
    test.loss_weights = calloc(test.out.count, sizeof(float));
    for (int i = 0; i < N * C * H * W; i++)
        test.in.values[i] = random_uniform(-1.0f, 3.0f) * (1.0f + (float)((i / (H * W)) % C));

    /* Training with scale 1 and shift 0 normalises each channel. */
    test.training = true;
    bn_loss(&test);
    double mean[C], var[C], in_mean[C], in_var[C];
    channel_stats(test.out.values, N, C, H * W, mean, var);
    channel_stats(test.in.values, N, C, H * W, in_mean, in_var);
    for (int c = 0; c < C; c++) {
        CHECK_NEAR(mean[c], 0.0, 1e-5);
        /* var / (var + 1e-5) with input variances of 0.3 and more. */
        CHECK_NEAR(var[c], 1.0, 1e-4);
    }

    /* Running statistics: momentum 0.1 towards the batch mean and the unbiased variance. */
    double count = (double)N * H * W;
    for (int c = 0; c < C; c++) {
        double unbiased = in_var[c] * count / (count - 1.0);
        CHECK_NEAR(tensors[2].data[c], 0.1 * in_mean[c], 1e-5 * (1.0 + fabs(in_mean[c])));
        CHECK_NEAR(tensors[3].data[c], 0.9 + 0.1 * unbiased, 1e-5 * (1.0 + unbiased));
    }

    /* Inference uses the running statistics, then scale and shift. */
    for (int c = 0; c < C; c++) {
        tensors[0].data[c] = random_uniform(0.5f, 1.5f);
        tensors[1].data[c] = random_uniform(-0.5f, 0.5f);
    }
    test.training = false;
    bn_loss(&test);
    double max_error = 0.0;
    for (int i = 0; i < N * C * H * W; i++) {
        int c = (i / (H * W)) % C;
        double normalised = (test.in.values[i] - tensors[2].data[c]) /
                            sqrt((double)tensors[3].data[c] + NN_BN_EPSILON);
        double expected = tensors[0].data[c] * normalised + tensors[1].data[c];
        max_error = fmax(max_error, fabs(test.out.values[i] - expected));
    }
    CHECK_NEAR(max_error, 0.0, 1e-4);

    view_free(&test.in);
    view_free(&test.out);
    free(test.loss_weights);
    free_bn_tensors(tensors);
}

static void test_bn_gradient(bool relu, dnnl_format_tag_t tag)
{
    fprintf(stderr, "batch norm gradient, relu %d, %s\n", relu, dnnl_fmt_tag2str(tag));
    enum { N = 3, C = 10, H = 3, W = 4 };
    bn_case test;
    memset(&test, 0, sizeof(test));
    nn_act input;
    make_act(&input, N, C, H, W, tag);
    ap_net_tensor *tensors = make_bn_tensors(C);
    for (int c = 0; c < C; c++) {
        tensors[0].data[c] = random_uniform(0.5f, 1.5f);
        tensors[1].data[c] = random_uniform(-0.3f, 0.3f);
    }
    snprintf(test.bn.name, sizeof(test.bn.name), "bn");
    REQUIRE_OK(nn_bn_create(&ctx, &test.bn, &input, relu, tensors, NULL, err));
    view_init(&test.in, &input);
    view_init(&test.out, &test.bn.output);
    fill_random(test.in.values, test.in.count, -2.0f, 2.0f);
    test.loss_weights = calloc(test.out.count, sizeof(float));
    fill_random(test.loss_weights, test.out.count, -1.0f, 1.0f);
    test.training = true;

    /* Fused ReLU: the output is never negative. */
    bn_loss(&test);
    if (relu) {
        float lowest = 0.0f;
        for (size_t i = 0; i < test.out.count; i++)
            lowest = fminf(lowest, test.out.values[i]);
        CHECK_NEAR(lowest, 0.0, 0.0);
    }

    memcpy(test.out.values, test.loss_weights, test.out.count * sizeof(float));
    view_load(&test.out, true);
    REQUIRE_OK(nn_bn_backward(&ctx, &test.bn, err));
    plain_view grad_in;
    view_init(&grad_in, &input);
    view_store(&grad_in, true);
    check_gradient("bn input", bn_loss, &test, test.in.values, grad_in.values, test.in.count);
    check_gradient("bn weight", bn_loss, &test, tensors[0].data, tensors[0].grad, C);
    check_gradient("bn bias", bn_loss, &test, tensors[1].data, tensors[1].grad, C);

    view_free(&grad_in);
    view_free(&test.in);
    view_free(&test.out);
    free(test.loss_weights);
    free_bn_tensors(tensors);
}

/* ---- pooling ---- */

typedef struct {
    nn_pool *pool;
    nn_gap *gap;
    plain_view in;
    plain_view out;
    float *loss_weights;
} pool_case;

static double pool_loss(void *state)
{
    pool_case *test = state;
    view_load(&test->in, false);
    if (test->gap != NULL) {
        REQUIRE_OK(nn_gap_forward(&ctx, test->gap, err));
        size_t count = test->out.count;
        return weighted_sum(test->gap->features, test->loss_weights, count);
    }
    REQUIRE_OK(nn_pool_forward(&ctx, test->pool, true, err));
    view_store(&test->out, false);
    return weighted_sum(test->out.values, test->loss_weights, test->out.count);
}

/* Distinct values 0.1 apart, so no step of the differences moves a maximum. */
static void fill_without_ties(float *values, size_t count)
{
    for (size_t i = 0; i < count; i++)
        values[i] = (float)((i * 7919) % count) * 0.1f - 0.05f * (float)count;
}

static void test_max_pool(int h, int w, dnnl_format_tag_t tag)
{
    fprintf(stderr, "max pool %dx%d, %s\n", h, w, dnnl_fmt_tag2str(tag));
    enum { N = 2, C = 5 };
    pool_case test;
    memset(&test, 0, sizeof(test));
    nn_act input;
    nn_pool pool;
    memset(&pool, 0, sizeof(pool));
    make_act(&input, N, C, h, w, tag);
    snprintf(pool.name, sizeof(pool.name), "pool");
    REQUIRE_OK(nn_pool_create(&ctx, &pool, &input, dnnl_pooling_max, 3, 2, 1, err));
    test.pool = &pool;
    view_init(&test.in, &input);
    view_init(&test.out, &pool.output);
    fill_without_ties(test.in.values, test.in.count);
    test.loss_weights = calloc(test.out.count, sizeof(float));
    fill_random(test.loss_weights, test.out.count, -1.0f, 1.0f);

    /* Forward: padding never wins, as in PyTorch's max pooling. */
    int oh = (h + 2 - 3) / 2 + 1;
    int ow = (w + 2 - 3) / 2 + 1;
    CHECK_INT_EQ(pool.output.md.dims[2], oh);
    CHECK_INT_EQ(pool.output.md.dims[3], ow);
    pool_loss(&test);
    int mismatches = 0;
    for (int plane = 0; plane < N * C; plane++)
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                float best = -INFINITY;
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        int iy = 2 * y - 1 + ky;
                        int ix = 2 * x - 1 + kx;
                        if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                            best = fmaxf(best, test.in.values[(plane * h + iy) * w + ix]);
                    }
                if (test.out.values[(plane * oh + y) * ow + x] != best)
                    mismatches++;
            }
    CHECK_INT_EQ(mismatches, 0);

    memcpy(test.out.values, test.loss_weights, test.out.count * sizeof(float));
    view_load(&test.out, true);
    REQUIRE_OK(nn_pool_backward(&ctx, &pool, err));
    plain_view grad_in;
    view_init(&grad_in, &input);
    view_store(&grad_in, true);
    check_gradient("max pool input", pool_loss, &test, test.in.values, grad_in.values,
                   test.in.count);

    view_free(&grad_in);
    view_free(&test.in);
    view_free(&test.out);
    free(test.loss_weights);
}

static void test_global_average_pool(dnnl_format_tag_t tag)
{
    fprintf(stderr, "global average pool, %s\n", dnnl_fmt_tag2str(tag));
    enum { N = 3, C = 11, H = 3, W = 5 };
    pool_case test;
    memset(&test, 0, sizeof(test));
    nn_act input;
    nn_gap gap;
    memset(&gap, 0, sizeof(gap));
    make_act(&input, N, C, H, W, tag);
    snprintf(gap.pool.name, sizeof(gap.pool.name), "gap");
    REQUIRE_OK(nn_gap_create(&ctx, &gap, &input, err));
    test.gap = &gap;
    view_init(&test.in, &input);
    test.out.count = N * C;
    fill_random(test.in.values, test.in.count, -1.0f, 1.0f);
    test.loss_weights = calloc(N * C, sizeof(float));
    fill_random(test.loss_weights, N * C, -1.0f, 1.0f);

    pool_loss(&test);
    double max_error = 0.0;
    for (int plane = 0; plane < N * C; plane++) {
        double sum = 0.0;
        for (int i = 0; i < H * W; i++)
            sum += test.in.values[plane * H * W + i];
        max_error = fmax(max_error, fabs(gap.features[plane] - sum / (H * W)));
    }
    CHECK_NEAR(max_error, 0.0, 1e-6);

    memcpy(gap.d_features, test.loss_weights, N * C * sizeof(float));
    REQUIRE_OK(nn_gap_backward(&ctx, &gap, err));
    plain_view grad_in;
    view_init(&grad_in, &input);
    view_store(&grad_in, true);
    check_gradient("average pool input", pool_loss, &test, test.in.values, grad_in.values,
                   test.in.count);

    view_free(&grad_in);
    view_free(&test.in);
    free(test.loss_weights);
}

/* ---- residual addition and ReLU ---- */

typedef struct {
    nn_residual residual;
    plain_view branch;
    plain_view shortcut;
    plain_view out;
    float *loss_weights;
} residual_case;

static double residual_loss(void *state)
{
    residual_case *test = state;
    view_load(&test->branch, false);
    view_load(&test->shortcut, false);
    REQUIRE_OK(nn_residual_forward(&ctx, &test->residual, err));
    view_store(&test->out, false);
    return weighted_sum(test->out.values, test->loss_weights, test->out.count);
}

static void test_residual(dnnl_format_tag_t branch_tag, dnnl_format_tag_t shortcut_tag)
{
    fprintf(stderr, "residual, branch %s, shortcut %s\n", dnnl_fmt_tag2str(branch_tag),
            dnnl_fmt_tag2str(shortcut_tag));
    enum { N = 2, C = 6, H = 3, W = 3 };
    residual_case test;
    memset(&test, 0, sizeof(test));
    nn_act branch;
    nn_act shortcut;
    make_act(&branch, N, C, H, W, branch_tag);
    make_act(&shortcut, N, C, H, W, shortcut_tag);
    snprintf(test.residual.name, sizeof(test.residual.name), "add");
    REQUIRE_OK(nn_residual_create(&ctx, &test.residual, &branch, &shortcut, err));
    view_init(&test.branch, &branch);
    view_init(&test.shortcut, &shortcut);
    view_init(&test.out, &test.residual.output);
    /* Sums at least 0.05 away from the ReLU's kink. */
    for (size_t i = 0; i < test.branch.count; i++) {
        float sum = random_uniform(0.05f, 1.0f) * (i % 3 == 0 ? -1.0f : 1.0f);
        test.shortcut.values[i] = random_uniform(-1.0f, 1.0f);
        test.branch.values[i] = sum - test.shortcut.values[i];
    }
    test.loss_weights = calloc(test.out.count, sizeof(float));
    fill_random(test.loss_weights, test.out.count, -1.0f, 1.0f);

    residual_loss(&test);
    int mismatches = 0;
    for (size_t i = 0; i < test.out.count; i++) {
        float sum = test.branch.values[i] + test.shortcut.values[i];
        if (test.out.values[i] != (sum > 0.0f ? sum : 0.0f))
            mismatches++;
    }
    CHECK_INT_EQ(mismatches, 0);

    memcpy(test.out.values, test.loss_weights, test.out.count * sizeof(float));
    view_load(&test.out, true);
    REQUIRE_OK(nn_residual_backward(&ctx, &test.residual, err));
    plain_view grad_branch;
    view_init(&grad_branch, &branch);
    view_store(&grad_branch, true);
    check_gradient("residual branch", residual_loss, &test, test.branch.values, grad_branch.values,
                   test.branch.count);

    view_free(&grad_branch);
    view_free(&test.branch);
    view_free(&test.shortcut);
    view_free(&test.out);
    free(test.loss_weights);
}

/* ---- head: dropout and dense ---- */

typedef struct {
    nn_head head;
    float *features;
    float *logits;
    float *loss_weights;
} head_case;

static double head_loss(void *state)
{
    head_case *test = state;
    nn_head_forward(&test->head, test->features, true, 5, 9, test->logits);
    return weighted_sum(test->logits, test->loss_weights, test->head.batch * test->head.labels);
}

static void test_head(float dropout)
{
    fprintf(stderr, "head, dropout %g\n", (double)dropout);
    enum { N = 4, F = 24, L = 3 };
    head_case test;
    memset(&test, 0, sizeof(test));
    int64_t weight_shape[2] = {L, F};
    int64_t bias_shape[1] = {L};
    ap_net_tensor weight = make_tensor("head.weight", 2, weight_shape);
    ap_net_tensor bias = make_tensor("head.bias", 1, bias_shape);
    fill_random(weight.data, weight.size, -0.5f, 0.5f);
    fill_random(bias.data, bias.size, -0.5f, 0.5f);
    REQUIRE_OK(nn_head_create(&ctx, &test.head, N, F, L, dropout, &weight, &bias, err));
    test.features = calloc(N * F, sizeof(float));
    test.logits = calloc(N * L, sizeof(float));
    test.loss_weights = calloc(N * L, sizeof(float));
    fill_random(test.features, N * F, 0.0f, 2.0f);
    fill_random(test.loss_weights, N * L, -1.0f, 1.0f);

    /* Training: each feature is dropped or scaled by 1 / (1 - dropout). */
    head_loss(&test);
    int dropped = 0;
    int wrong_scale = 0;
    for (int i = 0; dropout > 0.0f && i < N * F; i++) {
        float scale = test.head.mask[i];
        if (scale == 0.0f)
            dropped++;
        else if (fabs(scale - 1.0 / (1.0 - dropout)) > 1e-6)
            wrong_scale++;
    }
    CHECK_INT_EQ(wrong_scale, 0);
    if (dropout > 0.0f) {
        CHECK(dropped > 0);
        CHECK(dropped < N * F);
    }
    double max_error = 0.0;
    for (int n = 0; n < N; n++)
        for (int l = 0; l < L; l++) {
            double sum = bias.data[l];
            for (int f = 0; f < F; f++) {
                float scale = dropout > 0.0f ? test.head.mask[n * F + f] : 1.0f;
                sum += (double)scale * test.features[n * F + f] * weight.data[l * F + f];
            }
            max_error = fmax(max_error, fabs(test.logits[n * L + l] - sum));
        }
    CHECK_NEAR(max_error, 0.0, 1e-5);

    /* Inference skips dropout. */
    nn_head_forward(&test.head, test.features, false, 5, 9, test.logits);
    max_error = 0.0;
    for (int n = 0; n < N; n++)
        for (int l = 0; l < L; l++) {
            double sum = bias.data[l];
            for (int f = 0; f < F; f++)
                sum += (double)test.features[n * F + f] * weight.data[l * F + f];
            max_error = fmax(max_error, fabs(test.logits[n * L + l] - sum));
        }
    CHECK_NEAR(max_error, 0.0, 1e-5);

    /* Backward. The same dropout mask is drawn again for every difference. */
    float *d_features = calloc(N * F, sizeof(float));
    head_loss(&test);
    nn_head_backward(&test.head, test.loss_weights, d_features);
    check_gradient("head weight", head_loss, &test, weight.data, weight.grad, weight.size);
    check_gradient("head bias", head_loss, &test, bias.data, bias.grad, bias.size);
    check_gradient("head features", head_loss, &test, test.features, d_features, N * F);

    free(d_features);
    free(test.features);
    free(test.logits);
    free(test.loss_weights);
    free_tensor(&weight);
    free_tensor(&bias);
}

/* Memory descriptors read the way oneDNN's verbose log writes them. */
static void check_description(int ndims, const dnnl_dims_t dims, dnnl_format_tag_t tag,
                              const char *expected)
{
    dnnl_memory_desc_t md;
    if (dnnl_memory_desc_init_by_tag(&md, ndims, dims, dnnl_f32, tag) != dnnl_success) {
        fprintf(stderr, "cannot make a %s memory descriptor\n", dnnl_fmt_tag2str(tag));
        check_failures++;
        return;
    }
    char text[128];
    nn_md_describe(&md, text, sizeof(text));
    CHECK_STR_EQ(text, expected);
}

static void test_md_description(void)
{
    dnnl_dims_t act = {16, 8, 24, 24};
    dnnl_dims_t weights = {16, 8, 3, 3};
    dnnl_dims_t pooled = {16, 16, 1, 1};
    dnnl_dims_t channels = {12};
    check_description(4, act, dnnl_abcd, "16x8x24x24 abcd");
    check_description(4, act, dnnl_aBcd16b, "16x8x24x24 aBcd16b");
    check_description(4, act, dnnl_aBcd8b, "16x8x24x24 aBcd8b");
    check_description(4, act, dnnl_acdb, "16x8x24x24 acdb");
    check_description(4, act, dnnl_format_tag_any, "16x8x24x24 any");
    check_description(4, weights, dnnl_ABcd16b16a, "16x8x3x3 ABcd16b16a");
    check_description(4, weights, dnnl_ABcd8a8b, "16x8x3x3 ABcd8a8b");
    check_description(4, weights, dnnl_Acdb16a, "16x8x3x3 Acdb16a");
    check_description(4, pooled, dnnl_aBcd16b, "16x16x1x1 aBcd16b");
    check_description(4, pooled, dnnl_abcd, "16x16x1x1 abcd");
    check_description(1, channels, dnnl_a, "12 a");
}

/* No primitive created by the tests above, convolutions with 3 to 16 input
 * channels, kernels 1 to 7 and strides 1 and 2 among them, runs oneDNN's
 * reference implementation: some memory format has a jit kernel for each. */
static void test_no_reference_kernels(void)
{
    int found = 0;
    for (size_t i = 0; i < ctx.record_count; i++) {
        const nn_op_record *record = &ctx.records[i];
        if (!nn_pd_is_reference(record->pd))
            continue;
        fprintf(stderr, "%s %s runs %s\n", record->layer, record->pass, nn_pd_impl(record->pd));
        found++;
    }
    CHECK_INT_EQ(found, 0);
}

/* A failed oneDNN call names the call, the layer and oneDNN's status. */
static void test_backend_error(void)
{
    dnnl_dims_t small = {2, 3};
    dnnl_dims_t large = {4, 5};
    dnnl_memory_desc_t src, dst;
    REQUIRE_OK(nn_md_plain(&src, 2, small, "test", err));
    REQUIRE_OK(nn_md_plain(&dst, 2, large, "test", err));
    nn_op op;
    ap_error err = {0};
    CHECK_INT_EQ(
        nn_reorder_create(&ctx, &src, &dst, "stages.9.blocks.9.conv1", "reorder", &op, &err),
        AP_ERR_BACKEND);
    CHECK_STR_CONTAINS(err.message, "dnnl_reorder_primitive_desc_create failed");
    CHECK_STR_CONTAINS(err.message, "stages.9.blocks.9.conv1");
    CHECK_STR_CONTAINS(err.message, "invalid_arguments");
}

int main(void)
{
    REQUIRE_OK(nn_context_init(&ctx, err));

    /* Plain, blocked and padded-blocked inputs (5 and 3 channels pad to the block). */
    test_conv(2, 5, 7, 6, 6, 3, 1, dnnl_nchw);
    test_conv(2, 5, 7, 6, 12, 3, 2, dnnl_nChw8c);
    test_conv(2, 16, 6, 6, 16, 3, 1, dnnl_nChw16c);
    test_conv(3, 12, 6, 5, 20, 1, 2, dnnl_nChw8c);
    test_conv(2, 3, 12, 12, 8, 7, 2, dnnl_nchw);
    test_conv(2, 3, 9, 9, 4, 4, 2, dnnl_nchw);

    test_bn_statistics(dnnl_nchw);
    test_bn_statistics(dnnl_nChw8c);
    test_bn_gradient(false, dnnl_nChw8c);
    test_bn_gradient(true, dnnl_nChw16c);
    test_bn_gradient(true, dnnl_nchw);

    test_max_pool(7, 6, dnnl_nChw8c);
    test_max_pool(8, 8, dnnl_nchw);
    test_global_average_pool(dnnl_nChw8c);
    test_global_average_pool(dnnl_nchw);

    test_residual(dnnl_nChw8c, dnnl_nChw8c);
    test_residual(dnnl_nChw16c, dnnl_nchw);

    test_head(0.0f);
    test_head(0.5f);

    test_no_reference_kernels();
    test_md_description();
    test_backend_error();

    nn_context_release(&ctx);
    return check_finish();
}
