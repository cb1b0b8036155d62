#ifndef APIARY_KERNELS_CPU_ADAMW_H
#define APIARY_KERNELS_CPU_ADAMW_H

#include <stddef.h>

typedef struct {
    float learning_rate;
    float beta1;
    float beta2;
    float epsilon;
    float weight_decay; /* decoupled: param -= lr * weight_decay * param */
    long step;          /* 1-based step count, for bias correction */
} ap_adamw_args;

/* One AdamW update of size parameters in place, with first and second
 * moments m and v updated in place. */
void ap_cpu_adamw(float *param, const float *grad, float *m, float *v, size_t size,
                  const ap_adamw_args *args);

#endif
