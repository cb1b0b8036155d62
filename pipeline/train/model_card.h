#ifndef APIARY_TRAIN_MODEL_CARD_H
#define APIARY_TRAIN_MODEL_CARD_H

#include <jansson.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"
#include "pipeline/nn/net.h"
#include "pipeline/train/run_data.h"

/* The facts a model card records about a trained model. */
typedef struct {
    const ap_config *cfg;
    const ap_net_spec *spec;
    size_t param_total;
    const ap_run_data *data;
    const char *weights_file;   /* name of the weights file beside the card */
    const char *weights_sha256;
    long epochs;
    long steps;
    double images_per_second;
    json_t *validation_metrics; /* borrowed; per-label metrics on the val split */
} ap_model_card_info;

/* Build the model card as JSON (new reference). */
json_t *ap_model_card_build(const ap_model_card_info *info);

/* Write the model card to path atomically. */
ap_status ap_model_card_write(const char *path, const ap_model_card_info *info, ap_error *err);

/* Build an ap_net_spec from the model and data settings of cfg. */
void ap_net_spec_from_config(const ap_config *cfg, ap_net_spec *spec);

#endif
