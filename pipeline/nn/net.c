#include "pipeline/nn/net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/nn/net_internal.h"

/* Bounds that catch typos and overflow, well above any network this runs. */
#define NN_MAX_BATCH    65536
#define NN_MAX_CHANNELS 4096
#define NN_MAX_SIDE     8192
#define NN_MAX_KERNEL   15
#define NN_MAX_STRIDE   8
#define NN_MAX_BLOCKS   64
#define NN_MAX_LABELS   4096

static ap_status check_range(const char *field, long value, long min, long max, ap_error *err)
{
    if (value >= min && value <= max)
        return AP_OK;
    return ap_error_set(err, AP_ERR_INVALID, "network spec: %s is %ld; expected %ld to %ld", field,
                        value, min, max);
}

static ap_status check_stages(const ap_net_spec *spec, ap_error *err)
{
    NN_TRY(check_range("stage_count", spec->stage_count, 1, AP_NET_MAX_STAGES, err));
    for (int i = 0; i < spec->stage_count; i++) {
        char field[48];
        snprintf(field, sizeof(field), "stage_channels[%d]", i);
        NN_TRY(check_range(field, spec->stage_channels[i], 1, NN_MAX_CHANNELS, err));
        snprintf(field, sizeof(field), "stage_blocks[%d]", i);
        NN_TRY(check_range(field, spec->stage_blocks[i], 1, NN_MAX_BLOCKS, err));
    }
    return AP_OK;
}

/* The stem, the max pool and every stage after the first halve the input, so
 * an input smaller than their product would end in maps made of padding. */
static ap_status check_input_size(const ap_net_spec *spec, ap_error *err)
{
    long total_stride = (long)spec->stem_stride * 2L << (spec->stage_count - 1);
    if (spec->height >= total_stride && spec->width >= total_stride)
        return AP_OK;
    return ap_error_set(err, AP_ERR_INVALID,
                        "network spec: input %dx%d is smaller than the total stride %ld of the "
                        "stem (stride %d), max pool and %d stages; use an input of at least "
                        "%ldx%ld, fewer stages or a smaller stem stride",
                        spec->width, spec->height, total_stride, spec->stem_stride,
                        spec->stage_count, total_stride, total_stride);
}

static ap_status validate_spec(const ap_net_spec *spec, int batch, ap_error *err)
{
    if (spec == NULL)
        return ap_error_set(err, AP_ERR_INVALID, "network spec: missing (NULL)");
    NN_TRY(check_range("batch", batch, 1, NN_MAX_BATCH, err));
    NN_TRY(check_range("in_channels", spec->in_channels, 1, NN_MAX_CHANNELS, err));
    NN_TRY(check_range("height", spec->height, 1, NN_MAX_SIDE, err));
    NN_TRY(check_range("width", spec->width, 1, NN_MAX_SIDE, err));
    NN_TRY(check_range("stem_channels", spec->stem_channels, 1, NN_MAX_CHANNELS, err));
    NN_TRY(check_range("stem_kernel", spec->stem_kernel, 1, NN_MAX_KERNEL, err));
    NN_TRY(check_range("stem_stride", spec->stem_stride, 1, NN_MAX_STRIDE, err));
    NN_TRY(check_stages(spec, err));
    NN_TRY(check_range("label_count", spec->label_count, 1, NN_MAX_LABELS, err));
    if (!(spec->dropout >= 0.0f && spec->dropout < 1.0f))
        return ap_error_set(err, AP_ERR_INVALID,
                            "network spec: dropout is %g; expected at least 0 and below 1",
                            (double)spec->dropout);
    return check_input_size(spec, err);
}

static ap_status build_input(ap_net *net, ap_error *err)
{
    const ap_net_spec *spec = &net->spec;
    dnnl_dims_t dims = {net->batch, spec->in_channels, spec->height, spec->width};
    dnnl_memory_desc_t md;
    NN_TRY(nn_md_plain(&md, 4, dims, "input", err));
    NN_TRY(nn_act_create_data(&net->ctx, &md, "input", &net->input, err));
    return nn_memory_create(&net->ctx, &md, DNNL_MEMORY_NONE, "input", &net->input.diff, err);
}

static ap_status build_stem(ap_net *net, ap_error *err)
{
    const ap_net_spec *spec = &net->spec;
    nn_context *ctx = &net->ctx;
    ap_net_tensor *tensor = NULL;
    strcpy(net->stem_conv.name, "stem.conv");
    strcpy(net->stem_bn.name, "stem.bn");
    strcpy(net->stem_pool.name, "stem.pool");

    NN_TRY(nn_add_conv_weight(net, "stem.conv", spec->stem_channels, spec->in_channels,
                              spec->stem_kernel, &tensor, err));
    NN_TRY(nn_conv_create(ctx, &net->stem_conv, &net->input, tensor, spec->stem_stride, true, err));
    NN_TRY(nn_add_bn_tensors(net, "stem.bn", spec->stem_channels, &tensor, err));
    NN_TRY(nn_bn_create(ctx, &net->stem_bn, &net->stem_conv.output, true, tensor, NULL, err));
    NN_TRY(nn_fused_create(ctx, &net->stem_conv, &net->stem_bn, &net->stem_bn.output.md, false,
                           true, err));
    return nn_pool_create(ctx, &net->stem_pool, &net->stem_bn.output, dnnl_pooling_max, 3, 2, 1,
                          err);
}

static ap_status build_stages(ap_net *net, ap_error *err)
{
    const ap_net_spec *spec = &net->spec;
    for (int stage = 0; stage < spec->stage_count; stage++)
        net->block_count += spec->stage_blocks[stage];
    net->blocks = calloc((size_t)net->block_count, sizeof(*net->blocks));
    if (net->blocks == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "network: out of memory for %d blocks",
                            net->block_count);

    nn_act *input = &net->stem_pool.output;
    int in_channels = spec->stem_channels;
    nn_block *block = net->blocks;
    for (int stage = 0; stage < spec->stage_count; stage++) {
        for (int index = 0; index < spec->stage_blocks[stage]; index++, block++) {
            snprintf(block->prefix, sizeof(block->prefix), "stages.%d.blocks.%d", stage, index);
            int stride = stage > 0 && index == 0 ? 2 : 1;
            int out_channels = spec->stage_channels[stage];
            NN_TRY(nn_block_create(net, block, input, in_channels, out_channels, stride, err));
            NN_TRY(nn_block_create_fused(&net->ctx, block, err));
            input = &block->residual.output;
            in_channels = out_channels;
        }
    }
    return AP_OK;
}

static ap_status build_head(ap_net *net, ap_error *err)
{
    const ap_net_spec *spec = &net->spec;
    nn_act *last = &net->blocks[net->block_count - 1].residual.output;
    int features = spec->stage_channels[spec->stage_count - 1];
    ap_net_tensor *weight = NULL;
    strcpy(net->gap.pool.name, "head.pool");
    NN_TRY(nn_gap_create(&net->ctx, &net->gap, last, err));
    NN_TRY(nn_add_dense_tensors(net, "head", spec->label_count, features, &weight, err));
    NN_TRY(nn_head_create(&net->ctx, &net->head, net->batch, features, spec->label_count,
                          spec->dropout, weight, weight + 1, err));

    /* The last stage has the smallest maps, so the fewest values per channel. */
    net->trainable = (int64_t)net->batch * last->md.dims[2] * last->md.dims[3] > 1;
    return AP_OK;
}

static ap_status build(ap_net *net, ap_error *err)
{
    NN_TRY(nn_context_init(&net->ctx, err));
    NN_TRY(nn_tensors_reserve(net, err));
    NN_TRY(build_input(net, err));
    NN_TRY(build_stem(net, err));
    NN_TRY(build_stages(net, err));
    NN_TRY(build_head(net, err));
    if (net->tensor_count != net->tensor_capacity)
        return ap_error_set(err, AP_ERR_INVALID,
                            "network: built %zu tensors but counted %zu; the builder and the "
                            "tensor count disagree",
                            net->tensor_count, net->tensor_capacity);
    return nn_context_finish(&net->ctx, err);
}

ap_status ap_net_create(const ap_net_spec *spec, int batch, uint64_t seed, ap_net **out,
                        ap_error *err)
{
    if (out == NULL)
        return ap_error_set(err, AP_ERR_INVALID, "network: output pointer is NULL");
    *out = NULL;
    NN_TRY(validate_spec(spec, batch, err));
    ap_net *net = calloc(1, sizeof(*net));
    if (net == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "network: out of memory");
    net->spec = *spec;
    net->batch = batch;
    net->fused_inference = true;
    net->seed = seed;
    ap_status status = build(net, err);
    if (status != AP_OK) {
        ap_net_destroy(net);
        return status;
    }
    *out = net;
    return AP_OK;
}

void ap_net_destroy(ap_net *net)
{
    if (net == NULL)
        return;
    nn_context_release(&net->ctx);
    free(net->blocks);
    free(net->tensors);
    free(net);
}

size_t ap_net_tensor_count(const ap_net *net)
{
    return net->tensor_count;
}

ap_net_tensor *ap_net_tensor_at(ap_net *net, size_t index)
{
    return index < net->tensor_count ? &net->tensors[index] : NULL;
}

size_t ap_net_param_total(const ap_net *net)
{
    size_t total = 0;
    for (size_t i = 0; i < net->tensor_count; i++)
        if (net->tensors[i].role != AP_TENSOR_STATE)
            total += net->tensors[i].size;
    return total;
}

int ap_net_batch(const ap_net *net)
{
    return net->batch;
}

void nn_net_set_fused_inference(ap_net *net, bool fused)
{
    net->fused_inference = fused;
}

static ap_status run_forward(ap_net *net, bool training, uint64_t dropout_seed,
                             uint64_t dropout_stream, float *logits, ap_error *err)
{
    nn_context *ctx = &net->ctx;
    bool fused = !training && net->fused_inference;
    if (fused && net->stem_conv.fused.ready) {
        NN_TRY(nn_fused_forward(ctx, &net->stem_conv, net->stem_bn.output.data, err));
    } else {
        NN_TRY(nn_conv_forward(ctx, &net->stem_conv, err));
        NN_TRY(nn_bn_forward(ctx, &net->stem_bn, training, err));
    }
    NN_TRY(nn_pool_forward(ctx, &net->stem_pool, training, err));
    for (int i = 0; i < net->block_count; i++) {
        nn_block *block = &net->blocks[i];
        if (fused && nn_block_fused_ready(block))
            NN_TRY(nn_block_forward_fused(ctx, block, err));
        else
            NN_TRY(nn_block_forward(ctx, block, training, err));
    }
    NN_TRY(nn_gap_forward(ctx, &net->gap, err));
    nn_head_forward(&net->head, net->gap.features, training, dropout_seed, dropout_stream, logits);
    return AP_OK;
}

ap_status ap_net_forward(ap_net *net, const float *input, bool training, uint64_t dropout_seed,
                         uint64_t dropout_stream, float *logits, ap_error *err)
{
    if (net == NULL || input == NULL || logits == NULL)
        return ap_error_set(err, AP_ERR_INVALID, "network forward: net, input or logits is NULL");
    if (training && !net->trainable) {
        const int64_t *last_dims = net->gap.pool.input->md.dims;
        return ap_error_set(err, AP_ERR_INVALID,
                            "network forward: training needs more than one value per channel in "
                            "every batch norm, but batch %d with %ldx%ld maps in the last stage "
                            "gives one; use a batch of at least 2 or a larger input",
                            net->batch, (long)last_dims[2], (long)last_dims[3]);
    }
    net->last_forward_training = false;
    net->backward_done = false;
    memcpy(net->input.data_ptr, input, net->input.floats * sizeof(float));
    NN_TRY(run_forward(net, training, dropout_seed, dropout_stream, logits, err));
    net->last_forward_training = training;
    return AP_OK;
}

ap_status ap_net_backward(ap_net *net, const float *d_logits, ap_error *err)
{
    if (net == NULL || d_logits == NULL)
        return ap_error_set(err, AP_ERR_INVALID, "network backward: net or d_logits is NULL");
    if (!net->last_forward_training)
        return ap_error_set(err, AP_ERR_INVALID,
                            "network backward: no training forward pass to differentiate; call "
                            "ap_net_forward with training = true first");
    nn_context *ctx = &net->ctx;
    net->backward_done = false;
    nn_head_backward(&net->head, d_logits, net->gap.d_features);
    NN_TRY(nn_gap_backward(ctx, &net->gap, err));
    for (int i = net->block_count - 1; i >= 0; i--)
        NN_TRY(nn_block_backward(ctx, &net->blocks[i], err));
    NN_TRY(nn_pool_backward(ctx, &net->stem_pool, err));
    NN_TRY(nn_bn_backward(ctx, &net->stem_bn, err));
    NN_TRY(nn_conv_backward_weights(ctx, &net->stem_conv, err));
    NN_TRY(nn_wait(ctx, "stem.conv", err));
    net->backward_done = true;
    return AP_OK;
}

ap_status ap_net_input_grad(ap_net *net, float *d_input, ap_error *err)
{
    if (net == NULL || d_input == NULL)
        return ap_error_set(err, AP_ERR_INVALID, "network input gradient: net or d_input is NULL");
    if (!net->backward_done)
        return ap_error_set(err, AP_ERR_INVALID,
                            "network input gradient: call ap_net_backward after a training "
                            "forward pass first");
    NN_CHECK(dnnl_memory_set_data_handle(net->input.diff, d_input), "input", err);
    NN_TRY(nn_conv_backward_data(&net->ctx, &net->stem_conv, net->input.diff, err));
    return nn_wait(&net->ctx, "stem.conv", err);
}

/* Multiply-adds of convolutions and the dense layer, times two. Batch norm,
 * ReLU, pooling, the residual additions and dropout are not counted. A
 * training step counts three passes: forward, backward data and backward
 * weights (the stem's backward data is skipped in practice but counted). */
double ap_net_flops_per_image(const ap_net *net, bool training)
{
    double macs = net->stem_conv.macs_per_image;
    for (int i = 0; i < net->block_count; i++) {
        const nn_block *block = &net->blocks[i];
        macs += block->conv1.macs_per_image + block->conv2.macs_per_image;
        if (block->projection)
            macs += block->shortcut_conv.macs_per_image;
    }
    macs += (double)net->head.features * net->head.labels;
    double flops = 2.0 * macs;
    return training ? 3.0 * flops : flops;
}
