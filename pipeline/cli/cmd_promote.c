#include <stdio.h>

#include "pipeline/cli/cli.h"
#include "pipeline/common/log.h"
#include "pipeline/promote/promote.h"

static void print_promote_help(void)
{
    puts("usage: apiary promote -c CONFIG [--set KEY=VALUE]... [--alias NAME]\n"
         "                      [--force --reason TEXT]\n"
         "\n"
         "Register the validated model of the run in the registry (registry.uri,\n"
         "registry.model_name) and point the alias at it. The alias moves only when\n"
         "the run's report.json passed the gate and names the exact model file.\n"
         "A failed gate registers nothing and exits with code 3. An s3:// output_dir is\n"
         "fetched first and the run folder (with promotion.json) uploaded after.\n"
         "\n"
         "  -c, --config FILE   YAML config of the run\n"
         "  --set KEY=VALUE     override one config key\n"
         "  --alias NAME        alias to move (default champion)\n"
         "  --force             register and move the alias although the gate failed;\n"
         "                      needs --reason, and the registry records both\n"
         "  --reason TEXT       why the gate is overridden\n"
         "  -h, --help          show this help");
}

/* Report the outcome of a promotion; returns the exit code. */
int ap_cli_report_promotion(const ap_promote_outcome *outcome, const char *alias)
{
    if (outcome->blocked) {
        AP_ERROR("promotion blocked: the model failed the validation gate (see %s); %s is "
                 "unchanged",
                 outcome->report_path, alias);
        return AP_EXIT_GATE_FAILED;
    }
    if (!outcome->alias_moved)
        AP_INFO("%s already points at version %d%s", alias, outcome->version,
                outcome->reused ? " (same weights)" : "");
    else if (outcome->previous > 0)
        AP_INFO("%s moved from version %d to version %d%s", alias, outcome->previous,
                outcome->version, outcome->passed ? "" : " (forced)");
    else
        AP_INFO("%s set to version %d%s", alias, outcome->version,
                outcome->passed ? "" : " (forced)");
    return AP_EXIT_OK;
}

int ap_cmd_promote(int argc, char **argv)
{
    ap_cli_options options;
    if (!ap_cli_parse(argc, argv, AP_CLI_FORCE | AP_CLI_ALIAS, &options))
        return AP_EXIT_USAGE;
    if (options.help) {
        print_promote_help();
        return AP_EXIT_OK;
    }
    if (options.force != (options.reason != NULL)) {
        fprintf(stderr, "apiary: --force and --reason TEXT go together: the reason is recorded "
                        "for the override\n");
        return AP_EXIT_USAGE;
    }
    static ap_config cfg;
    if (!ap_cli_load_config(&options, &cfg))
        return AP_EXIT_USAGE;

    ap_promote_request request = {
        .cfg = &cfg,
        .alias = options.alias,
        .force = options.force,
        .reason = options.reason,
    };
    ap_store_outputs outputs;
    int code = ap_cli_store_begin(&cfg, false, &outputs);
    if (code != AP_EXIT_OK)
        return code;

    ap_promote_outcome outcome;
    ap_error err = {0};
    ap_status status = ap_promote(&request, &outcome, &err);
    int uploaded = ap_cli_store_upload(&outputs, &cfg);
    if (status != AP_OK)
        return ap_cli_report("promote", &err);
    code = ap_cli_report_promotion(&outcome, options.alias ? options.alias : "champion");
    if (code == AP_EXIT_OK && uploaded != AP_EXIT_OK)
        code = uploaded;
    if (code == AP_EXIT_OK)
        printf("%d\n", outcome.version);
    return code;
}
