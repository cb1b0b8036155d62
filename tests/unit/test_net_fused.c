/* Inference with batch norm folded into the convolutions (pipeline/nn/fused.c)
 * against the layer-by-layer inference that training's layers run. */

#include <string.h>

#include "check.h"
#include "pipeline/nn/net_internal.h"

/* Folding changes the rounding: W * a summed over a window differs from the
 * sum scaled by a in the last bits, about 1e-6 relative per value, and the
 * difference grows over the layers. The fused convolutions may also use
 * Winograd's algorithm, whose transforms round differently again. 1e-4 of the
 * logits' scale is far above that and far below what a wrong fold (a missed
 * scale, shift or ReLU) gives. */
#define FUSED_TOLERANCE 1e-4

static ap_net_spec make_spec(int side, int stem, int stem_stride, int c0, int c1, int c2)
{
    ap_net_spec spec;
    memset(&spec, 0, sizeof(spec));
    spec.in_channels = 3;
    spec.height = side;
    spec.width = side;
    spec.stem_channels = stem;
    spec.stem_kernel = 3;
    spec.stem_stride = stem_stride;
    spec.stage_count = c2 > 0 ? 3 : 2;
    spec.stage_channels[0] = c0;
    spec.stage_channels[1] = c1;
    spec.stage_channels[2] = c2;
    spec.stage_blocks[0] = spec.stage_blocks[1] = spec.stage_blocks[2] = 1;
    spec.dropout = 0.2f;
    spec.label_count = 4;
    return spec;
}

/* Batch-norm statistics and parameters away from their initial 0 and 1, so
 * that a fold that skips one of them shows. */
static void perturb_batch_norms(ap_net *net)
{
    for (size_t i = 0; i < ap_net_tensor_count(net); i++) {
        ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        if (tensor->ndim != 1 || strstr(tensor->name, "head") != NULL)
            continue;
        for (size_t j = 0; j < tensor->size; j++) {
            float wave = (float)((j * 37 + i * 11) % 17) / 17.0f;
            if (strstr(tensor->name, "running_var") != NULL)
                tensor->data[j] = 0.5f + wave;
            else if (strstr(tensor->name, "running_mean") != NULL)
                tensor->data[j] = wave - 0.5f;
            else if (strstr(tensor->name, "weight") != NULL)
                tensor->data[j] = 0.75f + 0.5f * wave;
            else
                tensor->data[j] = 0.2f * wave - 0.1f;
        }
    }
}

static size_t count_fused(const ap_net *net)
{
    size_t count = 0;
    for (size_t i = 0; i < ap_net_primitive_count(net); i++) {
        ap_net_primitive primitive;
        if (ap_net_primitive_at(net, i, &primitive, NULL) == AP_OK &&
            strcmp(primitive.pass, "fused inference forward") == 0)
            count++;
    }
    return count;
}

static void check_logits_match(const float *fused, const float *plain, size_t outputs)
{
    double scale = 1e-3;
    for (size_t i = 0; i < outputs; i++)
        scale = fmax(scale, fabs(plain[i]));
    for (size_t i = 0; i < outputs; i++)
        CHECK_NEAR(fused[i], plain[i], FUSED_TOLERANCE * scale);
}

static void check_case(const char *name, ap_net_spec spec, int batch, size_t expected_fused)
{
    ap_error err = {0};
    ap_net *net = NULL;
    CHECK_INT_EQ(ap_net_create(&spec, batch, 7, &net, &err), AP_OK);
    if (net == NULL) {
        fprintf(stderr, "%s: %s\n", name, err.message);
        return;
    }
    perturb_batch_norms(net);
    size_t inputs = (size_t)batch * 3 * (size_t)spec.height * (size_t)spec.width;
    size_t outputs = (size_t)batch * (size_t)spec.label_count;
    float *input = malloc(inputs * sizeof(float));
    float *fused = calloc(outputs, sizeof(float));
    float *plain = calloc(outputs, sizeof(float));
    for (size_t i = 0; i < inputs; i++)
        input[i] = (float)((i * 7919) % 251) / 125.0f - 1.0f;

    CHECK_INT_EQ(count_fused(net), expected_fused);
    CHECK_INT_EQ(ap_net_forward(net, input, false, 0, 0, fused, &err), AP_OK);
    nn_net_set_fused_inference(net, false);
    CHECK_INT_EQ(ap_net_forward(net, input, false, 0, 0, plain, &err), AP_OK);
    check_logits_match(fused, plain, outputs);
    fprintf(stderr, "%s: %zu fused convolutions\n", name, count_fused(net));
    free(input);
    free(fused);
    free(plain);
    ap_net_destroy(net);
}

/* A tensor whose name ends with suffix, after skip earlier matches. */
static ap_net_tensor *find_tensor(ap_net *net, const char *suffix, int skip)
{
    size_t suffix_length = strlen(suffix);
    for (size_t i = 0; i < ap_net_tensor_count(net); i++) {
        ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        size_t length = strlen(tensor->name);
        if (length >= suffix_length && strcmp(tensor->name + length - suffix_length, suffix) == 0 &&
            skip-- == 0)
            return tensor;
    }
    return NULL;
}

/* Scoring reuses the folded weights while the parameters stay the same, so
 * each kind of parameter changed after a fused forward must be folded again. */
static void check_refold_after_change(void)
{
    static const struct {
        const char *suffix;
        int skip;
    } changes[] = {
        {"conv.weight", 0}, {"conv1.weight", 1},    {"bn1.weight", 0},
        {"bn2.bias", 1},    {"bn.running_mean", 0}, {"shortcut.bn.running_var", 1},
    };
    ap_net_spec spec = make_spec(64, 16, 1, 16, 32, 48);
    int batch = 4;
    ap_error err = {0};
    ap_net *net = NULL;
    CHECK_INT_EQ(ap_net_create(&spec, batch, 11, &net, &err), AP_OK);
    if (net == NULL)
        return;
    perturb_batch_norms(net);
    size_t inputs = (size_t)batch * 3 * 64 * 64;
    size_t outputs = (size_t)batch * (size_t)spec.label_count;
    float *input = malloc(inputs * sizeof(float));
    float *before = calloc(outputs, sizeof(float));
    float *fused = calloc(outputs, sizeof(float));
    float *plain = calloc(outputs, sizeof(float));
    for (size_t i = 0; i < inputs; i++)
        input[i] = (float)((i * 104729) % 241) / 120.0f - 1.0f;

    for (size_t c = 0; c < sizeof(changes) / sizeof(changes[0]); c++) {
        ap_net_tensor *tensor = find_tensor(net, changes[c].suffix, changes[c].skip);
        CHECK(tensor != NULL);
        if (tensor == NULL)
            continue;
        nn_net_set_fused_inference(net, true);
        CHECK_INT_EQ(ap_net_forward(net, input, false, 0, 0, before, &err), AP_OK);
        for (size_t j = 0; j < tensor->size; j++)
            tensor->data[j] *= 1.5f;
        CHECK_INT_EQ(ap_net_forward(net, input, false, 0, 0, fused, &err), AP_OK);
        nn_net_set_fused_inference(net, false);
        CHECK_INT_EQ(ap_net_forward(net, input, false, 0, 0, plain, &err), AP_OK);
        check_logits_match(fused, plain, outputs);
        double moved = 0.0;
        for (size_t i = 0; i < outputs; i++)
            moved = fmax(moved, fabs(fused[i] - before[i]));
        fprintf(stderr, "changed %s: logits moved by up to %g\n", tensor->name, moved);
        CHECK(moved > 1e-4);
    }
    free(input);
    free(before);
    free(fused);
    free(plain);
    ap_net_destroy(net);
}

int main(void)
{
    /* Stem plus two convolutions per block plus one per projection shortcut. */
    check_case("local shape", make_spec(96, 16, 1, 16, 32, 64), 4, 1 + 2 + 3 + 3);
    check_case("odd channels, strided stem", make_spec(30, 5, 2, 12, 20, 0), 3, 1 + 3 + 3);
    check_case("one image", make_spec(16, 8, 1, 8, 16, 0), 1, 1 + 2 + 3);
    check_refold_after_change();
    return check_finish();
}
