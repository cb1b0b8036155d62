#include "pipeline/train/train_state.h"

#include "pipeline/common/fsutil.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOMENT_PREFIX_FIRST  "optimizer.first_moment."
#define MOMENT_PREFIX_SECOND "optimizer.second_moment."

/* Metadata keys of the position, in the order the content hash covers them.
 * Checkpoints written before the running loss was saved lack the last two,
 * and their hash covers the first POSITION_KEYS_WITHOUT_LOSS. */
static const char *const position_keys[] = {
    "epoch",         "step_in_epoch",  "global_step",      "optimizer_step",
    "config_sha256", "epoch_loss_sum", "epoch_loss_steps",
};
#define POSITION_KEYS              7
#define POSITION_KEYS_WITHOUT_LOSS 5

typedef struct {
    ap_st_tensor *tensors;
    char (*names)[AP_PARAM_NAME_MAX + 32];
    size_t count;
} tensor_list;

static void describe(ap_st_tensor *out, const char *name, const ap_net_tensor *tensor,
                     const float *data)
{
    out->name = name;
    out->ndim = tensor->ndim;
    for (int d = 0; d < tensor->ndim; d++)
        out->shape[d] = tensor->shape[d];
    out->data = data;
}

static ap_status collect_tensors(ap_net *net, const ap_optimizer *opt, tensor_list *list,
                                 ap_error *err)
{
    size_t count = ap_net_tensor_count(net);
    size_t capacity = opt != NULL ? 3 * count : count;
    list->tensors = calloc(capacity, sizeof(*list->tensors));
    list->names = calloc(capacity, sizeof(*list->names));
    list->count = 0;
    if (list->tensors == NULL || list->names == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the checkpoint tensor list");

    for (size_t i = 0; i < count; i++) {
        ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        snprintf(list->names[list->count], sizeof(list->names[0]), "%s", tensor->name);
        describe(&list->tensors[list->count], list->names[list->count], tensor, tensor->data);
        list->count++;
    }
    if (opt == NULL)
        return AP_OK;
    for (size_t i = 0; i < count; i++) {
        ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        if (tensor->role == AP_TENSOR_STATE)
            continue;
        snprintf(list->names[list->count], sizeof(list->names[0]), MOMENT_PREFIX_FIRST "%s",
                 tensor->name);
        describe(&list->tensors[list->count], list->names[list->count], tensor,
                 opt->first_moment[i]);
        list->count++;
        snprintf(list->names[list->count], sizeof(list->names[0]), MOMENT_PREFIX_SECOND "%s",
                 tensor->name);
        describe(&list->tensors[list->count], list->names[list->count], tensor,
                 opt->second_moment[i]);
        list->count++;
    }
    return AP_OK;
}

/* SHA-256 over every tensor's name and bytes, in file order, and the
 * position, so that a changed byte or an edited position is detected. */
static void hash_contents(const ap_st_tensor *tensors, size_t count, const char *const *position,
                          size_t position_count, char hex[65])
{
    ap_sha256_ctx *ctx = ap_sha256_begin();
    for (size_t i = 0; i < count; i++) {
        size_t elements = 1;
        for (int d = 0; d < tensors[i].ndim; d++)
            elements *= (size_t)tensors[i].shape[d];
        ap_sha256_update(ctx, tensors[i].name, strlen(tensors[i].name) + 1);
        ap_sha256_update(ctx, tensors[i].data, elements * sizeof(float));
    }
    for (size_t i = 0; i < position_count; i++)
        ap_sha256_update(ctx, position[i], strlen(position[i]) + 1);
    ap_sha256_end(ctx, hex);
}

/* Name of the first tensor holding NaN or infinity, or NULL. */
static const char *first_non_finite(const ap_st_tensor *tensors, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        size_t elements = 1;
        for (int d = 0; d < tensors[i].ndim; d++)
            elements *= (size_t)tensors[i].shape[d];
        for (size_t j = 0; j < elements; j++)
            if (!isfinite(tensors[i].data[j]))
                return tensors[i].name;
    }
    return NULL;
}

ap_status ap_train_state_save(const char *path, ap_net *net, const ap_optimizer *opt,
                              const ap_train_position *position, const ap_st_meta *extra,
                              size_t extra_count, ap_error *err)
{
    tensor_list list = {0};
    ap_st_meta *meta = calloc(extra_count + POSITION_KEYS + 2, sizeof(*meta));
    char numbers[POSITION_KEYS][72], content_hash[65];
    ap_status status = collect_tensors(net, opt, &list, err);
    if (status == AP_OK && meta == NULL)
        status = ap_error_set(err, AP_ERR_NOMEM, "cannot allocate checkpoint metadata");
    const char *bad = status == AP_OK ? first_non_finite(list.tensors, list.count) : NULL;
    if (bad != NULL)
        status = ap_error_set(err, AP_ERR_INVALID,
                              "not saving %s: tensor %s holds NaN or infinity, so training "
                              "diverged; lower train.learning_rate and train again",
                              path, bad);
    if (status != AP_OK)
        goto cleanup;

    size_t meta_count = 0;
    meta[meta_count++] = (ap_st_meta){"format", opt != NULL ? "apiary-checkpoint" : "apiary-model"};
    if (opt != NULL && position != NULL) {
        snprintf(numbers[0], sizeof(numbers[0]), "%ld", position->epoch);
        snprintf(numbers[1], sizeof(numbers[1]), "%ld", position->step_in_epoch);
        snprintf(numbers[2], sizeof(numbers[2]), "%ld", position->global_step);
        snprintf(numbers[3], sizeof(numbers[3]), "%ld", opt->step);
        snprintf(numbers[4], sizeof(numbers[4]), "%s", position->config_hash);
        /* 17 significant digits read back as the same double. */
        snprintf(numbers[5], sizeof(numbers[5]), "%.17g", position->epoch_loss_sum);
        snprintf(numbers[6], sizeof(numbers[6]), "%ld", position->epoch_loss_steps);
        const char *values[POSITION_KEYS];
        for (int i = 0; i < POSITION_KEYS; i++) {
            values[i] = numbers[i];
            meta[meta_count++] = (ap_st_meta){position_keys[i], numbers[i]};
        }
        hash_contents(list.tensors, list.count, values, POSITION_KEYS, content_hash);
        meta[meta_count++] = (ap_st_meta){"content_sha256", content_hash};
    }
    for (size_t i = 0; i < extra_count; i++)
        meta[meta_count++] = extra[i];
    status = ap_safetensors_write(path, list.tensors, list.count, meta, meta_count, err);

cleanup:
    free(list.tensors);
    free(list.names);
    free(meta);
    return status;
}

static ap_status copy_tensor(const ap_st_file *file, const char *path, const char *name,
                             const ap_net_tensor *tensor, float *dst, ap_error *err)
{
    const ap_st_loaded *loaded = ap_st_find(file, name);
    if (loaded == NULL)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s has no tensor %s; it was saved by a different network "
                            "(check model.* settings)",
                            path, name);
    int same = loaded->ndim == tensor->ndim;
    for (int d = 0; same && d < tensor->ndim; d++)
        same = loaded->shape[d] == tensor->shape[d];
    if (!same || loaded->size != tensor->size)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s: tensor %s has a different shape than the network expects "
                            "(check model.* and data.labels settings)",
                            path, name);
    for (size_t i = 0; i < tensor->size; i++)
        if (!isfinite(loaded->data[i]))
            return ap_error_set(err, AP_ERR_FORMAT,
                                "%s: tensor %s holds NaN or infinity; the file is damaged or "
                                "training diverged, so do not use it",
                                path, name);
    memcpy(dst, loaded->data, tensor->size * sizeof(float));
    return AP_OK;
}

static ap_status parse_long_meta(const ap_st_file *file, const char *path, const char *key,
                                 long *out, ap_error *err)
{
    const char *text = ap_st_meta_get(file, key);
    char *end = NULL;
    errno = 0;
    long value = text != NULL ? strtol(text, &end, 10) : 0;
    if (text == NULL || end == text || *end != '\0' || errno != 0 || value < 0)
        return ap_error_set(err, AP_ERR_FORMAT, "%s: metadata %s is missing or not a count", path,
                            key);
    *out = value;
    return AP_OK;
}

static ap_status parse_loss_meta(const ap_st_file *file, const char *path, double *out,
                                 ap_error *err)
{
    const char *text = ap_st_meta_get(file, "epoch_loss_sum");
    char *end = NULL;
    errno = 0;
    double value = text != NULL ? strtod(text, &end) : 0.0;
    if (text == NULL || end == text || *end != '\0' || errno != 0 || !isfinite(value))
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s: metadata epoch_loss_sum is missing or not a finite number", path);
    *out = value;
    return AP_OK;
}

/* True when the file records the running loss of the epoch. */
static bool has_epoch_loss(const ap_st_file *file)
{
    return ap_st_meta_get(file, "epoch_loss_sum") != NULL ||
           ap_st_meta_get(file, "epoch_loss_steps") != NULL;
}

static ap_status load_position(const ap_st_file *file, const char *path, ap_optimizer *opt,
                               ap_train_position *position, ap_error *err)
{
    const char *format = ap_st_meta_get(file, "format");
    if (format == NULL || strcmp(format, "apiary-checkpoint") != 0)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s is not a training checkpoint (format %s); resume needs the "
                            "checkpoint.safetensors of a run",
                            path, format ? format : "missing");
    ap_status status = parse_long_meta(file, path, "epoch", &position->epoch, err);
    if (status == AP_OK)
        status = parse_long_meta(file, path, "step_in_epoch", &position->step_in_epoch, err);
    if (status == AP_OK)
        status = parse_long_meta(file, path, "global_step", &position->global_step, err);
    if (status == AP_OK)
        status = parse_long_meta(file, path, "optimizer_step", &opt->step, err);
    position->epoch_loss_sum = 0.0;
    position->epoch_loss_steps = 0;
    if (status == AP_OK && has_epoch_loss(file))
        status = parse_loss_meta(file, path, &position->epoch_loss_sum, err);
    if (status == AP_OK && has_epoch_loss(file))
        status = parse_long_meta(file, path, "epoch_loss_steps", &position->epoch_loss_steps, err);
    if (status != AP_OK)
        return status;
    const char *hash = ap_st_meta_get(file, "config_sha256");
    snprintf(position->config_hash, sizeof(position->config_hash), "%s", hash ? hash : "");
    return AP_OK;
}

/* Compare the loaded state with the content hash saved beside it. */
static ap_status verify_contents(const ap_st_file *file, const char *path, ap_net *net,
                                 const ap_optimizer *opt, ap_error *err)
{
    size_t value_count = has_epoch_loss(file) ? POSITION_KEYS : POSITION_KEYS_WITHOUT_LOSS;
    const char *values[POSITION_KEYS];
    for (size_t i = 0; i < value_count; i++) {
        values[i] = ap_st_meta_get(file, position_keys[i]);
        if (values[i] == NULL)
            values[i] = "";
    }
    const char *saved = ap_st_meta_get(file, "content_sha256");
    tensor_list list = {0};
    ap_status status = collect_tensors(net, opt, &list, err);
    if (status == AP_OK) {
        char actual[65];
        hash_contents(list.tensors, list.count, values, value_count, actual);
        if (saved == NULL || strcmp(saved, actual) != 0)
            status = ap_error_set(err, AP_ERR_FORMAT,
                                  "%s does not match its content hash, so it was damaged or "
                                  "edited; delete it to train the run from the start, or "
                                  "choose another run_name",
                                  path);
    }
    free(list.tensors);
    free(list.names);
    return status;
}

ap_status ap_train_state_load(const char *path, ap_net *net, ap_optimizer *opt,
                              ap_train_position *position, ap_error *err)
{
    ap_st_file file = {0};
    ap_status status = ap_safetensors_read(path, &file, err);
    if (status != AP_OK)
        return status;

    char name[AP_PARAM_NAME_MAX + 32];
    size_t count = ap_net_tensor_count(net);
    for (size_t i = 0; i < count && status == AP_OK; i++) {
        ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        status = copy_tensor(&file, path, tensor->name, tensor, tensor->data, err);
    }
    if (status == AP_OK && opt != NULL && position != NULL)
        status = load_position(&file, path, opt, position, err);
    for (size_t i = 0; i < count && status == AP_OK && opt != NULL; i++) {
        ap_net_tensor *tensor = ap_net_tensor_at(net, i);
        if (tensor->role == AP_TENSOR_STATE)
            continue;
        snprintf(name, sizeof(name), MOMENT_PREFIX_FIRST "%s", tensor->name);
        status = copy_tensor(&file, path, name, tensor, opt->first_moment[i], err);
        if (status != AP_OK)
            break;
        snprintf(name, sizeof(name), MOMENT_PREFIX_SECOND "%s", tensor->name);
        status = copy_tensor(&file, path, name, tensor, opt->second_moment[i], err);
    }
    if (status == AP_OK && opt != NULL && position != NULL)
        status = verify_contents(&file, path, net, opt, err);
    ap_st_file_free(&file);
    return status;
}
