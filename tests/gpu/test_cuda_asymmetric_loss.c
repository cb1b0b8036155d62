#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cuda_runtime_api.h>

#include "kernels/cpu/asymmetric_loss.h"
#include "kernels/cuda/asymmetric_loss.h"
#include "tests/unit/check.h"

/* The CUDA focal and asymmetric losses against their CPU counterparts on
 * random batches, through a scale-free error: the largest absolute
 * difference over the largest absolute CPU value.
 *
 * Tolerance: both sides evaluate the same float formula. The device's expf,
 * log1pf, logf and powf are not correctly rounded and may differ from glibc's
 * by a few ulp, and nvcc may fuse a multiply and an add. Each element can
 * then differ by about 1e-6 relative, and the double sums differ only in
 * order. 1e-5 covers that with a
 * margin and still fails a wrong exponent, weight or mask. */
#define TOLERANCE 1e-5

static cudaStream_t stream;

static int cuda_ok(cudaError_t status, const char *call, int line)
{
    if (status == cudaSuccess)
        return 1;
    fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, line, call, cudaGetErrorName(status),
            cudaGetErrorString(status));
    check_failures++;
    return 0;
}

#define CUDA_OK(call) cuda_ok((call), #call, __LINE__)

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

static double scale_free_error(const float *actual, const float *reference, size_t size)
{
    double max_error = 0.0, max_value = 0.0;
    for (size_t i = 0; i < size; i++) {
        max_error = fmax(max_error, fabs((double)actual[i] - (double)reference[i]));
        max_value = fmax(max_value, fabs((double)reference[i]));
    }
    return max_value > 0.0 ? max_error / max_value : max_error;
}

/* Device copies of one batch. */
typedef struct {
    float *logits;
    int8_t *targets;
    float *pos_weight;
    float *grad;
    float *scalars; /* the mean loss, or the loss and known-count totals */
} device_batch;

static void free_batch(device_batch *batch)
{
    cudaFree(batch->logits);
    cudaFree(batch->targets);
    cudaFree(batch->pos_weight);
    cudaFree(batch->grad);
    cudaFree(batch->scalars);
}

static int upload_batch(const float *logits, const int8_t *targets, const float *pos_weight,
                        size_t total, int labels, device_batch *batch)
{
    *batch = (device_batch){0};
    const float zero[2] = {0.0f, 0.0f};
    /* One spare entry keeps the buffers of an empty batch non-NULL. */
    return CUDA_OK(cudaMalloc((void **)&batch->logits, (total + 1) * sizeof(float))) &&
           CUDA_OK(cudaMalloc((void **)&batch->targets, total + 1)) &&
           CUDA_OK(cudaMalloc((void **)&batch->pos_weight, (size_t)labels * sizeof(float))) &&
           CUDA_OK(cudaMalloc((void **)&batch->grad, (total + 1) * sizeof(float))) &&
           CUDA_OK(cudaMalloc((void **)&batch->scalars, 2 * sizeof(float))) &&
           CUDA_OK(
               cudaMemcpy(batch->logits, logits, total * sizeof(float), cudaMemcpyHostToDevice)) &&
           CUDA_OK(cudaMemcpy(batch->targets, targets, total, cudaMemcpyHostToDevice)) &&
           CUDA_OK(cudaMemcpy(batch->pos_weight, pos_weight, (size_t)labels * sizeof(float),
                              cudaMemcpyHostToDevice)) &&
           CUDA_OK(cudaMemcpy(batch->scalars, zero, sizeof(zero), cudaMemcpyHostToDevice));
}

static int download(void *host, const void *device, size_t bytes)
{
    return CUDA_OK(cudaStreamSynchronize(stream)) &&
           CUDA_OK(cudaMemcpy(host, device, bytes, cudaMemcpyDeviceToHost));
}

static void random_batch(int total, float spread, float *logits, int8_t *targets)
{
    for (int i = 0; i < total; i++) {
        logits[i] = 2.0f * spread * ((float)rand() / (float)RAND_MAX) - spread;
        targets[i] = (int8_t)(rand() % 3 - 1); /* a third unknown */
    }
}

/* Compares the mean loss and its gradient for one setting. */
static void compare_mean(int count, int labels, const ap_asymmetric_params *params)
{
    const size_t total = (size_t)count * (size_t)labels;
    float *logits = malloc((total + 1) * sizeof(float)),
          *cpu_grad = malloc((total + 1) * sizeof(float)),
          *gpu_grad = malloc((total + 1) * sizeof(float)),
          *pos_weight = malloc((size_t)labels * sizeof(float));
    int8_t *targets = malloc(total + 1);
    device_batch batch = {0};
    CHECK(logits != NULL);
    CHECK(cpu_grad != NULL);
    CHECK(gpu_grad != NULL);
    CHECK(pos_weight != NULL);
    CHECK(targets != NULL);
    if (logits && cpu_grad && gpu_grad && pos_weight && targets) {
        random_batch((int)total, 12.0f, logits, targets);
        for (int l = 0; l < labels; l++)
            pos_weight[l] = 0.5f + (float)l;
        float cpu_loss =
            ap_cpu_asymmetric_loss(logits, targets, pos_weight, count, labels, params, cpu_grad);
        ap_error err = {0};
        float gpu_loss = NAN;
        if (upload_batch(logits, targets, pos_weight, total, labels, &batch) &&
            STATUS_OK(ap_cuda_asymmetric_loss(batch.logits, batch.targets, batch.pos_weight, count,
                                              labels, params, batch.grad, batch.scalars, stream,
                                              &err),
                      &err) &&
            download(gpu_grad, batch.grad, total * sizeof(float)) &&
            download(&gpu_loss, batch.scalars, sizeof(float))) {
            CHECK_NEAR(gpu_loss, cpu_loss, TOLERANCE * fabs(cpu_loss));
            CHECK_NEAR(scale_free_error(gpu_grad, cpu_grad, total), 0.0, TOLERANCE);
        }
    }
    free_batch(&batch);
    free(logits);
    free(cpu_grad);
    free(gpu_grad);
    free(pos_weight);
    free(targets);
}

/* Runs the sum launcher twice on one batch: the totals must hold twice the
 * CPU sum and known count, and the gradient the undivided CPU gradient. */
static void compare_sum(int count, int labels, const ap_asymmetric_params *params)
{
    const size_t total = (size_t)count * (size_t)labels;
    float *logits = malloc(total * sizeof(float)), *cpu_grad = malloc(total * sizeof(float)),
          *gpu_grad = malloc(total * sizeof(float));
    int8_t *targets = malloc(total);
    const float pos_weight[3] = {3.0f, 1.0f, 0.25f};
    device_batch batch = {0};
    CHECK(labels == 3);
    CHECK(logits != NULL);
    CHECK(cpu_grad != NULL);
    CHECK(gpu_grad != NULL);
    CHECK(targets != NULL);
    if (labels == 3 && logits && cpu_grad && gpu_grad && targets) {
        random_batch((int)total, 6.0f, logits, targets);
        long known = 0;
        double cpu_sum = ap_cpu_asymmetric_loss_sum(logits, targets, pos_weight, count, labels,
                                                    params, cpu_grad, &known);
        ap_error err = {0};
        float totals[2] = {NAN, NAN};
        if (upload_batch(logits, targets, pos_weight, total, labels, &batch) &&
            STATUS_OK(ap_cuda_asymmetric_loss_sum(batch.logits, batch.targets, batch.pos_weight,
                                                  count, labels, params, batch.grad, batch.scalars,
                                                  stream, &err),
                      &err) &&
            STATUS_OK(ap_cuda_asymmetric_loss_sum(batch.logits, batch.targets, batch.pos_weight,
                                                  count, labels, params, batch.grad, batch.scalars,
                                                  stream, &err),
                      &err) &&
            download(gpu_grad, batch.grad, total * sizeof(float)) &&
            download(totals, batch.scalars, sizeof(totals))) {
            CHECK_NEAR(totals[0], 2.0 * cpu_sum, TOLERANCE * fabs(2.0 * cpu_sum));
            CHECK_NEAR(totals[1], 2.0 * (double)known, 0.0);
            CHECK_NEAR(scale_free_error(gpu_grad, cpu_grad, total), 0.0, TOLERANCE);
        }
    }
    free_batch(&batch);
    free(logits);
    free(cpu_grad);
    free(gpu_grad);
    free(targets);
}

static void compare_focal(void)
{
    /* The focal launcher must equal the asymmetric one with equal exponents. */
    enum { count = 64, labels = 4, total = count * labels };
    float logits[total], cpu_grad[total], gpu_grad[total];
    int8_t targets[total];
    const float pos_weight[labels] = {1.0f, 2.0f, 3.0f, 4.0f};
    random_batch(total, 8.0f, logits, targets);
    float cpu_loss = ap_cpu_focal_loss(logits, targets, pos_weight, count, labels, 2.0f, cpu_grad);
    device_batch batch = {0};
    ap_error err = {0};
    float gpu_loss = NAN;
    if (upload_batch(logits, targets, pos_weight, total, labels, &batch) &&
        STATUS_OK(ap_cuda_focal_loss(batch.logits, batch.targets, batch.pos_weight, count, labels,
                                     2.0f, batch.grad, batch.scalars, stream, &err),
                  &err) &&
        download(gpu_grad, batch.grad, sizeof(gpu_grad)) &&
        download(&gpu_loss, batch.scalars, sizeof(float))) {
        CHECK_NEAR(gpu_loss, cpu_loss, TOLERANCE * fabs(cpu_loss));
        CHECK_NEAR(scale_free_error(gpu_grad, cpu_grad, total), 0.0, TOLERANCE);
    }
    free_batch(&batch);
}

static void rejects_invalid_arguments(void)
{
    const ap_asymmetric_params negative = {.gamma_pos = -1.0f, .gamma_neg = 4.0f, .clip = 0.05f};
    const ap_asymmetric_params full_clip = {.gamma_pos = 0.0f, .gamma_neg = 4.0f, .clip = 1.0f};
    float *buffer = NULL;
    int8_t *targets = NULL;
    if (!CUDA_OK(cudaMalloc((void **)&buffer, 16 * sizeof(float))) ||
        !CUDA_OK(cudaMalloc((void **)&targets, 16))) {
        cudaFree(buffer);
        cudaFree(targets);
        return;
    }
    ap_error err = {0};
    CHECK_INT_EQ(
        ap_cuda_asymmetric_loss(buffer, targets, NULL, 4, 4, &negative, NULL, buffer, stream, &err),
        AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "gamma_pos -1");
    CHECK_INT_EQ(ap_cuda_asymmetric_loss(buffer, targets, NULL, 4, 4, &full_clip, NULL, buffer,
                                         stream, &err),
                 AP_ERR_INVALID);
    CHECK_INT_EQ(ap_cuda_asymmetric_loss(buffer, targets, NULL, -1, 4, &full_clip, NULL, buffer,
                                         stream, &err),
                 AP_ERR_INVALID);
    CHECK_INT_EQ(ap_cuda_asymmetric_loss_sum(buffer, targets, NULL, 4, 4, &negative, NULL, buffer,
                                             stream, &err),
                 AP_ERR_INVALID);
    cudaFree(buffer);
    cudaFree(targets);
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
    srand(4321);

    const ap_asymmetric_params settings[] = {
        {.gamma_pos = 0.0f, .gamma_neg = 0.0f, .clip = 0.0f},
        {.gamma_pos = 2.0f, .gamma_neg = 2.0f, .clip = 0.0f},
        {.gamma_pos = 0.0f, .gamma_neg = 4.0f, .clip = 0.05f},
        {.gamma_pos = 1.0f, .gamma_neg = 3.0f, .clip = 0.2f},
        {.gamma_pos = 0.5f, .gamma_neg = 0.5f, .clip = 0.01f},
    };
    for (size_t s = 0; s < sizeof(settings) / sizeof(settings[0]); s++) {
        compare_mean(1, 1, &settings[s]);
        compare_mean(37, 5, &settings[s]);
        compare_mean(1000, 9, &settings[s]); /* more entries than threads */
        compare_sum(300, 3, &settings[s]);
    }
    compare_mean(0, 4, &settings[2]); /* an empty batch: loss 0 */
    compare_focal();
    rejects_invalid_arguments();

    cudaStreamDestroy(stream);
    return check_finish();
}
