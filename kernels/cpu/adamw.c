#include "kernels/cpu/adamw.h"

void ap_cpu_adamw(float *param, const float *grad, float *m, float *v, size_t size,
                  const ap_adamw_args *args)
{
    const ap_adamw_factors factors = ap_adamw_prepare(args);

#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < size; i++)
        ap_adamw_element(&param[i], grad[i], &m[i], &v[i], &factors);
}
