#include <stdio.h>

#include "pipeline/cli/cli.h"
#include "pipeline/common/log.h"
#include "pipeline/parallel/comm.h"
#include "pipeline/train/trainer.h"

static void print_train_help(void)
{
    puts("usage: apiary train -c CONFIG [--set KEY=VALUE]... [--resume]\n"
         "\n"
         "Train the configured network on the configured dataset. Outputs go to\n"
         "OUTPUT_DIR/RUN_NAME: config.yaml, split.csv, data_report.json,\n"
         "checkpoint.safetensors, model.safetensors, model_card.json,\n"
         "train_log.jsonl and complete.json when training finished. data.root and\n"
         "output_dir may be s3:// URIs: the data is synced into store.cache_dir, and the\n"
         "run folder is staged there and uploaded after training.\n"
         "\n"
         "  -c, --config FILE   YAML config (see configs/local.yaml)\n"
         "  --set KEY=VALUE     override one config key, e.g. --set train.epochs=3\n"
         "  --resume            continue from the run's checkpoint when it has one;\n"
         "                      a finished run is left as it is\n"
         "  -h, --help          show this help\n"
         "\n"
         "SIGTERM or SIGINT saves a checkpoint and exits with code 6.");
}

int ap_cmd_train(int argc, char **argv)
{
    ap_cli_options options;
    if (!ap_cli_parse(argc, argv, AP_CLI_RESUME, &options))
        return AP_EXIT_USAGE;
    if (options.help) {
        print_train_help();
        return AP_EXIT_OK;
    }
    static ap_config cfg;
    if (!ap_cli_load_config(&options, &cfg))
        return AP_EXIT_USAGE;

    ap_store_outputs outputs;
    int code = ap_cli_store_begin(&cfg, true, &outputs);
    if (code == AP_EXIT_OK)
        code = ap_cli_check_run_folder(&cfg, options.resume);
    if (code != AP_EXIT_OK)
        return code;

    char continue_command[768];
    ap_train_request request = {
        .cfg = &cfg,
        .resume = options.resume,
        .stop_requested = ap_cli_install_stop_handler(),
        .continue_command = ap_cli_command_text("train", &options, "--resume", continue_command,
                                                sizeof(continue_command)),
    };
    ap_train_outcome outcome;
    ap_error err = {0};
    ap_status status = ap_train(&request, &outcome, &err);
    /* Only rank 0 writes the run folder, so only rank 0 uploads it. The
     * checkpoint of a failed or stopped run is uploaded too, to resume from. */
    if (ap_comm_launcher_rank() != 0)
        return status != AP_OK ? ap_cli_report("train", &err) : AP_EXIT_OK;
    code = ap_cli_store_upload(&outputs, &cfg);
    if (status != AP_OK)
        return ap_cli_report("train", &err);
    if (code == AP_EXIT_OK)
        printf("%s\n", outcome.model_path);
    return code;
}
