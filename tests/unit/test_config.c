#include "pipeline/config/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"

#define UNSET_VARIABLE "APIARY_TEST_CONFIG_UNSET"

/* Load yaml (named test.yaml), reporting a failure with its message. */
static ap_config load_ok(const char *yaml)
{
    ap_config cfg;
    ap_error err = {0};
    ap_status status = ap_config_load_string(yaml, "test.yaml", &cfg, &err);
    if (status != AP_OK)
        fprintf(stderr, "unexpected error for:\n%s\n%s\n", yaml, err.message);
    CHECK_INT_EQ(status, AP_OK);
    return cfg;
}

/* Load yaml and check that it fails with code and a message that contains
 * "test.yaml:LINE:COLUMN: KEY" and detail. */
static void expect_load_error(const char *name, const char *yaml, ap_status code,
                              const char *location, const char *detail)
{
    int failures_before = check_failures;
    ap_config cfg;
    ap_error err = {0};
    ap_status status = ap_config_load_string(yaml, "test.yaml", &cfg, &err);
    CHECK_INT_EQ(status, code);
    CHECK_STR_CONTAINS(err.message, location);
    CHECK_STR_CONTAINS(err.message, detail);
    if (check_failures != failures_before)
        fprintf(stderr, "  in case: %s\n", name);
}

static void expect_set_error(const char *assignment, const char *detail)
{
    int failures_before = check_failures;
    ap_config cfg;
    ap_config_defaults(&cfg);
    ap_error err = {0};
    ap_status status = ap_config_set(&cfg, assignment, &err);
    CHECK_INT_EQ(status, AP_ERR_INVALID);
    char prefix[512];
    snprintf(prefix, sizeof(prefix), "--set %.*s: ", (int)strcspn(assignment, "="), assignment);
    CHECK(strncmp(err.message, prefix, strlen(prefix)) == 0);
    CHECK_STR_CONTAINS(err.message, detail);
    if (check_failures != failures_before)
        fprintf(stderr, "  in case: --set %s (message: %s)\n", assignment, err.message);
}

static void apply(ap_config *cfg, const char *assignment)
{
    ap_error err = {0};
    ap_status status = ap_config_set(cfg, assignment, &err);
    if (status != AP_OK)
        fprintf(stderr, "--set %s failed: %s\n", assignment, err.message);
    CHECK_INT_EQ(status, AP_OK);
}

/* Defaults plus the two keys without a usable default, so that it validates. */
static ap_config valid_config(void)
{
    ap_config cfg;
    ap_config_defaults(&cfg);
    apply(&cfg, "data.root=/data/bees");
    apply(&cfg, "data.labels=wasp,bee");
    return cfg;
}

static void expect_invalid(const char *name, const ap_config *cfg, const char *detail)
{
    int failures_before = check_failures;
    ap_error err = {0};
    CHECK_INT_EQ(ap_config_validate(cfg, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, detail);
    if (check_failures != failures_before)
        fprintf(stderr, "  in case: %s\n", name);
}

static void test_defaults(void)
{
    ap_config cfg;
    ap_config_defaults(&cfg);
    CHECK(strcmp(cfg.run_name, "local") == 0);
    CHECK(strcmp(cfg.output_dir, "runs") == 0);
    CHECK_INT_EQ(cfg.seed, 42);
    CHECK(strcmp(cfg.log_level, "info") == 0);
    CHECK(strcmp(cfg.source_path, "") == 0);

    CHECK(strcmp(cfg.data.root, "") == 0);
    CHECK(strcmp(cfg.data.manifest, "labels.csv") == 0);
    CHECK_INT_EQ(cfg.data.label_count, 0);
    CHECK(strcmp(cfg.data.group_column, "") == 0);
    CHECK_INT_EQ(cfg.data.width, 64);
    CHECK_INT_EQ(cfg.data.height, 64);
    CHECK_INT_EQ(cfg.data.resize, AP_RESIZE_LETTERBOX);
    for (int c = 0; c < 3; c++) {
        CHECK_NEAR(cfg.data.mean[c], 0.5, 0.0);
        CHECK_NEAR(cfg.data.std[c], 0.25, 0.0);
    }
    CHECK_NEAR(cfg.data.max_bad_fraction, 0.05, 0.0);
    CHECK_INT_EQ(cfg.data.max_image_bytes, 32 * 1024 * 1024);
    CHECK_INT_EQ(cfg.data.max_image_pixels, 50000000);

    CHECK_NEAR(cfg.split.val_fraction, 0.15, 0.0);
    CHECK_NEAR(cfg.split.test_fraction, 0.2, 0.0);

    CHECK_INT_EQ(cfg.model.stem_channels, 16);
    CHECK_INT_EQ(cfg.model.stem_kernel, 3);
    CHECK_INT_EQ(cfg.model.stem_stride, 1);
    CHECK_INT_EQ(cfg.model.stage_count, 3);
    CHECK_INT_EQ(cfg.model.stage_channels[0], 16);
    CHECK_INT_EQ(cfg.model.stage_channels[1], 32);
    CHECK_INT_EQ(cfg.model.stage_channels[2], 64);
    CHECK_INT_EQ(cfg.model.stage_blocks_count, 3);
    for (int s = 0; s < 3; s++)
        CHECK_INT_EQ(cfg.model.stage_blocks[s], 1);
    CHECK_NEAR(cfg.model.dropout, 0.2, 0.0);

    CHECK(strcmp(cfg.train.device, "cpu") == 0);
    CHECK_INT_EQ(cfg.train.threads, 0);
    CHECK_INT_EQ(cfg.train.epochs, 10);
    CHECK_INT_EQ(cfg.train.batch_size, 32);
    CHECK_NEAR(cfg.train.learning_rate, 0.003, 0.0);
    CHECK_NEAR(cfg.train.min_learning_rate, 1e-5, 0.0);
    CHECK_NEAR(cfg.train.warmup_epochs, 1.0, 0.0);
    CHECK_NEAR(cfg.train.weight_decay, 0.05, 0.0);
    CHECK_NEAR(cfg.train.beta1, 0.9, 0.0);
    CHECK_NEAR(cfg.train.beta2, 0.999, 0.0);
    CHECK_NEAR(cfg.train.epsilon, 1e-8, 0.0);
    CHECK_INT_EQ(cfg.train.pos_weight, AP_POS_WEIGHT_AUTO);
    CHECK_INT_EQ(cfg.train.augment, 1);
    CHECK_NEAR(cfg.train.brightness, 0.1, 0.0);
    CHECK_NEAR(cfg.train.contrast, 0.1, 0.0);
    CHECK_INT_EQ(cfg.train.log_every, 10);
    CHECK_INT_EQ(cfg.train.checkpoint_every, 1);
}

static void test_empty_inputs(void)
{
    ap_config defaults;
    ap_config_defaults(&defaults);
    const char *empty_documents[] = {"", "# only a comment\n", "---\n", "~\n",
                                     "data:\ntrain:  # every key commented out\n"};
    for (size_t i = 0; i < sizeof(empty_documents) / sizeof(empty_documents[0]); i++) {
        ap_config cfg = load_ok(empty_documents[i]);
        CHECK(ap_config_equal(&cfg, &defaults));
        CHECK(strcmp(cfg.source_path, "test.yaml") == 0);
    }
}

static void test_full_file(void)
{
    const char *yaml = "# every key\n"
                       "run_name: nightly-2024.06\n"
                       "output_dir: /srv/runs\n"
                       "seed: 18446744073709551615\n"
                       "log_level: debug\n"
                       "data:\n"
                       "  root: /data/bees\n"
                       "  manifest: manifest.csv\n"
                       "  labels:\n"
                       "    - varroa\n"
                       "    - pollen\n"
                       "    - wasps\n"
                       "    - cooling\n"
                       "  group_column: video\n"
                       "  width: 150\n"
                       "  height: 300\n"
                       "  resize: stretch\n"
                       "  mean: [0.485, 0.456, 0.406]\n"
                       "  std: [0.229, 0.224, 0.225]\n"
                       "  max_bad_fraction: 0\n"
                       "  max_image_bytes: 1048576\n"
                       "  max_image_pixels: 1000000\n"
                       "split: {val_fraction: 0.1, test_fraction: 0.25}\n"
                       "model:\n"
                       "  stem_channels: 24\n"
                       "  stem_kernel: 5\n"
                       "  stem_stride: 2\n"
                       "  stage_channels: [24, 48, 96, 192]\n"
                       "  stage_blocks: [2, 2, 2, 1]\n"
                       "  dropout: 0.5\n"
                       "train:\n"
                       "  device: cuda\n"
                       "  threads: 8\n"
                       "  epochs: 40\n"
                       "  batch_size: 128\n"
                       "  learning_rate: 1e-3\n"
                       "  min_learning_rate: 0\n"
                       "  warmup_epochs: 2.5\n"
                       "  weight_decay: 0.01\n"
                       "  beta1: 0.85\n"
                       "  beta2: 0.99\n"
                       "  epsilon: 1e-6\n"
                       "  pos_weight: none\n"
                       "  augment: no\n"
                       "  brightness: 0.2\n"
                       "  contrast: 0.3\n"
                       "  log_every: 50\n"
                       "  checkpoint_every: 5\n";
    ap_config cfg = load_ok(yaml);
    CHECK(strcmp(cfg.run_name, "nightly-2024.06") == 0);
    CHECK(strcmp(cfg.output_dir, "/srv/runs") == 0);
    CHECK(cfg.seed == UINT64_MAX);
    CHECK(strcmp(cfg.log_level, "debug") == 0);
    CHECK(strcmp(cfg.data.root, "/data/bees") == 0);
    CHECK(strcmp(cfg.data.manifest, "manifest.csv") == 0);
    CHECK_INT_EQ(cfg.data.label_count, 4);
    CHECK(strcmp(cfg.data.labels[0], "varroa") == 0);
    CHECK(strcmp(cfg.data.labels[3], "cooling") == 0);
    CHECK(strcmp(cfg.data.group_column, "video") == 0);
    CHECK_INT_EQ(cfg.data.width, 150);
    CHECK_INT_EQ(cfg.data.height, 300);
    CHECK_INT_EQ(cfg.data.resize, AP_RESIZE_STRETCH);
    CHECK_NEAR(cfg.data.mean[0], 0.485f, 0.0);
    CHECK_NEAR(cfg.data.std[2], 0.225f, 0.0);
    CHECK_NEAR(cfg.data.max_bad_fraction, 0.0, 0.0);
    CHECK_INT_EQ(cfg.data.max_image_bytes, 1048576);
    CHECK_INT_EQ(cfg.data.max_image_pixels, 1000000);
    CHECK_NEAR(cfg.split.val_fraction, 0.1, 0.0);
    CHECK_NEAR(cfg.split.test_fraction, 0.25, 0.0);
    CHECK_INT_EQ(cfg.model.stem_channels, 24);
    CHECK_INT_EQ(cfg.model.stem_kernel, 5);
    CHECK_INT_EQ(cfg.model.stem_stride, 2);
    CHECK_INT_EQ(cfg.model.stage_count, 4);
    CHECK_INT_EQ(cfg.model.stage_channels[3], 192);
    CHECK_INT_EQ(cfg.model.stage_blocks_count, 4);
    CHECK_INT_EQ(cfg.model.stage_blocks[0], 2);
    CHECK_INT_EQ(cfg.model.stage_blocks[3], 1);
    CHECK_NEAR(cfg.model.dropout, 0.5, 0.0);
    CHECK(strcmp(cfg.train.device, "cuda") == 0);
    CHECK_INT_EQ(cfg.train.threads, 8);
    CHECK_INT_EQ(cfg.train.epochs, 40);
    CHECK_INT_EQ(cfg.train.batch_size, 128);
    CHECK_NEAR(cfg.train.learning_rate, 1e-3, 0.0);
    CHECK_NEAR(cfg.train.min_learning_rate, 0.0, 0.0);
    CHECK_NEAR(cfg.train.warmup_epochs, 2.5, 0.0);
    CHECK_NEAR(cfg.train.weight_decay, 0.01, 0.0);
    CHECK_NEAR(cfg.train.beta1, 0.85, 0.0);
    CHECK_NEAR(cfg.train.beta2, 0.99, 0.0);
    CHECK_NEAR(cfg.train.epsilon, 1e-6, 0.0);
    CHECK_INT_EQ(cfg.train.pos_weight, AP_POS_WEIGHT_NONE);
    CHECK_INT_EQ(cfg.train.augment, 0);
    CHECK_NEAR(cfg.train.brightness, 0.2, 0.0);
    CHECK_NEAR(cfg.train.contrast, 0.3, 0.0);
    CHECK_INT_EQ(cfg.train.log_every, 50);
    CHECK_INT_EQ(cfg.train.checkpoint_every, 5);

    ap_error err = {0};
    CHECK_INT_EQ(ap_config_validate(&cfg, &err), AP_OK);
}

static void test_yaml_forms(void)
{
    /* A dotted key at the top level is the same key as the nested form. */
    ap_config cfg = load_ok("train.epochs: 7\n");
    CHECK_INT_EQ(cfg.train.epochs, 7);

    cfg = load_ok("train:\n  epochs: \"12\"\n  augment: False\n");
    CHECK_INT_EQ(cfg.train.epochs, 12);
    CHECK_INT_EQ(cfg.train.augment, 0);

    cfg = load_ok("data:\n  group_column:\n  labels: []\n");
    CHECK(strcmp(cfg.data.group_column, "") == 0);
    CHECK_INT_EQ(cfg.data.label_count, 0);

    cfg = load_ok("data: {labels: [a, b], mean: [0, 1, 0.5]}\n");
    CHECK_INT_EQ(cfg.data.label_count, 2);
    CHECK(strcmp(cfg.data.labels[1], "b") == 0);
    CHECK_NEAR(cfg.data.mean[1], 1.0, 0.0);

    /* A list replaces the default as a whole: unused slots are cleared. */
    cfg = load_ok("model:\n  stage_channels: [8]\n  stage_blocks: [3]\n");
    CHECK_INT_EQ(cfg.model.stage_count, 1);
    CHECK_INT_EQ(cfg.model.stage_channels[0], 8);
    CHECK_INT_EQ(cfg.model.stage_channels[1], 0);
    CHECK_INT_EQ(cfg.model.stage_blocks[0], 3);
}

static void test_key_errors(void)
{
    expect_load_error("unknown top-level key", "run_name: a\nepochs: 3\n", AP_ERR_INVALID,
                      "test.yaml:2:1: epochs: unknown key",
                      "top-level keys are: run_name, output_dir, seed, log_level, data, split, "
                      "model, train");
    expect_load_error("unknown nested key", "train:\n  batch_size: 4\n  epoch: 3\n", AP_ERR_INVALID,
                      "test.yaml:3:3: train.epoch: unknown key", "did you mean train.epochs?");
    expect_load_error("unknown nested key lists section", "data:\n  colour: rgb\n", AP_ERR_INVALID,
                      "test.yaml:2:3: data.colour: unknown key",
                      "keys under data are: root, manifest, labels");
    expect_load_error("unknown section", "dataset:\n  root: x\n", AP_ERR_INVALID,
                      "test.yaml:1:1: dataset: unknown key", "top-level keys are");
    expect_load_error("duplicate key", "train:\n  epochs: 3\n  epochs: 4\n", AP_ERR_INVALID,
                      "test.yaml:3:3: train.epochs: duplicate key", "first set at line 2 column 3");
    expect_load_error("duplicate section", "data:\n  width: 32\ndata:\n  height: 32\n",
                      AP_ERR_INVALID, "test.yaml:3:1: data: duplicate key",
                      "first set at line 1 column 1");
    expect_load_error("duplicate through dotted key", "train:\n  epochs: 3\ntrain.epochs: 4\n",
                      AP_ERR_INVALID, "test.yaml:3:1: train.epochs: duplicate key",
                      "line 2 column 3");
    expect_load_error("list as a key", "? [a, b]\n: 1\n", AP_ERR_INVALID,
                      "test.yaml:1:3: (top level)", "a key must be a single value, not a list");
}

static void test_type_errors(void)
{
    expect_load_error("text for an integer", "train:\n  epochs: ten\n", AP_ERR_INVALID,
                      "test.yaml:2:11: train.epochs: 'ten' is not an integer",
                      "expected an integer from 1 to 100000");
    expect_load_error("fraction for an integer", "train:\n  epochs: 2.5\n", AP_ERR_INVALID,
                      "test.yaml:2:11: train.epochs: '2.5' is not an integer", "from 1 to");
    expect_load_error("mapping for a scalar", "train:\n  epochs:\n    value: 3\n", AP_ERR_INVALID,
                      "test.yaml:3:5: train.epochs",
                      "expected an integer from 1 to 100000, not a mapping");
    expect_load_error("flow mapping for a scalar", "train:\n  epochs: {value: 3}\n", AP_ERR_INVALID,
                      "test.yaml:2:11: train.epochs", "not a mapping");
    expect_load_error("list for a scalar", "train:\n  epochs: [1, 2]\n", AP_ERR_INVALID,
                      "test.yaml:2:11: train.epochs",
                      "expected an integer from 1 to 100000, not a list");
    expect_load_error("scalar for a list", "data:\n  labels: wasp\n", AP_ERR_INVALID,
                      "test.yaml:2:11: data.labels", "not a single value");
    expect_load_error("empty value for a list", "data:\n  labels:\n", AP_ERR_INVALID,
                      "test.yaml:2:10: data.labels", "or [] for none");
    expect_load_error("scalar for a section", "train: 5\n", AP_ERR_INVALID,
                      "test.yaml:1:8: train: expected a mapping of the keys under train",
                      "not a single value");
    expect_load_error("missing number", "train:\n  epochs:\n", AP_ERR_INVALID,
                      "test.yaml:2:10: train.epochs: no value given",
                      "expected an integer from 1 to 100000");
    expect_load_error("trailing junk in a number", "train:\n  learning_rate: 0.1x\n",
                      AP_ERR_INVALID, "test.yaml:2:18: train.learning_rate: '0.1x' is not",
                      "a number greater than 0 and at most 10");
    expect_load_error("nan", "train:\n  learning_rate: nan\n", AP_ERR_INVALID,
                      "test.yaml:2:18: train.learning_rate: 'nan' is not a finite number",
                      "expected a number");
    expect_load_error("yaml nan", "train:\n  learning_rate: .nan\n", AP_ERR_INVALID,
                      "test.yaml:2:18: train.learning_rate: '.nan' is not a finite number",
                      "expected a number");
    expect_load_error("infinity", "train:\n  weight_decay: inf\n", AP_ERR_INVALID,
                      "test.yaml:2:17: train.weight_decay: 'inf' is not a finite number",
                      "from 0 to 1");
    expect_load_error("double overflow", "train:\n  weight_decay: 1e999\n", AP_ERR_INVALID,
                      "test.yaml:2:17: train.weight_decay: 1e999 is out of range",
                      "expected a number from 0 to 1");
    expect_load_error("integer overflow", "data:\n  max_image_bytes: 99999999999999999999\n",
                      AP_ERR_INVALID,
                      "test.yaml:2:20: data.max_image_bytes: 99999999999999999999 is out of range",
                      "expected an integer from 1 to 4294967296");
    expect_load_error("negative seed", "seed: -1\n", AP_ERR_INVALID,
                      "test.yaml:1:7: seed: '-1' is not a non-negative integer",
                      "from 0 to 18446744073709551615");
    expect_load_error("seed overflow", "seed: 18446744073709551616\n", AP_ERR_INVALID,
                      "test.yaml:1:7: seed: 18446744073709551616 is out of range", "from 0 to");
    expect_load_error("bad boolean", "train:\n  augment: maybe\n", AP_ERR_INVALID,
                      "test.yaml:2:12: train.augment: 'maybe' is not a boolean",
                      "expected true or false");
    expect_load_error("alias", "seed: &s 1\ntrain:\n  epochs: *s\n", AP_ERR_INVALID,
                      "test.yaml:3:11: train.epochs", "aliases are not supported");
    expect_load_error("top level list", "- a\n- b\n", AP_ERR_INVALID, "test.yaml:1:1: (top level)",
                      "expected a mapping of keys");
    expect_load_error("second document", "seed: 1\n---\nseed: 2\n", AP_ERR_INVALID,
                      "test.yaml:2:1: (top level)", "one document per config file");
}

static void test_value_errors(void)
{
    expect_load_error("out of range low", "train:\n  epochs: 0\n", AP_ERR_INVALID,
                      "test.yaml:2:11: train.epochs: 0 is out of range",
                      "expected an integer from 1 to 100000");
    expect_load_error("out of range high", "data:\n  width: 5000\n", AP_ERR_INVALID,
                      "test.yaml:2:10: data.width: 5000 is out of range",
                      "expected an integer from 16 to 4096");
    expect_load_error("exclusive bound", "model:\n  dropout: 1\n", AP_ERR_INVALID,
                      "test.yaml:2:12: model.dropout: 1 is out of range",
                      "a number of at least 0 and less than 1");
    expect_load_error("bad enum name", "data:\n  resize: crop\n", AP_ERR_INVALID,
                      "test.yaml:2:11: data.resize: 'crop' is not a valid choice",
                      "expected one of stretch, letterbox");
    expect_load_error("bad choice", "train:\n  device: tpu\n", AP_ERR_INVALID,
                      "test.yaml:2:11: train.device: 'tpu' is not a valid choice",
                      "expected one of cpu, cuda");
    expect_load_error("bad log level", "log_level: verbose\n", AP_ERR_INVALID,
                      "test.yaml:1:12: log_level: 'verbose' is not a valid choice",
                      "one of debug, info, warn, error");
    expect_load_error("bad list element", "model:\n  stage_channels: [16, x, 64]\n", AP_ERR_INVALID,
                      "test.yaml:2:24: model.stage_channels: item 2: 'x' is not an integer",
                      "expected an integer from 1 to 4096");
    expect_load_error("list element out of range", "model:\n  stage_blocks:\n    - 1\n    - 0\n",
                      AP_ERR_INVALID, "test.yaml:4:7: model.stage_blocks: item 2: 0 is out",
                      "from 1 to 64");
    expect_load_error("nested list element", "data:\n  labels: [a, [b]]\n", AP_ERR_INVALID,
                      "test.yaml:2:15: data.labels: item 2", "not a list");
    expect_load_error("float list too short", "data:\n  mean: [0.5, 0.5]\n", AP_ERR_INVALID,
                      "test.yaml:2:9: data.mean: 2 items given",
                      "expected a list of exactly 3 items, each a number from 0 to 1");
    expect_load_error("float list too long", "data:\n  std: [0.2, 0.2, 0.2, 0.2]\n", AP_ERR_INVALID,
                      "test.yaml:2:24: data.std: more than 3 items", "exactly 3 items");
    expect_load_error("zero std", "data:\n  std: [0.2, 0, 0.2]\n", AP_ERR_INVALID,
                      "test.yaml:2:14: data.std: item 2: 0 is out of range",
                      "a number greater than 0 and at most 1");
    expect_load_error("name with a slash", "run_name: a/b\n", AP_ERR_INVALID,
                      "test.yaml:1:11: run_name: 'a/b' has '/' at position 2",
                      "letters, digits, '_', '-' and '.'");
    expect_load_error("empty name", "run_name: \"\"\n", AP_ERR_INVALID,
                      "test.yaml:1:11: run_name: value is empty", "non-empty name");
    expect_load_error("bad label", "data:\n  labels: [wasp, \"bee hive\"]\n", AP_ERR_INVALID,
                      "test.yaml:2:18: data.labels: item 2: 'bee hive' has byte 0x20",
                      "letters, digits");

    /* 17 labels are one more than AP_MAX_LABELS. The 17th is on line 19. */
    char labels[512] = "data:\n  labels:\n";
    for (int i = 1; i <= AP_MAX_LABELS + 1; i++) {
        char line[32];
        snprintf(line, sizeof(line), "    - l%d\n", i);
        strcat(labels, line);
    }
    expect_load_error("list too long", labels, AP_ERR_INVALID,
                      "test.yaml:19:7: data.labels: more than 16 items",
                      "expected a list of at most 16 items");

    char long_root[1200 + 32];
    snprintf(long_root, sizeof(long_root), "data:\n  root: %01100d\n", 0);
    expect_load_error("string too long", long_root, AP_ERR_INVALID,
                      "test.yaml:2:9: data.root: value is 1100 characters long",
                      "expected text of at most 1023 characters");
    char long_label[128];
    snprintf(long_label, sizeof(long_label), "data:\n  labels: [%064d]\n", 0);
    expect_load_error("list item too long", long_label, AP_ERR_INVALID,
                      "test.yaml:2:12: data.labels: item 1: value is 64 characters long",
                      "at most 63 characters");
}

static void test_syntax_errors(void)
{
    expect_load_error("colon in a plain value", "data:\n  root: a: b\n", AP_ERR_FORMAT,
                      "test.yaml:2:10: invalid YAML after key data.root",
                      "mapping values are not allowed");
    expect_load_error("unclosed flow list", "model:\n  stage_blocks: [1, 2\n", AP_ERR_FORMAT,
                      "test.yaml:3:1: invalid YAML after key model.stage_blocks",
                      "did not find expected ',' or ']'");
    expect_load_error("tab indentation", "train:\n\tepochs: 3\n", AP_ERR_FORMAT,
                      "test.yaml:2:1: invalid YAML after key train", "tabs are not allowed");
    expect_load_error("invalid UTF-8", "run_name: a\nseed: \xff\n", AP_ERR_FORMAT,
                      "test.yaml:2:7: invalid YAML", "invalid");
}

static void test_environment(void)
{
    unsetenv(UNSET_VARIABLE);
    setenv("APIARY_TEST_CONFIG_ROOT", "/mnt/images", 1);
    setenv("APIARY_TEST_CONFIG_EMPTY", "", 1);
    setenv("APIARY_TEST_CONFIG_EPOCHS", "7", 1);

    ap_config cfg = load_ok("data:\n  root: ${APIARY_TEST_CONFIG_ROOT}/bees\n");
    CHECK(strcmp(cfg.data.root, "/mnt/images/bees") == 0);

    cfg = load_ok("data:\n  root: ${" UNSET_VARIABLE ":-../data}/bees\n");
    CHECK(strcmp(cfg.data.root, "../data/bees") == 0);

    cfg = load_ok("data:\n  root: ${APIARY_TEST_CONFIG_ROOT:-/other}\n");
    CHECK(strcmp(cfg.data.root, "/mnt/images") == 0);

    cfg = load_ok("data:\n  root: \"${APIARY_TEST_CONFIG_EMPTY:-/fallback}\"\n");
    CHECK(strcmp(cfg.data.root, "/fallback") == 0);

    cfg = load_ok("data:\n  root: x${APIARY_TEST_CONFIG_EMPTY}y\n");
    CHECK(strcmp(cfg.data.root, "xy") == 0);

    cfg = load_ok("data:\n  root: /cost/$$5/$${HOME}\n");
    CHECK(strcmp(cfg.data.root, "/cost/$5/${HOME}") == 0);

    cfg = load_ok("train:\n  epochs: ${APIARY_TEST_CONFIG_EPOCHS}\n");
    CHECK_INT_EQ(cfg.train.epochs, 7);

    /* Inside a flow list, braces end a plain value, so a reference is quoted. */
    cfg = load_ok("data:\n  labels: [\"${" UNSET_VARIABLE ":-wasp}\", bee]\n");
    CHECK_INT_EQ(cfg.data.label_count, 2);
    CHECK(strcmp(cfg.data.labels[0], "wasp") == 0);

    expect_load_error(
        "unset variable", "data:\n  root: ${" UNSET_VARIABLE "}/bees\n", AP_ERR_INVALID,
        "test.yaml:2:9: data.root: environment variable " UNSET_VARIABLE " is not set",
        "${" UNSET_VARIABLE ":-default}");
    expect_load_error("unset variable in a list",
                      "data:\n  labels: [a, \"${" UNSET_VARIABLE "}\"]\n", AP_ERR_INVALID,
                      "test.yaml:2:15: data.labels: environment variable", UNSET_VARIABLE);
    expect_load_error("unquoted reference in a flow list",
                      "data:\n  labels: [${" UNSET_VARIABLE ":-wasp}]\n", AP_ERR_INVALID,
                      "test.yaml:2:12: data.labels: '$' at position 1 starts no variable",
                      "quote values that use ${NAME}");
    expect_load_error("lone dollar", "data:\n  root: a$b\n", AP_ERR_INVALID,
                      "test.yaml:2:9: data.root: '$' at position 2 starts no variable",
                      "$$ for a literal '$'");
    expect_load_error("unclosed reference", "data:\n  root: ${HOME\n", AP_ERR_INVALID,
                      "test.yaml:2:9: data.root: '$' at position 1", "starts no variable");
    expect_load_error("bad variable name", "data:\n  root: ${1X}\n", AP_ERR_INVALID,
                      "test.yaml:2:9: data.root: '${1X}' is not a valid variable reference",
                      "letters, digits and '_'");
    expect_load_error("nested default", "data:\n  root: ${A:-${B}}\n", AP_ERR_INVALID,
                      "test.yaml:2:9: data.root", "nests a variable");
    expect_load_error("expanded value checked", "train:\n  epochs: ${APIARY_TEST_CONFIG_ROOT}\n",
                      AP_ERR_INVALID, "test.yaml:2:11: train.epochs: '/mnt/images' is not",
                      "an integer");
}

static void test_set_each_type(void)
{
    ap_config cfg;
    ap_config_defaults(&cfg);
    apply(&cfg, "train.epochs=3");
    CHECK_INT_EQ(cfg.train.epochs, 3);
    apply(&cfg, "data.max_image_bytes=1048576");
    CHECK_INT_EQ(cfg.data.max_image_bytes, 1048576);
    apply(&cfg, "seed=18446744073709551615");
    CHECK(cfg.seed == UINT64_MAX);
    apply(&cfg, "train.learning_rate=0.01");
    CHECK_NEAR(cfg.train.learning_rate, 0.01, 0.0);
    apply(&cfg, "train.augment=false");
    CHECK_INT_EQ(cfg.train.augment, 0);
    apply(&cfg, "train.augment=yes");
    CHECK_INT_EQ(cfg.train.augment, 1);
    apply(&cfg, "data.root=/data/a=b");
    CHECK(strcmp(cfg.data.root, "/data/a=b") == 0);
    apply(&cfg, "data.root=${NOT_EXPANDED}");
    CHECK(strcmp(cfg.data.root, "${NOT_EXPANDED}") == 0);
    apply(&cfg, "train.device=cuda");
    CHECK(strcmp(cfg.train.device, "cuda") == 0);
    apply(&cfg, "data.resize=stretch");
    CHECK_INT_EQ(cfg.data.resize, AP_RESIZE_STRETCH);
    apply(&cfg, "train.pos_weight=none");
    CHECK_INT_EQ(cfg.train.pos_weight, AP_POS_WEIGHT_NONE);
    apply(&cfg, "data.mean=0.4,0.45,0.5");
    CHECK_NEAR(cfg.data.mean[1], 0.45f, 0.0);
    apply(&cfg, "data.labels=wasp,bee");
    CHECK_INT_EQ(cfg.data.label_count, 2);
    CHECK(strcmp(cfg.data.labels[1], "bee") == 0);
    apply(&cfg, "data.labels= varroa , pollen ,wasps");
    CHECK_INT_EQ(cfg.data.label_count, 3);
    CHECK(strcmp(cfg.data.labels[0], "varroa") == 0);
    CHECK(strcmp(cfg.data.labels[1], "pollen") == 0);
    apply(&cfg, "model.stage_channels=16,32");
    CHECK_INT_EQ(cfg.model.stage_count, 2);
    CHECK_INT_EQ(cfg.model.stage_channels[1], 32);
    CHECK_INT_EQ(cfg.model.stage_channels[2], 0);
    apply(&cfg, "data.labels=[wasp, bee]");
    CHECK_INT_EQ(cfg.data.label_count, 2);
    CHECK(strcmp(cfg.data.labels[0], "wasp") == 0);
    CHECK(strcmp(cfg.data.labels[1], "bee") == 0);
    apply(&cfg, "model.stage_channels= [8,16] ");
    CHECK_INT_EQ(cfg.model.stage_count, 2);
    CHECK_INT_EQ(cfg.model.stage_channels[0], 8);
    apply(&cfg, "data.labels=[]");
    CHECK_INT_EQ(cfg.data.label_count, 0);
    apply(&cfg, "data.labels=wasp");
    apply(&cfg, "data.labels=");
    CHECK_INT_EQ(cfg.data.label_count, 0);
    apply(&cfg, "data.group_column=");
    CHECK(strcmp(cfg.data.group_column, "") == 0);
}

static void test_set_errors(void)
{
    expect_set_error("train.epochs=abc", "'abc' is not an integer; expected an integer from 1");
    expect_set_error("train.epochs=0", "0 is out of range; expected an integer from 1 to 100000");
    expect_set_error("train.epochs=", "no value given");
    expect_set_error("train.epochs", "expected key=value");
    expect_set_error("train.epoch=3", "unknown key; did you mean train.epochs?");
    expect_set_error("train=3", "train is a section; set one of its keys");
    expect_set_error("train.augment=2", "'2' is not a boolean");
    expect_set_error("train.device=gpu", "expected one of cpu, cuda");
    expect_set_error("data.resize=fit", "expected one of stretch, letterbox");
    expect_set_error("seed=-5", "is not a non-negative integer");
    expect_set_error("model.stage_channels=16,x", "item 2: 'x' is not an integer");
    expect_set_error("model.stage_channels=16,,32", "item 2: no value given");
    expect_set_error("data.labels=[wasp", "item 1: '[wasp' has '[' at position 1");
    expect_set_error("data.mean=0.5,0.5", "2 items given; expected a list of exactly 3 items");
    expect_set_error("data.mean=0.5,0.5,2", "item 3: 2 is out of range");
    expect_set_error("data.labels=a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", "more than 16 items");
    expect_set_error("run_name=../x", "'../x' starts with '.'");
    expect_set_error("run_name=a/b", "'a/b' has '/' at position 2");
    expect_set_error("registry.uri=http://bee:hive-secret@127.0.0.1:5000",
                     "the URI contains a password (user:password@)");
    expect_set_error("store.endpoint=https://key:secret@s3.example:9000/",
                     "the URI contains a password");
    expect_set_error("train.learning_rate=inf", "'inf' is not a finite number");

    /* A failed override leaves the config as it was. */
    ap_config cfg;
    ap_config_defaults(&cfg);
    ap_config before = cfg;
    ap_error err = {0};
    CHECK_INT_EQ(ap_config_set(&cfg, "model.stage_channels=8,8,x", &err), AP_ERR_INVALID);
    CHECK(ap_config_equal(&cfg, &before));
    CHECK_INT_EQ(cfg.model.stage_channels[0], 16);
}

/* A password in a URI is rejected without being repeated; a user name
 * alone, and '@' after the host, are allowed. */
static void test_set_uri_password(void)
{
    ap_config cfg;
    ap_config_defaults(&cfg);
    ap_error err = {0};
    CHECK_INT_EQ(ap_config_set(&cfg, "registry.uri=http://bee:hive-secret@127.0.0.1:5000", &err),
                 AP_ERR_INVALID);
    CHECK(strstr(err.message, "hive-secret") == NULL);
    CHECK_INT_EQ(ap_config_set(&cfg, "registry.uri=http://bee@127.0.0.1:5000", &err), AP_OK);
    CHECK_INT_EQ(ap_config_set(&cfg, "data.root=s3://bucket/a:b@c", &err), AP_OK);
}

static void test_validate(void)
{
    ap_config cfg = valid_config();
    ap_error err = {0};
    ap_status status = ap_config_validate(&cfg, &err);
    if (status != AP_OK)
        fprintf(stderr, "valid config rejected: %s\n", err.message);
    CHECK_INT_EQ(status, AP_OK);

    cfg = valid_config();
    apply(&cfg, "model.stage_blocks=1,1");
    expect_invalid("stage counts differ", &cfg,
                   "model.stage_channels has 3 items but model.stage_blocks has 2");

    cfg = valid_config();
    apply(&cfg, "model.stage_channels=");
    apply(&cfg, "model.stage_blocks=");
    expect_invalid("no stages", &cfg, "model.stage_channels is empty");

    cfg = valid_config();
    apply(&cfg, "split.val_fraction=0.5");
    apply(&cfg, "split.test_fraction=0.4");
    expect_invalid("fractions too large", &cfg,
                   "split.val_fraction (0.5) + split.test_fraction (0.4) is 0.9; expected less "
                   "than 0.9");

    cfg = valid_config();
    apply(&cfg, "data.labels=");
    expect_invalid("no labels", &cfg, "data.labels is empty");

    cfg = valid_config();
    apply(&cfg, "data.labels=wasp,bee,wasp");
    expect_invalid("repeated label", &cfg, "data.labels lists 'wasp' twice (items 1 and 3)");

    cfg = valid_config();
    apply(&cfg, "data.group_column=bee");
    expect_invalid("group column is a label", &cfg,
                   "data.group_column 'bee' is also listed in data.labels");

    cfg = valid_config();
    cfg.data.width = 8;
    expect_invalid("width too small", &cfg,
                   "data.width: 8 is out of range; expected an integer from 16 to 4096");

    cfg = valid_config();
    cfg.data.height = 5000;
    expect_invalid("height too large", &cfg, "data.height: 5000 is out of range");

    cfg = valid_config();
    cfg.train.batch_size = 1;
    expect_invalid("batch of one", &cfg, "train.batch_size: 1 is out of range");

    cfg = valid_config();
    strcpy(cfg.train.device, "tpu");
    expect_invalid("unknown device", &cfg, "train.device: 'tpu' is not a valid choice");

    cfg = valid_config();
    cfg.model.stage_channels[1] = 0;
    expect_invalid("stage channels zero", &cfg, "model.stage_channels: item 2: 0 is out of range");

    cfg = valid_config();
    cfg.data.std[0] = 0.0f;
    expect_invalid("zero std", &cfg, "data.std: item 1: 0 is out of range");

    cfg = valid_config();
    apply(&cfg, "train.min_learning_rate=0.01");
    expect_invalid("min above peak", &cfg,
                   "train.min_learning_rate (0.01) is greater than train.learning_rate (0.003)");

    cfg = valid_config();
    apply(&cfg, "data.root=");
    expect_invalid("empty root", &cfg, "data.root is empty");

    cfg = valid_config();
    apply(&cfg, "train.warmup_epochs=12");
    expect_invalid("warmup too long", &cfg,
                   "train.warmup_epochs (12) is greater than train.epochs (10)");

    /* A config read from a file names the file in its validation errors. */
    cfg = load_ok("data:\n  root: /data\n");
    expect_invalid("file named", &cfg, "test.yaml: data.labels is empty");
}

static void check_round_trip(const char *name, const ap_config *cfg)
{
    int failures_before = check_failures;
    char *yaml = ap_config_to_yaml(cfg);
    CHECK(yaml != NULL);
    if (yaml == NULL)
        return;
    ap_config back;
    ap_error err = {0};
    ap_status status = ap_config_load_string(yaml, "round-trip.yaml", &back, &err);
    CHECK_INT_EQ(status, AP_OK);
    CHECK(ap_config_equal(cfg, &back));
    if (check_failures != failures_before)
        fprintf(stderr, "  in case: %s\n%s\n%s\n", name, err.message, yaml);
    free(yaml);
}

static void test_round_trip(void)
{
    ap_config cfg;
    ap_config_defaults(&cfg);
    check_round_trip("defaults", &cfg);

    apply(&cfg, "run_name=true");
    apply(&cfg, "output_dir=~");
    apply(&cfg, "data.root=/data/$HOME/${X}: #not a comment");
    apply(&cfg, "data.manifest=null");
    apply(&cfg, "data.labels=varroa,pollen,wasps,cooling");
    apply(&cfg, "data.mean=0.1,0.2,0.3");
    apply(&cfg, "seed=18446744073709551615");
    apply(&cfg, "train.learning_rate=0.30000000000000004");
    apply(&cfg, "train.epsilon=1e-300");
    apply(&cfg, "train.augment=false");
    apply(&cfg, "data.resize=stretch");
    apply(&cfg, "model.stage_channels=8,16,32,64,128,256,512,1024");
    apply(&cfg, "model.stage_blocks=1,2,3,4,5,6,7,8");
    apply(&cfg, "data.max_image_bytes=4294967296");
    check_round_trip("every kind of value", &cfg);

    ap_config quoted = cfg;
    strcpy(quoted.data.root, "  leading spaces\nsecond line: #x 'single' \"double\" \\ \xc3\xa9");
    check_round_trip("text that needs quoting", &quoted);

    /* ap_config_equal has to notice a change, or the round trip proves nothing. */
    ap_config changed = cfg;
    changed.data.mean[2] = 0.31f;
    CHECK(!ap_config_equal(&cfg, &changed));
    changed = cfg;
    strcpy(changed.data.labels[3], "cooled");
    CHECK(!ap_config_equal(&cfg, &changed));

    char *yaml = ap_config_to_yaml(&cfg);
    CHECK_STR_CONTAINS(yaml, "/data/$$HOME/$${X}: #not a comment");
    CHECK_STR_CONTAINS(yaml, "output_dir: \"~\"");
    CHECK_STR_CONTAINS(yaml, "labels: [varroa, pollen, wasps, cooling]");
    CHECK_STR_CONTAINS(yaml, "train:\n");
    free(yaml);
}

static void test_load_file(void)
{
    const char *dir = check_temp_dir("config");
    CHECK(dir != NULL);
    if (dir == NULL)
        return;
    char path[4200];
    snprintf(path, sizeof(path), "%s/bad.yaml", dir);
    FILE *file = fopen(path, "w");
    CHECK(file != NULL);
    if (file == NULL)
        return;
    fputs("# comment\ntrain:\n  epochs: -4\n", file);
    fclose(file);

    ap_config cfg;
    ap_config_defaults(&cfg);
    cfg.train.epochs = 99;
    ap_error err = {0};
    CHECK_INT_EQ(ap_config_load_file(path, &cfg, &err), AP_ERR_INVALID);
    char location[4300];
    snprintf(location, sizeof(location), "%s:3:11: train.epochs: -4 is out of range", path);
    CHECK_STR_CONTAINS(err.message, location);
    CHECK_INT_EQ(cfg.train.epochs, 99);
    remove(path);

    CHECK_INT_EQ(ap_config_load_file(path, &cfg, &err), AP_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(err.message, path);
    remove(dir);
}

static void test_print_keys(void)
{
    FILE *file = tmpfile();
    CHECK(file != NULL);
    if (file == NULL)
        return;
    ap_config_print_keys(file);
    long size = ftell(file);
    rewind(file);
    char *text = calloc((size_t)size + 1, 1);
    CHECK(text != NULL);
    if (text == NULL) {
        fclose(file);
        return;
    }
    CHECK_INT_EQ(fread(text, 1, (size_t)size, file), size);
    fclose(file);
    CHECK_STR_CONTAINS(text, "key ");
    CHECK_STR_CONTAINS(text, "train.epochs ");
    CHECK_STR_CONTAINS(text, "[1, 100000]");
    CHECK_STR_CONTAINS(text, "Passes over the training split");
    CHECK_STR_CONTAINS(text, "stretch|letterbox");
    CHECK_STR_CONTAINS(text, "[16, 32, 64]");
    CHECK_STR_CONTAINS(text, "float[3]");
    free(text);
}

/* The repository root: APIARY_SOURCE_DIR, or three folders above this file. */
static void find_source_dir(char *out, size_t out_size)
{
    const char *from_environment = getenv("APIARY_SOURCE_DIR");
    if (from_environment != NULL && from_environment[0] != '\0') {
        snprintf(out, out_size, "%s", from_environment);
        return;
    }
    const char *suffix = "tests/unit/test_config.c";
    size_t length = strlen(__FILE__);
    size_t keep = length >= strlen(suffix) ? length - strlen(suffix) : 0;
    snprintf(out, out_size, "%.*s", (int)keep, __FILE__);
    if (out[0] == '\0')
        snprintf(out, out_size, ".");
}

static void check_example_config(const char *source_dir, const char *name, int max_epochs)
{
    int failures_before = check_failures;
    char path[4096];
    snprintf(path, sizeof(path), "%s/configs/%s", source_dir, name);
    ap_config cfg;
    ap_error err = {0};
    ap_status status = ap_config_load_file(path, &cfg, &err);
    CHECK_INT_EQ(status, AP_OK);
    if (status == AP_OK)
        status = ap_config_validate(&cfg, &err);
    CHECK_INT_EQ(status, AP_OK);
    CHECK(strcmp(cfg.data.root, "/data/sets/wasp-trap") == 0);
    CHECK_INT_EQ(cfg.data.label_count, 4);
    CHECK(strcmp(cfg.data.labels[2], "asian_hornet") == 0);
    CHECK(strcmp(cfg.data.group_column, "group") == 0);
    CHECK(cfg.train.epochs <= max_epochs);
    if (check_failures != failures_before)
        fprintf(stderr, "  in config %s: %s\n", path, status != AP_OK ? err.message : "");
}

static void test_example_configs(void)
{
    char source_dir[4000];
    find_source_dir(source_dir, sizeof(source_dir));

    char *saved = getenv("APIARY_DATA_DIR") ? strdup(getenv("APIARY_DATA_DIR")) : NULL;
    setenv("APIARY_DATA_DIR", "/data/sets", 1);
    check_example_config(source_dir, "local.yaml", 40);
    check_example_config(source_dir, "ci.yaml", 3);

    /* Without APIARY_DATA_DIR the data is looked for beside the checkout. */
    unsetenv("APIARY_DATA_DIR");
    char path[4096];
    snprintf(path, sizeof(path), "%s/configs/local.yaml", source_dir);
    ap_config cfg;
    ap_error err = {0};
    CHECK_INT_EQ(ap_config_load_file(path, &cfg, &err), AP_OK);
    CHECK(strcmp(cfg.data.root, "../shared/data/wasp-trap") == 0);

    if (saved != NULL)
        setenv("APIARY_DATA_DIR", saved, 1);
    free(saved);
}

int main(void)
{
    test_defaults();
    test_empty_inputs();
    test_full_file();
    test_yaml_forms();
    test_key_errors();
    test_type_errors();
    test_value_errors();
    test_syntax_errors();
    test_environment();
    test_set_each_type();
    test_set_errors();
    test_set_uri_password();
    test_validate();
    test_round_trip();
    test_load_file();
    test_print_keys();
    test_example_configs();
    return check_finish();
}
