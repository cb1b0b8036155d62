#include "pipeline/train/predict.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/preprocess.h"

void ap_gather_images(const ap_image_set *images, const size_t *indices, size_t count,
                      uint8_t *batch)
{
    size_t image_bytes = (size_t)images->width * (size_t)images->height * 3;
    for (size_t i = 0; i < count; i++)
        memcpy(batch + i * image_bytes, images->pixels + indices[i] * image_bytes, image_bytes);
}

void ap_gather_labels(const ap_image_set *images, const size_t *indices, size_t count,
                      int8_t *targets)
{
    size_t labels = (size_t)images->label_count;
    for (size_t i = 0; i < count; i++)
        memcpy(targets + i * labels, images->labels + indices[i] * labels, labels);
}

void ap_sigmoid_inplace(float *values, size_t count)
{
    for (size_t i = 0; i < count; i++)
        values[i] = 1.0f / (1.0f + expf(-values[i]));
}

ap_status ap_predict_logits(ap_net *net, const ap_image_set *images, const size_t *indices,
                            size_t count, const float mean[3], const float std[3], float *logits,
                            ap_error *err)
{
    size_t batch = (size_t)ap_net_batch(net);
    size_t labels = (size_t)images->label_count;
    size_t pixels = (size_t)images->width * (size_t)images->height * 3;
    size_t *batch_indices = malloc(batch * sizeof(size_t));
    uint8_t *raw = malloc(batch * pixels);
    float *input = malloc(batch * pixels * sizeof(float));
    float *batch_logits = malloc(batch * labels * sizeof(float));
    ap_status status = AP_OK;
    if (batch_indices == NULL || raw == NULL || input == NULL || batch_logits == NULL)
        status = ap_error_set(err, AP_ERR_NOMEM, "cannot allocate inference buffers");

    for (size_t start = 0; start < count && status == AP_OK; start += batch) {
        size_t used = count - start < batch ? count - start : batch;
        for (size_t i = 0; i < batch; i++)
            batch_indices[i] = indices[start + (i < used ? i : used - 1)];
        ap_gather_images(images, batch_indices, batch, raw);
        ap_cpu_preprocess(raw, (int)batch, images->height, images->width, NULL, mean, std,
                          input);
        status = ap_net_forward(net, input, false, 0, 0, batch_logits, err);
        if (status == AP_OK)
            memcpy(logits + start * labels, batch_logits, used * labels * sizeof(float));
    }
    free(batch_indices);
    free(raw);
    free(input);
    free(batch_logits);
    return status;
}
