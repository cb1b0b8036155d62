#include "kernels/cuda/asymmetric_loss.h"

#include "kernels/cuda/cuda_check.h"
#include "kernels/cuda/loss_block.cuh"

/* The asymmetric loss of one entry under params. */
struct asymmetric_element {
    ap_asymmetric_params params;
    __device__ float operator()(float logit, int target, float weight, float *grad) const
    {
        return ap_asymmetric_element(logit, target, weight, &params, grad);
    }
};

static __global__ void asymmetric_loss_kernel(const float *logits, const int8_t *targets,
                                              const float *pos_weight, int labels, size_t total,
                                              ap_asymmetric_params params, float *grad, float *loss)
{
    __shared__ ap_loss_block block;
    ap_loss_sum_block(logits, targets, pos_weight, labels, total, asymmetric_element{params}, grad,
                      &block);
    ap_loss_finish_mean(&block, total, grad, loss);
}

static __global__ void asymmetric_loss_sum_kernel(const float *logits, const int8_t *targets,
                                                  const float *pos_weight, int labels, size_t total,
                                                  ap_asymmetric_params params, float *grad,
                                                  float *totals)
{
    __shared__ ap_loss_block block;
    ap_loss_sum_block(logits, targets, pos_weight, labels, total, asymmetric_element{params}, grad,
                      &block);
    ap_loss_add_totals(&block, totals);
}

/* Checks the arguments shared by both launchers; name prefixes the message. */
static ap_status check_arguments(const char *name, const float *logits, const int8_t *targets,
                                 const void *output, int count, int labels,
                                 const ap_asymmetric_params *params, ap_error *err)
{
    if (logits == NULL || targets == NULL || output == NULL || params == NULL)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "%s: logits, targets, params and the output must not be NULL; pass "
                             "device buffers and a host params struct",
                             name);
    if (count < 0 || labels <= 0)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "%s: shape %d x %d is invalid; count must be at least 0 and labels "
                             "at least 1",
                             name, count, labels);
    if ((long)count * labels > AP_LOSS_MAX_ENTRIES)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "%s: %ld entries exceed the single-block limit of %ld; pass the "
                             "batch in parts",
                             name, (long)count * labels, AP_LOSS_MAX_ENTRIES);
    if (!ap_asymmetric_params_valid(params))
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "%s: gamma_pos %g, gamma_neg %g or clip %g is invalid; the "
                             "exponents must be at least 0 and the clip in [0, 1)",
                             name, (double)params->gamma_pos, (double)params->gamma_neg,
                             (double)params->clip);
    return AP_OK;
}

extern "C" ap_status ap_cuda_asymmetric_loss(const float *logits, const int8_t *targets,
                                             const float *pos_weight, int count, int labels,
                                             const ap_asymmetric_params *params, float *grad,
                                             float *loss, cudaStream_t stream, ap_error *err)
{
    ap_status status =
        check_arguments("asymmetric_loss", logits, targets, loss, count, labels, params, err);
    if (status != AP_OK)
        return status;
    asymmetric_loss_kernel<<<1, AP_LOSS_THREADS, 0, stream>>>(
        logits, targets, pos_weight, labels, (size_t)count * (size_t)labels, *params, grad, loss);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}

extern "C" ap_status ap_cuda_asymmetric_loss_sum(const float *logits, const int8_t *targets,
                                                 const float *pos_weight, int count, int labels,
                                                 const ap_asymmetric_params *params, float *grad,
                                                 float *totals, cudaStream_t stream, ap_error *err)
{
    ap_status status =
        check_arguments("asymmetric_loss_sum", logits, targets, totals, count, labels, params, err);
    if (status == AP_OK && grad == NULL)
        status = ap_cuda_error(err, AP_ERR_INVALID,
                               "asymmetric_loss_sum: grad must not be NULL; pass a device buffer "
                               "of count x labels floats");
    if (status != AP_OK)
        return status;
    asymmetric_loss_sum_kernel<<<1, AP_LOSS_THREADS, 0, stream>>>(
        logits, targets, pos_weight, labels, (size_t)count * (size_t)labels, *params, grad, totals);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}

extern "C" ap_status ap_cuda_focal_loss(const float *logits, const int8_t *targets,
                                        const float *pos_weight, int count, int labels, float gamma,
                                        float *grad, float *loss, cudaStream_t stream,
                                        ap_error *err)
{
    const ap_asymmetric_params params = {gamma, gamma, 0.0f};
    return ap_cuda_asymmetric_loss(logits, targets, pos_weight, count, labels, &params, grad, loss,
                                   stream, err);
}
