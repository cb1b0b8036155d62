#include "pipeline/train/model_card.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/common/fsutil.h"

void ap_net_spec_from_config(const ap_config *cfg, ap_net_spec *spec)
{
    memset(spec, 0, sizeof(*spec));
    spec->in_channels = 3;
    spec->height = cfg->data.height;
    spec->width = cfg->data.width;
    spec->stem_channels = cfg->model.stem_channels;
    spec->stem_kernel = cfg->model.stem_kernel;
    spec->stem_stride = cfg->model.stem_stride;
    spec->stage_count = cfg->model.stage_count;
    for (int i = 0; i < cfg->model.stage_count && i < AP_NET_MAX_STAGES; i++) {
        spec->stage_channels[i] = cfg->model.stage_channels[i];
        spec->stage_blocks[i] = cfg->model.stage_blocks[i];
    }
    spec->dropout = (float)cfg->model.dropout;
    spec->label_count = cfg->data.label_count;
}

static json_t *int_array(const int *values, int count)
{
    json_t *array = json_array();
    for (int i = 0; i < count; i++)
        json_array_append_new(array, json_integer(values[i]));
    return array;
}

static json_t *float_array(const float *values, int count)
{
    json_t *array = json_array();
    for (int i = 0; i < count; i++)
        json_array_append_new(array, json_real(values[i]));
    return array;
}

static json_t *build_architecture(const ap_net_spec *spec, size_t param_total)
{
    return json_pack("{s:s, s:i, s:i, s:i, s:o, s:o, s:f, s:i, s:I}", "name", "apiary-resnet",
                     "stem_channels", spec->stem_channels, "stem_kernel", spec->stem_kernel,
                     "stem_stride", spec->stem_stride, "stage_channels",
                     int_array(spec->stage_channels, spec->stage_count), "stage_blocks",
                     int_array(spec->stage_blocks, spec->stage_count), "dropout",
                     (double)spec->dropout, "label_count", spec->label_count, "parameters",
                     (json_int_t)param_total);
}

static json_t *build_input(const ap_config *cfg)
{
    return json_pack("{s:i, s:i, s:i, s:s, s:s, s:s, s:o, s:o}", "width", cfg->data.width,
                     "height", cfg->data.height, "channels", 3, "layout", "NCHW RGB",
                     "resize", cfg->data.resize == AP_RESIZE_LETTERBOX ? "letterbox" : "stretch",
                     "scaling", "(pixel / 255 - mean) / std", "mean",
                     float_array(cfg->data.mean, 3), "std", float_array(cfg->data.std, 3));
}

static json_t *build_split_counts(const ap_run_data *data)
{
    json_t *parts = json_object();
    for (int part = 0; part < 3; part++) {
        json_t *labels = json_object();
        for (int label = 0; label < data->manifest.label_count; label++) {
            long pos, neg, unknown;
            ap_run_data_label_counts(data, (ap_split_part)part, label, &pos, &neg, &unknown);
            json_object_set_new(labels, data->manifest.label_names[label],
                                json_pack("{s:I, s:I, s:I}", "positives", (json_int_t)pos,
                                          "negatives", (json_int_t)neg, "unknown",
                                          (json_int_t)unknown));
        }
        json_object_set_new(parts, ap_split_part_name((ap_split_part)part),
                            json_pack("{s:I, s:o}", "images", (json_int_t)data->part_count[part],
                                      "labels", labels));
    }
    return parts;
}

static json_t *build_data(const ap_config *cfg, const ap_run_data *data)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:o}", "root", cfg->data.root,
                     "manifest", cfg->data.manifest, "manifest_sha256", data->manifest_hash,
                     "content_sha256", data->images.content_hash, "split_sha256",
                     data->split_hash, "group_column", cfg->data.group_column, "manifest_rows",
                     (json_int_t)data->manifest.row_count, "readable_images",
                     (json_int_t)data->images.count, "splits", build_split_counts(data));
}

/* Writes train.loss and its settings as text, for example "asymmetric (gamma_pos 0,
 * gamma_neg 4, clip 0.05), positive weights from train split". */
static const char *describe_loss(const ap_train_config *train, char *text, size_t size)
{
    int used;
    if (train->loss == AP_LOSS_FOCAL)
        used = snprintf(text, size, "focal (gamma %g)", train->focal_gamma);
    else if (train->loss == AP_LOSS_ASYMMETRIC)
        used = snprintf(text, size, "asymmetric (gamma_pos %g, gamma_neg %g, clip %g)",
                        train->asymmetric_gamma_pos, train->asymmetric_gamma_neg,
                        train->asymmetric_clip);
    else
        used = snprintf(text, size, "bce");
    if (train->pos_weight == AP_POS_WEIGHT_AUTO && used > 0 && (size_t)used < size)
        snprintf(text + used, size - (size_t)used, ", positive weights from train split");
    return text;
}

json_t *ap_model_card_build(const ap_model_card_info *info)
{
    const ap_config *cfg = info->cfg;
    char created[32];
    time_t now = time(NULL);
    struct tm parts;
    gmtime_r(&now, &parts);
    strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &parts);

    json_t *labels = json_array();
    for (int i = 0; i < cfg->data.label_count; i++)
        json_array_append_new(labels, json_string(cfg->data.labels[i]));

    char loss[160];
    json_t *training = json_pack(
        "{s:s, s:I, s:I, s:I, s:i, s:f, s:f, s:s, s:f}", "device", cfg->train.device, "seed",
        (json_int_t)cfg->seed, "epochs", (json_int_t)info->epochs, "steps",
        (json_int_t)info->steps, "batch_size", cfg->train.batch_size, "learning_rate",
        cfg->train.learning_rate, "weight_decay", cfg->train.weight_decay, "loss",
        describe_loss(&cfg->train, loss, sizeof(loss)), "images_per_second",
        info->images_per_second);

    json_t *metrics = info->validation_metrics ? json_incref(info->validation_metrics)
                                               : json_object();
    return json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:{s:o}}",
                     "format", "apiary-model-card", "format_version", 1, "created", created,
                     "apiary_version", APIARY_VERSION, "git_commit", APIARY_GIT_COMMIT,
                     "run_name", cfg->run_name, "labels", labels, "architecture",
                     build_architecture(info->spec, info->param_total), "input",
                     build_input(cfg), "data", build_data(cfg, info->data), "training", training,
                     "weights",
                     json_pack("{s:s, s:s, s:s}", "file", info->weights_file, "format",
                               "safetensors", "sha256", info->weights_sha256),
                     "metrics", "validation", metrics);
}

ap_status ap_model_card_write(const char *path, const ap_model_card_info *info, ap_error *err)
{
    json_t *card = ap_model_card_build(info);
    if (card == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot build the model card for %s", path);
    char *text = json_dumps(card, JSON_INDENT(2) | JSON_REAL_PRECISION(6));
    json_decref(card);
    if (text == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot encode the model card for %s", path);
    ap_status status = ap_write_atomic(path, text, strlen(text), err);
    free(text);
    return status;
}
