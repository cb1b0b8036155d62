#include "pipeline/nn/layers.h"

#include <string.h>

#include "kernels/cpu/dense.h"

ap_status nn_head_create(nn_context *ctx, nn_head *head, int batch, int features, int labels,
                         float dropout, ap_net_tensor *weight, ap_net_tensor *bias, ap_error *err)
{
    head->batch = batch;
    head->features = features;
    head->labels = labels;
    head->dropout = dropout;
    head->weight = weight;
    head->bias = bias;
    if (dropout <= 0.0f)
        return AP_OK;
    size_t bytes = (size_t)batch * (size_t)features * sizeof(float);
    void *dropped = NULL;
    void *mask = NULL;
    NN_TRY(nn_alloc(ctx, bytes, "head", &dropped, err));
    NN_TRY(nn_alloc(ctx, bytes, "head", &mask, err));
    head->dropped = dropped;
    head->mask = mask;
    return AP_OK;
}

void nn_head_forward(nn_head *head, const float *features, bool training, uint64_t dropout_seed,
                     uint64_t dropout_stream, float *logits)
{
    head->dense_input = features;
    head->dropout_applied = training && head->dropout > 0.0f;
    if (head->dropout_applied) {
        long count = (long)head->batch * head->features;
        memcpy(head->dropped, features, (size_t)count * sizeof(float));
        ap_cpu_dropout_forward(head->dropped, head->mask, count, head->dropout, dropout_seed,
                               dropout_stream);
        head->dense_input = head->dropped;
    }
    ap_cpu_dense_forward(head->dense_input, head->weight->data, head->bias->data, head->batch,
                         head->features, head->labels, logits);
}

void nn_head_backward(nn_head *head, const float *d_logits, float *d_features)
{
    ap_cpu_dense_backward(head->dense_input, head->weight->data, d_logits, head->batch,
                          head->features, head->labels, d_features, head->weight->grad,
                          head->bias->grad);
    if (head->dropout_applied)
        ap_cpu_dropout_backward(d_features, head->mask, (long)head->batch * head->features);
}
