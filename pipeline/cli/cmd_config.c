#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/cli/cli.h"

static void print_config_help(void)
{
    puts("usage: apiary config keys\n"
         "       apiary config show -c CONFIG [--set KEY=VALUE]...\n"
         "\n"
         "keys  list every config key with its type, default, range and meaning\n"
         "show  print the config after defaults, ${VAR} expansion and overrides");
}

int ap_cmd_config(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0) {
        print_config_help();
        return argc < 1 ? AP_EXIT_USAGE : AP_EXIT_OK;
    }
    if (strcmp(argv[0], "keys") == 0) {
        ap_config_print_keys(stdout);
        return AP_EXIT_OK;
    }
    if (strcmp(argv[0], "show") != 0) {
        fprintf(stderr, "apiary: unknown config action %s (expected keys or show)\n", argv[0]);
        return AP_EXIT_USAGE;
    }
    ap_cli_options options;
    if (!ap_cli_parse(argc - 1, argv + 1, 0, &options))
        return AP_EXIT_USAGE;
    if (options.help) {
        print_config_help();
        return AP_EXIT_OK;
    }
    static ap_config cfg;
    if (!ap_cli_load_config(&options, &cfg))
        return AP_EXIT_USAGE;
    char *yaml = ap_config_to_yaml(&cfg);
    if (yaml == NULL)
        return AP_EXIT_FAILURE;
    fputs(yaml, stdout);
    free(yaml);
    return AP_EXIT_OK;
}
