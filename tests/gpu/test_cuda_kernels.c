#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "kernels/cpu/adamw.h"
#include "kernels/cpu/bce_loss.h"
#include "kernels/cpu/preprocess.h"
#include "kernels/cuda/adamw.h"
#include "kernels/cuda/bce_loss.h"
#include "kernels/cuda/preprocess.h"
#include "pipeline/parallel/data_parallel.h"
#include "tests/unit/check.h"

/* Each CUDA kernel is compared with its CPU counterpart on random inputs
 * through a scale-free error: the largest absolute difference over the
 * largest absolute CPU value. */

static cudaStream_t stream;

static int cuda_ok(cudaError_t status, const char *call, const char *file, int line)
{
    if (status == cudaSuccess)
        return 1;
    fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", file, line, call, cudaGetErrorName(status),
            cudaGetErrorString(status));
    check_failures++;
    return 0;
}

#define CUDA_OK(call) cuda_ok((call), #call, __FILE__, __LINE__)

static int status_ok(ap_status status, const ap_error *err, const char *call, int line)
{
    if (status == AP_OK)
        return 1;
    fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__, line, call, ap_status_name(status),
            err->message);
    check_failures++;
    return 0;
}

#define STATUS_OK(call, err) status_ok((call), (err), #call, __LINE__)

/* malloc that counts a failed allocation as a failed check. */
static void *allocate(size_t bytes)
{
    void *memory = malloc(bytes);
    CHECK(memory != NULL);
    return memory;
}

/* Copies bytes of host memory into a new device buffer; NULL on failure. */
static void *to_device(const void *host, size_t bytes)
{
    void *device = NULL;
    if (!CUDA_OK(cudaMalloc(&device, bytes > 0 ? bytes : 1)))
        return NULL;
    if (host != NULL && bytes > 0 &&
        !CUDA_OK(cudaMemcpy(device, host, bytes, cudaMemcpyHostToDevice))) {
        cudaFree(device);
        return NULL;
    }
    return device;
}

static int to_host(void *host, const void *device, size_t bytes)
{
    if (!CUDA_OK(cudaStreamSynchronize(stream)))
        return 0;
    return CUDA_OK(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost));
}

static double scale_free_error(const float *actual, const float *reference, size_t size)
{
    double max_error = 0.0, max_value = 0.0;
    for (size_t i = 0; i < size; i++) {
        max_error = fmax(max_error, fabs((double)actual[i] - (double)reference[i]));
        max_value = fmax(max_value, fabs((double)reference[i]));
    }
    return max_value > 0.0 ? max_error / max_value : max_error;
}

static float uniform(float low, float high)
{
    return low + (high - low) * ((float)rand() / (float)RAND_MAX);
}

/* Preprocesses count images picked from a stored set of image_total by
 * indices (or the first count when indices is NULL) on both devices. */
static void compare_preprocess(int image_total, const int32_t *indices, int count, int height,
                               int width, int augment)
{
    const size_t image_bytes = (size_t)height * (size_t)width * 3;
    const size_t values = (size_t)count * image_bytes;
    const float mean[3] = {0.485f, 0.456f, 0.406f};
    const float std[3] = {0.229f, 0.224f, 0.225f};
    uint8_t *stored = allocate((size_t)image_total * image_bytes);
    uint8_t *batch = allocate(values);
    ap_augment_params *params = allocate((size_t)count * sizeof(*params));
    float *cpu = allocate(values * sizeof(float));
    float *gpu = allocate(values * sizeof(float));
    uint8_t *d_stored = NULL;
    int32_t *d_indices = NULL;
    ap_augment_params *d_params = NULL;
    float *d_means = NULL, *d_out = NULL;
    if (stored == NULL || batch == NULL || params == NULL || cpu == NULL || gpu == NULL)
        goto cleanup;

    for (size_t i = 0; i < (size_t)image_total * image_bytes; i++)
        stored[i] = (uint8_t)(rand() & 0xff);
    for (int n = 0; n < count; n++) {
        size_t source = indices != NULL ? (size_t)indices[n] : (size_t)n;
        memcpy(batch + (size_t)n * image_bytes, stored + source * image_bytes, image_bytes);
    }
    ap_augment_draw(99, 4, count, 1, 0.2f, 0.4f, params);
    params[0].contrast = 1.0f; /* one image skips the mean */
    ap_cpu_preprocess(batch, count, height, width, augment ? params : NULL, mean, std, cpu);

    d_stored = to_device(stored, (size_t)image_total * image_bytes);
    d_indices = indices != NULL ? to_device(indices, (size_t)count * sizeof(*indices)) : NULL;
    d_params = to_device(params, (size_t)count * sizeof(*params));
    d_means = to_device(NULL, (size_t)count * sizeof(float));
    d_out = to_device(NULL, values * sizeof(float));
    if (d_stored == NULL || (indices != NULL && d_indices == NULL) || d_params == NULL ||
        d_means == NULL || d_out == NULL)
        goto cleanup;

    ap_error err = {0};
    if (!STATUS_OK(ap_cuda_preprocess(d_stored, d_indices, count, height, width,
                                      augment ? d_params : NULL, mean, std, d_means, d_out, stream,
                                      &err),
                   &err))
        goto cleanup;
    if (!to_host(gpu, d_out, values * sizeof(float)))
        goto cleanup;

    /* Both build their tables with ap_preprocess_value, which rounds every
     * operation, so the outputs are expected to be identical; 1e-6 allows
     * only for a host compiler that fuses a multiply and an add. */
    CHECK_NEAR(scale_free_error(gpu, cpu, values), 0.0, 1e-6);

cleanup:
    cudaFree(d_stored);
    cudaFree(d_indices);
    cudaFree(d_params);
    cudaFree(d_means);
    cudaFree(d_out);
    free(stored);
    free(batch);
    free(params);
    free(cpu);
    free(gpu);
}

static void test_preprocess(void)
{
    /* 37 x 23 x 3 bytes is not a multiple of 4, so images start unaligned
     * and the byte sum takes its head and tail paths. */
    const int32_t indices[6] = {8, 0, 3, 3, 5, 1};
    compare_preprocess(9, indices, 6, 37, 23, 1);
    compare_preprocess(9, indices, 6, 37, 23, 0);
    compare_preprocess(32, NULL, 32, 150, 300, 1);
}

/* Runs the loss on both devices for one batch and compares loss and gradient. */
static void compare_bce_loss(int count, int labels, int with_weights, int all_unknown)
{
    const size_t total = (size_t)count * (size_t)labels;
    float *logits = allocate(total * sizeof(float));
    int8_t *targets = allocate(total);
    float *weights = allocate((size_t)labels * sizeof(float));
    float *cpu_grad = allocate(total * sizeof(float));
    float *gpu_grad = allocate(total * sizeof(float));
    float *d_logits = NULL, *d_weights = NULL, *d_grad = NULL, *d_loss = NULL;
    int8_t *d_targets = NULL;
    if (logits == NULL || targets == NULL || weights == NULL || cpu_grad == NULL ||
        gpu_grad == NULL)
        goto cleanup;

    for (size_t i = 0; i < total; i++) {
        logits[i] = uniform(-12.0f, 12.0f);
        targets[i] = all_unknown ? -1 : (int8_t)(rand() % 3 - 1);
    }
    for (int l = 0; l < labels; l++)
        weights[l] = uniform(0.5f, 5.0f);
    const float *cpu_weights = with_weights ? weights : NULL;
    float cpu_loss = ap_cpu_bce_loss(logits, targets, cpu_weights, count, labels, cpu_grad);

    d_logits = to_device(logits, total * sizeof(float));
    d_targets = to_device(targets, total);
    d_weights = to_device(weights, (size_t)labels * sizeof(float));
    d_grad = to_device(NULL, total * sizeof(float));
    d_loss = to_device(NULL, sizeof(float));
    if (d_logits == NULL || d_targets == NULL || d_weights == NULL || d_grad == NULL ||
        d_loss == NULL)
        goto cleanup;

    ap_error err = {0};
    float gpu_loss = -1.0f;
    if (!STATUS_OK(ap_cuda_bce_loss(d_logits, d_targets, with_weights ? d_weights : NULL, count,
                                    labels, d_grad, d_loss, stream, &err),
                   &err))
        goto cleanup;
    if (!to_host(gpu_grad, d_grad, total * sizeof(float)) ||
        !to_host(&gpu_loss, d_loss, sizeof(float)))
        goto cleanup;

    if (all_unknown) {
        CHECK_NEAR(gpu_loss, 0.0, 0.0);
        CHECK_NEAR(scale_free_error(gpu_grad, cpu_grad, total), 0.0, 0.0);
        goto cleanup;
    }
    /* Device expf and log1pf are not correctly rounded and can differ from
     * glibc's by a few ulp, which is a few 1e-7 relative in each element's
     * loss and gradient. The sums run in double. A bound of 1e-5 covers that
     * with margin and still catches a wrong term, which moves results by
     * percents. */
    CHECK_NEAR(fabs(gpu_loss - cpu_loss) / fabs(cpu_loss), 0.0, 1e-5);
    CHECK_NEAR(scale_free_error(gpu_grad, cpu_grad, total), 0.0, 1e-5);

cleanup:
    cudaFree(d_logits);
    cudaFree(d_targets);
    cudaFree(d_weights);
    cudaFree(d_grad);
    cudaFree(d_loss);
    free(logits);
    free(targets);
    free(weights);
    free(cpu_grad);
    free(gpu_grad);
}

static void test_bce_loss(void)
{
    compare_bce_loss(97, 4, 1, 0);
    compare_bce_loss(97, 4, 0, 0);
    compare_bce_loss(4096, 4, 1, 0); /* many entries per thread of the block */
    compare_bce_loss(8, 4, 1, 1);
}

/* The summed loss of one micro-batch against ap_dp_bce_loss_sum, called
 * twice so that the second call must add to the totals of the first. */
static void compare_bce_loss_sum(int count, int labels)
{
    const size_t total = (size_t)count * (size_t)labels;
    float *logits = allocate(total * sizeof(float));
    int8_t *targets = allocate(total);
    float *weights = allocate((size_t)labels * sizeof(float));
    float *cpu_grad = allocate(total * sizeof(float));
    float *gpu_grad = allocate(total * sizeof(float));
    float *d_logits = NULL, *d_weights = NULL, *d_grad = NULL, *d_totals = NULL;
    int8_t *d_targets = NULL;
    if (logits == NULL || targets == NULL || weights == NULL || cpu_grad == NULL ||
        gpu_grad == NULL)
        goto cleanup;
    for (size_t i = 0; i < total; i++) {
        logits[i] = uniform(-12.0f, 12.0f);
        targets[i] = (int8_t)(rand() % 3 - 1);
    }
    for (int l = 0; l < labels; l++)
        weights[l] = uniform(0.5f, 5.0f);
    long known = 0;
    double cpu_sum = ap_dp_bce_loss_sum(logits, targets, weights, count, labels, cpu_grad, &known);

    d_logits = to_device(logits, total * sizeof(float));
    d_targets = to_device(targets, total);
    d_weights = to_device(weights, (size_t)labels * sizeof(float));
    d_grad = to_device(NULL, total * sizeof(float));
    d_totals = to_device(NULL, 2 * sizeof(float));
    if (d_logits == NULL || d_targets == NULL || d_weights == NULL || d_grad == NULL ||
        d_totals == NULL || !CUDA_OK(cudaMemset(d_totals, 0, 2 * sizeof(float))))
        goto cleanup;
    ap_error err = {0};
    for (int pass = 0; pass < 2; pass++)
        if (!STATUS_OK(ap_cuda_bce_loss_sum(d_logits, d_targets, d_weights, count, labels, d_grad,
                                            d_totals, stream, &err),
                       &err))
            goto cleanup;
    float totals[2] = {0.0f, 0.0f};
    if (!to_host(gpu_grad, d_grad, total * sizeof(float)) ||
        !to_host(totals, d_totals, sizeof(totals)))
        goto cleanup;
    /* Same reasoning and bound as compare_bce_loss: device expf and log1pf
     * differ from glibc's by a few ulp per element. */
    CHECK_NEAR(fabs(totals[0] - 2.0 * cpu_sum) / fabs(2.0 * cpu_sum), 0.0, 1e-5);
    CHECK_INT_EQ(lroundf(totals[1]), 2 * known);
    CHECK_NEAR(scale_free_error(gpu_grad, cpu_grad, total), 0.0, 1e-5);

cleanup:
    cudaFree(d_logits);
    cudaFree(d_targets);
    cudaFree(d_weights);
    cudaFree(d_grad);
    cudaFree(d_totals);
    free(logits);
    free(targets);
    free(weights);
    free(cpu_grad);
    free(gpu_grad);
}

static void test_bce_loss_sum(void)
{
    compare_bce_loss_sum(16, 4);
    compare_bce_loss_sum(3000, 4); /* many entries per thread of the block */
}

static void test_adamw(void)
{
    enum { steps = 4 };
    const size_t size = 100003;
    const size_t bytes = size * sizeof(float);
    float *param = allocate(bytes);
    float *grad = allocate(bytes);
    float *m = allocate(bytes);
    float *v = allocate(bytes);
    float *gpu = allocate(bytes);
    float *d_param = NULL, *d_grad = NULL, *d_m = NULL, *d_v = NULL;
    if (param == NULL || grad == NULL || m == NULL || v == NULL || gpu == NULL)
        goto cleanup;

    for (size_t i = 0; i < size; i++) {
        param[i] = uniform(-1.0f, 1.0f);
        m[i] = 0.0f;
        v[i] = 0.0f;
    }
    d_param = to_device(param, bytes);
    d_grad = to_device(NULL, bytes);
    d_m = to_device(m, bytes);
    d_v = to_device(v, bytes);
    if (d_param == NULL || d_grad == NULL || d_m == NULL || d_v == NULL)
        goto cleanup;

    ap_adamw_args args = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.01f, 1};
    for (long step = 1; step <= steps; step++) {
        for (size_t i = 0; i < size; i++)
            grad[i] = uniform(-0.1f, 0.1f);
        if (!CUDA_OK(cudaMemcpy(d_grad, grad, bytes, cudaMemcpyHostToDevice)))
            goto cleanup;
        args.step = step;
        ap_cpu_adamw(param, grad, m, v, size, &args);
        ap_error err = {0};
        if (!STATUS_OK(ap_cuda_adamw(d_param, d_grad, d_m, d_v, size, &args, stream, &err), &err))
            goto cleanup;
        if (!CUDA_OK(cudaStreamSynchronize(stream)))
            goto cleanup;
    }

    /* Both run ap_adamw_element, which rounds every operation (sqrt and
     * division included, correctly rounded on both), so the results are
     * expected to be identical; 1e-6 allows only for a host compiler that
     * fuses a multiply and an add. */
    if (!to_host(gpu, d_param, bytes))
        goto cleanup;
    CHECK_NEAR(scale_free_error(gpu, param, size), 0.0, 1e-6);
    if (!to_host(gpu, d_m, bytes))
        goto cleanup;
    CHECK_NEAR(scale_free_error(gpu, m, size), 0.0, 1e-6);
    if (!to_host(gpu, d_v, bytes))
        goto cleanup;
    CHECK_NEAR(scale_free_error(gpu, v, size), 0.0, 1e-6);

cleanup:
    cudaFree(d_param);
    cudaFree(d_grad);
    cudaFree(d_m);
    cudaFree(d_v);
    free(param);
    free(grad);
    free(m);
    free(v);
    free(gpu);
}

static void test_invalid_arguments(void)
{
    ap_error err = {0};
    const float mean[3] = {0.5f, 0.5f, 0.5f};
    const float zero_std[3] = {0.25f, 0.0f, 0.25f};
    float *d_out = to_device(NULL, 3 * sizeof(float));
    uint8_t *d_image = to_device(NULL, 3);
    if (d_out == NULL || d_image == NULL)
        goto cleanup;

    CHECK_INT_EQ(
        ap_cuda_preprocess(d_image, NULL, 1, 1, 1, NULL, mean, zero_std, NULL, d_out, stream, &err),
        AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "channel 1");

    const ap_adamw_args step_zero = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 0};
    CHECK_INT_EQ(ap_cuda_adamw(d_out, d_out, d_out, d_out, 3, &step_zero, stream, &err),
                 AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "step 0");

    CHECK_INT_EQ(ap_cuda_bce_loss(d_out, NULL, NULL, 1, 3, NULL, d_out, stream, &err),
                 AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "targets");

cleanup:
    cudaFree(d_out);
    cudaFree(d_image);
}

int main(void)
{
    int devices = 0;
    if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
        printf("no CUDA device, skipping\n");
        return 77;
    }
    if (!CUDA_OK(cudaStreamCreate(&stream)))
        return check_finish();
    srand(1234);

    test_preprocess();
    test_bce_loss();
    test_bce_loss_sum();
    test_adamw();
    test_invalid_arguments();

    CUDA_OK(cudaStreamDestroy(stream));
    return check_finish();
}
