#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/cli/cli.h"
#include "pipeline/common/log.h"
#include "pipeline/registry/registry.h"

static void print_registry_help(void)
{
    puts("usage: apiary registry list -c CONFIG\n"
         "       apiary registry show VERSION -c CONFIG\n"
         "       apiary registry history -c CONFIG\n"
         "       apiary registry rollback -c CONFIG --reason TEXT [--to VERSION]\n"
         "                                [--alias NAME] [--force]\n"
         "\n"
         "Inspect the registry named by registry.uri and registry.model_name: list\n"
         "prints the versions and their aliases, history every alias move with its\n"
         "reason, and show the record of one version or alias as JSON. rollback\n"
         "points an alias (default champion) back: to the version it pointed at\n"
         "before, or to the version given with --to. Every move is recorded with its\n"
         "reason. champion moves only to a version whose validation report passed;\n"
         "--force moves it to any complete version and records the move as forced.");
}

static bool has_version(const ap_registry_version_info *versions, size_t count, int version)
{
    for (size_t i = 0; i < count; i++)
        if (versions[i].version == version)
            return true;
    return false;
}

/* Print each alias that points at a version the registry does not have,
 * which the table cannot show, and warn about it. */
static int print_dangling_aliases(ap_registry *registry, const char *model,
                                  const ap_registry_version_info *versions, size_t count)
{
    ap_registry_alias *aliases = NULL;
    size_t alias_count = 0;
    ap_error err = {0};
    if (ap_registry_list_aliases(registry, model, &aliases, &alias_count, &err) != AP_OK)
        return ap_cli_report_registry("registry list", &err);
    for (size_t i = 0; i < alias_count; i++) {
        if (has_version(versions, count, aliases[i].version))
            continue;
        printf("alias %s points at version %d, which does not exist\n", aliases[i].name,
               aliases[i].version);
        AP_WARN("alias %s points at version %d, which registry %s does not have; point it at an "
                "existing version with apiary registry rollback --alias %s --to VERSION "
                "--reason TEXT",
                aliases[i].name, aliases[i].version, registry->location, aliases[i].name);
    }
    free(aliases);
    return AP_EXIT_OK;
}

static int max_int(int a, int b)
{
    return a > b ? a : b;
}

/* Print the versions as a table whose columns fit their widest cell. */
static int list_versions(ap_registry *registry, const char *model)
{
    ap_registry_version_info *versions = NULL;
    size_t count = 0;
    ap_error err = {0};
    if (ap_registry_list(registry, model, &versions, &count, &err) != AP_OK)
        return ap_cli_report_registry("registry list", &err);
    int version_width = (int)strlen("version"), created_width = (int)strlen("created");
    int verdict_width = (int)strlen("verdict");
    for (size_t i = 0; i < count; i++) {
        char number[16];
        version_width =
            max_int(version_width, snprintf(number, sizeof(number), "%d", versions[i].version));
        created_width = max_int(created_width, (int)strlen(versions[i].created));
        verdict_width = max_int(verdict_width, (int)strlen(versions[i].verdict));
    }
    printf("%-*s  %-*s  %-*s  %s\n", version_width, "version", created_width, "created",
           verdict_width, "verdict", "aliases");
    for (size_t i = 0; i < count; i++) {
        char aliases[256] = "";
        for (size_t j = 0; j < versions[i].alias_count; j++) {
            size_t used = strlen(aliases);
            snprintf(aliases + used, sizeof(aliases) - used, "%s%s", j ? "," : "",
                     versions[i].aliases[j]);
        }
        printf("%-*d  %-*s  %-*s  %s%s\n", version_width, versions[i].version, created_width,
               versions[i].created, verdict_width, versions[i].verdict, aliases,
               versions[i].complete ? "" : " (incomplete)");
    }
    int code = print_dangling_aliases(registry, model, versions, count);
    ap_registry_free_versions(versions, count);
    return code;
}

/* The history columns before the reason, which comes last and unpadded.
 * The first five headers are the keys of a history entry. */
enum { HISTORY_COLUMNS = 6, HISTORY_CELL_SIZE = 64 };

static const char *const history_headers[HISTORY_COLUMNS] = {"time", "alias", "action",
                                                             "from", "to",    "forced"};

/* Fill the cells of one history entry. A missing value shows as "-". */
static void history_cells(const json_t *entry, char cells[HISTORY_COLUMNS][HISTORY_CELL_SIZE])
{
    for (int c = 0; c < HISTORY_COLUMNS - 1; c++) {
        const json_t *value = json_object_get(entry, history_headers[c]);
        if (json_is_string(value))
            snprintf(cells[c], HISTORY_CELL_SIZE, "%s", json_string_value(value));
        else if (json_is_integer(value))
            snprintf(cells[c], HISTORY_CELL_SIZE, "%" JSON_INTEGER_FORMAT,
                     json_integer_value(value));
        else
            snprintf(cells[c], HISTORY_CELL_SIZE, "-");
    }
    snprintf(cells[HISTORY_COLUMNS - 1], HISTORY_CELL_SIZE, "%s",
             json_is_true(json_object_get(entry, "forced")) ? "yes" : "no");
}

/* Print text on one line, with control characters as spaces. */
static void print_one_line(const char *text)
{
    for (const char *p = text; *p != '\0'; p++)
        putchar((unsigned char)*p < 0x20 || *p == 0x7f ? ' ' : *p);
    putchar('\n');
}

/* Print the alias moves, oldest first, as a table like registry list. */
static int show_history(ap_registry *registry, const char *model)
{
    ap_error err = {0};
    json_t *history = NULL;
    if (ap_registry_history(registry, model, &history, &err) != AP_OK)
        return ap_cli_report_registry("registry history", &err);
    int widths[HISTORY_COLUMNS];
    for (int c = 0; c < HISTORY_COLUMNS; c++)
        widths[c] = (int)strlen(history_headers[c]);
    char cells[HISTORY_COLUMNS][HISTORY_CELL_SIZE];
    size_t index;
    const json_t *entry;
    json_array_foreach(history, index, entry)
    {
        history_cells(entry, cells);
        for (int c = 0; c < HISTORY_COLUMNS; c++)
            widths[c] = max_int(widths[c], (int)strlen(cells[c]));
    }
    for (int c = 0; c < HISTORY_COLUMNS; c++)
        printf("%-*s  ", widths[c], history_headers[c]);
    printf("reason\n");
    json_array_foreach(history, index, entry)
    {
        history_cells(entry, cells);
        for (int c = 0; c < HISTORY_COLUMNS; c++)
            printf("%-*s  ", widths[c], cells[c]);
        const char *reason = json_string_value(json_object_get(entry, "reason"));
        print_one_line(reason != NULL ? reason : "-");
    }
    json_decref(history);
    return AP_EXIT_OK;
}

static int print_json(json_t *value)
{
    char *text = json_dumps(value, JSON_INDENT(2));
    json_decref(value);
    if (text == NULL)
        return AP_EXIT_FAILURE;
    puts(text);
    free(text);
    return AP_EXIT_OK;
}

/* Resolve a reference given on the command line. When it names nothing,
 * append the versions and aliases that exist to the message. */
static ap_status resolve_reference(ap_registry *registry, const char *model, const char *reference,
                                   int *version, ap_error *err)
{
    ap_status status = ap_registry_resolve(registry, model, reference, version, err);
    if (status == AP_ERR_NOT_FOUND || status == AP_ERR_INVALID)
        ap_registry_append_contents(registry, model, err);
    return status;
}

static int show_version(ap_registry *registry, const char *model, const char *reference)
{
    ap_error err = {0};
    int version = 0;
    json_t *info = NULL;
    if (resolve_reference(registry, model, reference, &version, &err) != AP_OK ||
        ap_registry_show(registry, model, version, &info, &err) != AP_OK)
        return ap_cli_report_registry("registry show", &err);
    return print_json(info);
}

static int roll_back(ap_registry *registry, const char *model, const ap_cli_options *options)
{
    ap_error err = {0};
    const char *alias = options->alias ? options->alias : AP_REGISTRY_CHAMPION;
    int target = 0, version = 0;
    if (options->target != NULL &&
        resolve_reference(registry, model, options->target, &target, &err) != AP_OK)
        return ap_cli_report_registry("registry rollback", &err);
    ap_registry_move move = {.reason = options->reason, .forced = options->force};
    if (ap_registry_rollback(registry, model, alias, target, &move, &version, &err) != AP_OK)
        return ap_cli_report_registry("registry rollback", &err);
    AP_INFO("%s now points at version %d%s", alias, version, options->force ? " (forced)" : "");
    printf("%d\n", version);
    return AP_EXIT_OK;
}

int ap_cmd_registry(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0) {
        print_registry_help();
        return argc < 1 ? AP_EXIT_USAGE : AP_EXIT_OK;
    }
    const char *action = argv[0];
    const char *reference = NULL;
    int rest = 1;
    if (strcmp(action, "show") == 0) {
        if (argc < 2 || argv[1][0] == '-') {
            fprintf(stderr, "apiary: registry show needs a VERSION or alias\n");
            return AP_EXIT_USAGE;
        }
        reference = argv[1];
        rest = 2;
    } else if (strcmp(action, "list") != 0 && strcmp(action, "history") != 0 &&
               strcmp(action, "rollback") != 0) {
        fprintf(stderr, "apiary: unknown registry action %s (list, show, history, rollback)\n",
                action);
        return AP_EXIT_USAGE;
    }
    unsigned allowed =
        strcmp(action, "rollback") == 0 ? AP_CLI_TARGET | AP_CLI_ALIAS | AP_CLI_FORCE : 0;
    ap_cli_options options;
    if (!ap_cli_parse(argc - rest, argv + rest, allowed, &options))
        return AP_EXIT_USAGE;
    if (options.help) {
        print_registry_help();
        return AP_EXIT_OK;
    }
    if (strcmp(action, "rollback") == 0 && options.reason == NULL) {
        fprintf(stderr, "apiary: registry rollback needs --reason TEXT for the record\n");
        return AP_EXIT_USAGE;
    }
    static ap_config cfg;
    if (!ap_cli_load_config(&options, &cfg))
        return AP_EXIT_USAGE;

    ap_registry *registry = NULL;
    ap_error err = {0};
    if (ap_registry_open_existing(cfg.registry.uri, &registry, &err) != AP_OK)
        return ap_cli_report_registry("registry", &err);
    const char *model = cfg.registry.model_name;
    int code;
    if (strcmp(action, "list") == 0)
        code = list_versions(registry, model);
    else if (strcmp(action, "show") == 0)
        code = show_version(registry, model, reference);
    else if (strcmp(action, "history") == 0)
        code = show_history(registry, model);
    else
        code = roll_back(registry, model, &options);
    ap_registry_close(registry);
    return code;
}
