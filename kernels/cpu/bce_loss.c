#include "kernels/cpu/bce_loss.h"

#include <stddef.h>

/* Runs serially: count x labels is a batch times a handful of labels, far
 * below the size where threads would pay for themselves, and a serial double
 * sum is deterministic. */
float ap_cpu_bce_loss(const float *logits, const int8_t *targets, const float *pos_weight,
                      int count, int labels, float *grad)
{
    const size_t total = (size_t)count * (size_t)labels;
    double loss_sum = 0.0;
    size_t known = 0;

    for (size_t i = 0; i < total; i++) {
        int target = targets[i];
        float element_grad = 0.0f;
        if (target == 0 || target == 1) {
            float weight = pos_weight != NULL ? pos_weight[i % (size_t)labels] : 1.0f;
            loss_sum += ap_bce_element(logits[i], target, weight, &element_grad);
            known++;
        }
        if (grad != NULL)
            grad[i] = element_grad;
    }
    if (known == 0)
        return 0.0f;

    /* d(mean)/d(logit) is the element's gradient over the known count. */
    if (grad != NULL) {
        float known_count = (float)known;
        for (size_t i = 0; i < total; i++)
            grad[i] = grad[i] / known_count;
    }
    return (float)(loss_sum / (double)known);
}
