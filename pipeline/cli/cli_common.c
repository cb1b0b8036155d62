#include "pipeline/cli/cli.h"

#include <stdio.h>
#include <string.h>

#include "pipeline/common/log.h"

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
            options->config_path = argv[++i];
        } else if (strcmp(arg, "--set") == 0) {
            if (i + 1 >= argc || strchr(argv[i + 1], '=') == NULL) {
                fprintf(stderr, "apiary: --set needs KEY=VALUE, for example --set "
                                "train.epochs=3\n");
                return false;
            }
            if (options->override_count == (int)(sizeof(options->overrides) /
                                                 sizeof(options->overrides[0]))) {
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

bool ap_cli_load_config(const ap_cli_options *options, ap_config *cfg)
{
    ap_error err = {0};
    ap_status status = ap_config_load_file(options->config_path, cfg, &err);
    for (int i = 0; status == AP_OK && i < options->override_count; i++)
        status = ap_config_set(cfg, options->overrides[i], &err);
    if (status == AP_OK)
        status = ap_config_validate(cfg, &err);
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
