#ifndef APIARY_TRAIN_OPTIMIZER_H
#define APIARY_TRAIN_OPTIMIZER_H

#include <stddef.h>

#include "pipeline/common/status.h"
#include "pipeline/nn/net.h"

/* AdamW state for every trained tensor of a network: first and second
 * moments, and the step count used for bias correction. Weight decay applies
 * to AP_TENSOR_WEIGHT tensors only, never to batch-norm parameters or biases. */
typedef struct {
    size_t tensor_count;
    float **first_moment;  /* per tensor; NULL for state tensors */
    float **second_moment;
    long step;
} ap_optimizer;

ap_status ap_optimizer_init(ap_optimizer *opt, ap_net *net, ap_error *err);
void ap_optimizer_free(ap_optimizer *opt);

/* One update of every trained tensor from its grad. */
void ap_optimizer_step(ap_optimizer *opt, ap_net *net, double learning_rate, double weight_decay,
                       double beta1, double beta2, double epsilon);

#endif
