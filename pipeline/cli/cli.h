#ifndef APIARY_CLI_CLI_H
#define APIARY_CLI_CLI_H

#include <signal.h>
#include <stdbool.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"

/* Process exit codes of every subcommand. */
enum {
    AP_EXIT_OK = 0,
    AP_EXIT_FAILURE = 1,     /* runtime failure: compute backend, memory */
    AP_EXIT_USAGE = 2,       /* invalid command line or config */
    AP_EXIT_GATE_FAILED = 3, /* the validation gate rejected the model */
    AP_EXIT_DATA = 4,        /* invalid input data: manifest, images, split */
    AP_EXIT_IO = 5,          /* file system or network failure */
    AP_EXIT_INTERRUPTED = 6, /* stopped by SIGTERM or SIGINT after saving a checkpoint */
};

/* Options every stage shares: -c CONFIG and any number of --set KEY=VALUE. */
typedef struct {
    const char *config_path;
    const char *overrides[64];
    int override_count;
    bool resume;
    bool help;
} ap_cli_options;

/* Parse argv after the subcommand name. Returns false after printing a usage
 * error. allow_resume enables --resume. */
bool ap_cli_parse(int argc, char **argv, bool allow_resume, ap_cli_options *options);

/* Load the config file and apply the overrides; prints errors. */
bool ap_cli_load_config(const ap_cli_options *options, ap_config *cfg);

/* Exit code for a stage error, and print it. */
int ap_cli_report(const char *stage, const ap_error *err);

/* Install SIGTERM and SIGINT handlers that set the returned flag. */
const volatile sig_atomic_t *ap_cli_install_stop_handler(void);

int ap_cmd_train(int argc, char **argv);
int ap_cmd_config(int argc, char **argv);

#endif
