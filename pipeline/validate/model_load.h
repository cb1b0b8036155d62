#ifndef APIARY_VALIDATE_MODEL_LOAD_H
#define APIARY_VALIDATE_MODEL_LOAD_H

/* Loading a trained model for inference from its model card and weights,
 * as train writes them and the registry stores them: model_card.json beside
 * model.safetensors. */

#include <stdbool.h>

#include <jansson.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"
#include "pipeline/data/dataset.h"
#include "pipeline/nn/net.h"

typedef struct {
    ap_net *net; /* owned; inference batch size as requested */
    ap_net_spec spec;
    int label_count;
    char labels[AP_MAX_LABELS][AP_NAME_MAX];
    int width; /* input size in pixels */
    int height;
    ap_resize_mode resize;
    float mean[3]; /* per-channel normalisation of pixels scaled to [0, 1] */
    float std[3];
    /* Decision thresholds from the card's "thresholds" object, which
     * validation writes; 0.5 for a label the card has none for. */
    float thresholds[AP_MAX_LABELS];
    bool has_thresholds; /* the card has a threshold for every label */
    char card_path[AP_PATH_MAX + 64];
    char weights_path[AP_PATH_MAX + 64];
    char weights_sha256[65]; /* checked against the file */
    char card_sha256[65];    /* of the card file as read */
    json_t *card;            /* owned */
} ap_loaded_model;

/* Load the model of card_path. The card's labels, input and architecture
 * must be within the limits of the config keys they come from, and the
 * weights file it names (beside the card) must have the card's sha256.
 * The network is built for batch images per forward pass, so set the
 * OpenMP thread count before the call (see ap_net_create). A missing card
 * or weights file fails with AP_ERR_IO. Free out with ap_loaded_model_free,
 * also after a failure. */
ap_status ap_model_load(const char *card_path, int batch, ap_loaded_model *out, ap_error *err);
void ap_loaded_model_free(ap_loaded_model *model);

/* Index of label in the model's labels, or -1. */
int ap_loaded_model_label_index(const ap_loaded_model *model, const char *label);

/* Probabilities (count x the model's label_count) of the listed images.
 * images must have the model's input size; its labels are not read. */
ap_status ap_loaded_model_predict(const ap_loaded_model *model, const ap_image_set *images,
                                  const size_t *indices, size_t count, float *probabilities,
                                  ap_error *err);

#endif
