#include "pipeline/validate/validate.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/common/log.h"
#include "pipeline/train/predict.h"
#include "pipeline/train/trainer.h"
#include "pipeline/validate/report_render.h"
#include "pipeline/validate/validate_internal.h"

_Static_assert((int)AP_GATE_THRESHOLD_MAX_F1 == (int)AP_THRESHOLD_MAX_F1 &&
                   (int)AP_GATE_THRESHOLD_TARGET_RECALL == (int)AP_THRESHOLD_TARGET_RECALL &&
                   (int)AP_GATE_THRESHOLD_FIXED == (int)AP_THRESHOLD_FIXED,
               "gate.threshold_policy and ap_threshold_policy differ");

static const char *const report_files[] = {"report.json", "report.md", "report.html"};

static void run_path(const ap_validation *v, const char *name, char *out, size_t out_size)
{
    snprintf(out, out_size, "%s/%s", v->run_dir, name);
}

/* ---- The run folder and its config ---- */

static ap_status require_complete_run(const ap_validation *v, ap_error *err)
{
    char path[AP_PATH_MAX + 32];
    run_path(v, "complete.json", path, sizeof(path));
    if (ap_path_exists(path))
        return AP_OK;
    if (v->finish_command != NULL)
        return ap_error_set(err, AP_ERR_NOT_FOUND,
                            "run %s has not finished training (no complete.json); finish it with "
                            "%s, or validate another run (--set run_name=...)",
                            v->run_dir, v->finish_command);
    return ap_error_set(err, AP_ERR_NOT_FOUND,
                        "run %s has not finished training (no complete.json); finish it with "
                        "apiary train -c %s and the same --set options and --resume, or validate "
                        "another run (--set run_name=...)",
                        v->run_dir, v->cfg->source_path[0] ? v->cfg->source_path : "CONFIG");
}

/* Reduce cfg to the settings that shape the data, the split and the network.
 * The dataset folder is left out too because the data hashes are checked. */
static void keep_shaping_settings(ap_config *cfg, const ap_config *reference)
{
    ap_config shaping;
    ap_config_model_settings(cfg, false, &shaping);
    memcpy(shaping.data.root, reference->data.root, sizeof(shaping.data.root));
    *cfg = shaping;
}

/* Describe the keys whose YAML lines differ. Both texts list every key in
 * the same order, one key per line, so lines correspond one to one. */
static void describe_differences(const char *saved, const char *current, char *out, size_t out_size)
{
    char section[AP_NAME_MAX] = "";
    size_t used = 0;
    out[0] = '\0';
    while (*saved != '\0' && *current != '\0' && used + 1 < out_size) {
        size_t saved_length = strcspn(saved, "\n"), current_length = strcspn(current, "\n");
        bool indented = saved[0] == ' ';
        if (!indented && saved_length > 0 && saved[saved_length - 1] == ':')
            snprintf(section, sizeof(section), "%.*s", (int)(saved_length - 1), saved);
        bool differs = saved_length != current_length || strncmp(saved, current, saved_length) != 0;
        if (differs) {
            const char *key = saved + strspn(saved, " ");
            int key_length = (int)strcspn(key, ":");
            const char *saved_value = key + key_length + (key[key_length] == ':' ? 2 : 0);
            const char *current_value = current + (saved_value - saved);
            int written =
                snprintf(out + used, out_size - used, "%s%s%s%.*s (%.*s in the run, %.*s now)",
                         used > 0 ? ", " : "", indented ? section : "", indented ? "." : "",
                         key_length, key, (int)(saved + saved_length - saved_value), saved_value,
                         (int)(current + current_length - current_value), current_value);
            if (written > 0)
                used += (size_t)written;
        }
        saved += saved_length + (saved[saved_length] == '\n');
        current += current_length + (current[current_length] == '\n');
    }
}

static ap_status check_run_config(const ap_validation *v, ap_error *err)
{
    char path[AP_PATH_MAX + 32];
    run_path(v, "config.yaml", path, sizeof(path));
    ap_config *saved = malloc(sizeof(*saved)), *current = malloc(sizeof(*current));
    ap_status status = AP_OK;
    if (saved == NULL || current == NULL)
        status = ap_error_set(err, AP_ERR_NOMEM, "cannot allocate configs");
    if (status == AP_OK)
        status = ap_config_load_file(path, saved, err);
    if (status == AP_OK) {
        *current = *v->cfg;
        keep_shaping_settings(saved, v->cfg);
        keep_shaping_settings(current, v->cfg);
    }
    if (status == AP_OK && !ap_config_equal(saved, current)) {
        char *saved_yaml = ap_config_to_yaml(saved), *current_yaml = ap_config_to_yaml(current);
        char differences[640] = "unknown keys";
        if (saved_yaml != NULL && current_yaml != NULL)
            describe_differences(saved_yaml, current_yaml, differences, sizeof(differences));
        status = ap_error_set(err, AP_ERR_INVALID,
                              "the config differs from the run's %s in settings that shape the "
                              "data, split or network: %s; validate with the config the run was "
                              "trained with",
                              path, differences);
        free(saved_yaml);
        free(current_yaml);
    }
    free(saved);
    free(current);
    return status;
}

/* The card must describe the network and inputs the config describes. */
static ap_status check_model_matches_config(const ap_validation *v, ap_error *err)
{
    const ap_loaded_model *model = &v->model;
    const ap_data_config *data = &v->cfg->data;
    bool same_labels = model->label_count == data->label_count;
    for (int l = 0; same_labels && l < data->label_count; l++)
        same_labels = strcmp(model->labels[l], data->labels[l]) == 0;
    if (!same_labels || model->width != data->width || model->height != data->height)
        return ap_error_set(
            err, AP_ERR_INVALID,
            "model card %s does not match the config (labels, data.width or "
            "data.height differ); the run folder holds another model, so retrain it",
            model->card_path);
    return AP_OK;
}

/* The data must be the data the model card recorded at training time. */
static ap_status check_data_hashes(const ap_validation *v, ap_error *err)
{
    const json_t *recorded = json_object_get(v->model.card, "data");
    const char *split = json_string_value(json_object_get(recorded, "split_sha256"));
    const char *content = json_string_value(json_object_get(recorded, "content_sha256"));
    if (split != NULL && strcmp(split, v->data.split_hash) != 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "%s/split.csv has changed since training (sha256 %s, the model card "
                            "records %s); validate with the split the model was trained on, or "
                            "retrain",
                            v->run_dir, v->data.split_hash, split);
    const char *root = json_string_value(json_object_get(recorded, "root"));
    if (content != NULL && strcmp(content, v->data.images.content_hash) != 0 && root != NULL &&
        strcmp(root, v->cfg->data.root) != 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "the model was trained on data.root %s, but the config names %s, "
                            "whose images or labels differ (content sha256 %s, the model card "
                            "records %s); validate with data.root %s, or retrain on the new data",
                            root, v->cfg->data.root, v->data.images.content_hash, content, root);
    if (content != NULL && strcmp(content, v->data.images.content_hash) != 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "the images or labels under %s have changed since training (content "
                            "sha256 %s, the model card records %s); retrain on the current data",
                            v->cfg->data.root, v->data.images.content_hash, content);
    return AP_OK;
}

static void remove_old_reports(const ap_validation *v)
{
    for (size_t i = 0; i < sizeof(report_files) / sizeof(report_files[0]); i++) {
        char path[AP_PATH_MAX + 32];
        run_path(v, report_files[i], path, sizeof(path));
        if (unlink(path) != 0 && errno != ENOENT)
            AP_WARN("cannot remove the old %s: %s", path, strerror(errno));
    }
}

/* ---- Predictions ---- */

static ap_status predict_split(ap_validation *v, ap_split_part part, ap_split_predictions *out,
                               ap_error *err)
{
    size_t labels = (size_t)v->cfg->data.label_count;
    out->images = v->data.part_images[part];
    out->count = v->data.part_count[part];
    out->probabilities = malloc((out->count + 1) * labels * sizeof(float));
    out->targets = malloc((out->count + 1) * labels);
    if (out->probabilities == NULL || out->targets == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate predictions of %zu images",
                            out->count);
    ap_gather_labels(&v->data.images, out->images, out->count, out->targets);
    return ap_loaded_model_predict(&v->model, &v->data.images, out->images, out->count,
                                   out->probabilities, err);
}

typedef struct {
    const char *group;
    size_t image; /* position in the test split */
} test_group;

static int compare_test_groups(const void *a, const void *b)
{
    return strcmp(((const test_group *)a)->group, ((const test_group *)b)->group);
}

/* Number the groups of the test images for the group bootstrap. */
static ap_status number_test_groups(ap_validation *v, ap_error *err)
{
    size_t count = v->test.count;
    test_group *sorted = malloc((count + 1) * sizeof(*sorted));
    v->test_groups = malloc((count + 1) * sizeof(int));
    if (sorted == NULL || v->test_groups == NULL) {
        free(sorted);
        return ap_error_set(err, AP_ERR_NOMEM, "cannot number the groups of %zu images", count);
    }
    for (size_t i = 0; i < count; i++) {
        size_t row = v->data.images.row_index[v->test.images[i]];
        sorted[i] = (test_group){v->data.manifest.rows[row].group, i};
    }
    qsort(sorted, count, sizeof(*sorted), compare_test_groups);
    int group = -1;
    for (size_t i = 0; i < count; i++) {
        if (i == 0 || strcmp(sorted[i].group, sorted[i - 1].group) != 0)
            group++;
        v->test_groups[sorted[i].image] = group;
    }
    free(sorted);
    return AP_OK;
}

/* ---- Thresholds on the validation split ---- */

static ap_eval_set split_eval_set(const ap_validation *v, const ap_split_predictions *split,
                                  const int *groups)
{
    ap_eval_set set = {split->probabilities, split->targets, split->count, v->cfg->data.label_count,
                       groups};
    return set;
}

static void describe_choice(const ap_validation *v, int label, const ap_threshold_choice *choice,
                            ap_label_threshold *out)
{
    const char *name = v->cfg->data.labels[label];
    switch (out->policy) {
    case AP_THRESHOLD_MAX_F1:
        snprintf(out->detail, sizeof(out->detail),
                 "the highest F1 for %s among %zu candidate thresholds on the validation split",
                 name, choice->candidate_count);
        break;
    case AP_THRESHOLD_TARGET_RECALL:
        snprintf(out->detail, sizeof(out->detail),
                 "the highest threshold that reaches %s recall %g on the validation split%s", name,
                 v->cfg->gate.target_recall,
                 choice->all_positive ? ", reached only by predicting every image positive" : "");
        break;
    case AP_THRESHOLD_FIXED:
        snprintf(out->detail, sizeof(out->detail), "gate.threshold, the same for every label");
        break;
    }
}

/* Use gate.threshold when the validation split cannot support the policy. */
static ap_status fall_back(ap_validation *v, int label, const ap_eval_set *set, const char *reason,
                           ap_label_threshold *out, ap_error *err)
{
    out->value = (float)v->cfg->gate.threshold;
    out->policy = AP_THRESHOLD_FIXED;
    snprintf(out->detail, sizeof(out->detail), "%s, so the threshold falls back to gate.threshold",
             reason);
    AP_WARN("label %s: %s, so its threshold falls back to gate.threshold %g",
            v->cfg->data.labels[label], reason, v->cfg->gate.threshold);
    ap_metrics_options options;
    ap_metrics_options_default(&options);
    ap_label_order order;
    ap_status status = ap_label_order_build(set, label, &order, err);
    if (status == AP_OK && order.known_count > 0) {
        ap_label_metrics_compute(&order, NULL, out->value, options.ece_bins, &out->validation);
        out->has_validation = true;
    }
    ap_label_order_free(&order);
    return status;
}

static ap_status choose_threshold(ap_validation *v, int label, const ap_eval_set *set,
                                  ap_label_threshold *out, ap_error *err)
{
    const ap_gate_config *gate = &v->cfg->gate;
    memset(out, 0, sizeof(*out));
    long positives, negatives, unknown;
    ap_run_data_label_counts(&v->data, AP_SPLIT_VAL, label, &positives, &negatives, &unknown);
    ap_threshold_rule rule = {(ap_threshold_policy)gate->threshold_policy, gate->target_recall,
                              (float)gate->threshold};
    if (positives + negatives == 0)
        return fall_back(v, label, set, "the validation split has no image with a known label", out,
                         err);
    if (positives == 0 && rule.policy != AP_THRESHOLD_FIXED)
        return fall_back(v, label, set, "the validation split has no positive image", out, err);

    ap_threshold_choice choice;
    ap_status status = ap_threshold_choose(set, label, &rule, NULL, &choice, err);
    if (status != AP_OK)
        return ap_error_prefix(err, "choosing the threshold of %s", v->cfg->data.labels[label]);
    out->value = choice.threshold;
    out->policy = rule.policy;
    out->validation = choice.metrics;
    out->has_validation = true;
    describe_choice(v, label, &choice, out);
    return AP_OK;
}

/* Write the thresholds into model_card.json, leaving every other field as
 * it is, and record the new card's sha256. */
static ap_status store_thresholds(ap_validation *v, ap_error *err)
{
    json_t *thresholds = json_object();
    for (int l = 0; thresholds != NULL && l < v->cfg->data.label_count; l++)
        json_object_set_new(thresholds, v->cfg->data.labels[l],
                            json_real((double)v->threshold_values[l]));
    if (thresholds == NULL || json_object_set_new(v->model.card, "thresholds", thresholds) != 0)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot add thresholds to %s", v->model.card_path);
    /* Nine significant digits write each float threshold exactly and leave
     * the six-digit numbers train wrote unchanged. */
    char *text = json_dumps(v->model.card, JSON_INDENT(2) | JSON_REAL_PRECISION(9));
    if (text == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot encode %s", v->model.card_path);
    ap_status status = ap_write_atomic(v->model.card_path, text, strlen(text), err);
    if (status == AP_OK)
        ap_sha256_hex(text, strlen(text), v->card_sha256);
    free(text);
    return status;
}

static ap_status choose_thresholds(ap_validation *v, ap_error *err)
{
    ap_eval_set set = split_eval_set(v, &v->val, NULL);
    ap_status status = ap_eval_set_check(&set, err);
    for (int l = 0; status == AP_OK && l < v->cfg->data.label_count; l++) {
        status = choose_threshold(v, l, &set, &v->thresholds[l], err);
        v->threshold_values[l] = v->thresholds[l].value;
    }
    if (status == AP_OK)
        status = store_thresholds(v, err);
    v->thresholds_chosen = status == AP_OK;
    return status;
}

/* ---- Test metrics and rules ---- */

static ap_status evaluate_test(ap_validation *v, ap_error *err)
{
    const ap_config *cfg = v->cfg;
    ap_metrics_options options;
    ap_metrics_options_default(&options);
    options.level = cfg->gate.confidence_level;
    options.resamples = cfg->gate.bootstrap_resamples;
    options.seed = cfg->seed;
    options.threads = cfg->train.threads;
    ap_eval_set set = split_eval_set(v, &v->test, v->test_groups);
    ap_status status = ap_evaluate(&set, v->threshold_values, &options, &v->evaluation, err);
    if (status != AP_OK)
        return status;
    v->evaluated = true;
    for (int l = 0; status == AP_OK && l < cfg->data.label_count; l++) {
        ap_label_order order;
        status = ap_label_order_build(&set, l, &order, err);
        if (status == AP_OK)
            status = ap_label_curves_compute(&order, options.ece_bins, &v->curves[l], err);
        ap_label_order_free(&order);
    }
    return status;
}

static void apply_rules(ap_validation *v)
{
    for (int i = 0; i < v->rule_count; i++) {
        ap_gate_outcome *outcome = &v->outcomes[i];
        if (v->evaluated) {
            ap_gate_rule_evaluate(&v->rules[i], &v->evaluation, outcome);
            continue;
        }
        outcome->actual = NAN;
        outcome->passed = false;
        snprintf(outcome->detail, sizeof(outcome->detail),
                 "not evaluated, because a data check failed before the test split was measured");
    }
}

static void decide(ap_validation *v)
{
    v->checks_passed = true;
    for (int i = 0; i < v->check_count; i++)
        v->checks_passed = v->checks_passed && v->checks[i].passed;
    bool rules_passed = true;
    for (int i = 0; i < v->rule_count; i++)
        rules_passed = rules_passed && v->outcomes[i].passed;
    v->passed = v->checks_passed && rules_passed && v->evaluated &&
                (v->comparison.skipped || v->comparison.passed);
}

/* ---- Steps ---- */

/* Sets *run_checked once the run folder and config have passed their checks. */
static ap_status open_run(ap_validation *v, bool *run_checked, ap_error *err)
{
    const ap_config *cfg = v->cfg;
    char card_path[AP_PATH_MAX + 32];
    ap_status status = ap_gate_rules_parse(cfg, v->rules, &v->rule_count, err);
    if (status == AP_OK)
        status = ap_run_dir(cfg, v->run_dir, sizeof(v->run_dir), err);
    if (status == AP_OK)
        status = require_complete_run(v, err);
    if (status == AP_OK)
        status = check_run_config(v, err);
    if (status != AP_OK)
        return status;
    *run_checked = true;

    if (cfg->train.threads > 0)
        omp_set_num_threads(cfg->train.threads);
    run_path(v, "model_card.json", card_path, sizeof(card_path));
    status = ap_model_load(card_path, cfg->train.batch_size, &v->model, err);
    if (status == AP_OK)
        status = check_model_matches_config(v, err);
    return status;
}

static ap_status load_data(ap_validation *v, ap_error *err)
{
    ap_status status = ap_run_data_prepare(v->cfg, v->run_dir, &v->data, err);
    v->data_loaded = true;
    if (status == AP_OK)
        status = check_data_hashes(v, err);
    if (status == AP_OK)
        status = ap_validation_check_duplicates(v, err);
    if (status == AP_OK)
        ap_validation_check_support(v);
    return status;
}

static ap_status measure(ap_validation *v, ap_error *err)
{
    ap_status status = predict_split(v, AP_SPLIT_VAL, &v->val, err);
    if (status == AP_OK)
        status = predict_split(v, AP_SPLIT_TEST, &v->test, err);
    if (status == AP_OK)
        status = number_test_groups(v, err);
    if (status == AP_OK)
        status = choose_thresholds(v, err);
    if (status == AP_OK)
        status = evaluate_test(v, err);
    if (status == AP_OK)
        status = ap_validation_compare_champion(v, err);
    return status;
}

/* Write texts[i] to report_files[i] as one set. Every file goes to a
 * temporary file first, and the renames start only once all of them are on
 * disk, so a full disk or a write error leaves the previous reports intact.
 * report.json, which promote reads, is renamed last. */
static ap_status write_report_set(const ap_validation *v, char *const texts[], ap_error *err)
{
    enum { COUNT = sizeof(report_files) / sizeof(report_files[0]) };
    ap_atomic_file files[COUNT];
    size_t opened = 0;
    ap_status status = AP_OK;
    for (; status == AP_OK && opened < COUNT; opened++) {
        char path[AP_PATH_MAX + 32];
        run_path(v, report_files[opened], path, sizeof(path));
        status = ap_atomic_open(&files[opened], path, err);
        if (status != AP_OK)
            break;
        status = ap_atomic_write(&files[opened], texts[opened], strlen(texts[opened]), err);
    }
    for (size_t i = COUNT; i-- > 0;) {
        if (i >= opened)
            continue;
        if (status == AP_OK)
            status = ap_atomic_commit(&files[i], err);
        else
            ap_atomic_abort(&files[i]);
    }
    return status;
}

static ap_status write_reports(const ap_validation *v, const json_t *report, ap_error *err)
{
    char *texts[3] = {json_dumps(report, JSON_INDENT(2) | JSON_REAL_PRECISION(9)), NULL, NULL};
    ap_status status = AP_OK;
    if (texts[0] == NULL)
        status = ap_error_set(err, AP_ERR_NOMEM, "cannot encode the validation report");
    if (status == AP_OK)
        status = ap_report_render_markdown(report, &texts[1], err);
    if (status == AP_OK)
        status = ap_report_render_html(report, &texts[2], err);
    if (status == AP_OK)
        status = write_report_set(v, texts, err);
    for (int i = 0; i < 3; i++)
        free(texts[i]);
    return status;
}

static ap_status run_validation(ap_validation *v, ap_validate_outcome *outcome, ap_error *err)
{
    bool run_checked = false;
    ap_status status = open_run(v, &run_checked, err);
    if (status == AP_OK)
        status = ap_validation_check_groups(v, err);
    /* The split decides which images are test images, so a split that
     * leaks groups leaves nothing trustworthy to measure. */
    bool groups_separate = status == AP_OK && v->checks[0].passed;
    if (groups_separate) {
        status = load_data(v, err);
        if (status == AP_OK)
            status = measure(v, err);
    } else if (status == AP_OK) {
        v->comparison.skipped = true;
        snprintf(v->comparison.reason, sizeof(v->comparison.reason),
                 "not run, because a data check failed");
    }
    if (status == AP_OK)
        apply_rules(v);
    if (status == AP_OK)
        decide(v);
    json_t *report = NULL;
    if (status == AP_OK)
        status = ap_validation_build_report(v, &report, err);
    /* Reports left by an earlier validation would look current after this
     * one failed. A failed write of the new reports keeps them instead:
     * they describe the same model, and the error is reported. */
    if (status != AP_OK && run_checked)
        remove_old_reports(v);
    if (status == AP_OK)
        status = write_reports(v, report, err);
    if (status != AP_OK) {
        json_decref(report);
        return status;
    }
    outcome->passed = v->passed;
    outcome->report = report;
    snprintf(outcome->run_dir, sizeof(outcome->run_dir), "%s", v->run_dir);
    run_path(v, report_files[0], outcome->report_path, sizeof(outcome->report_path));
    return AP_OK;
}

static void validation_free(ap_validation *v)
{
    for (int l = 0; l < AP_MAX_LABELS; l++)
        ap_label_curves_free(&v->curves[l]);
    ap_evaluation_free(&v->evaluation);
    free(v->val.probabilities);
    free(v->val.targets);
    free(v->test.probabilities);
    free(v->test.targets);
    free(v->test_groups);
    if (v->data_loaded)
        ap_run_data_free(&v->data);
    ap_loaded_model_free(&v->model);
    free(v);
}

ap_status ap_validate(const ap_validate_request *request, ap_validate_outcome *outcome,
                      ap_error *err)
{
    memset(outcome, 0, sizeof(*outcome));
    ap_validation *v = calloc(1, sizeof(*v));
    if (v == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the validation state");
    v->cfg = request->cfg;
    v->finish_command = request->finish_command;
    ap_status status = run_validation(v, outcome, err);
    if (status == AP_OK)
        AP_INFO("validation of %s %s; report %s", v->run_dir, v->passed ? "passed" : "failed",
                outcome->report_path);
    validation_free(v);
    return status;
}

void ap_validate_outcome_free(ap_validate_outcome *outcome)
{
    json_decref(outcome->report);
    outcome->report = NULL;
}
