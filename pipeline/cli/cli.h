#ifndef APIARY_CLI_CLI_H
#define APIARY_CLI_CLI_H

#include <signal.h>
#include <stdbool.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"
#include "pipeline/promote/promote.h"
#include "pipeline/store/store.h"

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

/* Options every stage shares: -c CONFIG and any number of --set KEY=VALUE,
 * and those a stage enables with the AP_CLI_* flags. */
typedef struct {
    const char *config_path;
    const char *overrides[64];
    int override_count;
    bool resume;
    bool force;
    const char *reason;
    const char *alias;
    const char *target; /* --to VERSION */
    bool help;
} ap_cli_options;

enum {
    AP_CLI_RESUME = 1 << 0, /* --resume */
    AP_CLI_FORCE = 1 << 1,  /* --force and --reason TEXT */
    AP_CLI_ALIAS = 1 << 2,  /* --alias NAME */
    AP_CLI_TARGET = 1 << 3, /* --to VERSION, and --reason TEXT */
};

/* Parse argv after the subcommand name. Returns false after printing a usage
 * error. allowed is a set of AP_CLI_* flags; 0 allows only the shared options. */
bool ap_cli_parse(int argc, char **argv, unsigned allowed, ap_cli_options *options);

/* Write into out the command "apiary STAGE -c CONFIG [--set KEY=VALUE]...
 * [SUFFIX]" with the config and overrides of options, quoted for a POSIX
 * shell, so that a hint in a message reaches the same run. Under an MPI
 * launcher of N processes the command starts with "mpirun -np N". suffix
 * may be NULL. When the command does not fit, out names the options
 * instead. Returns out. */
const char *ap_cli_command_text(const char *stage, const ap_cli_options *options,
                                const char *suffix, char *out, size_t out_size);

/* Load the config file and apply the overrides; prints errors. */
bool ap_cli_load_config(const ap_cli_options *options, ap_config *cfg);

/* Parse gate.rules so that a bad rule fails before any work. Prints errors. */
bool ap_cli_check_gate_rules(const ap_config *cfg);

/* Exit code for a stage error, and print it. */
int ap_cli_report(const char *stage, const ap_error *err);

/* Exit code for an error of a registry command, and print it. A model,
 * version or alias that the registry does not have (AP_ERR_NOT_FOUND) is a
 * usage error, because the command line or config named it. So is an
 * invalid name, reference or alias move (AP_ERR_INVALID). Other codes map
 * as in ap_cli_report. */
int ap_cli_report_registry(const char *stage, const ap_error *err);

/* Install SIGTERM and SIGINT handlers that set the returned flag. */
const volatile sig_atomic_t *ap_cli_install_stop_handler(void);

/* Prepare a stage's blob store: stage an s3:// output_dir in a local folder
 * (fetching the run folder that earlier runs left in S3) and, when
 * with_data, replace an s3:// data.root with its synced local copy. Prints
 * errors; returns the exit code. */
int ap_cli_store_begin(ap_config *cfg, bool with_data, ap_store_outputs *outputs);

/* Check, in the process that owns the run folder, that training it is what
 * the command means: a finished run must have the same model settings, and
 * a started one needs resume. Prints the error; returns AP_EXIT_USAGE or
 * AP_EXIT_OK. */
int ap_cli_check_run_folder(const ap_config *cfg, bool resume);

/* Upload the run folder when output_dir is in S3. Logs a failure; returns
 * AP_EXIT_OK or AP_EXIT_IO. */
int ap_cli_store_upload(const ap_store_outputs *outputs, const ap_config *cfg);

/* Log what a promotion did; returns the exit code (3 when blocked by the gate). */
int ap_cli_report_promotion(const ap_promote_outcome *outcome, const char *alias);

int ap_cmd_train(int argc, char **argv);
int ap_cmd_config(int argc, char **argv);
int ap_cmd_validate(int argc, char **argv);
int ap_cmd_promote(int argc, char **argv);
int ap_cmd_registry(int argc, char **argv);
int ap_cmd_run(int argc, char **argv);
int ap_cmd_dataset(int argc, char **argv);
int ap_cmd_score(int argc, char **argv);
int ap_cmd_serve(int argc, char **argv);

#endif
