#include "kernels/cpu/adamw.h"

/* Minimum tensor size for a parallel update. Starting and joining a thread
 * team costs more than updating a batch-norm or small convolution tensor, so
 * those run on the calling thread. The threshold is an estimate, not tuned. */
#define ADAMW_PARALLEL_MIN 32768

void ap_cpu_adamw(float *param, const float *grad, float *m, float *v, size_t size,
                  const ap_adamw_args *args)
{
    const ap_adamw_factors factors = ap_adamw_prepare(args);

#pragma omp parallel for simd schedule(static) if (size >= ADAMW_PARALLEL_MIN)
    for (size_t i = 0; i < size; i++)
        ap_adamw_element(&param[i], grad[i], &m[i], &v[i], &factors);
}
