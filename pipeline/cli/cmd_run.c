#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "pipeline/cli/cli.h"
#include "pipeline/common/log.h"
#include "pipeline/parallel/comm.h"
#include "pipeline/promote/promote.h"
#include "pipeline/store/store.h"
#include "pipeline/train/trainer.h"
#include "pipeline/validate/validate.h"

static void print_run_help(void)
{
    puts("usage: apiary run -c CONFIG [--set KEY=VALUE]...\n"
         "\n"
         "The main job: train (continuing the run's checkpoint when there is one),\n"
         "validate against the gate, and promote the model to champion when it\n"
         "passes. Run again, the job skips a finished training and validates\n"
         "again; weights already registered keep their version.\n"
         "Exits with code 3 when the gate rejects the model; champion is then\n"
         "unchanged.");
}

static void format_metric(const json_t *metrics, const char *name, char *out, size_t size)
{
    const json_t *metric = json_object_get(metrics, name);
    const json_t *value = json_object_get(metric, "value");
    const json_t *lower = json_object_get(metric, "lower");
    const json_t *upper = json_object_get(metric, "upper");
    if (!json_is_number(value))
        snprintf(out, size, "%-20s", "n/a");
    else if (json_is_number(lower) && json_is_number(upper))
        snprintf(out, size, "%.3f [%.3f, %.3f]", json_number_value(value), json_number_value(lower),
                 json_number_value(upper));
    else
        snprintf(out, size, "%-20.3f", json_number_value(value));
}

/* Print what failed in the comparison with the champion: lost labels and
 * labels with a significant regression. */
static void print_comparison_failures(const json_t *comparison)
{
    const json_t *label_check = json_object_get(comparison, "label_check");
    if (label_check != NULL && !json_is_true(json_object_get(label_check, "passed")))
        printf("  FAIL champion labels: %s\n",
               json_string_value(json_object_get(label_check, "detail")));
    const char *label;
    const json_t *entry;
    json_object_foreach((json_t *)json_object_get(comparison, "labels"), label, entry)
    {
        if (!json_is_true(json_object_get(entry, "passed")))
            printf("  FAIL champion comparison of %s: %s\n", label,
                   json_string_value(json_object_get(entry, "detail")));
    }
}

/* Print per-label test metrics with intervals, and the verdict. */
static void print_summary(const json_t *report, const ap_promote_outcome *promotion)
{
    const json_t *labels = json_object_get(json_object_get(report, "test"), "labels");
    printf("\n%-14s %-22s %-22s %-22s\n", "label", "accuracy", "recall", "precision");
    const char *label;
    const json_t *entry;
    json_object_foreach((json_t *)labels, label, entry)
    {
        const json_t *metrics = json_object_get(entry, "metrics");
        char accuracy[64], recall[64], precision[64];
        format_metric(metrics, "accuracy", accuracy, sizeof(accuracy));
        format_metric(metrics, "recall", recall, sizeof(recall));
        format_metric(metrics, "precision", precision, sizeof(precision));
        printf("%-14s %-22s %-22s %-22s\n", label, accuracy, recall, precision);
    }
    bool passed = json_is_true(json_object_get(report, "passed"));
    printf("\ngate: %s\n", passed ? "PASSED" : "FAILED");
    const json_t *rule;
    size_t index;
    json_array_foreach(json_object_get(report, "rules"), index, rule)
    {
        printf("  %s %s: %s\n", json_is_true(json_object_get(rule, "passed")) ? "pass" : "FAIL",
               json_string_value(json_object_get(rule, "rule")),
               json_string_value(json_object_get(rule, "detail")));
    }
    print_comparison_failures(json_object_get(report, "comparison"));
    if (promotion->blocked)
        printf("registry: nothing registered, champion unchanged\n");
    else
        printf("registry: version %d is champion\n", promotion->version);
}

int ap_cmd_run(int argc, char **argv)
{
    ap_cli_options options;
    if (!ap_cli_parse(argc, argv, 0, &options))
        return AP_EXIT_USAGE;
    if (options.help) {
        print_run_help();
        return AP_EXIT_OK;
    }
    static ap_config cfg;
    if (!ap_cli_load_config(&options, &cfg))
        return AP_EXIT_USAGE;

    /* Check the gate rules now rather than after training. */
    if (!ap_cli_check_gate_rules(&cfg))
        return AP_EXIT_USAGE;

    /* An s3:// output_dir is staged locally and uploaded after each stage;
     * an s3:// data.root is synced once, and every stage reads the copy. */
    ap_store_outputs outputs;
    int code = ap_cli_store_begin(&cfg, true, &outputs);
    if (code == AP_EXIT_OK)
        code = ap_cli_check_run_folder(&cfg, true);
    if (code != AP_EXIT_OK)
        return code;

    /* apiary run always resumes, so the same command continues a stopped run. */
    char same_command[768];
    ap_cli_command_text("run", &options, NULL, same_command, sizeof(same_command));
    ap_train_request train = {
        .cfg = &cfg,
        .resume = true,
        .stop_requested = ap_cli_install_stop_handler(),
        .continue_command = same_command,
    };
    ap_train_outcome trained;
    ap_error err = {0};
    AP_INFO("stage 1 of 3: train");
    ap_status trained_status = ap_train(&train, &trained, &err);
    /* Under mpirun every rank trains, but only rank 0 owns the run folder:
     * the others stop here rather than race it to validate and promote. */
    if (ap_comm_launcher_rank() != 0)
        return trained_status != AP_OK ? ap_cli_report("train", &err) : AP_EXIT_OK;
    if (ap_cli_store_upload(&outputs, &cfg) != AP_EXIT_OK || trained_status != AP_OK)
        return trained_status != AP_OK ? ap_cli_report("train", &err) : AP_EXIT_IO;

    AP_INFO("stage 2 of 3: validate");
    ap_validate_request validate = {.cfg = &cfg, .finish_command = same_command};
    ap_validate_outcome validated = {0};
    ap_status validated_status = ap_validate(&validate, &validated, &err);
    if (ap_cli_store_upload(&outputs, &cfg) != AP_EXIT_OK || validated_status != AP_OK)
        return validated_status != AP_OK ? ap_cli_report("validate", &err) : AP_EXIT_IO;

    AP_INFO("stage 3 of 3: promote");
    ap_promote_request promote = {.cfg = &cfg};
    ap_promote_outcome promoted;
    if (ap_promote(&promote, &promoted, &err) != AP_OK)
        code = ap_cli_report("promote", &err);
    else
        code = ap_cli_report_promotion(&promoted, "champion");
    if (ap_cli_store_upload(&outputs, &cfg) != AP_EXIT_OK && code == AP_EXIT_OK)
        code = AP_EXIT_IO;
    if (code == AP_EXIT_OK || code == AP_EXIT_GATE_FAILED)
        print_summary(validated.report, &promoted);
    ap_validate_outcome_free(&validated);
    return code;
}
