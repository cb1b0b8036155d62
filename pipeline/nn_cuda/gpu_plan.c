#include "pipeline/nn_cuda/gpu_plan.h"

#include <stdio.h>
#include <stdlib.h>

static const char *pass_name(gpu_conv_pass pass)
{
    switch (pass) {
    case GPU_CONV_FORWARD:
        return "forward";
    case GPU_CONV_BACKWARD_DATA:
        return "backward-data";
    case GPU_CONV_BACKWARD_FILTER:
        return "backward-filter";
    }
    return "unknown";
}

static const char *precision_name(int precision)
{
    static const char *const names[] = {"fp32", "tf32", "bf16"};
    return precision >= 0 && precision < 3 ? names[precision] : "unknown";
}

bool gpu_algo_key_equal(const gpu_algo_key *a, const gpu_algo_key *b)
{
    return a->pass == b->pass && a->batch == b->batch && a->in_channels == b->in_channels &&
           a->height == b->height && a->width == b->width && a->out_channels == b->out_channels &&
           a->kernel == b->kernel && a->stride == b->stride && a->padding == b->padding &&
           a->precision == b->precision && a->deterministic == b->deterministic;
}

void gpu_algo_key_format(const gpu_algo_key *key, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s %dx%dx%dx%d k%d %dx%d stride %d pad %d %s%s", pass_name(key->pass),
             key->batch, key->in_channels, key->height, key->width, key->out_channels, key->kernel,
             key->kernel, key->stride, key->padding, precision_name(key->precision),
             key->deterministic ? " deterministic" : "");
}

bool gpu_algo_cache_find(gpu_algo_cache *cache, const gpu_algo_key *key, gpu_algo_choice *out)
{
    for (size_t i = 0; i < cache->count; i++) {
        if (gpu_algo_key_equal(&cache->keys[i], key)) {
            *out = cache->choices[i];
            cache->hits++;
            return true;
        }
    }
    cache->misses++;
    return false;
}

ap_status gpu_algo_cache_put(gpu_algo_cache *cache, const gpu_algo_key *key,
                             const gpu_algo_choice *choice, ap_error *err)
{
    for (size_t i = 0; i < cache->count; i++) {
        if (gpu_algo_key_equal(&cache->keys[i], key)) {
            cache->choices[i] = *choice;
            return AP_OK;
        }
    }
    if (cache->count == cache->capacity) {
        size_t capacity = cache->capacity > 0 ? 2 * cache->capacity : 16;
        gpu_algo_key *keys = realloc(cache->keys, capacity * sizeof(*keys));
        if (keys == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot grow the cuDNN algorithm cache");
        cache->keys = keys;
        gpu_algo_choice *choices = realloc(cache->choices, capacity * sizeof(*choices));
        if (choices == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot grow the cuDNN algorithm cache");
        cache->choices = choices;
        cache->capacity = capacity;
    }
    cache->keys[cache->count] = *key;
    cache->choices[cache->count] = *choice;
    cache->count++;
    return AP_OK;
}

void gpu_algo_cache_free(gpu_algo_cache *cache)
{
    free(cache->keys);
    free(cache->choices);
    *cache = (gpu_algo_cache){0};
}

static ap_status check_layout(const size_t *offsets, const size_t *sizes, size_t tensor_count,
                              ap_error *err)
{
    size_t expected = 0;
    for (size_t i = 0; i < tensor_count; i++) {
        if (offsets[i] != expected || sizes[i] == 0)
            return ap_error_set(err, AP_ERR_INVALID,
                                "gradient buckets: tensor %zu has offset %zu and size %zu; "
                                "expected offset %zu and a positive size",
                                i, offsets[i], sizes[i], expected);
        expected += sizes[i];
    }
    return AP_OK;
}

ap_status gpu_grad_buckets_plan(const size_t *offsets, const size_t *sizes, size_t tensor_count,
                                size_t target, gpu_grad_bucket **buckets, size_t *bucket_count,
                                ap_error *err)
{
    *buckets = NULL;
    *bucket_count = 0;
    if (tensor_count == 0 || target == 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "gradient buckets: %zu tensors and a target of %zu floats; both must "
                            "be positive",
                            tensor_count, target);
    ap_status status = check_layout(offsets, sizes, tensor_count, err);
    if (status != AP_OK)
        return status;
    gpu_grad_bucket *list = calloc(tensor_count, sizeof(*list));
    if (list == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %zu gradient buckets",
                            tensor_count);

    size_t count = 0;
    size_t end = offsets[tensor_count - 1] + sizes[tensor_count - 1];
    for (size_t remaining = tensor_count; remaining > 0;) {
        size_t begin = end;
        while (remaining > 0 && end - begin < target) {
            remaining--;
            begin = offsets[remaining];
        }
        list[count++] = (gpu_grad_bucket){begin, end};
        end = begin;
    }
    *buckets = list;
    *bucket_count = count;
    return AP_OK;
}
