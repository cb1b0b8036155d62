#include "pipeline/nn_cuda/gpu_net_internal.h"

#include <stdlib.h>

#include "kernels/cuda/elementwise.h"
#include "pipeline/nn_cuda/gpu_check.h"

static int current_device(void)
{
    int device = -1;
    if (cudaGetDevice(&device) != cudaSuccess)
        device = -1;
    return device;
}

ap_status gpu_cudnn_failure(cudnnStatus_t status, const char *call, const char *file, int line,
                            ap_error *err)
{
    return ap_error_set(err, AP_ERR_BACKEND, "cuDNN call %s failed at %s:%d on device %d: %s", call,
                        file, line, current_device(), cudnnGetErrorString(status));
}

ap_status gpu_cublas_failure(cublasStatus_t status, const char *call, const char *file, int line,
                             ap_error *err)
{
    return ap_error_set(err, AP_ERR_BACKEND, "cuBLAS call %s failed at %s:%d on device %d: %s (%s)",
                        call, file, line, current_device(), cublasGetStatusName(status),
                        cublasGetStatusString(status));
}

ap_status gpu_alloc(gpu_context *ctx, size_t bytes, const char *what, void **out, ap_error *err)
{
    *out = NULL;
    if (ctx->allocation_count == ctx->allocation_capacity) {
        size_t capacity = ctx->allocation_capacity > 0 ? 2 * ctx->allocation_capacity : 64;
        void **list = realloc(ctx->allocations, capacity * sizeof(*list));
        if (list == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "network: out of host memory for %s", what);
        ctx->allocations = list;
        ctx->allocation_capacity = capacity;
    }
    void *memory = NULL;
    cudaError_t status = cudaMalloc(&memory, bytes > 0 ? bytes : 1);
    if (status != cudaSuccess)
        return ap_error_set(err,
                            status == cudaErrorMemoryAllocation ? AP_ERR_NOMEM : AP_ERR_BACKEND,
                            "network layer %s: cudaMalloc of %zu bytes failed on device %d: %s; "
                            "lower train.batch_size",
                            what, bytes, current_device(), cudaGetErrorString(status));
    ctx->allocations[ctx->allocation_count++] = memory;
    AP_CUDA_CHECK(cudaMemsetAsync(memory, 0, bytes > 0 ? bytes : 1, ctx->stream), err);
    *out = memory;
    return AP_OK;
}

ap_status gpu_act_create(gpu_context *ctx, int batch, int channels, int height, int width,
                         const char *layer, gpu_act *act, ap_error *err)
{
    act->batch = batch;
    act->channels = channels;
    act->height = height;
    act->width = width;
    act->floats = (size_t)batch * (size_t)channels * (size_t)height * (size_t)width;
    /* cuDNN's legacy tensor descriptors address at most 2^31 - 1 elements. */
    if (act->floats > (size_t)INT32_MAX)
        return ap_error_set(err, AP_ERR_INVALID,
                            "network layer %s: %dx%dx%dx%d activation has %zu values, more than "
                            "cuDNN's limit of 2^31 - 1; lower train.batch_size or raise "
                            "train.accumulation_steps",
                            layer, batch, channels, height, width, act->floats);
    void *data = NULL, *diff = NULL;
    GPU_TRY(gpu_alloc(ctx, act->floats * sizeof(float), layer, &data, err));
    GPU_TRY(gpu_alloc(ctx, act->floats * sizeof(float), layer, &diff, err));
    act->data = data;
    act->diff = diff;
    GPU_CUDNN(cudnnCreateTensorDescriptor(&act->desc), err);
    GPU_CUDNN(cudnnSetTensor4dDescriptor(act->desc, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, batch,
                                         channels, height, width),
              err);
    return AP_OK;
}

ap_status gpu_bn_create(gpu_context *ctx, gpu_bn *bn, gpu_act *input, bool relu,
                        ap_gpu_tensor *tensors, ap_error *err)
{
    bn->input = input;
    bn->relu = relu;
    bn->scale = &tensors[0];
    bn->shift = &tensors[1];
    bn->running_mean = &tensors[2];
    bn->running_var = &tensors[3];
    for (int i = 0; i < 4; i++)
        if (tensors[i].size != (size_t)input->channels)
            return ap_error_set(err, AP_ERR_INVALID,
                                "network layer %s: tensor %s has %zu values for %d channels",
                                bn->name, tensors[i].name, tensors[i].size, input->channels);
    GPU_TRY(gpu_act_create(ctx, input->batch, input->channels, input->height, input->width,
                           bn->name, &bn->output, err));
    void *mean = NULL, *inv_var = NULL;
    GPU_TRY(gpu_alloc(ctx, (size_t)input->channels * sizeof(float), bn->name, &mean, err));
    GPU_TRY(gpu_alloc(ctx, (size_t)input->channels * sizeof(float), bn->name, &inv_var, err));
    bn->save_mean = mean;
    bn->save_inv_var = inv_var;
    GPU_CUDNN(cudnnCreateTensorDescriptor(&bn->param_desc), err);
    GPU_CUDNN(cudnnDeriveBNTensorDescriptor(bn->param_desc, input->desc, CUDNN_BATCHNORM_SPATIAL),
              err);
    return AP_OK;
}

/* Training normalises with the batch statistics and updates the running
 * ones with exponentialAverageFactor 0.1 (running = 0.9 running + 0.1
 * batch), which is PyTorch's momentum 0.1. cuDNN blends the unbiased batch
 * variance into the running one, as PyTorch on cuDNN and the CPU network
 * do. The saved mean and inverse standard deviation feed the backward pass,
 * with the same epsilon (cuDNN 9 accepts any epsilon >= CUDNN_BN_MIN_EPSILON,
 * which is 0). CUDNN_BATCHNORM_SPATIAL, not its persistent variant, whose
 * reductions may use atomics. */
ap_status gpu_bn_forward(gpu_context *ctx, gpu_bn *bn, bool training, ap_error *err)
{
    const float one = 1.0f, zero = 0.0f;
    if (training)
        GPU_CUDNN(cudnnBatchNormalizationForwardTraining(
                      ctx->cudnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, bn->input->desc,
                      bn->input->data, bn->output.desc, bn->output.data, bn->param_desc,
                      bn->scale->data, bn->shift->data, GPU_BN_MOMENTUM, bn->running_mean->data,
                      bn->running_var->data, GPU_BN_EPSILON, bn->save_mean, bn->save_inv_var),
                  err);
    else
        GPU_CUDNN(cudnnBatchNormalizationForwardInference(
                      ctx->cudnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, bn->input->desc,
                      bn->input->data, bn->output.desc, bn->output.data, bn->param_desc,
                      bn->scale->data, bn->shift->data, bn->running_mean->data,
                      bn->running_var->data, GPU_BN_EPSILON),
                  err);
    if (bn->relu)
        return ap_cuda_relu(bn->output.data, bn->output.floats, ctx->stream, err);
    return AP_OK;
}

/* With the ReLU, the gradient is first masked where the output is zero.
 * That mask is exact because the output after the ReLU is positive exactly
 * where the one before was. */
ap_status gpu_bn_backward(gpu_context *ctx, gpu_bn *bn, const float *dy, bool accumulate,
                          ap_error *err)
{
    if (bn->relu) {
        GPU_TRY(ap_cuda_relu_backward(bn->output.data, dy, bn->output.diff, bn->output.floats,
                                      ctx->stream, err));
        dy = bn->output.diff;
    }
    const float one = 1.0f, zero = 0.0f;
    GPU_CUDNN(cudnnBatchNormalizationBackward(
                  ctx->cudnn, CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one, accumulate ? &one : &zero,
                  bn->input->desc, bn->input->data, bn->output.desc, dy, bn->input->desc,
                  bn->input->diff, bn->param_desc, bn->scale->data, bn->scale->grad,
                  bn->shift->grad, GPU_BN_EPSILON, bn->save_mean, bn->save_inv_var),
              err);
    return AP_OK;
}

/* Max pooling skips padded positions, as oneDNN does. NOTE: where several
 * inputs of a window tie for the maximum, the backward pass routes the
 * gradient to one of them. oneDNN picks the first in the window and cuDNN
 * does not document which, so gradients may differ from the CPU network's
 * where positive values tie (flat image regions). Ties at 0 after the ReLU
 * do not matter, because the ReLU's backward pass zeroes them. Average
 * pooling counts only unpadded inputs, and the head uses it without padding. */
ap_status gpu_pool_create(gpu_context *ctx, gpu_pool *pool, gpu_act *input, bool max, int kernel_h,
                          int kernel_w, int stride_h, int stride_w, int padding, ap_error *err)
{
    pool->input = input;
    cudnnPoolingMode_t mode = CUDNN_POOLING_AVERAGE_COUNT_EXCLUDE_PADDING;
    if (max)
        mode = ctx->deterministic ? CUDNN_POOLING_MAX_DETERMINISTIC : CUDNN_POOLING_MAX;
    GPU_CUDNN(cudnnCreatePoolingDescriptor(&pool->desc), err);
    GPU_CUDNN(cudnnSetPooling2dDescriptor(pool->desc, mode, CUDNN_NOT_PROPAGATE_NAN, kernel_h,
                                          kernel_w, padding, padding, stride_h, stride_w),
              err);
    int dims[4] = {0};
    GPU_CUDNN(cudnnGetPooling2dForwardOutputDim(pool->desc, input->desc, &dims[0], &dims[1],
                                                &dims[2], &dims[3]),
              err);
    return gpu_act_create(ctx, dims[0], dims[1], dims[2], dims[3], pool->name, &pool->output, err);
}

ap_status gpu_pool_forward(gpu_context *ctx, gpu_pool *pool, ap_error *err)
{
    const float one = 1.0f, zero = 0.0f;
    GPU_CUDNN(cudnnPoolingForward(ctx->cudnn, pool->desc, &one, pool->input->desc,
                                  pool->input->data, &zero, pool->output.desc, pool->output.data),
              err);
    return AP_OK;
}

ap_status gpu_pool_backward(gpu_context *ctx, gpu_pool *pool, ap_error *err)
{
    const float one = 1.0f, zero = 0.0f;
    GPU_CUDNN(cudnnPoolingBackward(ctx->cudnn, pool->desc, &one, pool->output.desc,
                                   pool->output.data, pool->output.desc, pool->output.diff,
                                   pool->input->desc, pool->input->data, &zero, pool->input->desc,
                                   pool->input->diff),
              err);
    return AP_OK;
}
