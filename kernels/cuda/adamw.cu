#include "kernels/cuda/adamw.h"

#include <math.h>

#include "kernels/cuda/cuda_check.h"

#define ADAMW_THREADS 256

/* Largest grid x dimension CUDA accepts for compute capability 3.0 and later. */
#define MAX_BLOCKS 2147483647UL

static __global__ void adamw_kernel(float *param, const float *grad, float *m, float *v,
                                    size_t size, ap_adamw_factors factors)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < size)
        ap_adamw_element(&param[i], grad[i], &m[i], &v[i], &factors);
}

static ap_status check_adamw_args(const float *param, const float *grad, const float *m,
                                  const float *v, size_t size, const ap_adamw_args *args,
                                  ap_error *err)
{
    if (args == NULL)
        return ap_cuda_error(err, AP_ERR_INVALID, "adamw: args must not be NULL");
    if (size > 0 && (param == NULL || grad == NULL || m == NULL || v == NULL))
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "adamw: param, grad, m and v must not be NULL for %zu elements; "
                             "pass device buffers",
                             size);
    if (args->step < 1)
        return ap_cuda_error(err, AP_ERR_INVALID, "adamw: step %ld is invalid; steps count from 1",
                             args->step);
    if (!(args->learning_rate >= 0.0f) || !isfinite(args->learning_rate) ||
        !(args->weight_decay >= 0.0f) || !isfinite(args->weight_decay))
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "adamw: learning rate %g or weight decay %g is invalid; both must "
                             "be finite and at least 0",
                             (double)args->learning_rate, (double)args->weight_decay);
    if (!(args->beta1 >= 0.0f && args->beta1 < 1.0f) ||
        !(args->beta2 >= 0.0f && args->beta2 < 1.0f))
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "adamw: betas %g and %g are invalid; both must be in [0, 1)",
                             (double)args->beta1, (double)args->beta2);
    if (!(args->epsilon > 0.0f) || !isfinite(args->epsilon))
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "adamw: epsilon %g is invalid; it must be finite and positive",
                             (double)args->epsilon);
    if ((size + ADAMW_THREADS - 1) / ADAMW_THREADS > MAX_BLOCKS)
        return ap_cuda_error(err, AP_ERR_INVALID,
                             "adamw: %zu elements exceed one launch; update the tensor in parts",
                             size);
    return AP_OK;
}

extern "C" ap_status ap_cuda_adamw(float *param, const float *grad, float *m, float *v, size_t size,
                                   const ap_adamw_args *args, cudaStream_t stream, ap_error *err)
{
    ap_status status = check_adamw_args(param, grad, m, v, size, args, err);
    if (status != AP_OK || size == 0)
        return status;

    const ap_adamw_factors factors = ap_adamw_prepare(args);
    const unsigned blocks = (unsigned)((size + ADAMW_THREADS - 1) / ADAMW_THREADS);
    adamw_kernel<<<blocks, ADAMW_THREADS, 0, stream>>>(param, grad, m, v, size, factors);
    AP_CUDA_CHECK(cudaGetLastError(), err);
    return AP_OK;
}
