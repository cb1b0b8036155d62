#ifndef APIARY_NN_CUDA_GPU_PLAN_H
#define APIARY_NN_CUDA_GPU_PLAN_H

/* Host-side planning of the GPU backend: the cache of chosen convolution
 * algorithms and the gradient buckets of the all-reduce. It makes no CUDA
 * calls, so unit tests run it without a GPU. */

#include <stdbool.h>
#include <stddef.h>

#include "pipeline/common/status.h"

typedef enum {
    GPU_CONV_FORWARD = 0,
    GPU_CONV_BACKWARD_DATA,
    GPU_CONV_BACKWARD_FILTER,
} gpu_conv_pass;

/* Everything that decides which cuDNN algorithm suits a convolution pass:
 * input shape (NCHW), filter shape (KCRS), stride, padding, math mode and
 * whether only deterministic algorithms may run. */
typedef struct {
    gpu_conv_pass pass;
    int batch;
    int in_channels;
    int height;
    int width;
    int out_channels;
    int kernel;
    int stride;
    int padding;
    int precision;
    bool deterministic;
} gpu_algo_key;

typedef struct {
    int algorithm; /* a cudnnConvolution*Algo_t value */
    int math_type; /* a cudnnMathType_t value */
    size_t workspace_bytes;
} gpu_algo_choice;

typedef struct {
    gpu_algo_key *keys;
    gpu_algo_choice *choices;
    size_t count;
    size_t capacity;
    size_t hits;
    size_t misses;
} gpu_algo_cache;

bool gpu_algo_key_equal(const gpu_algo_key *a, const gpu_algo_key *b);
/* Write the key as text for logs, for example
 * "forward 32x64x38x75 k128 3x3 stride 2 pad 1 fp32 deterministic". */
void gpu_algo_key_format(const gpu_algo_key *key, char *out, size_t out_size);
/* Find the choice made for key and count a hit or a miss. Returns false on
 * a miss. */
bool gpu_algo_cache_find(gpu_algo_cache *cache, const gpu_algo_key *key, gpu_algo_choice *out);
ap_status gpu_algo_cache_put(gpu_algo_cache *cache, const gpu_algo_key *key,
                             const gpu_algo_choice *choice, ap_error *err);
void gpu_algo_cache_free(gpu_algo_cache *cache);

/* A range [begin, end) of the gradient buffer that one all-reduce sums. */
typedef struct {
    size_t begin;
    size_t end;
} gpu_grad_bucket;

/* Split the gradients of tensors (offsets and sizes in the gradient buffer,
 * in tensor order, back to back from 0) into buckets in backward order.
 * The backward pass finishes the last tensor first, so the first bucket ends
 * at the end of the buffer. Each bucket takes whole tensors, never splitting
 * one, until it contains at least target floats. *buckets is allocated and
 * receives *bucket_count entries. */
ap_status gpu_grad_buckets_plan(const size_t *offsets, const size_t *sizes, size_t tensor_count,
                                size_t target, gpu_grad_bucket **buckets, size_t *bucket_count,
                                ap_error *err);

#endif
