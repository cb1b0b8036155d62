#include <math.h>
#include <stdio.h>

#include <jansson.h>

#include "pipeline/cli/cli.h"
#include "pipeline/validate/validate.h"

static void print_validate_help(void)
{
    puts("usage: apiary validate -c CONFIG [--set KEY=VALUE]...\n"
         "\n"
         "Check the finished run OUTPUT_DIR/RUN_NAME against the gate: data checks on the\n"
         "test split, thresholds chosen on the validation split, test metrics with\n"
         "confidence intervals, the gate.rules bars, and against the registry's champion\n"
         "no significant accuracy regression and no champion label missing. Writes\n"
         "report.json, report.md and report.html into the run folder and the thresholds\n"
         "into model_card.json.\n"
         "An s3:// output_dir or data.root is fetched first and the run folder uploaded\n"
         "after validation.\n"
         "\n"
         "  -c, --config FILE   YAML config the run was trained with (see configs/local.yaml)\n"
         "  --set KEY=VALUE     override one config key, for example\n"
         "                      --set 'gate.rules=wasp.recall.lower >= 0.9,macro.f1 >= 0.7'\n"
         "  -h, --help          show this help\n"
         "\n"
         "Exit code 0 when the model passes and 3 when the gate rejects it; see\n"
         "apiary --help for the other codes.");
}

/* A number of the report, or NAN where it is null or missing. */
static double report_number(const json_t *value)
{
    return json_is_number(value) ? json_number_value(value) : NAN;
}

static void print_data_checks(const json_t *report)
{
    size_t index;
    const json_t *check;
    json_array_foreach(json_object_get(report, "data_checks"), index, check)
    {
        bool passed = json_is_true(json_object_get(check, "passed"));
        printf("  data check %-17s %s", json_string_value(json_object_get(check, "name")),
               passed ? "passed\n" : "FAILED: ");
        if (!passed)
            printf("%s\n", json_string_value(json_object_get(check, "detail")));
    }
}

/* "0.912 [0.871, 0.944]", with n/a for undefined numbers. */
static void format_metric(const json_t *metric, char *out, size_t out_size)
{
    double value = report_number(json_object_get(metric, "value"));
    double lower = report_number(json_object_get(metric, "lower"));
    double upper = report_number(json_object_get(metric, "upper"));
    if (isnan(value))
        snprintf(out, out_size, "n/a");
    else if (isnan(lower) || isnan(upper))
        snprintf(out, out_size, "%.3f", value);
    else
        snprintf(out, out_size, "%.3f [%.3f, %.3f]", value, lower, upper);
}

static void print_test_metrics(const json_t *report)
{
    const json_t *test = json_object_get(report, "test");
    if (!json_is_object(test))
        return;
    printf("  test split: %" JSON_INTEGER_FORMAT " images, %g%% confidence intervals\n",
           json_integer_value(json_object_get(test, "images")),
           100.0 * report_number(json_object_get(report, "confidence_level")));
    printf("    %-14s %-9s %-22s %-22s %-22s\n", "label", "threshold", "recall", "precision",
           "accuracy");
    const char *label;
    const json_t *entry;
    json_object_foreach((json_t *)json_object_get(test, "labels"), label, entry)
    {
        const json_t *metrics = json_object_get(entry, "metrics");
        char recall[64], precision[64], accuracy[64];
        format_metric(json_object_get(metrics, "recall"), recall, sizeof(recall));
        format_metric(json_object_get(metrics, "precision"), precision, sizeof(precision));
        format_metric(json_object_get(metrics, "accuracy"), accuracy, sizeof(accuracy));
        double threshold = report_number(json_object_get(
            json_object_get(json_object_get(report, "thresholds"), label), "value"));
        printf("    %-14s %-9.3f %-22s %-22s %-22s\n", label, threshold, recall, precision,
               accuracy);
    }
}

static void print_rules(const json_t *report)
{
    size_t index;
    const json_t *rule;
    json_array_foreach(json_object_get(report, "rules"), index, rule)
    {
        bool passed = json_is_true(json_object_get(rule, "passed"));
        printf("  rule %-32s %s: %s\n", json_string_value(json_object_get(rule, "rule")),
               passed ? "passed" : "FAILED", json_string_value(json_object_get(rule, "detail")));
    }
}

static void print_comparison(const json_t *report)
{
    const json_t *comparison = json_object_get(report, "comparison");
    if (json_is_true(json_object_get(comparison, "skipped"))) {
        printf("  champion comparison skipped: %s\n",
               json_string_value(json_object_get(comparison, "reason")));
        return;
    }
    printf("  champion version %" JSON_INTEGER_FORMAT ":\n",
           json_integer_value(json_object_get(comparison, "champion_version")));
    const json_t *label_check = json_object_get(comparison, "label_check");
    if (label_check != NULL)
        printf("    %-14s %s: %s\n", "(labels)",
               json_is_true(json_object_get(label_check, "passed")) ? "passed" : "FAILED",
               json_string_value(json_object_get(label_check, "detail")));
    const char *label;
    const json_t *entry;
    json_object_foreach((json_t *)json_object_get(comparison, "labels"), label, entry)
    {
        printf("    %-14s %s: %s\n", label,
               json_is_true(json_object_get(entry, "passed")) ? "passed" : "FAILED",
               json_string_value(json_object_get(entry, "detail")));
    }
}

static void print_summary(const ap_validate_outcome *outcome)
{
    const json_t *report = outcome->report;
    printf("validation of %s: %s\n", outcome->run_dir, outcome->passed ? "PASSED" : "FAILED");
    print_data_checks(report);
    print_test_metrics(report);
    print_rules(report);
    print_comparison(report);
    printf("report: %s\n", outcome->report_path);
}

int ap_cmd_validate(int argc, char **argv)
{
    ap_cli_options options;
    if (!ap_cli_parse(argc, argv, false, &options))
        return AP_EXIT_USAGE;
    if (options.help) {
        print_validate_help();
        return AP_EXIT_OK;
    }
    static ap_config cfg;
    if (!ap_cli_load_config(&options, &cfg))
        return AP_EXIT_USAGE;
    if (!ap_cli_check_gate_rules(&cfg))
        return AP_EXIT_USAGE;

    ap_store_outputs outputs;
    int code = ap_cli_store_begin(&cfg, true, &outputs);
    if (code != AP_EXIT_OK)
        return code;

    char finish_command[768];
    ap_validate_request request = {
        .cfg = &cfg,
        .finish_command = ap_cli_command_text("train", &options, "--resume", finish_command,
                                              sizeof(finish_command)),
    };
    ap_error err = {0};
    ap_validate_outcome outcome = {0};
    ap_status status = ap_validate(&request, &outcome, &err);
    code = ap_cli_store_upload(&outputs, &cfg);
    if (status != AP_OK)
        return ap_cli_report("validate", &err);
    print_summary(&outcome);
    if (code == AP_EXIT_OK)
        code = outcome.passed ? AP_EXIT_OK : AP_EXIT_GATE_FAILED;
    ap_validate_outcome_free(&outcome);
    return code;
}
