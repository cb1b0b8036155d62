#ifndef APIARY_NN_CUDA_GPU_NET_INTERNAL_H
#define APIARY_NN_CUDA_GPU_NET_INTERNAL_H

/* Layers of the GPU network. Like the CPU layers (pipeline/nn/layers.h),
 * each layer reads the activation of the layer before it and owns its
 * output and the output's gradient, all plain NCHW float in device memory. */

#include <stdbool.h>
#include <stdint.h>

#include <cublas_v2.h>
#include <cudnn.h>

#include "pipeline/nn_cuda/gpu_net.h"
#include "pipeline/nn_cuda/gpu_plan.h"

/* PyTorch's default batch-norm epsilon and running-statistics momentum, as
 * on the CPU. */
#define GPU_BN_EPSILON  1e-5
#define GPU_BN_MOMENTUM 0.1

typedef struct {
    int batch;
    int channels;
    int height;
    int width;
    size_t floats;
    float *data;
    float *diff;
    cudnnTensorDescriptor_t desc;
} gpu_act;

/* Handles, workspace and the algorithm cache shared by the layers. */
typedef struct {
    cudaStream_t stream;
    cudnnHandle_t cudnn;
    cublasHandle_t cublas;
    ap_gpu_precision precision;
    bool deterministic;
    size_t workspace_limit;
    void *workspace;
    size_t workspace_bytes;
    /* bf16 only: scratch for one convolution's bf16 output or output
     * gradient (half_out) and input gradient or weight gradient (half_in),
     * each sized for the largest convolution. */
    uint16_t *half_out;
    uint16_t *half_in;
    size_t half_out_count;
    size_t half_in_count;
    gpu_algo_cache algorithms;
    /* Device allocations, freed together. */
    void **allocations;
    size_t allocation_count;
    size_t allocation_capacity;
} gpu_context;

/* A convolution without bias. In bf16 the float input and weight are
 * rounded into bf16 copies before cuDNN runs, cuDNN accumulates in float,
 * and its bf16 results are widened back into the float buffers. The input
 * copy stays for the weight gradient of the backward pass. */
typedef struct {
    char name[AP_PARAM_NAME_MAX];
    int kernel;
    int stride;
    int padding;
    bool needs_bwd_data;
    ap_gpu_tensor *weight;
    gpu_act *input;
    gpu_act output;
    cudnnFilterDescriptor_t filter; /* in the data type cuDNN runs with */
    cudnnConvolutionDescriptor_t conv;
    /* bf16 only (NULL otherwise): descriptors and copies of input and weight */
    cudnnTensorDescriptor_t half_input_desc;
    cudnnTensorDescriptor_t half_output_desc;
    uint16_t *half_input;
    uint16_t *half_weight;
    gpu_algo_choice fwd;
    gpu_algo_choice bwd_data;
    gpu_algo_choice bwd_filter;
    double macs_per_image;
} gpu_conv;

/* Batch norm, with a ReLU applied in place to its output when relu is set. */
typedef struct {
    char name[AP_PARAM_NAME_MAX];
    bool relu;
    ap_gpu_tensor *scale; /* followed by shift, running mean and running variance */
    ap_gpu_tensor *shift;
    ap_gpu_tensor *running_mean;
    ap_gpu_tensor *running_var;
    gpu_act *input;
    gpu_act output;
    float *save_mean;
    float *save_inv_var;
    cudnnTensorDescriptor_t param_desc;
} gpu_bn;

typedef struct {
    char name[AP_PARAM_NAME_MAX];
    gpu_act *input;
    gpu_act output;
    cudnnPoolingDescriptor_t desc;
} gpu_pool;

typedef struct {
    char prefix[AP_PARAM_NAME_MAX];
    bool projection;
    gpu_act *input;
    gpu_conv conv1;
    gpu_bn bn1;
    gpu_conv conv2;
    gpu_bn bn2;
    gpu_conv shortcut_conv;
    gpu_bn shortcut_bn;
    gpu_act output; /* ReLU(bn2 + shortcut) */
} gpu_block;

typedef struct {
    int batch;
    int features;
    int labels;
    float dropout;
    ap_gpu_tensor *weight;
    ap_gpu_tensor *bias;
    float *dropped;
    float *mask;
    float *d_dropped;
    const float *dense_input;
    bool dropout_applied;
} gpu_head;

/* Layer setup and passes (gpu_layers.c). */
ap_status gpu_alloc(gpu_context *ctx, size_t bytes, const char *what, void **out, ap_error *err);
ap_status gpu_act_create(gpu_context *ctx, int batch, int channels, int height, int width,
                         const char *layer, gpu_act *act, ap_error *err);
ap_status gpu_conv_create(gpu_context *ctx, gpu_conv *conv, gpu_act *input, ap_gpu_tensor *weight,
                          int stride, bool needs_bwd_data, ap_error *err);
/* bf16 only: allocate the shared scratch once every convolution exists. */
ap_status gpu_conv_allocate_scratch(gpu_context *ctx, ap_error *err);
void gpu_conv_destroy(gpu_conv *conv);
ap_status gpu_conv_forward(gpu_context *ctx, gpu_conv *conv, ap_error *err);
ap_status gpu_conv_backward_filter(gpu_context *ctx, gpu_conv *conv, bool accumulate,
                                   ap_error *err);
/* Set (or add to, with accumulate) target, the input's gradient. */
ap_status gpu_conv_backward_data(gpu_context *ctx, gpu_conv *conv, float *target, bool accumulate,
                                 ap_error *err);
ap_status gpu_bn_create(gpu_context *ctx, gpu_bn *bn, gpu_act *input, bool relu,
                        ap_gpu_tensor *tensors, ap_error *err);
ap_status gpu_bn_forward(gpu_context *ctx, gpu_bn *bn, bool training, ap_error *err);
/* Backward from bn->output.diff; dy may be another buffer (a shared sum gradient). */
ap_status gpu_bn_backward(gpu_context *ctx, gpu_bn *bn, const float *dy, bool accumulate,
                          ap_error *err);
ap_status gpu_pool_create(gpu_context *ctx, gpu_pool *pool, gpu_act *input, bool max, int kernel_h,
                          int kernel_w, int stride_h, int stride_w, int padding, ap_error *err);
ap_status gpu_pool_forward(gpu_context *ctx, gpu_pool *pool, ap_error *err);
ap_status gpu_pool_backward(gpu_context *ctx, gpu_pool *pool, ap_error *err);

#endif
