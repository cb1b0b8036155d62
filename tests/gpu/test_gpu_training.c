#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "kernels/cpu/bce_loss.h"
#include "pipeline/nn/net.h"
#include "pipeline/nn_cuda/gpu_net.h"
#include "tests/unit/check.h"

/* The GPU network against the CPU one from the same initial weights and
 * batch: logits, loss, every gradient and the running statistics after one
 * training step, and bit-identical repeats in deterministic mode. */

enum { BATCH = 8, LABELS = 4 };

static ap_net_spec small_spec(void)
{
    ap_net_spec spec = {
        .in_channels = 3,
        .height = 48,
        .width = 64,
        .stem_channels = 16,
        .stem_kernel = 7,
        .stem_stride = 2,
        .stage_count = 2,
        .stage_channels = {16, 32},
        .stage_blocks = {1, 1},
        .dropout = 0.2f,
        .label_count = LABELS,
    };
    return spec;
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

static int status_ok(ap_status status, const ap_error *err, const char *call)
{
    if (status == AP_OK)
        return 1;
    fprintf(stderr, "%s returned %s: %s\n", call, ap_status_name(status), err->message);
    check_failures++;
    return 0;
}

static int cuda_ok(cudaError_t status, const char *call)
{
    if (status == cudaSuccess)
        return 1;
    fprintf(stderr, "%s failed: %s\n", call, cudaGetErrorString(status));
    check_failures++;
    return 0;
}

/* One training forward and backward on the GPU from input and d_logits
 * (host), leaving logits in logits (host). */
static int gpu_step(ap_gpu_net *gpu, const float *input, size_t input_size, const float *d_logits,
                    float *logits)
{
    ap_error err = {0};
    cudaStream_t stream = ap_gpu_net_stream(gpu);
    float *d_device = NULL;
    /* Copies run on the network's stream, which does not wait for the
     * legacy default stream of plain cudaMemcpy. */
    int ok = cuda_ok(cudaMemcpyAsync(ap_gpu_net_input(gpu), input, input_size * sizeof(float),
                                     cudaMemcpyHostToDevice, stream),
                     "cudaMemcpy input") &&
             status_ok(ap_gpu_net_forward(gpu, true, 11, 3, &err), &err, "ap_gpu_net_forward") &&
             cuda_ok(cudaStreamSynchronize(stream), "cudaStreamSynchronize") &&
             cuda_ok(cudaMemcpy(logits, ap_gpu_net_logits(gpu), BATCH * LABELS * sizeof(float),
                                cudaMemcpyDeviceToHost),
                     "cudaMemcpy logits");
    if (ok && d_logits != NULL) {
        ok =
            cuda_ok(cudaMalloc((void **)&d_device, BATCH * LABELS * sizeof(float)), "cudaMalloc") &&
            cuda_ok(cudaMemcpyAsync(d_device, d_logits, BATCH * LABELS * sizeof(float),
                                    cudaMemcpyHostToDevice, stream),
                    "cudaMemcpy d_logits") &&
            status_ok(ap_gpu_net_backward(gpu, d_device, false, NULL, NULL, &err), &err,
                      "ap_gpu_net_backward") &&
            cuda_ok(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    }
    cudaFree(d_device);
    return ok;
}

static float *tensor_grad_on_host(const ap_gpu_tensor *tensor)
{
    float *host = malloc(tensor->size * sizeof(float));
    CHECK(host != NULL);
    if (host != NULL && !cuda_ok(cudaMemcpy(host, tensor->grad, tensor->size * sizeof(float),
                                            cudaMemcpyDeviceToHost),
                                 "cudaMemcpy grad")) {
        free(host);
        return NULL;
    }
    return host;
}

/* Tolerance is the largest scale-free error allowed per gradient tensor;
 * the largest one found is printed, so a GPU run records the margin. */
static void compare_grads(ap_net *cpu, ap_gpu_net *gpu, const char *mode, double tolerance)
{
    double largest = 0.0;
    for (size_t i = 0; i < ap_net_tensor_count(cpu); i++) {
        const ap_net_tensor *reference = ap_net_tensor_at(cpu, i);
        if (reference->role == AP_TENSOR_STATE)
            continue;
        float *grad = tensor_grad_on_host(ap_gpu_net_tensor_at(gpu, i));
        if (grad == NULL)
            continue;
        double error = scale_free_error(grad, reference->grad, reference->size);
        largest = fmax(largest, error);
        if (error > tolerance)
            fprintf(stderr, "%s: gradient of %s differs by %g\n", mode, reference->name, error);
        CHECK_NEAR(error, 0.0, tolerance);
        free(grad);
    }
    printf("%s: largest gradient error %g (tolerance %g)\n", mode, largest, tolerance);
}

static void compare_running_stats(ap_net *cpu, ap_gpu_net *gpu)
{
    /* The CPU values are saved, then the download overwrites them with the GPU's. */
    ap_error err = {0};
    size_t count = ap_net_tensor_count(cpu);
    float **saved = calloc(count, sizeof(float *));
    if (saved == NULL)
        return;
    for (size_t i = 0; i < count; i++) {
        const ap_net_tensor *tensor = ap_net_tensor_at(cpu, i);
        saved[i] = malloc(tensor->size * sizeof(float));
        if (saved[i] != NULL)
            memcpy(saved[i], tensor->data, tensor->size * sizeof(float));
    }
    if (status_ok(ap_gpu_net_download(gpu, cpu, &err), &err, "ap_gpu_net_download")) {
        for (size_t i = 0; i < count; i++) {
            const ap_net_tensor *tensor = ap_net_tensor_at(cpu, i);
            if (saved[i] == NULL)
                continue;
            /* cuDNN keeps the running variance unbiased as the CPU does;
             * the batch statistics differ only by summation order. */
            CHECK_NEAR(scale_free_error(tensor->data, saved[i], tensor->size), 0.0, 1e-4);
        }
    }
    for (size_t i = 0; i < count; i++)
        free(saved[i]);
    free(saved);
}

static void test_step_matches_cpu(ap_gpu_precision precision, double logit_tolerance,
                                  double grad_tolerance)
{
    ap_net_spec spec = small_spec();
    ap_net *cpu = NULL;
    ap_gpu_net *gpu = NULL;
    ap_error err = {0};
    size_t input_size = (size_t)BATCH * 3 * (size_t)spec.height * (size_t)spec.width;
    float *input = malloc(input_size * sizeof(float));
    float cpu_logits[BATCH * LABELS], gpu_logits[BATCH * LABELS], d_logits[BATCH * LABELS];
    int8_t targets[BATCH * LABELS];
    if (input == NULL ||
        !status_ok(ap_net_create(&spec, BATCH, 42, &cpu, &err), &err, "ap_net_create"))
        goto cleanup;
    ap_gpu_options options = {.device = 0, .precision = precision, .workspace_limit = 1u << 30};
    if (!status_ok(ap_gpu_net_create(&spec, BATCH, cpu, &options, &gpu, &err), &err,
                   "ap_gpu_net_create"))
        goto cleanup;

    srand(7);
    for (size_t i = 0; i < input_size; i++)
        input[i] = (float)rand() / (float)RAND_MAX * 4.0f - 2.0f;
    for (int i = 0; i < BATCH * LABELS; i++)
        targets[i] = (int8_t)(rand() % 3 - 1);

    if (!status_ok(ap_net_forward(cpu, input, true, 11, 3, cpu_logits, &err), &err,
                   "ap_net_forward"))
        goto cleanup;
    float cpu_loss = ap_cpu_bce_loss(cpu_logits, targets, NULL, BATCH, LABELS, d_logits);
    if (!status_ok(ap_net_backward(cpu, d_logits, &err), &err, "ap_net_backward"))
        goto cleanup;
    if (!gpu_step(gpu, input, input_size, d_logits, gpu_logits))
        goto cleanup;

    const char *mode = ap_gpu_precision_name(precision);
    double logit_error = scale_free_error(gpu_logits, cpu_logits, BATCH * LABELS);
    printf("%s: logit error %g (tolerance %g)\n", mode, logit_error, logit_tolerance);
    CHECK_NEAR(logit_error, 0.0, logit_tolerance);
    float gpu_loss = ap_cpu_bce_loss(gpu_logits, targets, NULL, BATCH, LABELS, NULL);
    CHECK_NEAR(fabs((double)gpu_loss - cpu_loss) / fabs((double)cpu_loss), 0.0, logit_tolerance);
    compare_grads(cpu, gpu, mode, grad_tolerance);
    if (precision == AP_GPU_FP32)
        compare_running_stats(cpu, gpu);

cleanup:
    ap_gpu_net_destroy(gpu);
    ap_net_destroy(cpu);
    free(input);
}

/* Two deterministic networks from the same weights give the same bits. */
static void test_deterministic_repeats(void)
{
    ap_net_spec spec = small_spec();
    ap_net *cpu = NULL;
    ap_gpu_net *first = NULL, *second = NULL;
    ap_error err = {0};
    size_t input_size = (size_t)BATCH * 3 * (size_t)spec.height * (size_t)spec.width;
    float *input = malloc(input_size * sizeof(float));
    float logits_a[BATCH * LABELS], logits_b[BATCH * LABELS], d_logits[BATCH * LABELS];
    if (input == NULL ||
        !status_ok(ap_net_create(&spec, BATCH, 5, &cpu, &err), &err, "ap_net_create"))
        goto cleanup;
    ap_gpu_options options = {.device = 0, .deterministic = true, .workspace_limit = 1u << 30};
    if (!status_ok(ap_gpu_net_create(&spec, BATCH, cpu, &options, &first, &err), &err,
                   "ap_gpu_net_create") ||
        !status_ok(ap_gpu_net_create(&spec, BATCH, cpu, &options, &second, &err), &err,
                   "ap_gpu_net_create"))
        goto cleanup;
    for (size_t i = 0; i < input_size; i++)
        input[i] = sinf((float)i * 0.37f);
    for (int i = 0; i < BATCH * LABELS; i++)
        d_logits[i] = 0.01f * (float)(i % 7 - 3);
    if (!gpu_step(first, input, input_size, d_logits, logits_a) ||
        !gpu_step(second, input, input_size, d_logits, logits_b))
        goto cleanup;
    CHECK(memcmp(logits_a, logits_b, sizeof(logits_a)) == 0);
    for (size_t i = 0; i < ap_gpu_net_tensor_count(first); i++) {
        const ap_gpu_tensor *a = ap_gpu_net_tensor_at(first, i);
        if (a->role == AP_TENSOR_STATE)
            continue;
        float *grad_a = tensor_grad_on_host(a);
        float *grad_b = tensor_grad_on_host(ap_gpu_net_tensor_at(second, i));
        if (grad_a != NULL && grad_b != NULL) {
            int same = memcmp(grad_a, grad_b, a->size * sizeof(float)) == 0;
            if (!same)
                fprintf(stderr, "gradient of %s differs between runs\n", a->name);
            CHECK(same);
        }
        free(grad_a);
        free(grad_b);
    }

cleanup:
    ap_gpu_net_destroy(first);
    ap_gpu_net_destroy(second);
    ap_net_destroy(cpu);
    free(input);
}

int main(void)
{
    if (ap_gpu_device_count(NULL, 0) == 0) {
        printf("no CUDA device, skipping\n");
        return 77;
    }
    /* fp32: cuDNN and oneDNN sum convolutions and batch-norm statistics in
     * different orders. Batch-norm gradients subtract nearly equal terms,
     * which turns 1e-7 relative rounding into up to about 1e-5 per layer
     * over four layers. 1e-3 on gradients leaves margin and still catches a
     * wrong layout or a missing term, which are errors of order 1. */
    test_step_matches_cpu(AP_GPU_FP32, 1e-4, 1e-3);
    /* tf32 rounds convolution inputs to 10 mantissa bits, about 5e-4
     * relative per product; 2e-2 on logits over the network leaves margin,
     * and gradients, which pass through every layer twice, get 5e-2. */
    test_step_matches_cpu(AP_GPU_TF32, 2e-2, 5e-2);
    /* bf16 rounds convolution inputs, weights and results to 8 significant
     * bits (2^-9 = 2e-3 relative each) in five convolutions; 5e-2 on logits
     * and 1e-1 on gradients still catch a missing term or a wrong layout. */
    test_step_matches_cpu(AP_GPU_BF16, 5e-2, 1e-1);
    test_deterministic_repeats();
    return check_finish();
}
