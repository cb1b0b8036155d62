/* The validation stage end to end on a small synthetic dataset: 24x24 PNG
 * images whose labels are visible (bright or dark, red tint or none) in 24
 * groups of four. The split is written before training, which fixes the
 * test images in advance. */

#include "pipeline/validate/validate.h"

#include <sys/stat.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/common/log.h"
#include "pipeline/data/split.h"
#include "pipeline/eval/thresholds.h"
#include "pipeline/registry/registry.h"
#include "pipeline/train/run_data.h"
#include "pipeline/train/trainer.h"
#include "pipeline/validate/model_load.h"
#include "tests/unit/check.h"
#include "tests/unit/png_check.h"

#define SIDE        24
#define GROUPS      24
#define PER_GROUP   4
#define LABEL_COUNT 2

static char work_dir[1024];

/* ---- Dataset ---- */

/* Image number index: bright when index % 2, red when (index / 2) % 2,
 * with per-pixel noise so that no two files are equal. */
static void draw_image(int index, uint8_t *pixels)
{
    uint32_t state = 2654435761u * (uint32_t)(index + 1);
    int base = index % 2 ? 180 : 60, red = (index / 2) % 2 ? 60 : 0;
    for (int i = 0; i < SIDE * SIDE; i++) {
        for (int c = 0; c < 3; c++) {
            state = state * 1664525u + 1013904223u;
            int value = base + (int)(state >> 27) - 16;
            if (c == 0)
                value += red;
            pixels[i * 3 + c] = (uint8_t)(value > 255 ? 255 : value);
        }
    }
}

static const char *part_of_group(int group)
{
    if (group < 12)
        return "train";
    if (group < 18)
        return "val";
    return "test";
}

/* Write run_dir/split.csv: groups 0-11 train, 12-17 val, 18-23 test, and
 * the copied image, when there is one, in a test group of its own. */
static void write_split(const char *run_dir, bool duplicate)
{
    char path[1400];
    CHECK_INT_EQ(ap_mkdirs(run_dir, NULL), AP_OK);
    snprintf(path, sizeof(path), "%s/split.csv", run_dir);
    FILE *split = fopen(path, "w");
    if (split == NULL)
        exit(1);
    fprintf(split, "file,group,part\n");
    for (int index = 0; index < GROUPS * PER_GROUP; index++)
        fprintf(split, "img%03d.png,g%02d,%s\n", index, index / PER_GROUP,
                part_of_group(index / PER_GROUP));
    if (duplicate)
        fprintf(split, "copy.png,gcopy,test\n");
    fclose(split);
}

/* Write data_dir with labels.csv and the images. With a duplicate, the
 * first training image is copied as copy.png in a group of its own. */
static void make_dataset(const char *data_dir, bool duplicate)
{
    char path[1400];
    uint8_t pixels[SIDE * SIDE * 3];
    CHECK_INT_EQ(ap_mkdirs(data_dir, NULL), AP_OK);
    snprintf(path, sizeof(path), "%s/labels.csv", data_dir);
    FILE *manifest = fopen(path, "w");
    if (manifest == NULL)
        exit(1);
    fprintf(manifest, "file,bright,red,group\n");
    for (int index = 0; index < GROUPS * PER_GROUP; index++) {
        snprintf(path, sizeof(path), "%s/img%03d.png", data_dir, index);
        draw_image(index, pixels);
        check_write_png(path, SIDE, pixels);
        /* Every seventh red label is unknown, as in partly annotated data. */
        const char *red = index % 7 == 3 ? "" : (index / 2) % 2 ? "1" : "0";
        fprintf(manifest, "img%03d.png,%d,%s,g%02d\n", index, index % 2, red, index / PER_GROUP);
    }
    if (duplicate) {
        draw_image(0, pixels);
        snprintf(path, sizeof(path), "%s/copy.png", data_dir);
        check_write_png(path, SIDE, pixels);
        fprintf(manifest, "copy.png,0,0,gcopy\n");
    }
    fclose(manifest);
}

static void make_config(ap_config *cfg, const char *data_dir, const char *run_name,
                        const char *rules)
{
    char yaml[8192];
    snprintf(yaml, sizeof(yaml),
             "run_name: %s\n"
             "output_dir: %s/runs\n"
             "seed: 7\n"
             "log_level: warn\n"
             "data: {root: %s, labels: [bright, red], group_column: group, width: 24, "
             "height: 24, resize: stretch}\n"
             "split: {val_fraction: 0.25, test_fraction: 0.25}\n"
             "model: {stem_channels: 4, stem_kernel: 3, stem_stride: 1, stage_channels: [8], "
             "stage_blocks: [1], dropout: 0.0}\n"
             "train: {threads: 2, epochs: 4, batch_size: 8, learning_rate: 0.01, "
             "warmup_epochs: 0, augment: false, log_every: 1000}\n"
             "gate: {min_positives: 3, min_negatives: 3, bootstrap_resamples: 200}\n"
             "registry: {uri: %s/registry, model_name: synthetic}\n",
             run_name, work_dir, data_dir, work_dir);
    ap_error err = {0};
    ap_status status = ap_config_load_string(yaml, "test config", cfg, &err);
    if (status == AP_OK && rules != NULL) {
        char assignment[1024];
        snprintf(assignment, sizeof(assignment), "gate.rules=%s", rules);
        status = ap_config_set(cfg, assignment, &err);
    }
    if (status == AP_OK)
        status = ap_config_validate(cfg, &err);
    if (status != AP_OK) {
        fprintf(stderr, "config: %s\n", err.message);
        exit(1);
    }
}

static void train(const ap_config *cfg)
{
    ap_train_request request = {.cfg = cfg};
    ap_train_outcome outcome;
    ap_error err = {0};
    ap_status status = ap_train(&request, &outcome, &err);
    if (status != AP_OK) {
        fprintf(stderr, "training failed: %s\n", err.message);
        exit(1);
    }
}

static ap_status validate(const ap_config *cfg, ap_validate_outcome *outcome, ap_error *err)
{
    ap_validate_request request = {.cfg = cfg};
    ap_status status = ap_validate(&request, outcome, err);
    if (status != AP_OK)
        fprintf(stderr, "validate: %s\n", err->message);
    return status;
}

/* ---- Report helpers ---- */

static json_t *load_json(const char *run_dir, const char *name)
{
    char path[1400];
    snprintf(path, sizeof(path), "%s/%s", run_dir, name);
    json_error_t error;
    json_t *value = json_load_file(path, 0, &error);
    if (value == NULL)
        fprintf(stderr, "cannot read %s: %s\n", path, error.text);
    return value;
}

static const json_t *data_check(const json_t *report, const char *name)
{
    size_t index;
    const json_t *check;
    json_array_foreach(json_object_get(report, "data_checks"), index, check)
    {
        if (strcmp(json_string_value(json_object_get(check, "name")), name) == 0)
            return check;
    }
    return NULL;
}

static bool failed_rules_contain(const json_t *report, const char *rule)
{
    size_t index;
    const json_t *entry;
    json_array_foreach(json_object_get(report, "failed_rules"), index, entry)
    {
        if (strcmp(json_string_value(entry), rule) == 0)
            return true;
    }
    return false;
}

static void check_metric_entry(const json_t *metric)
{
    CHECK(json_is_object(metric));
    const char *method = json_string_value(json_object_get(metric, "method"));
    CHECK(method != NULL);
    CHECK(json_object_get(metric, "value") != NULL);
    CHECK(json_object_get(metric, "lower") != NULL);
    CHECK(json_object_get(metric, "upper") != NULL);
}

static void check_curves(const json_t *curves, long known)
{
    const json_t *roc = json_object_get(curves, "roc");
    CHECK(json_array_size(roc) >= 2);
    const json_t *first = json_array_get(roc, 0),
                 *last = json_array_get(roc, json_array_size(roc) - 1);
    CHECK_NEAR(json_number_value(json_array_get(first, 0)), 0.0, 0.0);
    CHECK_NEAR(json_number_value(json_array_get(first, 1)), 0.0, 0.0);
    CHECK_NEAR(json_number_value(json_array_get(last, 0)), 1.0, 0.0);
    CHECK_NEAR(json_number_value(json_array_get(last, 1)), 1.0, 0.0);
    CHECK(json_array_size(json_object_get(curves, "pr")) >= 1);
    const json_t *calibration = json_object_get(curves, "calibration");
    CHECK_INT_EQ(json_array_size(calibration), 10);
    long total = 0;
    size_t index;
    const json_t *bin;
    json_array_foreach(calibration, index, bin)
    {
        total += (long)json_integer_value(json_object_get(bin, "count"));
        CHECK(json_object_get(bin, "mean_predicted") != NULL);
        CHECK(json_object_get(bin, "fraction_positive") != NULL);
    }
    CHECK_INT_EQ(total, known);
}

static void check_test_label(const json_t *label, long positives, long negatives, long unknown)
{
    const json_t *support = json_object_get(label, "support");
    CHECK_INT_EQ(json_integer_value(json_object_get(support, "positives")), positives);
    CHECK_INT_EQ(json_integer_value(json_object_get(support, "negatives")), negatives);
    CHECK_INT_EQ(json_integer_value(json_object_get(support, "unknown")), unknown);
    const json_t *confusion = json_object_get(label, "confusion");
    long tp = (long)json_integer_value(json_object_get(confusion, "true_positive"));
    long fn = (long)json_integer_value(json_object_get(confusion, "false_negative"));
    long tn = (long)json_integer_value(json_object_get(confusion, "true_negative"));
    long fp = (long)json_integer_value(json_object_get(confusion, "false_positive"));
    CHECK_INT_EQ(tp + fn, positives);
    CHECK_INT_EQ(tn + fp, negatives);
    const char *names[] = {"accuracy", "balanced_accuracy", "precision", "recall", "specificity",
                           "f1",       "roc_auc",           "pr_auc",    "brier",  "ece"};
    const json_t *metrics = json_object_get(label, "metrics");
    CHECK_INT_EQ(json_object_size(metrics), 10);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        check_metric_entry(json_object_get(metrics, names[i]));
    const json_t *recall = json_object_get(metrics, "recall");
    CHECK(strcmp(json_string_value(json_object_get(recall, "method")), "wilson") == 0);
    CHECK_NEAR(json_number_value(json_object_get(recall, "value")), (double)tp / positives, 1e-9);
    const json_t *roc_auc = json_object_get(metrics, "roc_auc");
    CHECK(strcmp(json_string_value(json_object_get(roc_auc, "method")), "bootstrap") == 0);
    check_curves(json_object_get(label, "curves"), positives + negatives);
}

static void check_report_schema(const json_t *report, const char *run_dir)
{
    char model_path[1400], card_path[1400], model_sha[65], card_sha[65];
    snprintf(model_path, sizeof(model_path), "%s/model.safetensors", run_dir);
    snprintf(card_path, sizeof(card_path), "%s/model_card.json", run_dir);
    CHECK_INT_EQ(ap_sha256_file(model_path, model_sha, NULL), AP_OK);
    CHECK_INT_EQ(ap_sha256_file(card_path, card_sha, NULL), AP_OK);

    CHECK(strcmp(json_string_value(json_object_get(report, "format")),
                 "apiary-validation-report") == 0);
    CHECK_INT_EQ(json_integer_value(json_object_get(report, "format_version")), 1);
    CHECK(json_is_string(json_object_get(report, "created")));
    CHECK(json_is_string(json_object_get(report, "apiary_version")));
    CHECK(json_is_string(json_object_get(report, "git_commit")));
    CHECK(strcmp(json_string_value(json_object_get(report, "run_dir")), run_dir) == 0);
    CHECK(strcmp(json_string_value(json_object_get(report, "model_sha256")), model_sha) == 0);
    CHECK(strcmp(json_string_value(json_object_get(report, "model_card_sha256")), card_sha) == 0);
    CHECK(json_is_boolean(json_object_get(report, "passed")));
    CHECK(json_is_array(json_object_get(report, "failed_rules")));
    const json_t *labels = json_object_get(report, "labels");
    CHECK_INT_EQ(json_array_size(labels), 2);
    CHECK(strcmp(json_string_value(json_array_get(labels, 0)), "bright") == 0);
    CHECK_NEAR(json_number_value(json_object_get(report, "confidence_level")), 0.95, 1e-12);
    CHECK_INT_EQ(json_array_size(json_object_get(report, "data_checks")), 3);
    CHECK(json_is_true(json_object_get(data_check(report, "group_overlap"), "passed")));
    CHECK(json_is_true(json_object_get(data_check(report, "duplicate_images"), "passed")));
    CHECK(json_is_true(json_object_get(data_check(report, "test_support"), "passed")));

    const json_t *threshold = json_object_get(json_object_get(report, "thresholds"), "bright");
    CHECK(json_is_number(json_object_get(threshold, "value")));
    CHECK(strcmp(json_string_value(json_object_get(threshold, "policy")), "max_f1") == 0);
    const json_t *on_val = json_object_get(threshold, "validation");
    CHECK(json_object_get(on_val, "precision") != NULL);
    CHECK(json_object_get(on_val, "recall") != NULL);
    CHECK(json_object_get(on_val, "f1") != NULL);

    const json_t *test = json_object_get(report, "test");
    CHECK_INT_EQ(json_integer_value(json_object_get(test, "images")), 24);
    /* Test groups g18..g23: bright on odd images (12 of 24); red on images
     * with (index / 2) odd, except the unknown ones (index % 7 == 3). */
    check_test_label(json_object_get(json_object_get(test, "labels"), "bright"), 12, 12, 0);
    check_test_label(json_object_get(json_object_get(test, "labels"), "red"), 10, 10, 4);
    const json_t *macro = json_object_get(test, "macro");
    CHECK_INT_EQ(json_object_size(macro), 10);
    check_metric_entry(json_object_get(macro, "f1"));
}

static void check_rule_entry(const json_t *report, int index, const char *text, bool passed)
{
    const json_t *rule = json_array_get(json_object_get(report, "rules"), (size_t)index);
    CHECK(strcmp(json_string_value(json_object_get(rule, "rule")), text) == 0);
    CHECK(json_is_string(json_object_get(rule, "label")));
    CHECK(json_is_string(json_object_get(rule, "metric")));
    CHECK(json_is_string(json_object_get(rule, "bound")));
    CHECK(json_is_string(json_object_get(rule, "op")));
    CHECK(json_is_number(json_object_get(rule, "limit")));
    CHECK(json_object_get(rule, "actual") != NULL);
    CHECK_INT_EQ(json_is_true(json_object_get(rule, "passed")), passed);
    CHECK(json_string_length(json_object_get(rule, "detail")) > 0);
}

/* ---- Tests ---- */

/* The thresholds in the report and the card are those ap_threshold_choose
 * picks on the validation predictions. */
static void check_thresholds_from_val(const ap_config *cfg, const char *run_dir,
                                      const json_t *report)
{
    char card_path[1400];
    snprintf(card_path, sizeof(card_path), "%s/model_card.json", run_dir);
    ap_loaded_model model;
    ap_run_data data;
    ap_error err = {0};
    CHECK_INT_EQ(ap_model_load(card_path, 8, &model, &err), AP_OK);
    CHECK_INT_EQ(ap_run_data_prepare(cfg, run_dir, &data, &err), AP_OK);
    CHECK(model.has_thresholds);
    size_t count = data.part_count[AP_SPLIT_VAL];
    float *probabilities = malloc(count * LABEL_COUNT * sizeof(float));
    int8_t *targets = malloc(count * LABEL_COUNT);
    CHECK_INT_EQ(ap_loaded_model_predict(&model, &data.images, data.part_images[AP_SPLIT_VAL],
                                         count, probabilities, &err),
                 AP_OK);
    for (size_t i = 0; i < count; i++)
        memcpy(targets + i * LABEL_COUNT,
               data.images.labels + data.part_images[AP_SPLIT_VAL][i] * LABEL_COUNT, LABEL_COUNT);
    ap_eval_set set = {probabilities, targets, count, LABEL_COUNT, NULL};
    ap_threshold_rule rule = {AP_THRESHOLD_MAX_F1, 0.0, 0.0f};
    const char *names[] = {"bright", "red"};
    for (int l = 0; l < LABEL_COUNT; l++) {
        ap_threshold_choice choice;
        CHECK_INT_EQ(ap_threshold_choose(&set, l, &rule, NULL, &choice, &err), AP_OK);
        const json_t *entry = json_object_get(json_object_get(report, "thresholds"), names[l]);
        float reported = (float)json_number_value(json_object_get(entry, "value"));
        CHECK_NEAR(reported, choice.threshold, 0.0);
        CHECK_NEAR(model.thresholds[l], choice.threshold, 0.0);
        CHECK_NEAR(json_number_value(json_object_get(json_object_get(entry, "validation"), "f1")),
                   choice.metrics.metrics[AP_METRIC_F1].value, 1e-8);
    }
    free(probabilities);
    free(targets);
    ap_run_data_free(&data);
    ap_loaded_model_free(&model);
}

static void test_passing_gate(const char *data_dir, const char *run_dir)
{
    ap_config cfg;
    make_config(&cfg, data_dir, "clean", "bright.recall >= 0,macro.accuracy.lower >= 0");
    ap_validate_outcome outcome;
    ap_error err = {0};
    CHECK_INT_EQ(validate(&cfg, &outcome, &err), AP_OK);
    CHECK(outcome.passed);
    json_t *report = load_json(run_dir, "report.json");
    CHECK(json_is_true(json_object_get(report, "passed")));
    CHECK_INT_EQ(json_array_size(json_object_get(report, "failed_rules")), 0);
    check_report_schema(report, run_dir);
    check_rule_entry(report, 0, "bright.recall >= 0", true);
    check_rule_entry(report, 1, "macro.accuracy.lower >= 0", true);
    const json_t *comparison = json_object_get(report, "comparison");
    CHECK(json_is_true(json_object_get(comparison, "skipped")));
    CHECK(strcmp(json_string_value(json_object_get(comparison, "reason")), "no champion yet") == 0);
    check_thresholds_from_val(&cfg, run_dir, report);

    /* The card keeps its weights hash, which the weights still have. */
    json_t *card = load_json(run_dir, "model_card.json");
    CHECK(strcmp(json_string_value(json_object_get(json_object_get(card, "weights"), "sha256")),
                 json_string_value(json_object_get(report, "model_sha256"))) == 0);
    CHECK(json_is_number(json_object_get(json_object_get(card, "thresholds"), "red")));
    char path[1400];
    snprintf(path, sizeof(path), "%s/report.md", run_dir);
    CHECK(ap_path_exists(path));
    snprintf(path, sizeof(path), "%s/report.html", run_dir);
    CHECK(ap_path_exists(path));
    json_decref(card);
    json_decref(report);
    ap_validate_outcome_free(&outcome);
}

static void test_impossible_rule(const char *data_dir, const char *run_dir)
{
    ap_config cfg;
    /* A Wilson lower bound is below 1 for any finite count. */
    make_config(&cfg, data_dir, "clean", "bright.recall >= 0,bright.recall.lower >= 1");
    ap_validate_outcome outcome;
    ap_error err = {0};
    CHECK_INT_EQ(validate(&cfg, &outcome, &err), AP_OK);
    CHECK(!outcome.passed);
    json_t *report = load_json(run_dir, "report.json");
    CHECK(json_is_false(json_object_get(report, "passed")));
    CHECK_INT_EQ(json_array_size(json_object_get(report, "failed_rules")), 1);
    CHECK(failed_rules_contain(report, "bright.recall.lower >= 1"));
    check_rule_entry(report, 1, "bright.recall.lower >= 1", false);
    const json_t *rule = json_array_get(json_object_get(report, "rules"), 1);
    CHECK(json_number_value(json_object_get(rule, "actual")) < 1.0);
    CHECK_STR_CONTAINS(json_string_value(json_object_get(rule, "detail")), "below the required");
    json_decref(report);
    ap_validate_outcome_free(&outcome);
}

static void test_too_little_support(const char *data_dir, const char *run_dir)
{
    ap_config cfg;
    make_config(&cfg, data_dir, "clean", "red.recall >= 0");
    ap_error err = {0};
    CHECK_INT_EQ(ap_config_set(&cfg, "gate.min_positives=11", &err), AP_OK);
    ap_validate_outcome outcome;
    CHECK_INT_EQ(validate(&cfg, &outcome, &err), AP_OK);
    CHECK(!outcome.passed);
    json_t *report = load_json(run_dir, "report.json");
    const json_t *check = data_check(report, "test_support");
    CHECK(json_is_false(json_object_get(check, "passed")));
    CHECK_STR_CONTAINS(json_string_value(json_object_get(check, "detail")),
                       "red has 10 positive and 10 negative test images (too few)");
    CHECK_INT_EQ(json_array_size(json_object_get(report, "failed_rules")), 0);
    json_decref(report);
    ap_validate_outcome_free(&outcome);
}

static void register_champion(const ap_config *cfg, const char *run_dir)
{
    char model[1400], card[1400], report[1400];
    snprintf(model, sizeof(model), "%s/model.safetensors", run_dir);
    snprintf(card, sizeof(card), "%s/model_card.json", run_dir);
    snprintf(report, sizeof(report), "%s/report.json", run_dir);
    ap_registry *registry = NULL;
    ap_error err = {0};
    CHECK_INT_EQ(ap_registry_open(cfg->registry.uri, &registry, &err), AP_OK);
    ap_registry_new_version request = {
        .model_path = model, .model_card_path = card, .report_path = report};
    int version = 0;
    CHECK_INT_EQ(ap_registry_register(registry, cfg->registry.model_name, &request, &version, &err),
                 AP_OK);
    ap_registry_move move = {.reason = "test"};
    CHECK_INT_EQ(ap_registry_set_alias(registry, cfg->registry.model_name, AP_REGISTRY_CHAMPION,
                                       version, &move, NULL, &err),
                 AP_OK);
    if (err.message[0] != '\0')
        fprintf(stderr, "registry: %s\n", err.message);
    ap_registry_close(registry);
}

static void test_champion_comparison(const char *data_dir, const char *run_dir)
{
    ap_config cfg;
    make_config(&cfg, data_dir, "clean", "bright.recall >= 0");
    ap_validate_outcome outcome;
    ap_error err = {0};
    CHECK_INT_EQ(validate(&cfg, &outcome, &err), AP_OK);
    ap_validate_outcome_free(&outcome);
    register_champion(&cfg, run_dir);

    /* The same model against itself: every image agrees, p = 1. */
    CHECK_INT_EQ(validate(&cfg, &outcome, &err), AP_OK);
    CHECK(outcome.passed);
    json_t *report = load_json(run_dir, "report.json");
    const json_t *comparison = json_object_get(report, "comparison");
    CHECK(json_is_false(json_object_get(comparison, "skipped")));
    CHECK_INT_EQ(json_integer_value(json_object_get(comparison, "champion_version")), 1);
    CHECK(strcmp(json_string_value(json_object_get(comparison, "champion_sha256")),
                 json_string_value(json_object_get(report, "model_sha256"))) == 0);
    const json_t *bright = json_object_get(json_object_get(comparison, "labels"), "bright");
    CHECK(json_is_true(json_object_get(bright, "passed")));
    CHECK_INT_EQ(json_integer_value(json_object_get(bright, "champion_only_correct")), 0);
    CHECK_INT_EQ(json_integer_value(json_object_get(bright, "challenger_only_correct")), 0);
    CHECK_NEAR(json_number_value(json_object_get(bright, "p_value")), 1.0, 0.0);
    CHECK_NEAR(json_number_value(json_object_get(bright, "champion_accuracy")),
               json_number_value(json_object_get(bright, "challenger_accuracy")), 0.0);
    json_decref(report);
    ap_validate_outcome_free(&outcome);

    /* A threshold of 0 predicts every image positive: a real regression
     * against the champion, which keeps its own thresholds. */
    CHECK_INT_EQ(ap_config_set(&cfg, "gate.threshold_policy=fixed", &err), AP_OK);
    CHECK_INT_EQ(ap_config_set(&cfg, "gate.threshold=0", &err), AP_OK);
    CHECK_INT_EQ(validate(&cfg, &outcome, &err), AP_OK);
    CHECK(!outcome.passed);
    report = load_json(run_dir, "report.json");
    comparison = json_object_get(report, "comparison");
    bright = json_object_get(json_object_get(comparison, "labels"), "bright");
    CHECK(json_is_false(json_object_get(bright, "passed")));
    CHECK(json_number_value(json_object_get(bright, "champion_accuracy")) >
          json_number_value(json_object_get(bright, "challenger_accuracy")) + 0.01);
    CHECK(json_number_value(json_object_get(bright, "p_value")) < 0.05);
    CHECK_STR_CONTAINS(json_string_value(json_object_get(bright, "detail")), "is below 0.05");
    const json_t *threshold = json_object_get(json_object_get(report, "thresholds"), "bright");
    CHECK(strcmp(json_string_value(json_object_get(threshold, "policy")), "fixed") == 0);
    CHECK_NEAR(json_number_value(json_object_get(threshold, "value")), 0.0, 0.0);
    json_decref(report);
    ap_validate_outcome_free(&outcome);

    /* Leave the run as the other tests expect it: thresholds from max_f1. */
    make_config(&cfg, data_dir, "clean", NULL);
    char registry_dir[1400];
    snprintf(registry_dir, sizeof(registry_dir), "rm -rf '%s/registry'", work_dir);
    CHECK_INT_EQ(system(registry_dir), 0);
    CHECK_INT_EQ(validate(&cfg, &outcome, &err), AP_OK);
    ap_validate_outcome_free(&outcome);
}

/* A champion with another input size and only one of the labels: the test
 * images are decoded again at its size, and only the shared label is compared. */
static void test_champion_other_input(const char *data_dir)
{
    char champion_dir[1400];
    snprintf(champion_dir, sizeof(champion_dir), "%s/runs/wide", work_dir);
    write_split(champion_dir, false);
    ap_config champion_cfg;
    make_config(&champion_cfg, data_dir, "wide", "bright.recall >= 0");
    ap_error err = {0};
    CHECK_INT_EQ(ap_config_set(&champion_cfg, "data.width=32", &err), AP_OK);
    CHECK_INT_EQ(ap_config_set(&champion_cfg, "data.height=32", &err), AP_OK);
    CHECK_INT_EQ(ap_config_set(&champion_cfg, "data.labels=bright", &err), AP_OK);
    train(&champion_cfg);
    ap_validate_outcome outcome;
    CHECK_INT_EQ(validate(&champion_cfg, &outcome, &err), AP_OK);
    CHECK(outcome.passed);
    ap_validate_outcome_free(&outcome);
    register_champion(&champion_cfg, champion_dir);

    ap_config cfg;
    make_config(&cfg, data_dir, "clean", "bright.recall >= 0");
    CHECK_INT_EQ(validate(&cfg, &outcome, &err), AP_OK);
    char run_dir[1400];
    snprintf(run_dir, sizeof(run_dir), "%s/runs/clean", work_dir);
    json_t *report = load_json(run_dir, "report.json");
    const json_t *comparison = json_object_get(report, "comparison");
    CHECK(json_is_false(json_object_get(comparison, "skipped")));
    const json_t *labels = json_object_get(comparison, "labels");
    CHECK_INT_EQ(json_object_size(labels), 1);
    const json_t *bright = json_object_get(labels, "bright");
    CHECK(json_is_number(json_object_get(bright, "champion_accuracy")));
    CHECK(json_is_number(json_object_get(bright, "p_value")));
    CHECK(strcmp(json_string_value(json_object_get(comparison, "champion_sha256")),
                 json_string_value(json_object_get(report, "model_sha256"))) != 0);
    /* A label the champion lacks passes and is recorded. */
    const json_t *label_check = json_object_get(comparison, "label_check");
    CHECK(json_is_true(json_object_get(label_check, "passed")));
    CHECK_INT_EQ(json_array_size(json_object_get(label_check, "missing_labels")), 0);
    const json_t *added = json_object_get(label_check, "added_labels");
    CHECK_INT_EQ(json_array_size(added), 1);
    CHECK_STR_CONTAINS(json_string_value(json_array_get(added, 0)), "red");
    CHECK_STR_CONTAINS(json_string_value(json_object_get(label_check, "detail")), "adds red");
    CHECK(outcome.passed);
    json_decref(report);
    ap_validate_outcome_free(&outcome);

    char command[1500];
    snprintf(command, sizeof(command), "rm -rf '%s/registry'", work_dir);
    CHECK_INT_EQ(system(command), 0);
}

/* Train run_name on the synthetic data with the given data.labels and gate.rules. */
static void train_with_labels(const char *data_dir, const char *run_name, const char *labels,
                              const char *rules, ap_config *cfg)
{
    char run_dir[1400], assignment[256];
    snprintf(run_dir, sizeof(run_dir), "%s/runs/%s", work_dir, run_name);
    write_split(run_dir, false);
    make_config(cfg, data_dir, run_name, NULL);
    ap_error err = {0};
    snprintf(assignment, sizeof(assignment), "data.labels=%s", labels);
    CHECK_INT_EQ(ap_config_set(cfg, assignment, &err), AP_OK);
    snprintf(assignment, sizeof(assignment), "gate.rules=%s", rules);
    CHECK_INT_EQ(ap_config_set(cfg, assignment, &err), AP_OK);
    CHECK_INT_EQ(ap_config_validate(cfg, &err), AP_OK);
    train(cfg);
}

static double test_accuracy(const json_t *report, const char *label)
{
    const json_t *labels = json_object_get(json_object_get(report, "test"), "labels");
    const json_t *metrics = json_object_get(json_object_get(labels, label), "metrics");
    return json_number_value(json_object_get(json_object_get(metrics, "accuracy"), "value"));
}

/* The "clean" run, which has labels bright and red, as champion. */
static void make_clean_champion(const char *data_dir, const char *run_dir)
{
    char command[1500];
    snprintf(command, sizeof(command), "rm -rf '%s/registry'", work_dir);
    CHECK_INT_EQ(system(command), 0);
    ap_config cfg;
    make_config(&cfg, data_dir, "clean", "bright.recall >= 0");
    ap_validate_outcome outcome;
    ap_error err = {0};
    CHECK_INT_EQ(validate(&cfg, &outcome, &err), AP_OK);
    CHECK(outcome.passed);
    ap_validate_outcome_free(&outcome);
    register_champion(&cfg, run_dir);
}

/* A model without the champion's red label fails the gate, even though the
 * label it keeps compares well: promoting it would stop serving red. */
static void test_champion_label_missing(const char *data_dir, const char *run_dir)
{
    make_clean_champion(data_dir, run_dir);
    ap_config cfg;
    train_with_labels(data_dir, "bright-only", "bright", "bright.recall >= 0", &cfg);
    ap_validate_outcome outcome;
    ap_error err = {0};
    CHECK_INT_EQ(validate(&cfg, &outcome, &err), AP_OK);
    CHECK(!outcome.passed);
    char challenger_dir[1400];
    snprintf(challenger_dir, sizeof(challenger_dir), "%s/runs/bright-only", work_dir);
    json_t *report = load_json(challenger_dir, "report.json");
    CHECK(json_is_false(json_object_get(report, "passed")));
    const json_t *comparison = json_object_get(report, "comparison");
    CHECK(json_is_false(json_object_get(comparison, "skipped")));
    const json_t *label_check = json_object_get(comparison, "label_check");
    CHECK(json_is_false(json_object_get(label_check, "passed")));
    const json_t *missing = json_object_get(label_check, "missing_labels");
    CHECK_INT_EQ(json_array_size(missing), 1);
    CHECK_STR_CONTAINS(json_string_value(json_array_get(missing, 0)), "red");
    CHECK_INT_EQ(json_array_size(json_object_get(label_check, "added_labels")), 0);
    const char *detail = json_string_value(json_object_get(label_check, "detail"));
    CHECK_STR_CONTAINS(detail, "lacks label red of champion version 1");
    CHECK_STR_CONTAINS(detail, "apiary promote --force --reason TEXT");
    const json_t *labels = json_object_get(comparison, "labels");
    CHECK_INT_EQ(json_object_size(labels), 1);
    CHECK(json_is_true(json_object_get(json_object_get(labels, "bright"), "passed")));
    json_decref(report);
    ap_validate_outcome_free(&outcome);

    /* With no shared label the comparison fails too, rather than being skipped. */
    ap_config red_cfg;
    train_with_labels(data_dir, "red-only", "red", "red.recall >= 0", &red_cfg);
    CHECK_INT_EQ(ap_config_set(&red_cfg, "registry.model_name=red-only", &err), AP_OK);
    CHECK_INT_EQ(validate(&red_cfg, &outcome, &err), AP_OK);
    CHECK(outcome.passed);
    ap_validate_outcome_free(&outcome);
    char red_dir[1400];
    snprintf(red_dir, sizeof(red_dir), "%s/runs/red-only", work_dir);
    register_champion(&red_cfg, red_dir);
    CHECK_INT_EQ(ap_config_set(&cfg, "registry.model_name=red-only", &err), AP_OK);
    CHECK_INT_EQ(validate(&cfg, &outcome, &err), AP_OK);
    CHECK(!outcome.passed);
    report = load_json(challenger_dir, "report.json");
    comparison = json_object_get(report, "comparison");
    CHECK(json_is_false(json_object_get(comparison, "skipped")));
    CHECK(json_is_false(json_object_get(json_object_get(comparison, "label_check"), "passed")));
    CHECK_INT_EQ(json_object_size(json_object_get(comparison, "labels")), 0);
    json_decref(report);
    ap_validate_outcome_free(&outcome);
}

/* A model with the champion's labels in another order is compared label by
 * label, by name: each model's accuracy in the comparison is its own test
 * accuracy for the label with that name. */
static void test_champion_label_order(const char *data_dir, const char *run_dir)
{
    make_clean_champion(data_dir, run_dir);
    json_t *champion_report = load_json(run_dir, "report.json");
    ap_config cfg;
    train_with_labels(data_dir, "reordered", "red,bright", "bright.recall >= 0", &cfg);
    ap_validate_outcome outcome;
    ap_error err = {0};
    CHECK_INT_EQ(validate(&cfg, &outcome, &err), AP_OK);
    char challenger_dir[1400];
    snprintf(challenger_dir, sizeof(challenger_dir), "%s/runs/reordered", work_dir);
    json_t *report = load_json(challenger_dir, "report.json");
    const json_t *comparison = json_object_get(report, "comparison");
    const json_t *label_check = json_object_get(comparison, "label_check");
    CHECK(json_is_true(json_object_get(label_check, "passed")));
    CHECK_INT_EQ(json_array_size(json_object_get(label_check, "missing_labels")), 0);
    CHECK_INT_EQ(json_array_size(json_object_get(label_check, "added_labels")), 0);
    const json_t *labels = json_object_get(comparison, "labels");
    CHECK_INT_EQ(json_object_size(labels), 2);
    static const char *const names[] = {"bright", "red"};
    for (int i = 0; i < 2; i++) {
        const json_t *entry = json_object_get(labels, names[i]);
        CHECK_NEAR(json_number_value(json_object_get(entry, "champion_accuracy")),
                   test_accuracy(champion_report, names[i]), 1e-9);
        CHECK_NEAR(json_number_value(json_object_get(entry, "challenger_accuracy")),
                   test_accuracy(report, names[i]), 1e-9);
    }
    json_decref(report);
    json_decref(champion_report);
    ap_validate_outcome_free(&outcome);

    char command[1500];
    snprintf(command, sizeof(command), "rm -rf '%s/registry'", work_dir);
    CHECK_INT_EQ(system(command), 0);
}

static void test_group_overlap(const char *data_dir, const char *run_dir)
{
    char path[1400], saved[1400];
    snprintf(path, sizeof(path), "%s/split.csv", run_dir);
    snprintf(saved, sizeof(saved), "%s/split.csv.saved", run_dir);
    CHECK_INT_EQ(rename(path, saved), 0);
    /* Move one image of training group g00 into the test part. */
    FILE *in = fopen(saved, "r"), *out = fopen(path, "w");
    char line[256];
    while (in != NULL && out != NULL && fgets(line, sizeof(line), in) != NULL) {
        if (strcmp(line, "img001.png,g00,train\n") == 0)
            fputs("img001.png,g00,test\n", out);
        else
            fputs(line, out);
    }
    fclose(in);
    fclose(out);

    ap_config cfg;
    make_config(&cfg, data_dir, "clean", "bright.recall >= 0");
    ap_validate_outcome outcome;
    ap_error err = {0};
    CHECK_INT_EQ(validate(&cfg, &outcome, &err), AP_OK);
    CHECK(!outcome.passed);
    json_t *report = load_json(run_dir, "report.json");
    CHECK(json_is_false(json_object_get(report, "passed")));
    const json_t *check = data_check(report, "group_overlap");
    CHECK(json_is_false(json_object_get(check, "passed")));
    CHECK_STR_CONTAINS(json_string_value(json_object_get(check, "detail")),
                       "\"g00\" (test and train)");
    CHECK(json_is_null(json_object_get(report, "test")));
    check_rule_entry(report, 0, "bright.recall >= 0", false);
    json_decref(report);
    ap_validate_outcome_free(&outcome);
    CHECK_INT_EQ(rename(saved, path), 0);
}

static void test_duplicate_image(void)
{
    char data_dir[1200], run_dir[1200];
    snprintf(data_dir, sizeof(data_dir), "%s/data-duplicate", work_dir);
    snprintf(run_dir, sizeof(run_dir), "%s/runs/duplicate", work_dir);
    make_dataset(data_dir, true);
    write_split(run_dir, true);
    ap_config cfg;
    make_config(&cfg, data_dir, "duplicate", "bright.recall >= 0");
    train(&cfg);
    ap_validate_outcome outcome;
    ap_error err = {0};
    CHECK_INT_EQ(validate(&cfg, &outcome, &err), AP_OK);
    CHECK(!outcome.passed);
    json_t *report = load_json(run_dir, "report.json");
    const json_t *check = data_check(report, "duplicate_images");
    CHECK(json_is_false(json_object_get(check, "passed")));
    CHECK_STR_CONTAINS(json_string_value(json_object_get(check, "detail")),
                       "test \"copy.png\" = \"img000.png\"");
    CHECK(json_is_true(json_object_get(data_check(report, "group_overlap"), "passed")));
    /* The metrics are still measured and reported. */
    CHECK(json_is_object(json_object_get(report, "test")));
    CHECK_INT_EQ(json_array_size(json_object_get(report, "failed_rules")), 0);
    json_decref(report);
    ap_validate_outcome_free(&outcome);
}

static void test_errors(const char *data_dir, const char *run_dir)
{
    ap_config cfg;
    ap_validate_outcome outcome;
    ap_error err = {0};

    make_config(&cfg, data_dir, "clean", NULL);
    CHECK_INT_EQ(ap_config_set(&cfg, "gate.rules=bright.recal >= 0.5", &err), AP_OK);
    CHECK_INT_EQ(ap_validate(&(ap_validate_request){.cfg = &cfg}, &outcome, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "unknown metric \"recal\"");

    make_config(&cfg, data_dir, "clean", NULL);
    CHECK_INT_EQ(ap_config_set(&cfg, "data.width=32", &err), AP_OK);
    CHECK_INT_EQ(ap_validate(&(ap_validate_request){.cfg = &cfg}, &outcome, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "data.width (24 in the run, 32 now)");

    make_config(&cfg, data_dir, "never-trained", NULL);
    CHECK_INT_EQ(ap_validate(&(ap_validate_request){.cfg = &cfg}, &outcome, &err),
                 AP_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(err.message, "has not finished training");

    /* Weights that are not the ones the card names. */
    char command[9000];
    snprintf(command, sizeof(command),
             "mkdir -p '%s/other' && cp '%s/model_card.json' '%s/other/' && "
             "cp '%s/checkpoint.safetensors' '%s/other/model.safetensors'",
             work_dir, run_dir, work_dir, run_dir, work_dir);
    CHECK_INT_EQ(system(command), 0);
    snprintf(command, sizeof(command), "%s/other/model_card.json", work_dir);
    ap_loaded_model model;
    CHECK_INT_EQ(ap_model_load(command, 4, &model, &err), AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, "do not belong together");
    ap_loaded_model_free(&model);
}

int main(void)
{
    ap_log_threshold = AP_LOG_WARN;
    const char *dir = check_temp_dir("validate");
    if (dir == NULL)
        return 1;
    snprintf(work_dir, sizeof(work_dir), "%s", dir);
    char data_dir[1200], run_dir[1200];
    snprintf(data_dir, sizeof(data_dir), "%s/data", work_dir);
    snprintf(run_dir, sizeof(run_dir), "%s/runs/clean", work_dir);
    make_dataset(data_dir, false);
    write_split(run_dir, false);
    ap_config cfg;
    make_config(&cfg, data_dir, "clean", NULL);
    train(&cfg);

    test_passing_gate(data_dir, run_dir);
    test_impossible_rule(data_dir, run_dir);
    test_too_little_support(data_dir, run_dir);
    test_champion_comparison(data_dir, run_dir);
    test_champion_other_input(data_dir);
    test_champion_label_missing(data_dir, run_dir);
    test_champion_label_order(data_dir, run_dir);
    test_group_overlap(data_dir, run_dir);
    test_errors(data_dir, run_dir);
    test_duplicate_image();
    return check_finish();
}
