#include "pipeline/cli/cmd_report.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/cli/cli.h"
#include "pipeline/common/fsutil.h"
#include "pipeline/validate/report_render.h"

/* The path that names standard output. */
#define STDOUT_PATH "-"

typedef struct {
    const char *input;
    const char *html;
    const char *markdown;
    bool help;
} report_options;

static void print_report_help(FILE *out)
{
    fputs("usage: apiary report render --input REPORT.json [--html FILE] [--markdown FILE]\n"
          "\n"
          "Render the validation report that apiary validate writes.\n"
          "\n"
          "  --input FILE     the report.json to read\n"
          "  --html FILE      write one self-contained HTML page with inline CSS and SVG charts\n"
          "  --markdown FILE  write Markdown for a pull request or a CI log\n"
          "\n"
          "A FILE of - is standard output. Without --html and --markdown, the Markdown goes\n"
          "to standard output. Files are replaced atomically.\n",
          out);
}

static bool parse_options(int argc, char **argv, report_options *options)
{
    memset(options, 0, sizeof(*options));
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const char **target = NULL;
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0) {
            options->help = true;
            continue;
        }
        if (strcmp(arg, "--input") == 0)
            target = &options->input;
        else if (strcmp(arg, "--html") == 0)
            target = &options->html;
        else if (strcmp(arg, "--markdown") == 0)
            target = &options->markdown;
        if (target == NULL) {
            fprintf(stderr, "apiary: unknown option %s for report render (see --help)\n", arg);
            return false;
        }
        if (i + 1 >= argc || argv[i + 1][0] == '\0') {
            fprintf(stderr, "apiary: %s needs a file path\n", arg);
            return false;
        }
        *target = argv[++i];
    }
    if (!options->help && options->input == NULL) {
        fprintf(stderr, "apiary: missing --input REPORT.json (see --help)\n");
        return false;
    }
    return true;
}

static ap_status load_report(const char *path, json_t **report, ap_error *err)
{
    json_error_t error;
    *report = json_load_file(path, JSON_REJECT_DUPLICATES, &error);
    if (*report != NULL)
        return AP_OK;
    if (json_error_code(&error) == json_error_cannot_open_file)
        return ap_error_set(err, errno == ENOENT ? AP_ERR_NOT_FOUND : AP_ERR_IO,
                            "cannot read the validation report (%s); check the --input path",
                            error.text);
    return ap_error_set(err, AP_ERR_FORMAT,
                        "validation report %s is not valid JSON: %s at line %d, column %d", path,
                        error.text, error.line, error.column);
}

static ap_status write_output(const char *path, const char *text, ap_error *err)
{
    if (strcmp(path, STDOUT_PATH) != 0)
        return ap_write_atomic(path, text, strlen(text), err);
    if (fputs(text, stdout) == EOF || fflush(stdout) != 0)
        return ap_error_set(err, AP_ERR_IO,
                            "writing the rendered report to standard output "
                            "failed");
    return AP_OK;
}

typedef ap_status (*report_renderer)(const json_t *report, char **out, ap_error *err);

static ap_status render_to(const char *input, const json_t *report, report_renderer renderer,
                           const char *output, ap_error *err)
{
    char *text = NULL;
    ap_status status = renderer(report, &text, err);
    if (status != AP_OK) {
        ap_error_prefix(err, "%s", input);
        return status;
    }
    status = write_output(output, text, err);
    free(text);
    return status;
}

static ap_status render(const report_options *options, ap_error *err)
{
    json_t *report = NULL;
    ap_status status = load_report(options->input, &report, err);
    const char *markdown_path = options->markdown;
    if (options->html == NULL && markdown_path == NULL)
        markdown_path = STDOUT_PATH;

    if (status == AP_OK && options->html != NULL)
        status = render_to(options->input, report, ap_report_render_html, options->html, err);
    if (status == AP_OK && markdown_path != NULL)
        status = render_to(options->input, report, ap_report_render_markdown, markdown_path, err);
    json_decref(report);
    return status;
}

int ap_cmd_report(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "-h") == 0 || strcmp(argv[0], "--help") == 0) {
        print_report_help(argc < 1 ? stderr : stdout);
        return argc < 1 ? AP_EXIT_USAGE : AP_EXIT_OK;
    }
    if (strcmp(argv[0], "render") != 0) {
        fprintf(stderr, "apiary: unknown report action %s (expected render)\n", argv[0]);
        return AP_EXIT_USAGE;
    }
    report_options options;
    if (!parse_options(argc - 1, argv + 1, &options))
        return AP_EXIT_USAGE;
    if (options.help) {
        print_report_help(stdout);
        return AP_EXIT_OK;
    }
    ap_error err = {0};
    if (render(&options, &err) != AP_OK)
        return ap_cli_report("report render", &err);
    return AP_EXIT_OK;
}
