#ifndef APIARY_TRAIN_PREDICT_H
#define APIARY_TRAIN_PREDICT_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/common/status.h"
#include "pipeline/data/dataset.h"
#include "pipeline/nn/net.h"

/* Copy the listed images into one contiguous uint8 batch. */
void ap_gather_images(const ap_image_set *images, const size_t *indices, size_t count,
                      uint8_t *batch);

/* Run inference over the listed images in batches of the network's size
 * (the last batch is padded by repeating its final image) and write count x
 * label_count logits. */
ap_status ap_predict_logits(ap_net *net, const ap_image_set *images, const size_t *indices,
                            size_t count, const float mean[3], const float std[3], float *logits,
                            ap_error *err);

/* Gather the labels of the listed images into count x label_count targets. */
void ap_gather_labels(const ap_image_set *images, const size_t *indices, size_t count,
                      int8_t *targets);

/* Logistic sigmoid of every value, in place. */
void ap_sigmoid_inplace(float *values, size_t count);

#endif
