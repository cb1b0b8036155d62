#include <stdlib.h>
#include <string.h>

#include "pipeline/config/config.h"
#include "pipeline/train/train_backend.h"
#include "tests/unit/check.h"

#ifdef APIARY_HAVE_CUDNN
#include "pipeline/nn_cuda/gpu_net.h"
#include "pipeline/nn_cuda/gpu_plan.h"

/* Host-side planning of the GPU backend, which runs without a GPU. */

static void test_buckets_cover_buffer(void)
{
    const size_t sizes[5] = {10, 3, 7, 20, 2};
    size_t offsets[5], offset = 0;
    for (int i = 0; i < 5; i++) {
        offsets[i] = offset;
        offset += sizes[i];
    }
    gpu_grad_bucket *buckets = NULL;
    size_t count = 0;
    ap_error err = {0};
    CHECK_INT_EQ(gpu_grad_buckets_plan(offsets, sizes, 5, 9, &buckets, &count, &err), AP_OK);
    /* Backward order: {2, 20} ends at 42, then {7, 3} (10 floats), then {10}. */
    CHECK_INT_EQ(count, 3);
    if (count == 3) {
        CHECK_INT_EQ(buckets[0].begin, 20);
        CHECK_INT_EQ(buckets[0].end, 42);
        CHECK_INT_EQ(buckets[1].begin, 10);
        CHECK_INT_EQ(buckets[1].end, 20);
        CHECK_INT_EQ(buckets[2].begin, 0);
        CHECK_INT_EQ(buckets[2].end, 10);
    }
    free(buckets);
}

static void test_one_bucket_when_target_large(void)
{
    const size_t sizes[3] = {4, 4, 4}, offsets[3] = {0, 4, 8};
    gpu_grad_bucket *buckets = NULL;
    size_t count = 0;
    ap_error err = {0};
    CHECK_INT_EQ(gpu_grad_buckets_plan(offsets, sizes, 3, 1000, &buckets, &count, &err), AP_OK);
    CHECK_INT_EQ(count, 1);
    if (count == 1) {
        CHECK_INT_EQ(buckets[0].begin, 0);
        CHECK_INT_EQ(buckets[0].end, 12);
    }
    free(buckets);
}

static void test_buckets_reject_gap(void)
{
    const size_t sizes[2] = {4, 4}, offsets[2] = {0, 5};
    gpu_grad_bucket *buckets = NULL;
    size_t count = 0;
    ap_error err = {0};
    CHECK_INT_EQ(gpu_grad_buckets_plan(offsets, sizes, 2, 4, &buckets, &count, &err),
                 AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "tensor 1");
    CHECK(buckets == NULL);
}

static gpu_algo_key sample_key(void)
{
    gpu_algo_key key = {GPU_CONV_FORWARD, 32, 64, 38, 75, 128, 3, 2, 1, 0, true};
    return key;
}

static void test_algo_cache_hits_same_shape(void)
{
    gpu_algo_cache cache = {0};
    gpu_algo_key key = sample_key();
    gpu_algo_choice choice = {7, 1, 4096}, found = {0};
    ap_error err = {0};
    CHECK(!gpu_algo_cache_find(&cache, &key, &found));
    CHECK_INT_EQ(gpu_algo_cache_put(&cache, &key, &choice, &err), AP_OK);
    CHECK(gpu_algo_cache_find(&cache, &key, &found));
    CHECK_INT_EQ(found.algorithm, 7);
    CHECK_INT_EQ(found.workspace_bytes, 4096);
    CHECK_INT_EQ(cache.hits, 1);
    CHECK_INT_EQ(cache.misses, 1);
    gpu_algo_cache_free(&cache);
}

static void test_algo_cache_keys_differ(void)
{
    gpu_algo_cache cache = {0};
    gpu_algo_key key = sample_key();
    gpu_algo_choice choice = {1, 0, 0}, found = {0};
    ap_error err = {0};
    CHECK_INT_EQ(gpu_algo_cache_put(&cache, &key, &choice, &err), AP_OK);
    gpu_algo_key other = key;
    other.pass = GPU_CONV_BACKWARD_DATA;
    CHECK(!gpu_algo_cache_find(&cache, &other, &found));
    other = key;
    other.deterministic = false;
    CHECK(!gpu_algo_cache_find(&cache, &other, &found));
    other = key;
    other.stride = 1;
    CHECK(!gpu_algo_cache_find(&cache, &other, &found));
    other = key;
    other.precision = 1;
    CHECK(!gpu_algo_cache_find(&cache, &other, &found));
    gpu_algo_cache_free(&cache);
}

static void test_algo_key_text(void)
{
    gpu_algo_key key = sample_key();
    char text[160];
    gpu_algo_key_format(&key, text, sizeof(text));
    CHECK_STR_CONTAINS(text, "forward 32x64x38x75 k128 3x3 stride 2 pad 1 fp32 deterministic");
}

static void test_precision_names(void)
{
    ap_gpu_precision precision = AP_GPU_FP32;
    ap_error err = {0};
    CHECK_INT_EQ(ap_gpu_precision_parse("tf32", &precision, &err), AP_OK);
    CHECK_INT_EQ(precision, AP_GPU_TF32);
    CHECK_INT_EQ(ap_gpu_precision_parse("bf16", &precision, &err), AP_OK);
    CHECK_INT_EQ(precision, AP_GPU_BF16);
    CHECK_INT_EQ(ap_gpu_precision_parse("fp16", &precision, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "fp16");
}
#endif

static void set_or_fail(ap_config *cfg, const char *assignment)
{
    ap_error err = {0};
    ap_status status = ap_config_set(cfg, assignment, &err);
    if (status != AP_OK)
        fprintf(stderr, "%s: %s\n", assignment, err.message);
    CHECK_INT_EQ(status, AP_OK);
}

/* Without a usable GPU, cuda is rejected with a message that names the fix. */
static void test_cuda_rejected_without_device(void)
{
    ap_config cfg;
    ap_config_defaults(&cfg);
    set_or_fail(&cfg, "train.device=cuda");
    ap_error err = {0};
    ap_status status = ap_train_device_check(&cfg, &err);
#ifdef APIARY_HAVE_CUDNN
    if (ap_gpu_device_count(NULL, 0) > 0) {
        CHECK_INT_EQ(status, AP_OK);
        return;
    }
#endif
    CHECK_INT_EQ(status, AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "train.device=cpu");
}

static void test_gpu_settings_rejected_on_cpu(void)
{
    ap_config cfg;
    ap_config_defaults(&cfg);
    ap_error err = {0};
    CHECK_INT_EQ(ap_train_device_check(&cfg, &err), AP_OK);
    set_or_fail(&cfg, "train.precision=tf32");
    CHECK_INT_EQ(ap_train_device_check(&cfg, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "train.precision");
}

/* bf16 and the focal and asymmetric losses run on the GPU, so a failed
 * check can only be about the device. */
static void test_bf16_and_focal_accepted(void)
{
    ap_config cfg;
    ap_config_defaults(&cfg);
    set_or_fail(&cfg, "train.device=cuda");
    set_or_fail(&cfg, "train.precision=bf16");
    set_or_fail(&cfg, "train.loss=focal");
    ap_error err = {0};
    ap_status status = ap_train_device_check(&cfg, &err);
#ifdef APIARY_HAVE_CUDNN
    if (ap_gpu_device_count(NULL, 0) > 0) {
        CHECK_INT_EQ(status, AP_OK);
        return;
    }
#endif
    CHECK_INT_EQ(status, AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "train.device=cpu");
    CHECK(strstr(err.message, "train.precision") == NULL);
    CHECK(strstr(err.message, "train.loss") == NULL);
}

int main(void)
{
#ifdef APIARY_HAVE_CUDNN
    test_buckets_cover_buffer();
    test_one_bucket_when_target_large();
    test_buckets_reject_gap();
    test_algo_cache_hits_same_shape();
    test_algo_cache_keys_differ();
    test_algo_key_text();
    test_precision_names();
#endif
    test_cuda_rejected_without_device();
    test_gpu_settings_rejected_on_cpu();
    test_bf16_and_focal_accepted();
    return check_finish();
}
