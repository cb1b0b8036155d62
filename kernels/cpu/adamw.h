#ifndef APIARY_KERNELS_CPU_ADAMW_H
#define APIARY_KERNELS_CPU_ADAMW_H

#include <math.h>
#include <stddef.h>

#include "kernels/cpu/rng.h" /* AP_HOST_DEVICE, AP_ROUNDED_* */

typedef struct {
    float learning_rate;
    float beta1;
    float beta2;
    float epsilon;
    float weight_decay; /* decoupled: param -= lr * weight_decay * param */
    long step;          /* 1-based step count, for bias correction */
} ap_adamw_args;

/* One AdamW update of size parameters in place, with first and second
 * moments m and v updated in place, as torch.optim.AdamW computes it:
 *   param = param * (1 - lr * weight_decay)
 *   m = beta1 * m + (1 - beta1) * grad
 *   v = beta2 * v + (1 - beta2) * grad^2
 *   param = param - lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + epsilon)
 * args->step must be at least 1. Elements are independent, so the result does
 * not depend on the number of threads. */
void ap_cpu_adamw(float *param, const float *grad, float *m, float *v, size_t size,
                  const ap_adamw_args *args);

/* Per-step factors of the update, computed once in double and rounded to float. */
typedef struct {
    float decay; /* 1 - lr * weight_decay */
    float beta1;
    float one_minus_beta1;
    float beta2;
    float one_minus_beta2;
    float step_size;             /* lr / (1 - beta1^step) */
    float bias_correction2_sqrt; /* sqrt(1 - beta2^step) */
    float epsilon;
} ap_adamw_factors;

static inline ap_adamw_factors ap_adamw_prepare(const ap_adamw_args *args)
{
    double step = (double)args->step;
    ap_adamw_factors factors;
    factors.decay = (float)(1.0 - (double)args->learning_rate * (double)args->weight_decay);
    factors.beta1 = args->beta1;
    factors.one_minus_beta1 = (float)(1.0 - (double)args->beta1);
    factors.beta2 = args->beta2;
    factors.one_minus_beta2 = (float)(1.0 - (double)args->beta2);
    factors.step_size =
        (float)((double)args->learning_rate / (1.0 - pow((double)args->beta1, step)));
    factors.bias_correction2_sqrt = (float)sqrt(1.0 - pow((double)args->beta2, step));
    factors.epsilon = args->epsilon;
    return factors;
}

/* Updates one element. The CPU loop and the CUDA kernel share it, so both
 * round the same operations in the same order. */
static inline AP_HOST_DEVICE void ap_adamw_element(float *param, float grad, float *m, float *v,
                                                   const ap_adamw_factors *factors)
{
    float first = AP_ROUNDED_ADD(AP_ROUNDED_MUL(factors->beta1, *m),
                                 AP_ROUNDED_MUL(factors->one_minus_beta1, grad));
    float second =
        AP_ROUNDED_ADD(AP_ROUNDED_MUL(factors->beta2, *v),
                       AP_ROUNDED_MUL(factors->one_minus_beta2, AP_ROUNDED_MUL(grad, grad)));
    float denominator = AP_ROUNDED_ADD(
        AP_ROUNDED_DIV(AP_ROUNDED_SQRT(second), factors->bias_correction2_sqrt), factors->epsilon);
    float decayed = AP_ROUNDED_MUL(*param, factors->decay);
    *param = AP_ROUNDED_SUB(decayed,
                            AP_ROUNDED_MUL(factors->step_size, AP_ROUNDED_DIV(first, denominator)));
    *m = first;
    *v = second;
}

#endif
