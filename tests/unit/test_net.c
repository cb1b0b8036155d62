/* The whole CPU network: tensor layout, forward against a plain C reference,
 * gradients of every tensor and of the input against central differences,
 * determinism, rejected specs and the oneDNN kernels chosen. */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/rng.h"
#include "pipeline/nn/net.h"
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

/* Central differences of a loss that is a weighted sum of a few logits. The
 * logits are float32, so the loss carries an error near 1e-7 of its size. A
 * step of 1e-3 turns that into about 5e-5, under 1e-3 of any tensor's
 * gradient scale here, and the curvature term of the central difference,
 * O(step^2), is smaller still. Batch norm over a few values puts many ReLU
 * inputs near zero, and a step that crosses one bends the difference. Where
 * the differences at the step and at half of it disagree by more than
 * FD_KINK of the scale, the sample is skipped. The scale is the largest of
 * the tensor's analytic gradients and of the sampled differences, so a
 * gradient that is wrongly zero still meets a finite scale and fails instead
 * of turning every sample into a kink. A quarter of the samples may be
 * skipped. The tolerance of 1e-2 of the scale sits above both effects and far
 * below the error of a wrong or missing term. */
#define FD_STEP      1e-3
#define FD_TOLERANCE 1e-2
#define FD_KINK      3e-3
#define FD_SAMPLES   5

static uint64_t test_seed = 1;

static float random_uniform(float low, float high)
{
    return low + (high - low) * ap_rng_uniform(777, 3, test_seed++);
}

static void fill_random(float *values, size_t count, float low, float high)
{
    for (size_t i = 0; i < count; i++)
        values[i] = random_uniform(low, high);
}

static ap_net_spec tiny_spec(void)
{
    ap_net_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.in_channels = 3;
    spec.height = 12;
    spec.width = 10;
    spec.stem_channels = 4;
    spec.stem_kernel = 3;
    spec.stem_stride = 2;
    spec.stage_count = 2;
    spec.stage_channels[0] = 8;
    spec.stage_channels[1] = 12;
    spec.stage_blocks[0] = 1;
    spec.stage_blocks[1] = 1;
    spec.dropout = 0.0f;
    spec.label_count = 3;
    return spec;
}

static ap_net_tensor *find_tensor(ap_net *net, const char *name)
{
    for (size_t i = 0; i < ap_net_tensor_count(net); i++) {
        ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        if (strcmp(tensor->name, name) == 0)
            return tensor;
    }
    return NULL;
}

static size_t input_count(const ap_net_spec *spec, int batch)
{
    return (size_t)batch * spec->in_channels * spec->height * spec->width;
}

/* ---- plain C reference ---- */

typedef struct {
    float *data;
    int n, c, h, w;
} ref_map;

static ref_map ref_alloc(int n, int c, int h, int w)
{
    ref_map map = {calloc((size_t)n * c * h * w, sizeof(float)), n, c, h, w};
    return map;
}

static ref_map ref_conv(const ref_map *in, const ap_net_tensor *weight, int stride)
{
    int out_c = (int)weight->shape[0];
    int kernel = (int)weight->shape[2];
    int pad = kernel / 2;
    int oh = (in->h + 2 * pad - kernel) / stride + 1;
    int ow = (in->w + 2 * pad - kernel) / stride + 1;
    ref_map out = ref_alloc(in->n, out_c, oh, ow);
    for (int b = 0; b < in->n; b++)
        for (int o = 0; o < out_c; o++)
            for (int y = 0; y < oh; y++)
                for (int x = 0; x < ow; x++) {
                    double sum = 0.0;
                    for (int i = 0; i < in->c; i++)
                        for (int ky = 0; ky < kernel; ky++)
                            for (int kx = 0; kx < kernel; kx++) {
                                int iy = y * stride - pad + ky;
                                int ix = x * stride - pad + kx;
                                if (iy < 0 || iy >= in->h || ix < 0 || ix >= in->w)
                                    continue;
                                sum +=
                                    (double)in->data[((b * in->c + i) * in->h + iy) * in->w + ix] *
                                    weight->data[((o * in->c + i) * kernel + ky) * kernel + kx];
                            }
                    out.data[((b * out_c + o) * oh + y) * ow + x] = (float)sum;
                }
    return out;
}

/* Batch norm in place. Training normalises by the batch's mean and biased
 * variance, and moves expected_mean and expected_var as PyTorch does.
 * Inference uses the running statistics in tensors[2] and tensors[3]. */
static void ref_bn(ref_map *x, ap_net_tensor *tensors, bool training, bool relu,
                   float *expected_mean, float *expected_var)
{
    int hw = x->h * x->w;
    double count = (double)x->n * hw;
    for (int c = 0; c < x->c; c++) {
        double mean = tensors[2].data[c];
        double var = tensors[3].data[c];
        if (training) {
            double sum = 0.0;
            double sum_sq = 0.0;
            for (int b = 0; b < x->n; b++)
                for (int i = 0; i < hw; i++) {
                    double v = x->data[(b * x->c + c) * hw + i];
                    sum += v;
                    sum_sq += v * v;
                }
            mean = sum / count;
            var = sum_sq / count - mean * mean;
            expected_mean[c] = (float)(0.9 * expected_mean[c] + 0.1 * mean);
            expected_var[c] = (float)(0.9 * expected_var[c] + 0.1 * var * count / (count - 1.0));
        }
        double inv_std = 1.0 / sqrt(var + 1e-5);
        for (int b = 0; b < x->n; b++)
            for (int i = 0; i < hw; i++) {
                float *v = &x->data[(b * x->c + c) * hw + i];
                double y = tensors[0].data[c] * (*v - mean) * inv_std + tensors[1].data[c];
                *v = (float)(relu && y < 0.0 ? 0.0 : y);
            }
    }
}

static ref_map ref_max_pool(const ref_map *in)
{
    int oh = (in->h + 2 - 3) / 2 + 1;
    int ow = (in->w + 2 - 3) / 2 + 1;
    ref_map out = ref_alloc(in->n, in->c, oh, ow);
    for (int plane = 0; plane < in->n * in->c; plane++)
        for (int y = 0; y < oh; y++)
            for (int x = 0; x < ow; x++) {
                float best = -INFINITY;
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        int iy = 2 * y - 1 + ky;
                        int ix = 2 * x - 1 + kx;
                        if (iy >= 0 && iy < in->h && ix >= 0 && ix < in->w)
                            best = fmaxf(best, in->data[(plane * in->h + iy) * in->w + ix]);
                    }
                out.data[(plane * oh + y) * ow + x] = best;
            }
    return out;
}

/* Everything the reference reads: copies of the network's tensors, whose
 * running statistics the training reference updates. */
typedef struct {
    ap_net *net;
    ap_net_tensor *copies;
    size_t count;
    bool training;
} ref_state;

static ref_state ref_snapshot(ap_net *net, bool training)
{
    ref_state state = {net, NULL, ap_net_tensor_count(net), training};
    state.copies = calloc(state.count, sizeof(*state.copies));
    for (size_t i = 0; i < state.count; i++) {
        ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        state.copies[i] = *tensor;
        state.copies[i].data = malloc(tensor->size * sizeof(float));
        memcpy(state.copies[i].data, tensor->data, tensor->size * sizeof(float));
        state.copies[i].grad = NULL;
    }
    return state;
}

static void ref_free(ref_state *state)
{
    for (size_t i = 0; i < state->count; i++)
        free(state->copies[i].data);
    free(state->copies);
}

static ap_net_tensor *ref_tensor(ref_state *state, const char *layer, const char *suffix)
{
    char name[AP_PARAM_NAME_MAX];
    snprintf(name, sizeof(name), "%s.%s", layer, suffix);
    for (size_t i = 0; i < state->count; i++)
        if (strcmp(state->copies[i].name, name) == 0)
            return &state->copies[i];
    return NULL;
}

/* conv -> batch norm (-> ReLU) on the tensors named layer_conv and layer_bn. */
static ref_map ref_conv_bn(ref_state *state, const ref_map *in, const char *conv_name,
                           const char *bn_name, int stride, bool relu)
{
    ap_net_tensor *weight = ref_tensor(state, conv_name, "weight");
    ap_net_tensor *bn = ref_tensor(state, bn_name, "weight");
    if (weight == NULL || bn == NULL) {
        fprintf(stderr, "reference: tensors of %s or %s are missing\n", conv_name, bn_name);
        exit(1);
    }
    ref_map out = ref_conv(in, weight, stride);
    ref_bn(&out, bn, state->training, relu, bn[2].data, bn[3].data);
    return out;
}

static ref_map ref_block(ref_state *state, ref_map *in, const char *prefix, int out_c, int stride)
{
    char conv1[80], bn1[80], conv2[80], bn2[80], shortcut_conv[80], shortcut_bn[80];
    snprintf(conv1, sizeof(conv1), "%s.conv1", prefix);
    snprintf(bn1, sizeof(bn1), "%s.bn1", prefix);
    snprintf(conv2, sizeof(conv2), "%s.conv2", prefix);
    snprintf(bn2, sizeof(bn2), "%s.bn2", prefix);
    snprintf(shortcut_conv, sizeof(shortcut_conv), "%s.shortcut.conv", prefix);
    snprintf(shortcut_bn, sizeof(shortcut_bn), "%s.shortcut.bn", prefix);

    ref_map branch1 = ref_conv_bn(state, in, conv1, bn1, stride, true);
    ref_map branch2 = ref_conv_bn(state, &branch1, conv2, bn2, 1, false);
    bool projection = stride != 1 || in->c != out_c;
    CHECK_INT_EQ(ref_tensor(state, shortcut_conv, "weight") != NULL, projection);
    ref_map shortcut = *in;
    if (projection)
        shortcut = ref_conv_bn(state, in, shortcut_conv, shortcut_bn, stride, false);
    size_t count = (size_t)branch2.n * branch2.c * branch2.h * branch2.w;
    for (size_t i = 0; i < count; i++)
        branch2.data[i] = fmaxf(branch2.data[i] + shortcut.data[i], 0.0f);
    free(branch1.data);
    if (projection)
        free(shortcut.data);
    return branch2;
}

static void ref_forward(ref_state *state, const ap_net_spec *spec, int batch, const float *input,
                        float *logits)
{
    ref_map x = ref_alloc(batch, spec->in_channels, spec->height, spec->width);
    memcpy(x.data, input, input_count(spec, batch) * sizeof(float));
    ref_map stem = ref_conv_bn(state, &x, "stem.conv", "stem.bn", spec->stem_stride, true);
    ref_map current = ref_max_pool(&stem);
    free(x.data);
    free(stem.data);

    for (int s = 0; s < spec->stage_count; s++)
        for (int b = 0; b < spec->stage_blocks[s]; b++) {
            char prefix[64];
            snprintf(prefix, sizeof(prefix), "stages.%d.blocks.%d", s, b);
            int stride = s > 0 && b == 0 ? 2 : 1;
            ref_map next = ref_block(state, &current, prefix, spec->stage_channels[s], stride);
            free(current.data);
            current = next;
        }

    ap_net_tensor *weight = ref_tensor(state, "head", "weight");
    ap_net_tensor *bias = ref_tensor(state, "head", "bias");
    int hw = current.h * current.w;
    for (int n = 0; n < batch; n++)
        for (int l = 0; l < spec->label_count; l++) {
            double sum = bias->data[l];
            for (int c = 0; c < current.c; c++) {
                double mean = 0.0;
                for (int i = 0; i < hw; i++)
                    mean += current.data[(n * current.c + c) * hw + i];
                sum += mean / hw * weight->data[l * current.c + c];
            }
            logits[n * spec->label_count + l] = (float)sum;
        }
    free(current.data);
}

static double scale_free_error(const float *actual, const float *expected, size_t count)
{
    double max_error = 0.0;
    double max_value = 1e-6;
    for (size_t i = 0; i < count; i++) {
        max_error = fmax(max_error, fabs((double)actual[i] - expected[i]));
        max_value = fmax(max_value, fabs(expected[i]));
    }
    return max_error / max_value;
}

/* ---- tests ---- */

static void test_tensor_layout(void)
{
    ap_net_spec spec = tiny_spec();
    ap_net *net = NULL;
    REQUIRE_OK(ap_net_create(&spec, 2, 1, &net, err));

    /* stem 5, block with projection 15 (4 -> 8 channels), block with stride 2 15, head 2 */
    CHECK_INT_EQ(ap_net_tensor_count(net), 37);
    CHECK_INT_EQ(ap_net_batch(net), 2);
    static const char *expected_names[] = {
        "stem.conv.weight",
        "stem.bn.weight",
        "stem.bn.bias",
        "stem.bn.running_mean",
        "stem.bn.running_var",
        "stages.0.blocks.0.conv1.weight",
        "stages.0.blocks.0.bn1.weight",
        "stages.0.blocks.0.bn1.bias",
        "stages.0.blocks.0.bn1.running_mean",
        "stages.0.blocks.0.bn1.running_var",
        "stages.0.blocks.0.conv2.weight",
        "stages.0.blocks.0.bn2.weight",
        "stages.0.blocks.0.bn2.bias",
        "stages.0.blocks.0.bn2.running_mean",
        "stages.0.blocks.0.bn2.running_var",
        "stages.0.blocks.0.shortcut.conv.weight",
        "stages.0.blocks.0.shortcut.bn.weight",
        "stages.0.blocks.0.shortcut.bn.bias",
        "stages.0.blocks.0.shortcut.bn.running_mean",
        "stages.0.blocks.0.shortcut.bn.running_var",
    };
    for (size_t i = 0; i < sizeof(expected_names) / sizeof(expected_names[0]); i++)
        CHECK_STR_EQ(ap_net_tensor_at(net, i)->name, expected_names[i]);
    CHECK_STR_EQ(ap_net_tensor_at(net, 20)->name, "stages.1.blocks.0.conv1.weight");
    CHECK_STR_EQ(ap_net_tensor_at(net, 35)->name, "head.weight");
    CHECK_STR_EQ(ap_net_tensor_at(net, 36)->name, "head.bias");
    CHECK(ap_net_tensor_at(net, 37) == NULL);

    ap_net_tensor *stem = find_tensor(net, "stem.conv.weight");
    CHECK_INT_EQ(stem->ndim, 4);
    CHECK_INT_EQ(stem->shape[0], 4);
    CHECK_INT_EQ(stem->shape[1], 3);
    CHECK_INT_EQ(stem->shape[2], 3);
    CHECK_INT_EQ(stem->shape[3], 3);
    CHECK_INT_EQ(stem->role, AP_TENSOR_WEIGHT);
    ap_net_tensor *shortcut = find_tensor(net, "stages.1.blocks.0.shortcut.conv.weight");
    CHECK(shortcut != NULL);
    CHECK_INT_EQ(shortcut->shape[0], 12);
    CHECK_INT_EQ(shortcut->shape[1], 8);
    CHECK_INT_EQ(shortcut->shape[2], 1);
    ap_net_tensor *bn_weight = find_tensor(net, "stages.1.blocks.0.bn2.weight");
    CHECK_INT_EQ(bn_weight->role, AP_TENSOR_NO_DECAY);
    ap_net_tensor *running_var = find_tensor(net, "stages.1.blocks.0.bn2.running_var");
    CHECK_INT_EQ(running_var->role, AP_TENSOR_STATE);
    CHECK(running_var->grad == NULL);
    ap_net_tensor *head = find_tensor(net, "head.weight");
    CHECK_INT_EQ(head->ndim, 2);
    CHECK_INT_EQ(head->shape[0], 3);
    CHECK_INT_EQ(head->shape[1], 12);
    CHECK_INT_EQ(head->role, AP_TENSOR_WEIGHT);
    CHECK_INT_EQ(find_tensor(net, "head.bias")->role, AP_TENSOR_NO_DECAY);

    size_t expected_total = 4 * 3 * 9 + 2 * 4                   /* stem */
                            + 8 * 4 * 9 + 8 * 8 * 9 + 4 * 8     /* stage 0 convs and BNs */
                            + 8 * 4 + 2 * 8                     /* stage 0 shortcut */
                            + 12 * 8 * 9 + 12 * 12 * 9 + 4 * 12 /* stage 1 convs and BNs */
                            + 12 * 8 + 2 * 12                   /* stage 1 shortcut */
                            + 3 * 12 + 3;                       /* head */
    CHECK_INT_EQ(ap_net_param_total(net), expected_total);

    /* Maps: input 12x10, stem 6x5, pool 3x3, stage 0 3x3, stage 1 2x2. */
    double macs = 4 * 3 * 9 * 30.0 + (8 * 4 * 9 + 8 * 8 * 9 + 8 * 4) * 9.0 +
                  (12 * 8 * 9 + 12 * 12 * 9 + 12 * 8) * 4.0 + 3 * 12;
    CHECK_NEAR(ap_net_flops_per_image(net, false), 2.0 * macs, 1e-6);
    CHECK_NEAR(ap_net_flops_per_image(net, true), 6.0 * macs, 1e-6);
    ap_net_destroy(net);
}

static void test_initialisation(void)
{
    ap_net_spec spec = tiny_spec();
    spec.stage_channels[1] = 64;
    ap_net *net = NULL;
    REQUIRE_OK(ap_net_create(&spec, 2, 99, &net, err));

    /* He normal with fan_out = 64 * 3 * 3 over 64 * 64 * 9 = 36864 values:
     * the sample deviation is within 2% of sqrt(2 / 576) with high probability. */
    ap_net_tensor *conv = find_tensor(net, "stages.1.blocks.0.conv2.weight");
    double sum = 0.0;
    double sum_sq = 0.0;
    for (size_t i = 0; i < conv->size; i++) {
        sum += conv->data[i];
        sum_sq += (double)conv->data[i] * conv->data[i];
    }
    double mean = sum / conv->size;
    double std = sqrt(sum_sq / conv->size - mean * mean);
    CHECK_NEAR(mean, 0.0, 0.003);
    CHECK_NEAR(std, sqrt(2.0 / 576.0), 0.02 * sqrt(2.0 / 576.0));

    ap_net_tensor *head = find_tensor(net, "head.weight");
    float bound = 1.0f / sqrtf(64.0f);
    float largest = 0.0f;
    for (size_t i = 0; i < head->size; i++)
        largest = fmaxf(largest, fabsf(head->data[i]));
    CHECK(largest <= bound);
    CHECK(largest > 0.5f * bound);

    ap_net_tensor *bn = find_tensor(net, "stages.0.blocks.0.bn1.weight");
    for (int c = 0; c < 8; c++) {
        CHECK_NEAR(bn[0].data[c], 1.0, 0.0);
        CHECK_NEAR(bn[1].data[c], 0.0, 0.0);
        CHECK_NEAR(bn[2].data[c], 0.0, 0.0);
        CHECK_NEAR(bn[3].data[c], 1.0, 0.0);
    }
    ap_net_destroy(net);
}

/* Random batch-norm parameters and running statistics, so inference checks them. */
static void randomise_bn(ap_net *net)
{
    for (size_t i = 0; i < ap_net_tensor_count(net); i++) {
        ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        if (strstr(tensor->name, "running_mean") != NULL)
            fill_random(tensor->data, tensor->size, -0.3f, 0.3f);
        else if (strstr(tensor->name, "running_var") != NULL)
            fill_random(tensor->data, tensor->size, 0.5f, 1.5f);
        else if (tensor->ndim == 1 && strstr(tensor->name, "bn") != NULL)
            fill_random(tensor->data, tensor->size, strstr(tensor->name, "weight") ? 0.5f : -0.3f,
                        strstr(tensor->name, "weight") ? 1.5f : 0.3f);
    }
}

static void check_forward(const ap_net_spec *spec, int batch, bool training)
{
    fprintf(stderr, "forward against reference: stem %d, %dx%d, batch %d, training %d\n",
            spec->stem_channels, spec->height, spec->width, batch, training);
    ap_net *net = NULL;
    REQUIRE_OK(ap_net_create(spec, batch, 5, &net, err));
    randomise_bn(net);
    size_t count = input_count(spec, batch);
    float *input = malloc(count * sizeof(float));
    fill_random(input, count, -1.0f, 1.0f);
    size_t logit_count = (size_t)batch * spec->label_count;
    float *logits = calloc(logit_count, sizeof(float));
    float *expected = calloc(logit_count, sizeof(float));

    ref_state state = ref_snapshot(net, training);
    REQUIRE_OK(ap_net_forward(net, input, training, 0, 0, logits, err));
    ref_forward(&state, spec, batch, input, expected);
    /* float32 layers against double sums: differences near 1e-6 of the logits. */
    double error = scale_free_error(logits, expected, logit_count);
    CHECK_NEAR(error, 0.0, 1e-4);

    /* Training moved every running statistic as the reference did. */
    for (size_t i = 0; training && i < state.count; i++) {
        ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        if (tensor->role != AP_TENSOR_STATE)
            continue;
        double stat_error = scale_free_error(tensor->data, state.copies[i].data, tensor->size);
        if (stat_error > 1e-4)
            fprintf(stderr, "running statistic %s differs\n", tensor->name);
        CHECK_NEAR(stat_error, 0.0, 1e-4);
    }
    ref_free(&state);
    free(input);
    free(logits);
    free(expected);
    ap_net_destroy(net);
}

static void test_forward_matches_reference(void)
{
    ap_net_spec spec = tiny_spec();
    check_forward(&spec, 3, false);
    check_forward(&spec, 3, true);

    /* Channel counts that fill whole blocks, identity shortcuts and a 7x7 stem. */
    ap_net_spec wide = tiny_spec();
    wide.height = 16;
    wide.width = 16;
    wide.stem_channels = 16;
    wide.stem_kernel = 7;
    wide.stage_channels[0] = 16;
    wide.stage_channels[1] = 32;
    wide.stage_blocks[0] = 2;
    check_forward(&wide, 2, false);
    check_forward(&wide, 2, true);
}

/* ---- gradients ---- */

typedef struct {
    ap_net *net;
    const ap_net_spec *spec;
    float *input;
    float *logits;
    float *loss_weights;
} grad_case;

static double net_loss(void *state)
{
    grad_case *test = state;
    REQUIRE_OK(ap_net_forward(test->net, test->input, true, 0, 0, test->logits, err));
    double loss = 0.0;
    size_t count = (size_t)ap_net_batch(test->net) * test->spec->label_count;
    for (size_t i = 0; i < count; i++)
        loss += (double)test->logits[i] * test->loss_weights[i];
    return loss;
}

static double central_difference(grad_case *test, float *value, double step)
{
    float saved = *value;
    *value = (float)(saved + step);
    float up = *value;
    double loss_up = net_loss(test);
    *value = (float)(saved - step);
    float down = *value;
    double loss_down = net_loss(test);
    *value = saved;
    return (loss_up - loss_down) / ((double)up - (double)down);
}

/* Returns the number of samples skipped at kinks. */
static size_t check_gradient(grad_case *test, const char *what, float *values,
                             const float *analytic, size_t count)
{
    size_t samples = count < FD_SAMPLES ? count : FD_SAMPLES;
    size_t indices[FD_SAMPLES];
    double numeric[FD_SAMPLES];
    double half[FD_SAMPLES];
    double scale = 1e-6;
    for (size_t i = 0; i < count; i++)
        scale = fmax(scale, fabs(analytic[i]));
    for (size_t s = 0; s < samples; s++) {
        indices[s] = (s * count) / samples + (s * 5) % (count / samples);
        numeric[s] = central_difference(test, &values[indices[s]], FD_STEP);
        half[s] = central_difference(test, &values[indices[s]], FD_STEP / 2);
        scale = fmax(scale, fabs(numeric[s]));
    }
    size_t skipped = 0;
    for (size_t s = 0; s < samples; s++) {
        size_t index = indices[s];
        if (fabs(numeric[s] - half[s]) > FD_KINK * scale) {
            skipped++;
            continue;
        }
        double error = fabs(numeric[s] - analytic[index]) / scale;
        if (!(error <= FD_TOLERANCE))
            fprintf(stderr, "%s[%zu]: analytic %.7g, numeric %.7g, error %.3g of scale %.3g\n",
                    what, index, (double)analytic[index], numeric[s], error, scale);
        CHECK(error <= FD_TOLERANCE);
    }
    return skipped;
}

static void check_net_gradients(const ap_net_spec *spec, int batch)
{
    fprintf(stderr, "gradients: stem %d k%d s%d, %dx%d, batch %d\n", spec->stem_channels,
            spec->stem_kernel, spec->stem_stride, spec->height, spec->width, batch);
    grad_case test = {NULL, spec, NULL, NULL, NULL};
    REQUIRE_OK(ap_net_create(spec, batch, 11, &test.net, err));
    randomise_bn(test.net);
    size_t count = input_count(spec, batch);
    size_t logit_count = (size_t)batch * spec->label_count;
    test.input = malloc(count * sizeof(float));
    test.logits = calloc(logit_count, sizeof(float));
    test.loss_weights = malloc(logit_count * sizeof(float));
    fill_random(test.input, count, -1.0f, 1.0f);
    fill_random(test.loss_weights, logit_count, -1.0f, 1.0f);

    net_loss(&test);
    REQUIRE_OK(ap_net_backward(test.net, test.loss_weights, err));
    float *d_input = malloc(count * sizeof(float));
    REQUIRE_OK(ap_net_input_grad(test.net, d_input, err));

    /* Copy the gradients first: every difference reruns forward, not backward. */
    size_t samples = 0;
    size_t skipped = 0;
    size_t tensor_total = ap_net_tensor_count(test.net);
    for (size_t i = 0; i < tensor_total; i++) {
        ap_net_tensor *tensor = ap_net_tensor_at(test.net, i);
        if (tensor->role == AP_TENSOR_STATE)
            continue;
        float *analytic = malloc(tensor->size * sizeof(float));
        memcpy(analytic, tensor->grad, tensor->size * sizeof(float));
        skipped += check_gradient(&test, tensor->name, tensor->data, analytic, tensor->size);
        samples += tensor->size < FD_SAMPLES ? tensor->size : FD_SAMPLES;
        free(analytic);
    }
    skipped += check_gradient(&test, "input", test.input, d_input, count);
    samples += FD_SAMPLES;
    fprintf(stderr, "  %zu samples, %zu skipped at kinks\n", samples, skipped);
    CHECK(skipped * 4 <= samples);

    free(d_input);
    free(test.input);
    free(test.logits);
    free(test.loss_weights);
    ap_net_destroy(test.net);
}

static void test_gradients_match_differences(void)
{
    /* Projection shortcuts with stride 1 (4 -> 8 channels) and stride 2,
     * stem stride 2, channel counts that pad the memory blocks. */
    ap_net_spec spec = tiny_spec();
    check_net_gradients(&spec, 3);

    /* Identity shortcuts in blocked formats, a 5x5 stem with stride 1. */
    ap_net_spec identity = tiny_spec();
    identity.height = 8;
    identity.width = 8;
    identity.stem_channels = 16;
    identity.stem_kernel = 5;
    identity.stem_stride = 1;
    identity.stage_count = 2;
    identity.stage_channels[0] = 16;
    identity.stage_channels[1] = 16;
    identity.stage_blocks[0] = 2;
    identity.stage_blocks[1] = 1;
    check_net_gradients(&identity, 2);

    /* 8-channel stages as in configs/ci.yaml, and a 5x5 stride-2 stem whose
     * backward data has no jit kernel for the forward's output format, so
     * the output gradient is reordered into another one first. */
    ap_net_spec eight = tiny_spec();
    eight.height = 24;
    eight.width = 24;
    eight.stem_channels = 8;
    eight.stem_kernel = 5;
    eight.stem_stride = 2;
    eight.stage_channels[0] = 8;
    eight.stage_channels[1] = 16;
    check_net_gradients(&eight, 2);
}

/* ---- determinism ---- */

static void train_steps(ap_net *net, const ap_net_spec *spec, const float *input, float *logits,
                        int steps)
{
    int batch = ap_net_batch(net);
    size_t logit_count = (size_t)batch * spec->label_count;
    float *d_logits = malloc(logit_count * sizeof(float));
    for (int step = 0; step < steps; step++) {
        REQUIRE_OK(ap_net_forward(net, input, true, 17, (uint64_t)step, logits, err));
        for (size_t i = 0; i < logit_count; i++)
            d_logits[i] = 0.1f * logits[i] - 0.05f * (float)(i % 3);
        REQUIRE_OK(ap_net_backward(net, d_logits, err));
        for (size_t t = 0; t < ap_net_tensor_count(net); t++) {
            ap_net_tensor *tensor = ap_net_tensor_at(net, t);
            for (size_t i = 0; tensor->grad != NULL && i < tensor->size; i++)
                tensor->data[i] -= 0.05f * tensor->grad[i];
        }
    }
    free(d_logits);
}

static void test_determinism(void)
{
    ap_net_spec spec = tiny_spec();
    spec.dropout = 0.25f;
    int batch = 4;
    ap_net *first = NULL;
    ap_net *second = NULL;
    ap_net *other_seed = NULL;
    REQUIRE_OK(ap_net_create(&spec, batch, 2024, &first, err));
    REQUIRE_OK(ap_net_create(&spec, batch, 2024, &second, err));
    REQUIRE_OK(ap_net_create(&spec, batch, 2025, &other_seed, err));

    int different_tensors = 0;
    int same_with_other_seed = 0;
    for (size_t t = 0; t < ap_net_tensor_count(first); t++) {
        ap_net_tensor *a = ap_net_tensor_at(first, t);
        ap_net_tensor *b = ap_net_tensor_at(second, t);
        ap_net_tensor *c = ap_net_tensor_at(other_seed, t);
        if (memcmp(a->data, b->data, a->size * sizeof(float)) != 0)
            different_tensors++;
        if (a->role == AP_TENSOR_WEIGHT && memcmp(a->data, c->data, a->size * sizeof(float)) == 0)
            same_with_other_seed++;
    }
    CHECK_INT_EQ(different_tensors, 0);
    CHECK_INT_EQ(same_with_other_seed, 0);

    size_t count = input_count(&spec, batch);
    float *input = malloc(count * sizeof(float));
    fill_random(input, count, -1.0f, 1.0f);
    float logits_a[12], logits_b[12];
    train_steps(first, &spec, input, logits_a, 3);
    train_steps(second, &spec, input, logits_b, 3);
    CHECK(memcmp(logits_a, logits_b, sizeof(logits_a)) == 0);
    for (size_t t = 0; t < ap_net_tensor_count(first); t++) {
        ap_net_tensor *a = ap_net_tensor_at(first, t);
        ap_net_tensor *b = ap_net_tensor_at(second, t);
        if (memcmp(a->data, b->data, a->size * sizeof(float)) != 0 ||
            (a->grad != NULL && memcmp(a->grad, b->grad, a->size * sizeof(float)) != 0)) {
            fprintf(stderr, "%s differs between identical runs\n", a->name);
            different_tensors++;
        }
    }
    CHECK_INT_EQ(different_tensors, 0);

    free(input);
    ap_net_destroy(first);
    ap_net_destroy(second);
    ap_net_destroy(other_seed);
}

/* ---- rejected specs and calls ---- */

typedef struct {
    const char *field;
    ap_net_spec spec;
    int batch;
} bad_case;

static void test_bad_specs(void)
{
    bad_case cases[16];
    int count = 0;
    for (int i = 0; i < 16; i++) {
        cases[i].spec = tiny_spec();
        cases[i].batch = 2;
    }
    cases[count].field = "batch";
    cases[count++].batch = 0;
    cases[count].field = "in_channels";
    cases[count++].spec.in_channels = 0;
    cases[count].field = "stem_channels";
    cases[count++].spec.stem_channels = 0;
    cases[count].field = "stem_kernel";
    cases[count++].spec.stem_kernel = 0;
    cases[count].field = "stem_stride";
    cases[count++].spec.stem_stride = 0;
    cases[count].field = "stage_count";
    cases[count++].spec.stage_count = 0;
    cases[count].field = "stage_count";
    cases[count++].spec.stage_count = AP_NET_MAX_STAGES + 1;
    cases[count].field = "stage_channels[1]";
    cases[count++].spec.stage_channels[1] = 0;
    cases[count].field = "stage_blocks[0]";
    cases[count++].spec.stage_blocks[0] = -1;
    cases[count].field = "label_count";
    cases[count++].spec.label_count = 0;
    cases[count].field = "dropout";
    cases[count++].spec.dropout = 1.0f;
    cases[count].field = "dropout";
    cases[count++].spec.dropout = NAN;
    cases[count].field = "height";
    cases[count++].spec.height = -4;
    /* stem stride 2, max pool 2, one more stage 2: a total stride of 8 */
    cases[count].field = "smaller than the total stride 8";
    cases[count++].spec.width = 7;

    for (int i = 0; i < count; i++) {
        ap_error err = {0};
        ap_net *net = (ap_net *)&err;
        ap_status status = ap_net_create(&cases[i].spec, cases[i].batch, 1, &net, &err);
        CHECK_INT_EQ(status, AP_ERR_INVALID);
        CHECK(net == NULL);
        CHECK_STR_CONTAINS(err.message, cases[i].field);
    }
    ap_error err = {0};
    ap_net *net = NULL;
    CHECK_INT_EQ(ap_net_create(NULL, 2, 1, &net, &err), AP_ERR_INVALID);
}

static void test_call_order(void)
{
    ap_net_spec spec = tiny_spec();
    ap_net *net = NULL;
    REQUIRE_OK(ap_net_create(&spec, 2, 1, &net, err));
    size_t count = input_count(&spec, 2);
    float *input = calloc(count, sizeof(float));
    float *d_input = calloc(count, sizeof(float));
    float logits[6] = {0};
    float d_logits[6] = {1, 0, 0, 0, 1, 0};
    ap_error err = {0};

    CHECK_INT_EQ(ap_net_backward(net, d_logits, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "training = true");
    CHECK_INT_EQ(ap_net_forward(net, input, false, 0, 0, logits, &err), AP_OK);
    CHECK_INT_EQ(ap_net_backward(net, d_logits, &err), AP_ERR_INVALID);
    CHECK_INT_EQ(ap_net_forward(net, input, true, 0, 0, logits, &err), AP_OK);
    CHECK_INT_EQ(ap_net_input_grad(net, d_input, &err), AP_ERR_INVALID);
    CHECK_INT_EQ(ap_net_backward(net, d_logits, &err), AP_OK);
    CHECK_INT_EQ(ap_net_input_grad(net, d_input, &err), AP_OK);
    CHECK_INT_EQ(ap_net_forward(net, NULL, true, 0, 0, logits, &err), AP_ERR_INVALID);
    ap_net_destroy(net);

    /* One image whose last maps are 1x1: one value per channel, nothing to
     * normalise in training, but inference works. */
    spec.height = 8;
    spec.width = 8;
    CHECK_INT_EQ(ap_net_create(&spec, 1, 1, &net, &err), AP_OK);
    CHECK_INT_EQ(ap_net_forward(net, input, true, 0, 0, logits, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "one value per channel");
    CHECK_INT_EQ(ap_net_forward(net, input, false, 0, 0, logits, &err), AP_OK);
    ap_net_destroy(net);
    free(input);
    free(d_input);
}

/* ---- oneDNN implementations ---- */

typedef struct {
    const char *name;
    ap_net_spec spec;
    int batch;
} kernel_case;

static kernel_case make_kernel_case(const char *name, int size, int stem_channels, int stem_kernel,
                                    int stem_stride, int batch)
{
    kernel_case test;
    memset(&test, 0, sizeof(test));
    test.name = name;
    test.batch = batch;
    test.spec = tiny_spec();
    test.spec.height = size;
    test.spec.width = size;
    test.spec.stem_channels = stem_channels;
    test.spec.stem_kernel = stem_kernel;
    test.spec.stem_stride = stem_stride;
    test.spec.label_count = 4;
    return test;
}

static void set_stages(kernel_case *test, int count, const int *channels, const int *blocks)
{
    test->spec.stage_count = count;
    for (int i = 0; i < count; i++) {
        test->spec.stage_channels[i] = channels[i];
        test->spec.stage_blocks[i] = blocks[i];
    }
}

/* Print every primitive of net that runs oneDNN's reference implementation
 * and return how many do. */
static size_t report_reference_primitives(const char *name, ap_net *net)
{
    size_t found = 0;
    for (size_t i = 0; i < ap_net_primitive_count(net); i++) {
        ap_net_primitive primitive;
        REQUIRE_OK(ap_net_primitive_at(net, i, &primitive, err));
        if (!primitive.reference)
            continue;
        fprintf(stderr, "%s: %s %s (%s) runs %s: %s\n", name, primitive.layer, primitive.pass,
                primitive.kind, primitive.implementation, primitive.memories);
        found++;
    }
    return found;
}

static void check_no_reference_kernels(const kernel_case *test)
{
    fprintf(stderr, "oneDNN kernels: %s\n", test->name);
    ap_net *net = NULL;
    REQUIRE_OK(ap_net_create(&test->spec, test->batch, 1, &net, err));
    size_t found = report_reference_primitives(test->name, net);
    CHECK_INT_EQ(found, 0);
    CHECK_INT_EQ(ap_net_reference_count(net), found);
    ap_net_destroy(net);
}

/* Every convolution, batch norm, pooling and reorder of these networks has a
 * jit kernel in some memory format on AVX2 and AVX-512 machines, so none may
 * fall back to the reference kernels, which run far slower.
 * Run this test with ONEDNN_MAX_CPU_ISA=AVX2 as well to cover AVX2 machines. */
static void test_no_reference_kernels(void)
{
    kernel_case cases[12];
    int count = 0;
    const int ones[4] = {1, 1, 1, 1};
    const int twos[4] = {2, 2, 2, 2};

    /* configs/ci.yaml and configs/local.yaml */
    cases[count] = make_kernel_case("ci config", 48, 8, 3, 1, 16);
    set_stages(&cases[count++], 2, (int[]){8, 16}, ones);
    cases[count] = make_kernel_case("local config", 96, 16, 3, 1, 32);
    set_stages(&cases[count++], 3, (int[]){16, 32, 64}, ones);

    /* Stems of 3, 8, 16 and 32 channels with strides 1 and 2, stage
     * channels that fill, pad or span memory blocks, more or fewer channels
     * than the stage before, identity and projection shortcuts. */
    cases[count] = make_kernel_case("stem 3, stages 8 16", 32, 3, 3, 1, 8);
    set_stages(&cases[count++], 2, (int[]){8, 16}, ones);
    cases[count] = make_kernel_case("stem 8 stride 2, stages 4 12 24", 64, 8, 5, 2, 4);
    set_stages(&cases[count++], 3, (int[]){4, 12, 24}, ones);
    cases[count] = make_kernel_case("stem 16 stride 2, stages 8 8", 40, 16, 7, 2, 16);
    set_stages(&cases[count++], 2, (int[]){8, 8}, twos);
    cases[count] = make_kernel_case("stem 32, stages 32 64 128", 48, 32, 3, 1, 8);
    set_stages(&cases[count++], 3, (int[]){32, 64, 128}, (int[]){2, 1, 1});
    cases[count] = make_kernel_case("stem 3 stride 2, stages 3 5", 24, 3, 3, 2, 3);
    set_stages(&cases[count++], 2, (int[]){3, 5}, twos);
    cases[count] = make_kernel_case("stem 24, stages 40 20 10 6", 50, 24, 3, 1, 2);
    set_stages(&cases[count++], 4, (int[]){40, 20, 10, 6}, ones);

    for (int i = 0; i < count; i++)
        check_no_reference_kernels(&cases[i]);
}

/* The primitive report names layers, passes, kernels and memories. */
static void test_primitive_report(void)
{
    ap_net_spec spec = tiny_spec();
    ap_net *net = NULL;
    REQUIRE_OK(ap_net_create(&spec, 2, 1, &net, err));
    size_t count = ap_net_primitive_count(net);
    CHECK(count > 20);

    ap_net_primitive first;
    REQUIRE_OK(ap_net_primitive_at(net, 0, &first, err));
    CHECK_STR_EQ(first.layer, "stem.conv");
    CHECK_STR_EQ(first.pass, "forward");
    CHECK_STR_EQ(first.kind, "convolution");
    CHECK_STR_CONTAINS(first.memories, "src 2x3x12x10 ");
    CHECK_STR_CONTAINS(first.memories, ", weights 4x3x3x3 ");
    CHECK_STR_CONTAINS(first.memories, ", dst 2x4x6x5 ");
    CHECK(first.implementation[0] != '\0');

    int kinds_seen[4] = {0};
    const char *kinds[4] = {"convolution", "batch_normalization", "pooling_v2", "reorder"};
    for (size_t i = 0; i < count; i++) {
        ap_net_primitive primitive;
        REQUIRE_OK(ap_net_primitive_at(net, i, &primitive, err));
        for (int k = 0; k < 4; k++)
            kinds_seen[k] += strcmp(primitive.kind, kinds[k]) == 0;
    }
    for (int k = 0; k < 4; k++) {
        if (kinds_seen[k] == 0)
            fprintf(stderr, "no %s primitive in the report\n", kinds[k]);
        CHECK(kinds_seen[k] > 0);
    }

    ap_error err = {0};
    ap_net_primitive past_end;
    CHECK_INT_EQ(ap_net_primitive_at(net, count, &past_end, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "past the last");
    ap_net_destroy(net);
}

int main(void)
{
    test_tensor_layout();
    test_initialisation();
    test_forward_matches_reference();
    test_gradients_match_differences();
    test_determinism();
    test_bad_specs();
    test_call_order();
    test_no_reference_kernels();
    test_primitive_report();
    return check_finish();
}
