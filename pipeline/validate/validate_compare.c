/* The comparison with the registry champion.
 *
 * Labels are matched by name, so their order in the two models does not
 * matter. A champion label that this model lacks fails the comparison,
 * because promoting the model would stop serving and scoring that label.
 * Labels this model adds pass and are recorded.
 *
 * Both models score the same test images, each at its own thresholds (the
 * champion's come from its model card). For every label the two share, a
 * regression is a drop in accuracy larger than gate.max_regression that
 * McNemar's one-sided test (on the images where exactly one model is right)
 * finds significant at gate.regression_alpha. A drop that is larger but not
 * significant may be chance and passes; a significant drop within
 * max_regression is accepted as too small to matter. */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/eval/confusion.h"
#include "pipeline/eval/intervals.h"
#include "pipeline/registry/registry.h"
#include "pipeline/validate/validate_internal.h"

#define NO_CHAMPION "no champion yet"

/* Find the champion's model card. *found is false when the registry has
 * no such model or no champion alias, which is not an error. */
static ap_status find_champion(ap_validation *v, char *card_path, size_t card_path_size,
                               bool *found, ap_error *err)
{
    const ap_registry_config *settings = &v->cfg->registry;
    ap_registry *registry = NULL;
    *found = false;
    ap_status status = ap_registry_open(settings->uri, &registry, err);
    if (status != AP_OK)
        return status;
    ap_error lookup_err = {0};
    status = ap_registry_resolve(registry, settings->model_name, AP_REGISTRY_CHAMPION,
                                 &v->comparison.champion_version, &lookup_err);
    if (status == AP_ERR_NOT_FOUND) {
        snprintf(v->comparison.reason, sizeof(v->comparison.reason), NO_CHAMPION);
        status = AP_OK;
    } else if (status != AP_OK) {
        *err = lookup_err;
    } else {
        /* Fetch the weights first: a remote registry downloads each file it is
         * asked for into one folder, and the card names its weights beside it. */
        int version = v->comparison.champion_version;
        status = ap_registry_file_path(registry, settings->model_name, version,
                                       AP_REGISTRY_MODEL_FILE, card_path, card_path_size, err);
        if (status == AP_OK)
            status = ap_registry_file_path(registry, settings->model_name, version,
                                           AP_REGISTRY_CARD_FILE, card_path, card_path_size, err);
        *found = status == AP_OK;
    }
    ap_registry_close(registry);
    return status;
}

static bool same_input(const ap_loaded_model *champion, const ap_config *cfg)
{
    return champion->width == cfg->data.width && champion->height == cfg->data.height &&
           champion->resize == cfg->data.resize;
}

/* Decode the test images again at the champion's input size, in test order. */
static ap_status decode_for_champion(const ap_validation *v, const ap_loaded_model *champion,
                                     ap_image_set *decoded, ap_error *err)
{
    const ap_manifest *full = &v->data.manifest;
    ap_manifest test_rows = *full;
    test_rows.row_count = v->test.count;
    test_rows.rows = malloc((v->test.count + 1) * sizeof(*test_rows.rows));
    if (test_rows.rows == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the champion's test rows");
    for (size_t i = 0; i < v->test.count; i++)
        test_rows.rows[i] = full->rows[v->data.images.row_index[v->test.images[i]]];

    ap_data_config data = v->cfg->data;
    data.width = champion->width;
    data.height = champion->height;
    data.resize = champion->resize;
    ap_data_report report = {0};
    ap_status status = ap_image_set_load(&data, &test_rows, NULL, decoded, &report, err);
    ap_data_report_free(&report);
    free(test_rows.rows);
    if (status != AP_OK)
        return ap_error_prefix(err, "decoding the test images at the champion's input size");
    bool aligned = decoded->count == v->test.count;
    for (size_t i = 0; aligned && i < decoded->count; i++)
        aligned = decoded->row_index[i] == i;
    if (!aligned)
        return ap_error_set(err, AP_ERR_INVALID,
                            "only %zu of the %zu test images decode at the champion's input size "
                            "%dx%d, so the models cannot be compared on the same images",
                            decoded->count, v->test.count, champion->width, champion->height);
    return AP_OK;
}

static ap_status predict_champion(const ap_validation *v, const ap_loaded_model *champion,
                                  float *probabilities, ap_error *err)
{
    if (same_input(champion, v->cfg))
        return ap_loaded_model_predict(champion, &v->data.images, v->test.images, v->test.count,
                                       probabilities, err);
    ap_image_set decoded = {0};
    size_t *order = malloc((v->test.count + 1) * sizeof(size_t));
    ap_status status = order != NULL ? decode_for_champion(v, champion, &decoded, err)
                                     : ap_error_set(err, AP_ERR_NOMEM, "cannot allocate indices");
    for (size_t i = 0; status == AP_OK && i < v->test.count; i++)
        order[i] = i;
    if (status == AP_OK)
        status =
            ap_loaded_model_predict(champion, &decoded, order, v->test.count, probabilities, err);
    free(order);
    ap_image_set_free(&decoded);
    return status;
}

static void describe_label(const ap_validation *v, const char *label, ap_label_comparison *out)
{
    double drop = out->champion_accuracy - out->challenger_accuracy;
    double max_regression = v->cfg->gate.max_regression, alpha = v->cfg->gate.regression_alpha;
    if (out->images == 0) {
        snprintf(out->detail, sizeof(out->detail),
                 "no test image has a known %s label, so there is nothing to compare", label);
        return;
    }
    if (drop <= max_regression) {
        snprintf(out->detail, sizeof(out->detail),
                 "accuracy %.4f against the champion's %.4f on %ld images: %s",
                 out->challenger_accuracy, out->champion_accuracy, out->images,
                 drop > 0 ? "a drop within gate.max_regression" : "no drop");
        return;
    }
    if (out->p_value >= alpha) {
        snprintf(out->detail, sizeof(out->detail),
                 "accuracy %.4f against the champion's %.4f on %ld images: the drop of %.4f "
                 "exceeds %g, but McNemar's one-sided p-value %.4f is not below %g, so it may be "
                 "chance",
                 out->challenger_accuracy, out->champion_accuracy, out->images, drop,
                 max_regression, out->p_value, alpha);
        return;
    }
    snprintf(out->detail, sizeof(out->detail),
             "accuracy %.4f against the champion's %.4f on %ld images: a drop of %.4f, more than "
             "%g, and McNemar's one-sided p-value %.4f is below %g (champion alone right on %ld "
             "images, this model alone on %ld)",
             out->challenger_accuracy, out->champion_accuracy, out->images, drop, max_regression,
             out->p_value, alpha, out->champion_only_correct, out->challenger_only_correct);
}

/* One label's test probabilities under each model, and its targets. */
typedef struct {
    float *champion;
    float *challenger;
    int8_t *targets;
} label_columns;

/* Compare one shared label from the two models' probability columns. */
static ap_status compare_label(ap_validation *v, const ap_loaded_model *champion,
                               const float *champion_probabilities, int champion_label, int label,
                               const label_columns *columns, ap_label_comparison *out,
                               ap_error *err)
{
    size_t count = v->test.count;
    int label_count = v->cfg->data.label_count;
    float *champion_column = columns->champion, *challenger_column = columns->challenger;
    int8_t *targets = columns->targets;
    for (size_t i = 0; i < count; i++) {
        champion_column[i] =
            champion_probabilities[i * (size_t)champion->label_count + (size_t)champion_label];
        challenger_column[i] = v->test.probabilities[i * (size_t)label_count + (size_t)label];
        targets[i] = v->test.targets[i * (size_t)label_count + (size_t)label];
    }
    float champion_threshold = champion->thresholds[champion_label];
    float challenger_threshold = v->threshold_values[label];
    ap_paired_predictions pair = {champion_column, challenger_column, targets, count, 1};
    ap_status status =
        ap_mcnemar_count(&pair, 0, champion_threshold, challenger_threshold,
                         &out->champion_only_correct, &out->challenger_only_correct, err);
    ap_mcnemar_result test;
    if (status == AP_OK)
        status = ap_mcnemar_test(out->champion_only_correct, out->challenger_only_correct,
                                 AP_MCNEMAR_CHALLENGER_WORSE, AP_MCNEMAR_AUTO, &test, err);
    if (status != AP_OK)
        return status;

    ap_confusion champion_counts, challenger_counts;
    ap_confusion_count(champion_column, targets, count, 1, 0, champion_threshold, &champion_counts);
    ap_confusion_count(challenger_column, targets, count, 1, 0, challenger_threshold,
                       &challenger_counts);
    snprintf(out->label, sizeof(out->label), "%s", v->cfg->data.labels[label]);
    out->images = (long)count - challenger_counts.unknown;
    out->champion_accuracy = ap_confusion_accuracy(&champion_counts);
    out->challenger_accuracy = ap_confusion_accuracy(&challenger_counts);
    out->p_value = test.p_value;
    double drop = out->champion_accuracy - out->challenger_accuracy;
    out->passed = out->images == 0 || !(drop > v->cfg->gate.max_regression &&
                                        test.p_value < v->cfg->gate.regression_alpha);
    describe_label(v, v->cfg->data.labels[label], out);
    return AP_OK;
}

/* Append the names, separated by commas, to out. */
static void join_labels(char names[][AP_NAME_MAX], int count, char *out, size_t out_size)
{
    size_t used = strlen(out);
    for (int i = 0; i < count && used + 1 < out_size; i++) {
        int written = snprintf(out + used, out_size - used, "%s%s", i > 0 ? ", " : "", names[i]);
        if (written > 0)
            used += (size_t)written;
    }
}

static void describe_label_sets(ap_champion_comparison *comparison)
{
    char *detail = comparison->label_detail;
    size_t size = sizeof(comparison->label_detail);
    int version = comparison->champion_version;
    if (comparison->missing_count > 0) {
        snprintf(detail, size, "this model lacks %s ",
                 comparison->missing_count > 1 ? "labels" : "label");
        join_labels(comparison->missing_labels, comparison->missing_count, detail, size);
        size_t used = strlen(detail);
        snprintf(detail + used, size - used,
                 " of champion version %d, so promoting it would stop serving and scoring %s; "
                 "train with every champion label in data.labels, or override the gate with "
                 "apiary promote --force --reason TEXT",
                 version, comparison->missing_count > 1 ? "them" : "it");
    } else if (comparison->added_count > 0) {
        snprintf(detail, size, "this model has every label of champion version %d and adds ",
                 version);
        join_labels(comparison->added_labels, comparison->added_count, detail, size);
        size_t used = strlen(detail);
        snprintf(detail + used, size - used, ", which the champion has no result for");
    } else {
        snprintf(detail, size, "this model has the labels of champion version %d", version);
    }
}

/* Record which champion labels this model lacks and which labels it adds,
 * matching them by name. */
static void compare_label_sets(ap_validation *v, const ap_loaded_model *champion)
{
    ap_champion_comparison *comparison = &v->comparison;
    const ap_data_config *data = &v->cfg->data;
    for (int l = 0; l < champion->label_count; l++) {
        bool present = false;
        for (int k = 0; k < data->label_count && !present; k++)
            present = strcmp(champion->labels[l], data->labels[k]) == 0;
        if (!present)
            snprintf(comparison->missing_labels[comparison->missing_count++], AP_NAME_MAX, "%s",
                     champion->labels[l]);
    }
    for (int l = 0; l < data->label_count; l++) {
        if (ap_loaded_model_label_index(champion, data->labels[l]) < 0)
            snprintf(comparison->added_labels[comparison->added_count++], AP_NAME_MAX, "%s",
                     data->labels[l]);
    }
    comparison->passed = comparison->passed && comparison->missing_count == 0;
    describe_label_sets(comparison);
}

static ap_status compare_labels(ap_validation *v, const ap_loaded_model *champion, ap_error *err)
{
    size_t count = v->test.count;
    float *champion_probabilities =
        malloc((count + 1) * (size_t)champion->label_count * sizeof(float));
    label_columns columns = {malloc((count + 1) * sizeof(float)),
                             malloc((count + 1) * sizeof(float)), malloc(count + 1)};
    ap_status status = AP_OK;
    if (champion_probabilities == NULL || columns.champion == NULL || columns.challenger == NULL ||
        columns.targets == NULL)
        status = ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the champion's predictions");
    if (status == AP_OK)
        status = predict_champion(v, champion, champion_probabilities, err);

    ap_champion_comparison *comparison = &v->comparison;
    for (int l = 0; status == AP_OK && l < v->cfg->data.label_count; l++) {
        int champion_label = ap_loaded_model_label_index(champion, v->cfg->data.labels[l]);
        if (champion_label < 0)
            continue;
        ap_label_comparison *out = &comparison->labels[comparison->label_count++];
        status = compare_label(v, champion, champion_probabilities, champion_label, l, &columns,
                               out, err);
        comparison->passed = comparison->passed && out->passed;
    }
    free(champion_probabilities);
    free(columns.champion);
    free(columns.challenger);
    free(columns.targets);
    return status;
}

ap_status ap_validation_compare_champion(ap_validation *v, ap_error *err)
{
    ap_champion_comparison *comparison = &v->comparison;
    memset(comparison, 0, sizeof(*comparison));
    comparison->passed = true;
    char card_path[AP_PATH_MAX];
    bool found = false;
    ap_status status = find_champion(v, card_path, sizeof(card_path), &found, err);
    if (status != AP_OK)
        return ap_error_prefix(err, "looking up the champion in registry %s", v->cfg->registry.uri);
    if (!found) {
        comparison->skipped = true;
        return AP_OK;
    }

    ap_loaded_model champion;
    status = ap_model_load(card_path, ap_net_batch(v->model.net), &champion, err);
    if (status == AP_OK) {
        memcpy(comparison->champion_sha256, champion.weights_sha256, 65);
        compare_label_sets(v, &champion);
        status = compare_labels(v, &champion, err);
    }
    ap_loaded_model_free(&champion);
    if (status != AP_OK)
        return ap_error_prefix(err, "comparing with champion version %d",
                               comparison->champion_version);
    return AP_OK;
}
