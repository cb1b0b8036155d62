#include "pipeline/cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/common/log.h"
#include "pipeline/parallel/comm.h"
#include "pipeline/train/run_settings.h"
#include "pipeline/train/trainer.h"
#include "pipeline/validate/gate.h"

static volatile sig_atomic_t stop_flag;

static void on_stop_signal(int signal_number)
{
    (void)signal_number;
    stop_flag = 1;
}

const volatile sig_atomic_t *ap_cli_install_stop_handler(void)
{
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    return &stop_flag;
}

/* Store the value after option argv[*index], or print an error when there is none. */
static bool take_value(int argc, char **argv, int *index, const char **value)
{
    if (*index + 1 >= argc || argv[*index + 1][0] == '\0') {
        fprintf(stderr, "apiary: %s needs a value (see --help)\n", argv[*index]);
        return false;
    }
    *index += 1;
    *value = argv[*index];
    return true;
}

bool ap_cli_parse(int argc, char **argv, unsigned allowed, ap_cli_options *options)
{
    memset(options, 0, sizeof(*options));
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            options->help = true;
        } else if (strcmp(arg, "-c") == 0 || strcmp(arg, "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "apiary: %s needs a config file path\n", arg);
                return false;
            }
            if (options->config_path != NULL) {
                fprintf(stderr,
                        "apiary: -c given twice (%s and %s); give one config file and change "
                        "single keys with --set KEY=VALUE\n",
                        options->config_path, argv[i + 1]);
                return false;
            }
            options->config_path = argv[++i];
        } else if (strcmp(arg, "--set") == 0) {
            if (i + 1 >= argc || strchr(argv[i + 1], '=') == NULL) {
                fprintf(stderr, "apiary: --set needs KEY=VALUE, for example --set "
                                "train.epochs=3\n");
                return false;
            }
            if (options->override_count ==
                (int)(sizeof(options->overrides) / sizeof(options->overrides[0]))) {
                fprintf(stderr, "apiary: too many --set options (at most 64)\n");
                return false;
            }
            options->overrides[options->override_count++] = argv[++i];
        } else if ((allowed & AP_CLI_RESUME) && strcmp(arg, "--resume") == 0) {
            options->resume = true;
        } else if ((allowed & AP_CLI_FORCE) && strcmp(arg, "--force") == 0) {
            options->force = true;
        } else if ((allowed & (AP_CLI_FORCE | AP_CLI_TARGET)) && strcmp(arg, "--reason") == 0) {
            if (!take_value(argc, argv, &i, &options->reason))
                return false;
        } else if ((allowed & AP_CLI_ALIAS) && strcmp(arg, "--alias") == 0) {
            if (!take_value(argc, argv, &i, &options->alias))
                return false;
        } else if ((allowed & AP_CLI_TARGET) && strcmp(arg, "--to") == 0) {
            if (!take_value(argc, argv, &i, &options->target))
                return false;
        } else {
            fprintf(stderr, "apiary: unknown option %s (see --help)\n", arg);
            return false;
        }
    }
    if (!options->help && options->config_path == NULL) {
        fprintf(stderr, "apiary: missing -c CONFIG (see --help)\n");
        return false;
    }
    return true;
}

/* Append piece to the text of *used bytes. Returns false when it does not fit. */
static bool append_text(char *text, size_t size, size_t *used, const char *piece)
{
    size_t length = strlen(piece);
    if (*used + length >= size)
        return false;
    memcpy(text + *used, piece, length + 1);
    *used += length;
    return true;
}

/* Append a space and argument, in single quotes unless every character of
 * it is one that a POSIX shell takes literally. */
static bool append_argument(char *text, size_t size, size_t *used, const char *argument)
{
    static const char literal[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789@%+=:,./_-";
    bool quote = argument[0] == '\0' || strspn(argument, literal) != strlen(argument);
    bool fits = append_text(text, size, used, quote ? " '" : " ");
    for (const char *c = argument; fits && *c != '\0'; c++) {
        char piece[2] = {*c, '\0'};
        /* A quote inside single quotes is written as '\'' (close, escaped quote, reopen). */
        fits = append_text(text, size, used, *c == '\'' ? "'\\''" : piece);
    }
    if (fits && quote)
        fits = append_text(text, size, used, "'");
    return fits;
}

const char *ap_cli_command_text(const char *stage, const ap_cli_options *options,
                                const char *suffix, char *out, size_t out_size)
{
    size_t used = 0;
    out[0] = '\0';
    /* Under mpirun, the same command must run with the same process count. */
    char launcher[48] = "";
    int processes = ap_comm_launcher_size();
    if (processes > 1)
        snprintf(launcher, sizeof(launcher), "mpirun -np %d ", processes);
    bool fits = append_text(out, out_size, &used, launcher) &&
                append_text(out, out_size, &used, "apiary") &&
                append_argument(out, out_size, &used, stage) &&
                append_argument(out, out_size, &used, "-c") &&
                append_argument(out, out_size, &used, options->config_path);
    for (int i = 0; fits && i < options->override_count; i++)
        fits = append_argument(out, out_size, &used, "--set") &&
               append_argument(out, out_size, &used, options->overrides[i]);
    if (fits && suffix != NULL)
        fits = append_argument(out, out_size, &used, suffix);
    if (!fits)
        snprintf(out, out_size, "%sapiary %s -c %s with the same --set options%s%s", launcher,
                 stage, options->config_path, suffix != NULL ? " and " : "",
                 suffix != NULL ? suffix : "");
    return out;
}

bool ap_cli_load_config(const ap_cli_options *options, ap_config *cfg)
{
    ap_error err = {0};
    ap_status status = ap_config_load_file(options->config_path, cfg, &err);
    for (int i = 0; status == AP_OK && i < options->override_count; i++)
        status = ap_config_set(cfg, options->overrides[i], &err);
    if (status == AP_OK)
        status = ap_config_validate(cfg, &err);
    /* NOTE: an S3 registry would need a lock or conditional writes so that
     * two runs cannot promote at once, so every stage rejects it up front. */
    if (status == AP_OK && ap_store_is_s3(cfg->registry.uri))
        status = ap_error_set(&err, AP_ERR_INVALID,
                              "registry.uri %.300s: a registry in S3 is not supported; set "
                              "registry.uri to a folder or to the URL of an MLflow tracking "
                              "server",
                              cfg->registry.uri);
    if (status != AP_OK) {
        fprintf(stderr, "apiary: invalid config: %s\n", err.message);
        return false;
    }
    int level = ap_log_level_parse(cfg->log_level);
    if (level >= 0)
        ap_log_threshold = (ap_log_level)level;
    return true;
}

int ap_cli_report(const char *stage, const ap_error *err)
{
    if (err->code == AP_ERR_INTERRUPTED)
        AP_WARN("%s stopped: %s", stage, err->message);
    else
        AP_ERROR("%s failed: %s", stage, err->message);
    switch (err->code) {
    case AP_OK:
        return AP_EXIT_OK;
    case AP_ERR_INVALID:
    case AP_ERR_FORMAT:
    case AP_ERR_NOT_FOUND:
    case AP_ERR_LIMIT:
        return AP_EXIT_DATA;
    case AP_ERR_IO:
        return AP_EXIT_IO;
    case AP_ERR_INTERRUPTED:
        return AP_EXIT_INTERRUPTED;
    case AP_ERR_NOMEM:
    case AP_ERR_BACKEND:
        return AP_EXIT_FAILURE;
    }
    return AP_EXIT_FAILURE;
}

int ap_cli_report_registry(const char *stage, const ap_error *err)
{
    if (err->code != AP_ERR_NOT_FOUND && err->code != AP_ERR_INVALID)
        return ap_cli_report(stage, err);
    AP_ERROR("%s failed: %s", stage, err->message);
    return AP_EXIT_USAGE;
}

int ap_cli_store_begin(ap_config *cfg, bool with_data, ap_store_outputs *outputs)
{
    ap_error err = {0};
    if (ap_store_outputs_begin(cfg, outputs, &err) != AP_OK)
        return ap_cli_report("store", &err);
    if (!with_data)
        return AP_EXIT_OK;
    char data_root[AP_PATH_MAX];
    if (ap_store_materialize(cfg->data.root, cfg, data_root, &err) != AP_OK)
        return ap_cli_report("store", &err);
    memcpy(cfg->data.root, data_root, sizeof(cfg->data.root));
    return AP_EXIT_OK;
}

int ap_cli_store_upload(const ap_store_outputs *outputs, const ap_config *cfg)
{
    ap_error err = {0};
    if (ap_store_outputs_upload(outputs, cfg, &err) == AP_OK)
        return AP_EXIT_OK;
    AP_ERROR("upload of the run folder to %s failed: %s", outputs->uri, err.message);
    return AP_EXIT_IO;
}

int ap_cli_check_run_folder(const ap_config *cfg, bool resume)
{
    if (ap_comm_launcher_rank() != 0)
        return AP_EXIT_OK;
    char run_dir[AP_PATH_MAX];
    bool complete, has_checkpoint;
    ap_error err = {0};
    if (ap_run_dir(cfg, run_dir, sizeof(run_dir), &err) != AP_OK ||
        ap_run_check_state(cfg, run_dir, resume, ap_comm_launcher_size(), &complete,
                           &has_checkpoint, &err) != AP_OK) {
        AP_ERROR("train failed: %s", err.message);
        return AP_EXIT_USAGE;
    }
    return AP_EXIT_OK;
}

bool ap_cli_check_gate_rules(const ap_config *cfg)
{
    static ap_gate_rule rules[AP_GATE_MAX_RULES];
    int rule_count = 0;
    ap_error err = {0};
    if (ap_gate_rules_parse(cfg, rules, &rule_count, &err) == AP_OK)
        return true;
    fprintf(stderr, "apiary: invalid config: %s\n", err.message);
    return false;
}
