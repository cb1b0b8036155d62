#include "pipeline/nn_cuda/gpu_net.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/dense.h"
#include "kernels/cuda/elementwise.h"
#include "pipeline/nn_cuda/gpu_check.h"
#include "pipeline/nn_cuda/gpu_net_internal.h"

struct ap_gpu_net {
    ap_net_spec spec;
    int batch;
    ap_gpu_options options;
    gpu_context ctx;

    ap_gpu_tensor *tensors;
    size_t tensor_count;
    size_t next_tensor; /* builder cursor, checked against the host's order */
    float *params;      /* trained tensors back to back */
    float *state;       /* running statistics back to back */
    float *grads;       /* gradients, then a copy of the state, then the tail */
    size_t grad_count;
    size_t state_count;

    gpu_act input;
    gpu_conv stem_conv;
    gpu_bn stem_bn;
    gpu_pool stem_pool;
    gpu_block *blocks;
    int block_count;
    gpu_pool gap;
    gpu_head head;
    float *logits;
    bool last_forward_training;
};

ap_status ap_gpu_precision_parse(const char *text, ap_gpu_precision *out, ap_error *err)
{
    static const char *const names[] = {"fp32", "tf32", "bf16"};
    for (int i = 0; i < 3; i++) {
        if (strcmp(text, names[i]) == 0) {
            *out = (ap_gpu_precision)i;
            return AP_OK;
        }
    }
    return ap_error_set(err, AP_ERR_INVALID,
                        "train.precision \"%s\" is invalid; expected fp32, tf32 or bf16", text);
}

const char *ap_gpu_precision_name(ap_gpu_precision precision)
{
    switch (precision) {
    case AP_GPU_FP32:
        return "fp32";
    case AP_GPU_TF32:
        return "tf32";
    case AP_GPU_BF16:
        return "bf16";
    }
    return "unknown";
}

int ap_gpu_device_count(char *reason, size_t reason_size)
{
    int count = 0;
    cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
        if (reason != NULL)
            snprintf(reason, reason_size, "%s", cudaGetErrorString(status));
        return 0;
    }
    if (count == 0 && reason != NULL)
        snprintf(reason, reason_size, "no CUDA device is visible");
    return count;
}

/* Mirror the host tensors: same names, roles and shapes, with trained data,
 * state and gradients each back to back in tensor order. */
static ap_status create_tensors(ap_gpu_net *net, ap_net *host, ap_error *err)
{
    net->tensor_count = ap_net_tensor_count(host);
    net->tensors = calloc(net->tensor_count, sizeof(*net->tensors));
    if (net->tensors == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "network: out of memory for %zu tensors",
                            net->tensor_count);
    for (size_t i = 0; i < net->tensor_count; i++) {
        const ap_net_tensor *source = ap_net_tensor_at(host, i);
        ap_gpu_tensor *tensor = &net->tensors[i];
        tensor->name = source->name;
        tensor->role = source->role;
        tensor->ndim = source->ndim;
        memcpy(tensor->shape, source->shape, sizeof(tensor->shape));
        tensor->size = source->size;
        if (source->role == AP_TENSOR_STATE)
            net->state_count += source->size;
        else
            net->grad_count += source->size;
    }
    void *params = NULL, *state = NULL, *grads = NULL;
    size_t grad_buffer = net->grad_count + net->state_count + net->options.grad_tail;
    GPU_TRY(gpu_alloc(&net->ctx, net->grad_count * sizeof(float), "parameters", &params, err));
    GPU_TRY(gpu_alloc(&net->ctx, net->state_count * sizeof(float), "statistics", &state, err));
    GPU_TRY(gpu_alloc(&net->ctx, grad_buffer * sizeof(float), "gradients", &grads, err));
    net->params = params;
    net->state = state;
    net->grads = grads;

    size_t trained = 0, stats = 0;
    for (size_t i = 0; i < net->tensor_count; i++) {
        ap_gpu_tensor *tensor = &net->tensors[i];
        if (tensor->role == AP_TENSOR_STATE) {
            tensor->data = net->state + stats;
            stats += tensor->size;
        } else {
            tensor->data = net->params + trained;
            tensor->grad = net->grads + trained;
            trained += tensor->size;
        }
    }
    return AP_OK;
}

/* Take the next tensor, which must be the one the CPU builder added at this
 * point: a mismatch means the two builders disagree. */
static ap_status take_tensor(ap_gpu_net *net, const char *layer, const char *suffix, size_t count,
                             ap_gpu_tensor **out, ap_error *err)
{
    char name[AP_PARAM_NAME_MAX + 32];
    snprintf(name, sizeof(name), "%s.%s", layer, suffix);
    if (net->next_tensor + count > net->tensor_count ||
        strcmp(net->tensors[net->next_tensor].name, name) != 0)
        return ap_error_set(
            err, AP_ERR_INVALID,
            "GPU network: expected tensor %s at position %zu, but the host "
            "network has %s there; the CPU and GPU builders disagree",
            name, net->next_tensor,
            net->next_tensor < net->tensor_count ? net->tensors[net->next_tensor].name : "nothing");
    *out = &net->tensors[net->next_tensor];
    net->next_tensor += count;
    return AP_OK;
}

static ap_status create_conv(ap_gpu_net *net, gpu_conv *conv, const char *name, gpu_act *input,
                             int stride, bool needs_bwd_data, ap_error *err)
{
    ap_gpu_tensor *weight = NULL;
    snprintf(conv->name, sizeof(conv->name), "%s", name);
    GPU_TRY(take_tensor(net, name, "weight", 1, &weight, err));
    return gpu_conv_create(&net->ctx, conv, input, weight, stride, needs_bwd_data, err);
}

static ap_status create_bn(ap_gpu_net *net, gpu_bn *bn, const char *name, gpu_act *input, bool relu,
                           ap_error *err)
{
    ap_gpu_tensor *tensors = NULL;
    snprintf(bn->name, sizeof(bn->name), "%s", name);
    GPU_TRY(take_tensor(net, name, "weight", 4, &tensors, err));
    return gpu_bn_create(&net->ctx, bn, input, relu, tensors, err);
}

static ap_status build_stem(ap_gpu_net *net, ap_error *err)
{
    const ap_net_spec *spec = &net->spec;
    GPU_TRY(gpu_act_create(&net->ctx, net->batch, spec->in_channels, spec->height, spec->width,
                           "input", &net->input, err));
    GPU_TRY(
        create_conv(net, &net->stem_conv, "stem.conv", &net->input, spec->stem_stride, false, err));
    GPU_TRY(create_bn(net, &net->stem_bn, "stem.bn", &net->stem_conv.output, true, err));
    snprintf(net->stem_pool.name, sizeof(net->stem_pool.name), "stem.pool");
    return gpu_pool_create(&net->ctx, &net->stem_pool, &net->stem_bn.output, true, 3, 3, 2, 2, 1,
                           err);
}

static ap_status layer_name(char *out, const char *prefix, const char *suffix, ap_error *err)
{
    int length = snprintf(out, AP_PARAM_NAME_MAX, "%s.%s", prefix, suffix);
    if (length < 0 || length >= AP_PARAM_NAME_MAX)
        return ap_error_set(err, AP_ERR_INVALID, "network: layer name %s.%s is too long", prefix,
                            suffix);
    return AP_OK;
}

static ap_status build_block(ap_gpu_net *net, gpu_block *block, gpu_act *input, int out_channels,
                             int stride, ap_error *err)
{
    char name[AP_PARAM_NAME_MAX];
    block->input = input;
    block->projection = stride != 1 || input->channels != out_channels;
    GPU_TRY(layer_name(name, block->prefix, "conv1", err));
    GPU_TRY(create_conv(net, &block->conv1, name, input, stride, true, err));
    GPU_TRY(layer_name(name, block->prefix, "bn1", err));
    GPU_TRY(create_bn(net, &block->bn1, name, &block->conv1.output, true, err));
    GPU_TRY(layer_name(name, block->prefix, "conv2", err));
    GPU_TRY(create_conv(net, &block->conv2, name, &block->bn1.output, 1, true, err));
    GPU_TRY(layer_name(name, block->prefix, "bn2", err));
    GPU_TRY(create_bn(net, &block->bn2, name, &block->conv2.output, false, err));
    if (block->projection) {
        GPU_TRY(layer_name(name, block->prefix, "shortcut.conv", err));
        GPU_TRY(create_conv(net, &block->shortcut_conv, name, input, stride, true, err));
        GPU_TRY(layer_name(name, block->prefix, "shortcut.bn", err));
        GPU_TRY(
            create_bn(net, &block->shortcut_bn, name, &block->shortcut_conv.output, false, err));
    }
    const gpu_act *sum = &block->bn2.output;
    GPU_TRY(layer_name(name, block->prefix, "add", err));
    return gpu_act_create(&net->ctx, sum->batch, sum->channels, sum->height, sum->width, name,
                          &block->output, err);
}

static ap_status build_stages(ap_gpu_net *net, ap_error *err)
{
    const ap_net_spec *spec = &net->spec;
    for (int stage = 0; stage < spec->stage_count; stage++)
        net->block_count += spec->stage_blocks[stage];
    net->blocks = calloc((size_t)net->block_count, sizeof(*net->blocks));
    if (net->blocks == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "network: out of memory for %d blocks",
                            net->block_count);
    gpu_act *input = &net->stem_pool.output;
    gpu_block *block = net->blocks;
    for (int stage = 0; stage < spec->stage_count; stage++) {
        for (int index = 0; index < spec->stage_blocks[stage]; index++, block++) {
            snprintf(block->prefix, sizeof(block->prefix), "stages.%d.blocks.%d", stage, index);
            int stride = stage > 0 && index == 0 ? 2 : 1;
            GPU_TRY(build_block(net, block, input, spec->stage_channels[stage], stride, err));
            input = &block->output;
        }
    }
    return AP_OK;
}

/* Global average pooling over the whole last map gives [batch, channels, 1,
 * 1], which in NCHW is the plain [batch, features] matrix of the head. */
static ap_status build_head(ap_gpu_net *net, ap_error *err)
{
    gpu_act *last = &net->blocks[net->block_count - 1].output;
    gpu_head *head = &net->head;
    snprintf(net->gap.name, sizeof(net->gap.name), "head.pool");
    GPU_TRY(gpu_pool_create(&net->ctx, &net->gap, last, false, last->height, last->width,
                            last->height, last->width, 0, err));
    head->batch = net->batch;
    head->features = last->channels;
    head->labels = net->spec.label_count;
    head->dropout = net->spec.dropout;
    GPU_TRY(take_tensor(net, "head", "weight", 1, &head->weight, err));
    GPU_TRY(take_tensor(net, "head", "bias", 1, &head->bias, err));
    size_t values = (size_t)head->batch * (size_t)head->features;
    void *dropped = NULL, *mask = NULL, *logits = NULL;
    GPU_TRY(gpu_alloc(&net->ctx, values * sizeof(float), "head", &dropped, err));
    GPU_TRY(gpu_alloc(&net->ctx, values * sizeof(float), "head", &mask, err));
    GPU_TRY(gpu_alloc(&net->ctx, (size_t)head->batch * (size_t)head->labels * sizeof(float), "head",
                      &logits, err));
    head->dropped = dropped;
    head->mask = mask;
    net->logits = logits;
    return AP_OK;
}

/* TF32 and bf16 tensor-core math start with compute capability 8.0 (Ampere). */
static ap_status check_tensor_cores(const ap_gpu_net *net, ap_error *err)
{
    if (net->options.precision == AP_GPU_FP32)
        return AP_OK;
    int major = 0;
    AP_CUDA_CHECK(
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, net->options.device),
        err);
    if (major >= 8)
        return AP_OK;
    return ap_error_set(err, AP_ERR_INVALID,
                        "train.precision %s needs a GPU of compute capability 8.0 or later, but "
                        "device %d has %d.x; set train.precision=fp32",
                        ap_gpu_precision_name(net->options.precision), net->options.device, major);
}

static ap_status open_context(ap_gpu_net *net, ap_error *err)
{
    gpu_context *ctx = &net->ctx;
    ctx->precision = net->options.precision;
    ctx->deterministic = net->options.deterministic;
    ctx->workspace_limit = net->options.workspace_limit;
    AP_CUDA_CHECK(cudaSetDevice(net->options.device), err);
    GPU_TRY(check_tensor_cores(net, err));
    AP_CUDA_CHECK(cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking), err);
    GPU_CUDNN(cudnnCreate(&ctx->cudnn), err);
    GPU_CUDNN(cudnnSetStream(ctx->cudnn, ctx->stream), err);
    GPU_CUBLAS(cublasCreate(&ctx->cublas), err);
    GPU_CUBLAS(cublasSetStream(ctx->cublas, ctx->stream), err);
    /* The dense layer picks its arithmetic per call (gemm_math). */
    GPU_CUBLAS(cublasSetMathMode(ctx->cublas, CUBLAS_DEFAULT_MATH), err);
    return AP_OK;
}

/* One workspace serves every convolution, sized for the largest choice. */
static ap_status allocate_workspace(gpu_context *ctx, ap_error *err)
{
    size_t bytes = 0;
    for (size_t i = 0; i < ctx->algorithms.count; i++)
        if (ctx->algorithms.choices[i].workspace_bytes > bytes)
            bytes = ctx->algorithms.choices[i].workspace_bytes;
    ctx->workspace_bytes = bytes;
    return gpu_alloc(ctx, bytes, "convolution workspace", &ctx->workspace, err);
}

static ap_status build(ap_gpu_net *net, ap_net *host, ap_error *err)
{
    GPU_TRY(open_context(net, err));
    GPU_TRY(create_tensors(net, host, err));
    GPU_TRY(build_stem(net, err));
    GPU_TRY(build_stages(net, err));
    GPU_TRY(build_head(net, err));
    if (net->next_tensor != net->tensor_count)
        return ap_error_set(err, AP_ERR_INVALID,
                            "GPU network: built %zu tensors but the host network has %zu; the "
                            "CPU and GPU builders disagree",
                            net->next_tensor, net->tensor_count);
    GPU_TRY(allocate_workspace(&net->ctx, err));
    GPU_TRY(gpu_conv_allocate_scratch(&net->ctx, err));
    return ap_gpu_net_upload(net, host, err);
}

ap_status ap_gpu_net_create(const ap_net_spec *spec, int batch, ap_net *host,
                            const ap_gpu_options *options, ap_gpu_net **out, ap_error *err)
{
    *out = NULL;
    if (spec == NULL || host == NULL || options == NULL || batch != ap_net_batch(host))
        return ap_error_set(err, AP_ERR_INVALID,
                            "GPU network: spec, host network and options are required, and the "
                            "batch must equal the host network's");
    ap_gpu_net *net = calloc(1, sizeof(*net));
    if (net == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "GPU network: out of memory");
    net->spec = *spec;
    net->batch = batch;
    net->options = *options;
    ap_status status = build(net, host, err);
    if (status != AP_OK) {
        ap_gpu_net_destroy(net);
        return status;
    }
    *out = net;
    return AP_OK;
}

static void destroy_bn(gpu_bn *bn)
{
    if (bn->param_desc != NULL)
        cudnnDestroyTensorDescriptor(bn->param_desc);
    if (bn->output.desc != NULL)
        cudnnDestroyTensorDescriptor(bn->output.desc);
}

static void destroy_pool(gpu_pool *pool)
{
    if (pool->desc != NULL)
        cudnnDestroyPoolingDescriptor(pool->desc);
    if (pool->output.desc != NULL)
        cudnnDestroyTensorDescriptor(pool->output.desc);
}

static void destroy_layers(ap_gpu_net *net)
{
    if (net->input.desc != NULL)
        cudnnDestroyTensorDescriptor(net->input.desc);
    gpu_conv_destroy(&net->stem_conv);
    destroy_bn(&net->stem_bn);
    destroy_pool(&net->stem_pool);
    for (int i = 0; net->blocks != NULL && i < net->block_count; i++) {
        gpu_block *block = &net->blocks[i];
        gpu_conv_destroy(&block->conv1);
        destroy_bn(&block->bn1);
        gpu_conv_destroy(&block->conv2);
        destroy_bn(&block->bn2);
        gpu_conv_destroy(&block->shortcut_conv);
        destroy_bn(&block->shortcut_bn);
        if (block->output.desc != NULL)
            cudnnDestroyTensorDescriptor(block->output.desc);
    }
    destroy_pool(&net->gap);
}

/* Errors while tearing down are ignored: nothing could act on them. */
void ap_gpu_net_destroy(ap_gpu_net *net)
{
    if (net == NULL)
        return;
    gpu_context *ctx = &net->ctx;
    if (ctx->stream != NULL)
        cudaStreamSynchronize(ctx->stream);
    destroy_layers(net);
    for (size_t i = 0; i < ctx->allocation_count; i++)
        cudaFree(ctx->allocations[i]);
    free(ctx->allocations);
    gpu_algo_cache_free(&ctx->algorithms);
    if (ctx->cublas != NULL)
        cublasDestroy(ctx->cublas);
    if (ctx->cudnn != NULL)
        cudnnDestroy(ctx->cudnn);
    if (ctx->stream != NULL)
        cudaStreamDestroy(ctx->stream);
    free(net->blocks);
    free(net->tensors);
    free(net);
}

cudaStream_t ap_gpu_net_stream(const ap_gpu_net *net)
{
    return net->ctx.stream;
}

int ap_gpu_net_batch(const ap_gpu_net *net)
{
    return net->batch;
}

size_t ap_gpu_net_tensor_count(const ap_gpu_net *net)
{
    return net->tensor_count;
}

const ap_gpu_tensor *ap_gpu_net_tensor_at(const ap_gpu_net *net, size_t index)
{
    return index < net->tensor_count ? &net->tensors[index] : NULL;
}

float *ap_gpu_net_input(ap_gpu_net *net)
{
    return net->input.data;
}

const float *ap_gpu_net_logits(const ap_gpu_net *net)
{
    return net->logits;
}

float *ap_gpu_net_grad_buffer(ap_gpu_net *net)
{
    return net->grads;
}

size_t ap_gpu_net_grad_count(const ap_gpu_net *net)
{
    return net->grad_count;
}

size_t ap_gpu_net_state_count(const ap_gpu_net *net)
{
    return net->state_count;
}

static ap_status check_twin(const ap_gpu_net *net, ap_net *host, ap_error *err)
{
    if (ap_net_tensor_count(host) == net->tensor_count)
        return AP_OK;
    return ap_error_set(err, AP_ERR_INVALID,
                        "GPU network: the host network has %zu tensors, the GPU network %zu",
                        ap_net_tensor_count(host), net->tensor_count);
}

ap_status ap_gpu_net_upload(ap_gpu_net *net, ap_net *host, ap_error *err)
{
    GPU_TRY(check_twin(net, host, err));
    for (size_t i = 0; i < net->tensor_count; i++) {
        const ap_net_tensor *source = ap_net_tensor_at(host, i);
        AP_CUDA_CHECK(cudaMemcpyAsync(net->tensors[i].data, source->data,
                                      source->size * sizeof(float), cudaMemcpyHostToDevice,
                                      net->ctx.stream),
                      err);
    }
    AP_CUDA_CHECK(cudaStreamSynchronize(net->ctx.stream), err);
    return AP_OK;
}

ap_status ap_gpu_net_download(ap_gpu_net *net, ap_net *host, ap_error *err)
{
    GPU_TRY(check_twin(net, host, err));
    for (size_t i = 0; i < net->tensor_count; i++) {
        ap_net_tensor *target = ap_net_tensor_at(host, i);
        AP_CUDA_CHECK(cudaMemcpyAsync(target->data, net->tensors[i].data,
                                      target->size * sizeof(float), cudaMemcpyDeviceToHost,
                                      net->ctx.stream),
                      err);
    }
    AP_CUDA_CHECK(cudaStreamSynchronize(net->ctx.stream), err);
    return AP_OK;
}

ap_status ap_gpu_net_pack_state(ap_gpu_net *net, ap_error *err)
{
    AP_CUDA_CHECK(cudaMemcpyAsync(net->grads + net->grad_count, net->state,
                                  net->state_count * sizeof(float), cudaMemcpyDeviceToDevice,
                                  net->ctx.stream),
                  err);
    return AP_OK;
}

ap_status ap_gpu_net_unpack_state(ap_gpu_net *net, float divisor, ap_error *err)
{
    float *packed = net->grads + net->grad_count;
    if (divisor != 1.0f)
        GPU_TRY(ap_cuda_divide(packed, net->state_count, divisor, net->ctx.stream, err));
    AP_CUDA_CHECK(cudaMemcpyAsync(net->state, packed, net->state_count * sizeof(float),
                                  cudaMemcpyDeviceToDevice, net->ctx.stream),
                  err);
    return AP_OK;
}

static ap_status block_forward(gpu_context *ctx, gpu_block *block, bool training, ap_error *err)
{
    GPU_TRY(gpu_conv_forward(ctx, &block->conv1, err));
    GPU_TRY(gpu_bn_forward(ctx, &block->bn1, training, err));
    GPU_TRY(gpu_conv_forward(ctx, &block->conv2, err));
    GPU_TRY(gpu_bn_forward(ctx, &block->bn2, training, err));
    const float *shortcut = block->input->data;
    if (block->projection) {
        GPU_TRY(gpu_conv_forward(ctx, &block->shortcut_conv, err));
        GPU_TRY(gpu_bn_forward(ctx, &block->shortcut_bn, training, err));
        shortcut = block->shortcut_bn.output.data;
    }
    return ap_cuda_add_relu(block->bn2.output.data, shortcut, block->output.data,
                            block->output.floats, ctx->stream, err);
}

static ap_cuda_gemm_math gemm_math(ap_gpu_precision precision)
{
    switch (precision) {
    case AP_GPU_TF32:
        return AP_CUDA_GEMM_TF32;
    case AP_GPU_BF16:
        return AP_CUDA_GEMM_BF16;
    case AP_GPU_FP32:
        break;
    }
    return AP_CUDA_GEMM_FP32;
}

static ap_status head_forward(ap_gpu_net *net, bool training, uint64_t dropout_seed,
                              uint64_t dropout_stream, ap_error *err)
{
    gpu_head *head = &net->head;
    const float *features = net->gap.output.data;
    long values = (long)head->batch * head->features;
    head->dense_input = features;
    head->dropout_applied = training && head->dropout > 0.0f;
    if (head->dropout_applied) {
        AP_CUDA_CHECK(cudaMemcpyAsync(head->dropped, features, (size_t)values * sizeof(float),
                                      cudaMemcpyDeviceToDevice, net->ctx.stream),
                      err);
        GPU_TRY(ap_cuda_dropout_forward(head->dropped, head->mask, values, head->dropout,
                                        dropout_seed, dropout_stream, net->ctx.stream, err));
        head->dense_input = head->dropped;
    }
    return ap_cuda_dense_forward(net->ctx.cublas, gemm_math(net->ctx.precision), head->dense_input,
                                 head->weight->data, head->bias->data, head->batch, head->features,
                                 head->labels, net->logits, net->ctx.stream, err);
}

ap_status ap_gpu_net_forward(ap_gpu_net *net, bool training, uint64_t dropout_seed,
                             uint64_t dropout_stream, ap_error *err)
{
    gpu_context *ctx = &net->ctx;
    net->last_forward_training = false;
    GPU_TRY(gpu_conv_forward(ctx, &net->stem_conv, err));
    GPU_TRY(gpu_bn_forward(ctx, &net->stem_bn, training, err));
    GPU_TRY(gpu_pool_forward(ctx, &net->stem_pool, err));
    for (int i = 0; i < net->block_count; i++)
        GPU_TRY(block_forward(ctx, &net->blocks[i], training, err));
    GPU_TRY(gpu_pool_forward(ctx, &net->gap, err));
    GPU_TRY(head_forward(net, training, dropout_seed, dropout_stream, err));
    net->last_forward_training = training;
    return AP_OK;
}

/* The input's gradient is the branch's (conv1's backward data) plus the
 * shortcut's: the sum's gradient itself for an identity shortcut, or the
 * projection's backward data, which cuDNN adds in place. */
static ap_status block_backward(gpu_context *ctx, gpu_block *block, bool accumulate, ap_error *err)
{
    float *sum_grad = block->bn2.output.diff;
    GPU_TRY(ap_cuda_relu_backward(block->output.data, block->output.diff, sum_grad,
                                  block->output.floats, ctx->stream, err));
    GPU_TRY(gpu_bn_backward(ctx, &block->bn2, sum_grad, accumulate, err));
    GPU_TRY(gpu_conv_backward_filter(ctx, &block->conv2, accumulate, err));
    GPU_TRY(gpu_conv_backward_data(ctx, &block->conv2, block->bn1.output.diff, false, err));
    GPU_TRY(gpu_bn_backward(ctx, &block->bn1, block->bn1.output.diff, accumulate, err));
    GPU_TRY(gpu_conv_backward_filter(ctx, &block->conv1, accumulate, err));
    GPU_TRY(gpu_conv_backward_data(ctx, &block->conv1, block->input->diff, false, err));
    if (!block->projection)
        return ap_cuda_add_into(block->input->diff, sum_grad, block->input->floats, ctx->stream,
                                err);
    GPU_TRY(gpu_bn_backward(ctx, &block->shortcut_bn, sum_grad, accumulate, err));
    GPU_TRY(gpu_conv_backward_filter(ctx, &block->shortcut_conv, accumulate, err));
    return gpu_conv_backward_data(ctx, &block->shortcut_conv, block->input->diff, true, err);
}

static ap_status report_ready(ap_gpu_net *net, const ap_gpu_tensor *first_tensor,
                              ap_gpu_grads_ready_fn ready, void *context, ap_error *err)
{
    if (ready == NULL)
        return AP_OK;
    return ready(context, (size_t)(first_tensor->grad - net->grads), err);
}

static ap_status head_backward(ap_gpu_net *net, const float *d_logits, bool accumulate,
                               ap_error *err)
{
    gpu_head *head = &net->head;
    float *d_features = net->gap.output.diff;
    GPU_TRY(ap_cuda_dense_backward(net->ctx.cublas, gemm_math(net->ctx.precision),
                                   head->dense_input, head->weight->data, d_logits, head->batch,
                                   head->features, head->labels, d_features, head->weight->grad,
                                   head->bias->grad, accumulate, net->ctx.stream, err));
    if (!head->dropout_applied)
        return AP_OK;
    return ap_cuda_dropout_backward(d_features, head->mask, (long)head->batch * head->features,
                                    net->ctx.stream, err);
}

ap_status ap_gpu_net_backward(ap_gpu_net *net, const float *d_logits, bool accumulate,
                              ap_gpu_grads_ready_fn ready, void *ready_context, ap_error *err)
{
    if (!net->last_forward_training)
        return ap_error_set(err, AP_ERR_INVALID,
                            "GPU network backward: no training forward pass to differentiate");
    gpu_context *ctx = &net->ctx;
    GPU_TRY(head_backward(net, d_logits, accumulate, err));
    GPU_TRY(report_ready(net, net->head.weight, ready, ready_context, err));
    GPU_TRY(gpu_pool_backward(ctx, &net->gap, err));
    for (int i = net->block_count - 1; i >= 0; i--) {
        GPU_TRY(block_backward(ctx, &net->blocks[i], accumulate, err));
        GPU_TRY(report_ready(net, net->blocks[i].conv1.weight, ready, ready_context, err));
    }
    GPU_TRY(gpu_pool_backward(ctx, &net->stem_pool, err));
    GPU_TRY(gpu_bn_backward(ctx, &net->stem_bn, net->stem_bn.output.diff, accumulate, err));
    GPU_TRY(gpu_conv_backward_filter(ctx, &net->stem_conv, accumulate, err));
    return report_ready(net, net->stem_conv.weight, ready, ready_context, err);
}
