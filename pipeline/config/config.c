#include "pipeline/config/config.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "pipeline/config/config_table.h"

/* ---- Defaults and overrides ---- */

void ap_config_defaults(ap_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    for (size_t i = 0; i < ap_config_key_count; i++) {
        char reason[REASON_MAX];
        bool ok = ap_config_key_parse_text(&ap_config_keys[i], ap_config_keys[i].default_text, cfg,
                                           reason, sizeof(reason));
        /* Every default is a constant in the table, so only a wrong table fails here. */
        assert(ok && "a default in the config table does not parse");
        (void)ok;
    }
}

ap_status ap_config_set_key(ap_config *cfg, const char *name, const char *value, ap_error *err)
{
    char reason[REASON_MAX * 2];
    const ap_config_key *key = ap_config_key_find(name);
    if (key == NULL && ap_config_is_section(name)) {
        ap_config_list_children(name, reason, sizeof(reason));
        return ap_error_set(err, AP_ERR_INVALID,
                            "%s is a section; set one of its keys (%s), for example %s.%.*s=...",
                            name, reason, name, (int)strcspn(reason, ","), reason);
    }
    if (key == NULL) {
        ap_config_describe_unknown_key(name, reason, sizeof(reason));
        return ap_error_set(err, AP_ERR_INVALID, "%s", reason);
    }

    /* Work on a copy so that a failed override leaves cfg as it was. */
    ap_config updated = *cfg;
    if (!ap_config_key_parse_text(key, value, &updated, reason, sizeof(reason)))
        return ap_error_set(err, AP_ERR_INVALID, "%s", reason);
    *cfg = updated;
    return AP_OK;
}

ap_status ap_config_set(ap_config *cfg, const char *assignment, ap_error *err)
{
    const char *equals = strchr(assignment, '=');
    if (equals == NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "--set %.200s: expected key=value, for example train.epochs=3",
                            assignment);

    char name[KEY_PATH_MAX];
    snprintf(name, sizeof(name), "%.*s", (int)(equals - assignment), assignment);
    /* Errors name the key, not the whole assignment: the reason quotes the
     * value where that helps, but never a password. */
    ap_status status = ap_config_set_key(cfg, name, equals + 1, err);
    if (status != AP_OK)
        ap_error_prefix(err, "--set %s", name);
    return status;
}

/* ---- Cross-key rules ---- */

static ap_status fail_rule(const ap_config *cfg, ap_error *err, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Fail with the message, prefixed with the config file when one was read. */
static ap_status fail_rule(const ap_config *cfg, ap_error *err, const char *format, ...)
{
    char message[AP_ERROR_MESSAGE_MAX];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof(message), format, args);
    va_end(args);
    if (cfg->source_path[0] != '\0')
        return ap_error_set(err, AP_ERR_INVALID, "%.300s: %s", cfg->source_path, message);
    return ap_error_set(err, AP_ERR_INVALID, "%s", message);
}

static ap_status validate_labels(const ap_config *cfg, ap_error *err)
{
    const ap_data_config *data = &cfg->data;
    if (data->label_count < 1)
        return fail_rule(cfg, err,
                         "data.labels is empty; list at least one label column of the manifest");
    for (int i = 0; i < data->label_count; i++) {
        for (int j = i + 1; j < data->label_count; j++)
            if (strcmp(data->labels[i], data->labels[j]) == 0)
                return fail_rule(cfg, err,
                                 "data.labels lists '%s' twice (items %d and %d); each label "
                                 "must appear once",
                                 data->labels[i], i + 1, j + 1);
        if (strcmp(data->labels[i], data->group_column) == 0)
            return fail_rule(cfg, err,
                             "data.group_column '%s' is also listed in data.labels; a column "
                             "is either a label or the group",
                             data->group_column);
    }
    return AP_OK;
}

static ap_status validate_model(const ap_config *cfg, ap_error *err)
{
    const ap_model_config *model = &cfg->model;
    if (model->stage_count < 1)
        return fail_rule(cfg, err,
                         "model.stage_channels is empty; list the channels of at least one stage");
    if (model->stage_blocks_count != model->stage_count)
        return fail_rule(cfg, err,
                         "model.stage_channels has %d items but model.stage_blocks has %d; give "
                         "one block count per stage",
                         model->stage_count, model->stage_blocks_count);
    return AP_OK;
}

static ap_status validate_training(const ap_config *cfg, ap_error *err)
{
    const ap_split_config *split = &cfg->split;
    const ap_train_config *train = &cfg->train;
    if (split->val_fraction + split->test_fraction >= 0.9)
        return fail_rule(cfg, err,
                         "split.val_fraction (%g) + split.test_fraction (%g) is %g; expected less "
                         "than 0.9 so that more than 10%% of the images are left for training",
                         split->val_fraction, split->test_fraction,
                         split->val_fraction + split->test_fraction);
    if (train->min_learning_rate > train->learning_rate)
        return fail_rule(cfg, err,
                         "train.min_learning_rate (%g) is greater than train.learning_rate (%g); "
                         "expected at most the peak learning rate",
                         train->min_learning_rate, train->learning_rate);
    if (train->warmup_epochs > train->epochs)
        return fail_rule(cfg, err,
                         "train.warmup_epochs (%g) is greater than train.epochs (%d); expected a "
                         "warmup no longer than the training",
                         train->warmup_epochs, train->epochs);
    return AP_OK;
}

ap_status ap_config_validate(const ap_config *cfg, ap_error *err)
{
    /* Fields set by code rather than parsed get the same per-key checks. */
    for (size_t i = 0; i < ap_config_key_count; i++) {
        char reason[REASON_MAX];
        if (!ap_config_key_check(&ap_config_keys[i], cfg, reason, sizeof(reason)))
            return fail_rule(cfg, err, "%s: %s", ap_config_keys[i].name, reason);
    }
    if (cfg->data.root[0] == '\0')
        return fail_rule(cfg, err,
                         "data.root is empty; set it to the dataset folder that holds "
                         "data.manifest and the images");
    ap_status status = validate_labels(cfg, err);
    if (status == AP_OK)
        status = validate_model(cfg, err);
    if (status == AP_OK)
        status = validate_training(cfg, err);
    return status;
}

bool ap_config_equal(const ap_config *a, const ap_config *b)
{
    for (size_t i = 0; i < ap_config_key_count; i++)
        if (!ap_config_key_equal(&ap_config_keys[i], a, b))
            return false;
    return true;
}

void ap_config_model_settings(const ap_config *cfg, bool training, ap_config *out)
{
    ap_config_defaults(out);
    out->seed = cfg->seed;
    out->data = cfg->data;
    out->split = cfg->split;
    out->model = cfg->model;
    if (!training)
        return;
    out->train = cfg->train;
    out->train.threads = 0;
    out->train.log_every = 1;
    out->train.checkpoint_every = 1;
    out->train.collective_timeout = 1;
}
