#include "pipeline/validate/model_load.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/train/model_card.h"
#include "pipeline/train/predict.h"
#include "pipeline/train/train_state.h"

#define CARD_MAX_BYTES    (16u << 20)
#define CARD_FORMAT       "apiary-model-card"
#define DEFAULT_THRESHOLD 0.5f

/* ---- Card fields through the config table ---- */

/* Write a scalar JSON value as config text. */
static bool scalar_text(const json_t *value, char *out, size_t out_size)
{
    if (json_is_integer(value))
        snprintf(out, out_size, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
    else if (json_is_real(value))
        snprintf(out, out_size, "%.17g", json_real_value(value));
    else if (json_is_string(value) && strchr(json_string_value(value), ',') == NULL)
        snprintf(out, out_size, "%s", json_string_value(value));
    else
        return false;
    return true;
}

/* Write a scalar, or an array as comma-separated items, as config text. */
static bool value_text(const json_t *value, char *out, size_t out_size)
{
    if (!json_is_array(value))
        return scalar_text(value, out, out_size);
    size_t used = 0, index;
    const json_t *item;
    out[0] = '\0';
    json_array_foreach(value, index, item)
    {
        char text[256];
        if (!scalar_text(item, text, sizeof(text)))
            return false;
        int written = snprintf(out + used, out_size - used, "%s%s", index > 0 ? "," : "", text);
        if (written < 0 || (size_t)written >= out_size - used)
            return false;
        used += (size_t)written;
    }
    return true;
}

/* Store a card field into the config key, with the key's type and bounds,
 * so a card is held to the same limits as a config. field names the card
 * field in messages. */
static ap_status set_key(ap_config *cfg, const char *card_path, const char *field,
                         const json_t *value, const char *key, ap_error *err)
{
    char text[4096], assignment[4200];
    if (value == NULL || !value_text(value, text, sizeof(text)))
        return ap_error_set(err, AP_ERR_FORMAT,
                            "model card %s: field %s is missing or not a number, text or list; "
                            "use a card written by apiary train",
                            card_path, field);
    snprintf(assignment, sizeof(assignment), "%s=%s", key, text);
    ap_error set_err = {0};
    if (ap_config_set(cfg, assignment, &set_err) != AP_OK)
        return ap_error_set(err, AP_ERR_FORMAT, "model card %s: field %s is invalid (%s)",
                            card_path, field, set_err.message);
    return AP_OK;
}

/* The input and architecture sections, key by key. */
static const char *const card_keys[][3] = {
    {"input", "width", "data.width"},
    {"input", "height", "data.height"},
    {"input", "resize", "data.resize"},
    {"input", "mean", "data.mean"},
    {"input", "std", "data.std"},
    {"architecture", "stem_channels", "model.stem_channels"},
    {"architecture", "stem_kernel", "model.stem_kernel"},
    {"architecture", "stem_stride", "model.stem_stride"},
    {"architecture", "stage_channels", "model.stage_channels"},
    {"architecture", "stage_blocks", "model.stage_blocks"},
    {"architecture", "dropout", "model.dropout"},
};

static ap_status read_card_config(const char *card_path, const json_t *card, ap_config *cfg,
                                  ap_error *err)
{
    ap_config_defaults(cfg);
    ap_status status =
        set_key(cfg, card_path, "labels", json_object_get(card, "labels"), "data.labels", err);
    for (size_t i = 0; status == AP_OK && i < sizeof(card_keys) / sizeof(card_keys[0]); i++) {
        char field[64];
        snprintf(field, sizeof(field), "%s.%s", card_keys[i][0], card_keys[i][1]);
        const json_t *value =
            json_object_get(json_object_get(card, card_keys[i][0]), card_keys[i][1]);
        status = set_key(cfg, card_path, field, value, card_keys[i][2], err);
    }
    if (status != AP_OK)
        return status;
    const json_t *channels = json_object_get(json_object_get(card, "input"), "channels");
    if (!json_is_integer(channels) || json_integer_value(channels) != 3)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "model card %s: input.channels must be 3 (RGB input)", card_path);
    if (cfg->data.label_count < 1)
        return ap_error_set(err, AP_ERR_FORMAT, "model card %s lists no labels", card_path);
    if (cfg->model.stage_count != cfg->model.stage_blocks_count)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "model card %s: architecture.stage_channels has %d items but "
                            "stage_blocks has %d",
                            card_path, cfg->model.stage_count, cfg->model.stage_blocks_count);
    const json_t *label_count =
        json_object_get(json_object_get(card, "architecture"), "label_count");
    if (!json_is_integer(label_count) || json_integer_value(label_count) != cfg->data.label_count)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "model card %s: architecture.label_count does not match the %d "
                            "labels",
                            card_path, cfg->data.label_count);
    return AP_OK;
}

/* ---- Weights and thresholds ---- */

static bool is_sha256_hex(const char *text)
{
    if (text == NULL || strlen(text) != 64)
        return false;
    return strspn(text, "0123456789abcdef") == 64;
}

static ap_status locate_weights(const char *card_path, const json_t *card, ap_loaded_model *out,
                                ap_error *err)
{
    const json_t *weights = json_object_get(card, "weights");
    const char *file = json_string_value(json_object_get(weights, "file"));
    const char *sha = json_string_value(json_object_get(weights, "sha256"));
    if (file == NULL || file[0] == '\0' || strchr(file, '/') != NULL || strcmp(file, "..") == 0)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "model card %s: weights.file must name a file beside the card",
                            card_path);
    if (!is_sha256_hex(sha))
        return ap_error_set(err, AP_ERR_FORMAT,
                            "model card %s: weights.sha256 must be 64 lowercase hex digits",
                            card_path);
    const char *slash = strrchr(card_path, '/');
    char folder[AP_PATH_MAX + 64];
    snprintf(folder, sizeof(folder), "%.*s", slash != NULL ? (int)(slash - card_path) : 1,
             slash != NULL ? card_path : ".");
    ap_status status =
        ap_path_join(out->weights_path, sizeof(out->weights_path), folder, file, err);
    if (status != AP_OK)
        return status;

    if (!ap_path_exists(out->weights_path))
        return ap_error_set(err, AP_ERR_IO,
                            "weights file %s, which model card %s names, is missing; copy it "
                            "from the run or registry version the card came from, or, in a run "
                            "folder that still has its final checkpoint, rerun apiary train for "
                            "that run to write it again",
                            out->weights_path, card_path);
    char actual[65];
    status = ap_sha256_file(out->weights_path, actual, err);
    if (status != AP_OK)
        return status;
    if (strcmp(actual, sha) != 0)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "weights %s have sha256 %s, but model card %s names %s; the files "
                            "do not belong together, so copy them from the same run or version",
                            out->weights_path, actual, card_path, sha);
    memcpy(out->weights_sha256, actual, sizeof(actual));
    return AP_OK;
}

static ap_status read_thresholds(const char *card_path, const json_t *card, ap_loaded_model *out,
                                 ap_error *err)
{
    const json_t *thresholds = json_object_get(card, "thresholds");
    int found = 0;
    for (int l = 0; l < out->label_count; l++) {
        out->thresholds[l] = DEFAULT_THRESHOLD;
        const json_t *value = json_object_get(thresholds, out->labels[l]);
        if (value == NULL)
            continue;
        double threshold = json_number_value(value);
        if (!json_is_number(value) || !(threshold >= 0.0 && threshold <= 1.0))
            return ap_error_set(err, AP_ERR_FORMAT,
                                "model card %s: thresholds.%s must be a number in [0, 1]",
                                card_path, out->labels[l]);
        out->thresholds[l] = (float)threshold;
        found++;
    }
    out->has_thresholds = found == out->label_count;
    return AP_OK;
}

static ap_status read_card(const char *card_path, ap_loaded_model *out, ap_error *err)
{
    uint8_t *text = NULL;
    size_t size = 0;
    ap_status status = ap_read_file(card_path, CARD_MAX_BYTES, &text, &size, err);
    /* A missing card is a missing model file, which fails like missing weights. */
    if (status == AP_ERR_NOT_FOUND) {
        status = AP_ERR_IO;
        if (err != NULL)
            err->code = AP_ERR_IO;
    }
    if (status != AP_OK)
        return status;
    ap_sha256_hex(text, size, out->card_sha256);
    json_error_t parse_error;
    out->card = json_loadb((const char *)text, size, JSON_REJECT_DUPLICATES, &parse_error);
    free(text);
    if (out->card == NULL || !json_is_object(out->card))
        return ap_error_set(err, AP_ERR_FORMAT, "model card %s is not a JSON object (%s, line %d)",
                            card_path, out->card == NULL ? parse_error.text : "other value",
                            out->card == NULL ? parse_error.line : 1);
    const char *format = json_string_value(json_object_get(out->card, "format"));
    if (format == NULL || strcmp(format, CARD_FORMAT) != 0)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s is not an apiary model card (format %s); pass the "
                            "model_card.json of a run or registry version",
                            card_path, format != NULL ? format : "missing");
    return AP_OK;
}

ap_status ap_model_load(const char *card_path, int batch, ap_loaded_model *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    if (strlen(card_path) >= sizeof(out->card_path))
        return ap_error_set(err, AP_ERR_INVALID,
                            "model card path %.80s... is longer than %zu bytes; use a shorter path",
                            card_path, sizeof(out->card_path) - 1);
    snprintf(out->card_path, sizeof(out->card_path), "%s", card_path);
    ap_config card_cfg;
    ap_status status = read_card(card_path, out, err);
    if (status == AP_OK)
        status = read_card_config(card_path, out->card, &card_cfg, err);
    if (status != AP_OK)
        return status;

    out->label_count = card_cfg.data.label_count;
    memcpy(out->labels, card_cfg.data.labels, sizeof(out->labels));
    out->width = card_cfg.data.width;
    out->height = card_cfg.data.height;
    out->resize = card_cfg.data.resize;
    memcpy(out->mean, card_cfg.data.mean, sizeof(out->mean));
    memcpy(out->std, card_cfg.data.std, sizeof(out->std));
    ap_net_spec_from_config(&card_cfg, &out->spec);

    status = read_thresholds(card_path, out->card, out, err);
    if (status == AP_OK)
        status = locate_weights(card_path, out->card, out, err);
    if (status == AP_OK)
        status = ap_net_create(&out->spec, batch, 0, &out->net, err);
    if (status == AP_OK)
        status = ap_train_state_load(out->weights_path, out->net, NULL, NULL, err);
    if (status != AP_OK)
        return ap_error_prefix(err, "loading model %s", card_path);
    return AP_OK;
}

void ap_loaded_model_free(ap_loaded_model *model)
{
    if (model->net != NULL)
        ap_net_destroy(model->net);
    json_decref(model->card);
    memset(model, 0, sizeof(*model));
}

int ap_loaded_model_label_index(const ap_loaded_model *model, const char *label)
{
    for (int l = 0; l < model->label_count; l++)
        if (strcmp(model->labels[l], label) == 0)
            return l;
    return -1;
}

ap_status ap_loaded_model_predict(const ap_loaded_model *model, const ap_image_set *images,
                                  const size_t *indices, size_t count, float *probabilities,
                                  ap_error *err)
{
    if (images->width != model->width || images->height != model->height)
        return ap_error_set(err, AP_ERR_INVALID,
                            "images are %dx%d but model %s expects %dx%d; decode them at the "
                            "model's input size",
                            images->width, images->height, model->card_path, model->width,
                            model->height);
    /* The output stride of ap_predict_logits is the set's label count. */
    ap_image_set view = *images;
    view.label_count = model->label_count;
    ap_status status = ap_predict_logits(model->net, &view, indices, count, model->mean, model->std,
                                         probabilities, err);
    if (status == AP_OK)
        ap_sigmoid_inplace(probabilities, count * (size_t)model->label_count);
    return status;
}
