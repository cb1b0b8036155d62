#include "pipeline/nn_cuda/gpu_net_internal.h"

#include <string.h>

#include "kernels/cuda/convert.h"
#include "pipeline/nn_cuda/gpu_check.h"

/* Picking a convolution algorithm: cuDNN lists candidates, best first, by
 * timing them (cudnnFind*) or, in deterministic mode, by heuristics
 * (cudnnGet*_v7), whose ranking does not vary with timing noise. The first
 * candidate that succeeded, fits the workspace limit, matches the precision
 * and, when required, is deterministic wins. The choice is cached per shape
 * so that blocks of one stage share it. */

enum { MAX_CANDIDATES = 16 };

/* The tensor descriptors cuDNN runs with: the bf16 twins in bf16 mode, the
 * float activations' own otherwise. */
static cudnnTensorDescriptor_t run_input_desc(const gpu_conv *conv)
{
    return conv->half_input_desc != NULL ? conv->half_input_desc : conv->input->desc;
}

static cudnnTensorDescriptor_t run_output_desc(const gpu_conv *conv)
{
    return conv->half_output_desc != NULL ? conv->half_output_desc : conv->output.desc;
}

/* The math type set while cuDNN lists candidates, so that the listed
 * algorithms and workspace sizes are those of the runs: FMA only for fp32
 * (CUDNN_DEFAULT_MATH would allow TF32 on Ampere and later), tensor cores
 * for tf32 and bf16. */
static cudnnMathType_t search_math(const gpu_context *ctx)
{
    return ctx->precision == AP_GPU_FP32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
}

/* One candidate, whatever the pass. */
typedef struct {
    int algorithm;
    cudnnStatus_t status;
    size_t memory;
    cudnnDeterminism_t determinism;
    cudnnMathType_t math_type;
} candidate;

/* The math type to run a candidate with: fp32 keeps tensor cores off, so
 * candidates that need them are skipped, and no mode lets cuDNN convert
 * float tensors down to fp16 (CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION). */
static bool usable(const gpu_context *ctx, const candidate *c, gpu_algo_choice *choice)
{
    if (c->status != CUDNN_STATUS_SUCCESS || c->memory > ctx->workspace_limit)
        return false;
    if (ctx->deterministic && c->determinism != CUDNN_DETERMINISTIC)
        return false;
    if (c->math_type == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
        return false;
    if (ctx->precision == AP_GPU_FP32 && c->math_type == CUDNN_TENSOR_OP_MATH)
        return false;
    choice->algorithm = c->algorithm;
    choice->math_type = ctx->precision == AP_GPU_FP32 ? (int)CUDNN_FMA_MATH : (int)c->math_type;
    choice->workspace_bytes = c->memory;
    return true;
}

static void init_key(const gpu_context *ctx, const gpu_conv *conv, gpu_conv_pass pass,
                     gpu_algo_key *key)
{
    memset(key, 0, sizeof(*key));
    key->pass = pass;
    key->batch = conv->input->batch;
    key->in_channels = conv->input->channels;
    key->height = conv->input->height;
    key->width = conv->input->width;
    key->out_channels = conv->output.channels;
    key->kernel = conv->kernel;
    key->stride = conv->stride;
    key->padding = conv->padding;
    key->precision = (int)ctx->precision;
    key->deterministic = ctx->deterministic;
}

static ap_status list_forward(gpu_context *ctx, gpu_conv *conv, candidate *out, int *count,
                              ap_error *err)
{
    cudnnConvolutionFwdAlgoPerf_t perf[MAX_CANDIDATES];
    int returned = 0;
    if (ctx->deterministic)
        GPU_CUDNN(cudnnGetConvolutionForwardAlgorithm_v7(
                      ctx->cudnn, run_input_desc(conv), conv->filter, conv->conv,
                      run_output_desc(conv), MAX_CANDIDATES, &returned, perf),
                  err);
    else
        GPU_CUDNN(cudnnFindConvolutionForwardAlgorithm(
                      ctx->cudnn, run_input_desc(conv), conv->filter, conv->conv,
                      run_output_desc(conv), MAX_CANDIDATES, &returned, perf),
                  err);
    for (int i = 0; i < returned; i++)
        out[i] = (candidate){(int)perf[i].algo, perf[i].status, perf[i].memory, perf[i].determinism,
                             perf[i].mathType};
    *count = returned;
    return AP_OK;
}

static ap_status list_backward_data(gpu_context *ctx, gpu_conv *conv, candidate *out, int *count,
                                    ap_error *err)
{
    cudnnConvolutionBwdDataAlgoPerf_t perf[MAX_CANDIDATES];
    int returned = 0;
    if (ctx->deterministic)
        GPU_CUDNN(cudnnGetConvolutionBackwardDataAlgorithm_v7(
                      ctx->cudnn, conv->filter, run_output_desc(conv), conv->conv,
                      run_input_desc(conv), MAX_CANDIDATES, &returned, perf),
                  err);
    else
        GPU_CUDNN(cudnnFindConvolutionBackwardDataAlgorithm(
                      ctx->cudnn, conv->filter, run_output_desc(conv), conv->conv,
                      run_input_desc(conv), MAX_CANDIDATES, &returned, perf),
                  err);
    for (int i = 0; i < returned; i++)
        out[i] = (candidate){(int)perf[i].algo, perf[i].status, perf[i].memory, perf[i].determinism,
                             perf[i].mathType};
    *count = returned;
    return AP_OK;
}

static ap_status list_backward_filter(gpu_context *ctx, gpu_conv *conv, candidate *out, int *count,
                                      ap_error *err)
{
    cudnnConvolutionBwdFilterAlgoPerf_t perf[MAX_CANDIDATES];
    int returned = 0;
    if (ctx->deterministic)
        GPU_CUDNN(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                      ctx->cudnn, run_input_desc(conv), run_output_desc(conv), conv->conv,
                      conv->filter, MAX_CANDIDATES, &returned, perf),
                  err);
    else
        GPU_CUDNN(cudnnFindConvolutionBackwardFilterAlgorithm(
                      ctx->cudnn, run_input_desc(conv), run_output_desc(conv), conv->conv,
                      conv->filter, MAX_CANDIDATES, &returned, perf),
                  err);
    for (int i = 0; i < returned; i++)
        out[i] = (candidate){(int)perf[i].algo, perf[i].status, perf[i].memory, perf[i].determinism,
                             perf[i].mathType};
    *count = returned;
    return AP_OK;
}

/* Ask cuDNN again for the workspace of the chosen algorithm with the math
 * type it will run with, since the listed size may assume another. */
static ap_status query_workspace(gpu_context *ctx, gpu_conv *conv, gpu_conv_pass pass,
                                 gpu_algo_choice *choice, ap_error *err)
{
    size_t bytes = 0;
    GPU_CUDNN(cudnnSetConvolutionMathType(conv->conv, (cudnnMathType_t)choice->math_type), err);
    if (pass == GPU_CONV_FORWARD)
        GPU_CUDNN(cudnnGetConvolutionForwardWorkspaceSize(
                      ctx->cudnn, run_input_desc(conv), conv->filter, conv->conv,
                      run_output_desc(conv), (cudnnConvolutionFwdAlgo_t)choice->algorithm, &bytes),
                  err);
    else if (pass == GPU_CONV_BACKWARD_DATA)
        GPU_CUDNN(cudnnGetConvolutionBackwardDataWorkspaceSize(
                      ctx->cudnn, conv->filter, run_output_desc(conv), conv->conv,
                      run_input_desc(conv), (cudnnConvolutionBwdDataAlgo_t)choice->algorithm,
                      &bytes),
                  err);
    else
        GPU_CUDNN(cudnnGetConvolutionBackwardFilterWorkspaceSize(
                      ctx->cudnn, run_input_desc(conv), run_output_desc(conv), conv->conv,
                      conv->filter, (cudnnConvolutionBwdFilterAlgo_t)choice->algorithm, &bytes),
                  err);
    if (bytes > choice->workspace_bytes)
        choice->workspace_bytes = bytes;
    return AP_OK;
}

static ap_status choose_algorithm(gpu_context *ctx, gpu_conv *conv, gpu_conv_pass pass,
                                  gpu_algo_choice *choice, ap_error *err)
{
    gpu_algo_key key;
    init_key(ctx, conv, pass, &key);
    if (gpu_algo_cache_find(&ctx->algorithms, &key, choice))
        return AP_OK;

    candidate candidates[MAX_CANDIDATES];
    int count = 0;
    /* query_workspace of an earlier pass left that pass's math type set. */
    GPU_CUDNN(cudnnSetConvolutionMathType(conv->conv, search_math(ctx)), err);
    if (pass == GPU_CONV_FORWARD)
        GPU_TRY(list_forward(ctx, conv, candidates, &count, err));
    else if (pass == GPU_CONV_BACKWARD_DATA)
        GPU_TRY(list_backward_data(ctx, conv, candidates, &count, err));
    else
        GPU_TRY(list_backward_filter(ctx, conv, candidates, &count, err));

    for (int i = 0; i < count; i++) {
        if (!usable(ctx, &candidates[i], choice))
            continue;
        GPU_TRY(query_workspace(ctx, conv, pass, choice, err));
        return gpu_algo_cache_put(&ctx->algorithms, &key, choice, err);
    }
    char text[160];
    gpu_algo_key_format(&key, text, sizeof(text));
    return ap_error_set(err, AP_ERR_BACKEND,
                        "network layer %s: cuDNN offers no usable algorithm for %s among %d "
                        "candidates within the %zu-byte workspace limit; lower train.batch_size, "
                        "turn off train.deterministic or set train.precision=fp32",
                        conv->name, text, count, ctx->workspace_limit);
}

static cudnnDataType_t run_data_type(const gpu_context *ctx)
{
    return ctx->precision == AP_GPU_BF16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

static ap_status create_half_desc(const gpu_act *act, cudnnTensorDescriptor_t *desc, ap_error *err)
{
    GPU_CUDNN(cudnnCreateTensorDescriptor(desc), err);
    GPU_CUDNN(cudnnSetTensor4dDescriptor(*desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_BFLOAT16, act->batch,
                                         act->channels, act->height, act->width),
              err);
    return AP_OK;
}

static size_t larger(size_t a, size_t b)
{
    return a > b ? a : b;
}

/* bf16: the descriptors and copies this convolution owns, and the sizes the
 * shared scratch must reach. */
static ap_status create_half_buffers(gpu_context *ctx, gpu_conv *conv, ap_error *err)
{
    void *input = NULL, *weight = NULL;
    GPU_TRY(create_half_desc(conv->input, &conv->half_input_desc, err));
    GPU_TRY(create_half_desc(&conv->output, &conv->half_output_desc, err));
    GPU_TRY(gpu_alloc(ctx, conv->input->floats * sizeof(uint16_t), conv->name, &input, err));
    GPU_TRY(gpu_alloc(ctx, conv->weight->size * sizeof(uint16_t), conv->name, &weight, err));
    conv->half_input = input;
    conv->half_weight = weight;
    ctx->half_out_count = larger(ctx->half_out_count, conv->output.floats);
    ctx->half_in_count = larger(ctx->half_in_count, conv->weight->size);
    if (conv->needs_bwd_data)
        ctx->half_in_count = larger(ctx->half_in_count, conv->input->floats);
    return AP_OK;
}

ap_status gpu_conv_create(gpu_context *ctx, gpu_conv *conv, gpu_act *input, ap_gpu_tensor *weight,
                          int stride, bool needs_bwd_data, ap_error *err)
{
    const int out_channels = (int)weight->shape[0];
    conv->input = input;
    conv->weight = weight;
    conv->kernel = (int)weight->shape[2];
    conv->stride = stride;
    conv->padding = conv->kernel / 2;
    conv->needs_bwd_data = needs_bwd_data;

    if (weight->ndim != 4 || weight->shape[1] != input->channels ||
        weight->shape[2] != weight->shape[3])
        return ap_error_set(err, AP_ERR_INVALID,
                            "network layer %s: weight %s does not fit an input of %d channels",
                            conv->name, weight->name, input->channels);
    GPU_CUDNN(cudnnCreateFilterDescriptor(&conv->filter), err);
    GPU_CUDNN(cudnnSetFilter4dDescriptor(conv->filter, run_data_type(ctx), CUDNN_TENSOR_NCHW,
                                         out_channels, input->channels, conv->kernel, conv->kernel),
              err);
    /* Float accumulation in every mode; with bf16 tensors this is cuDNN's
     * pseudo-bf16 configuration. */
    GPU_CUDNN(cudnnCreateConvolutionDescriptor(&conv->conv), err);
    GPU_CUDNN(cudnnSetConvolution2dDescriptor(conv->conv, conv->padding, conv->padding, stride,
                                              stride, 1, 1, CUDNN_CROSS_CORRELATION,
                                              CUDNN_DATA_FLOAT),
              err);
    int dims[4] = {0};
    GPU_CUDNN(cudnnGetConvolution2dForwardOutputDim(conv->conv, input->desc, conv->filter, &dims[0],
                                                    &dims[1], &dims[2], &dims[3]),
              err);
    GPU_TRY(
        gpu_act_create(ctx, dims[0], dims[1], dims[2], dims[3], conv->name, &conv->output, err));
    conv->macs_per_image = (double)weight->size * (double)dims[2] * (double)dims[3];
    if (ctx->precision == AP_GPU_BF16)
        GPU_TRY(create_half_buffers(ctx, conv, err));

    GPU_TRY(choose_algorithm(ctx, conv, GPU_CONV_FORWARD, &conv->fwd, err));
    GPU_TRY(choose_algorithm(ctx, conv, GPU_CONV_BACKWARD_FILTER, &conv->bwd_filter, err));
    if (needs_bwd_data)
        GPU_TRY(choose_algorithm(ctx, conv, GPU_CONV_BACKWARD_DATA, &conv->bwd_data, err));
    return AP_OK;
}

ap_status gpu_conv_allocate_scratch(gpu_context *ctx, ap_error *err)
{
    if (ctx->precision != AP_GPU_BF16)
        return AP_OK;
    void *out = NULL, *in = NULL;
    GPU_TRY(gpu_alloc(ctx, ctx->half_out_count * sizeof(uint16_t), "bf16 scratch", &out, err));
    GPU_TRY(gpu_alloc(ctx, ctx->half_in_count * sizeof(uint16_t), "bf16 scratch", &in, err));
    ctx->half_out = out;
    ctx->half_in = in;
    return AP_OK;
}

void gpu_conv_destroy(gpu_conv *conv)
{
    if (conv->filter != NULL)
        cudnnDestroyFilterDescriptor(conv->filter);
    if (conv->conv != NULL)
        cudnnDestroyConvolutionDescriptor(conv->conv);
    if (conv->output.desc != NULL)
        cudnnDestroyTensorDescriptor(conv->output.desc);
    if (conv->half_input_desc != NULL)
        cudnnDestroyTensorDescriptor(conv->half_input_desc);
    if (conv->half_output_desc != NULL)
        cudnnDestroyTensorDescriptor(conv->half_output_desc);
}

/* The device buffers of one pass: the float ones, or in bf16 the copies
 * and the shared scratch that stand for them. */
typedef struct {
    const void *input;
    const void *weight;
    void *result; /* output, weight gradient or input gradient */
    const void *output_grad;
} conv_buffers;

static ap_status run_forward(gpu_context *ctx, gpu_conv *conv, const conv_buffers *buffers,
                             ap_error *err)
{
    const float one = 1.0f, zero = 0.0f;
    GPU_CUDNN(cudnnSetConvolutionMathType(conv->conv, (cudnnMathType_t)conv->fwd.math_type), err);
    GPU_CUDNN(cudnnConvolutionForward(ctx->cudnn, &one, run_input_desc(conv), buffers->input,
                                      conv->filter, buffers->weight, conv->conv,
                                      (cudnnConvolutionFwdAlgo_t)conv->fwd.algorithm,
                                      ctx->workspace, ctx->workspace_bytes, &zero,
                                      run_output_desc(conv), buffers->result),
              err);
    return AP_OK;
}

ap_status gpu_conv_forward(gpu_context *ctx, gpu_conv *conv, ap_error *err)
{
    if (ctx->precision != AP_GPU_BF16) {
        conv_buffers buffers = {conv->input->data, conv->weight->data, conv->output.data, NULL};
        return run_forward(ctx, conv, &buffers, err);
    }
    GPU_TRY(ap_cuda_float_to_bf16(conv->input->data, conv->half_input, conv->input->floats,
                                  ctx->stream, err));
    GPU_TRY(ap_cuda_float_to_bf16(conv->weight->data, conv->half_weight, conv->weight->size,
                                  ctx->stream, err));
    conv_buffers buffers = {conv->half_input, conv->half_weight, ctx->half_out, NULL};
    GPU_TRY(run_forward(ctx, conv, &buffers, err));
    return ap_cuda_bf16_to_float(ctx->half_out, conv->output.data, conv->output.floats, false,
                                 ctx->stream, err);
}

/* beta 1 adds the result to the buffer instead of overwriting it. */
static ap_status run_backward_filter(gpu_context *ctx, gpu_conv *conv, const conv_buffers *buffers,
                                     bool accumulate, ap_error *err)
{
    const float one = 1.0f, zero = 0.0f;
    GPU_CUDNN(cudnnSetConvolutionMathType(conv->conv, (cudnnMathType_t)conv->bwd_filter.math_type),
              err);
    GPU_CUDNN(cudnnConvolutionBackwardFilter(
                  ctx->cudnn, &one, run_input_desc(conv), buffers->input, run_output_desc(conv),
                  buffers->output_grad, conv->conv,
                  (cudnnConvolutionBwdFilterAlgo_t)conv->bwd_filter.algorithm, ctx->workspace,
                  ctx->workspace_bytes, accumulate ? &one : &zero, conv->filter, buffers->result),
              err);
    return AP_OK;
}

ap_status gpu_conv_backward_filter(gpu_context *ctx, gpu_conv *conv, bool accumulate, ap_error *err)
{
    if (ctx->precision != AP_GPU_BF16) {
        conv_buffers buffers = {conv->input->data, NULL, conv->weight->grad, conv->output.diff};
        return run_backward_filter(ctx, conv, &buffers, accumulate, err);
    }
    GPU_TRY(ap_cuda_float_to_bf16(conv->output.diff, ctx->half_out, conv->output.floats,
                                  ctx->stream, err));
    conv_buffers buffers = {conv->half_input, NULL, ctx->half_in, ctx->half_out};
    GPU_TRY(run_backward_filter(ctx, conv, &buffers, false, err));
    return ap_cuda_bf16_to_float(ctx->half_in, conv->weight->grad, conv->weight->size, accumulate,
                                 ctx->stream, err);
}

static ap_status run_backward_data(gpu_context *ctx, gpu_conv *conv, const conv_buffers *buffers,
                                   bool accumulate, ap_error *err)
{
    const float one = 1.0f, zero = 0.0f;
    GPU_CUDNN(cudnnSetConvolutionMathType(conv->conv, (cudnnMathType_t)conv->bwd_data.math_type),
              err);
    GPU_CUDNN(cudnnConvolutionBackwardData(ctx->cudnn, &one, conv->filter, buffers->weight,
                                           run_output_desc(conv), buffers->output_grad, conv->conv,
                                           (cudnnConvolutionBwdDataAlgo_t)conv->bwd_data.algorithm,
                                           ctx->workspace, ctx->workspace_bytes,
                                           accumulate ? &one : &zero, run_input_desc(conv),
                                           buffers->result),
              err);
    return AP_OK;
}

ap_status gpu_conv_backward_data(gpu_context *ctx, gpu_conv *conv, float *target, bool accumulate,
                                 ap_error *err)
{
    if (!conv->needs_bwd_data)
        return ap_error_set(err, AP_ERR_INVALID,
                            "network layer %s: built without a backward-data pass", conv->name);
    if (ctx->precision != AP_GPU_BF16) {
        conv_buffers buffers = {NULL, conv->weight->data, target, conv->output.diff};
        return run_backward_data(ctx, conv, &buffers, accumulate, err);
    }
    /* half_weight still contains the weights of the forward pass, since the
     * optimizer runs after the whole backward pass. */
    GPU_TRY(ap_cuda_float_to_bf16(conv->output.diff, ctx->half_out, conv->output.floats,
                                  ctx->stream, err));
    conv_buffers buffers = {NULL, conv->half_weight, ctx->half_in, ctx->half_out};
    GPU_TRY(run_backward_data(ctx, conv, &buffers, false, err));
    return ap_cuda_bf16_to_float(ctx->half_in, target, conv->input->floats, accumulate, ctx->stream,
                                 err);
}
