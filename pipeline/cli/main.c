#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/cli/cli.h"
#include "pipeline/cli/cmd_report.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} subcommand;

static const subcommand subcommands[] = {
    {"run", ap_cmd_run, "the main job: train, validate and promote"},
    {"train", ap_cmd_train, "train a model on a dataset (CPU or GPU)"},
    {"config", ap_cmd_config, "list config keys or print a resolved config"},
    {"validate", ap_cmd_validate, "check a trained model against the gate before promotion"},
    {"promote", ap_cmd_promote, "register a validated model and make it champion"},
    {"registry", ap_cmd_registry, "list, show and roll back registered models"},
    {"score", ap_cmd_score, "score a folder of images with a registered model"},
    {"serve", ap_cmd_serve, "serve the registered model over HTTP (KServe v2 and /v1/predict)"},
    {"report", ap_cmd_report, "render a validation report as Markdown or HTML"},
    {"dataset", ap_cmd_dataset, "fetch a dataset archive, or push a dataset to a blob store"},
};

#define SUBCOMMAND_COUNT (sizeof(subcommands) / sizeof(subcommands[0]))

static void print_usage(FILE *out)
{
    fprintf(out, "usage: apiary COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < SUBCOMMAND_COUNT; i++)
        fprintf(out, "  %-8s %s\n", subcommands[i].name, subcommands[i].summary);
    fprintf(out, "\nRun apiary COMMAND --help for the options of a command.\n"
                 "\nexit codes:\n"
                 "  0  success\n"
                 "  1  runtime failure (compute backend, memory)\n"
                 "  2  invalid command line or config\n"
                 "  3  the validation gate rejected the model\n"
                 "  4  invalid input data (manifest, images, split)\n"
                 "  5  file system or network failure\n"
                 "  6  stopped by SIGTERM or SIGINT after saving a checkpoint\n");
}

/* score and serve run OpenMP regions from two threads at once (decoding
 * beside inference). libgomp's default of spinning idle threads then steals
 * the cores the other region needs: on 2 cores scoring ran 2.5 times slower
 * (tests/bench/bench_score.sh). libgomp reads OMP_WAIT_POLICY only when it
 * loads, so the process sets it and starts itself again, once. */
static void use_passive_openmp_wait(char **argv)
{
    if (getenv("OMP_WAIT_POLICY") != NULL)
        return;
    if (setenv("OMP_WAIT_POLICY", "passive", 1) != 0)
        return;
    execv("/proc/self/exe", argv);
    /* Without /proc the command still runs, only slower. */
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "score") == 0 || strcmp(argv[1], "serve") == 0))
        use_passive_openmp_wait(argv);
    if (argc < 2) {
        print_usage(stderr);
        return AP_EXIT_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        print_usage(stdout);
        return AP_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("apiary %s (%s)\n", APIARY_VERSION, APIARY_GIT_COMMIT);
        return AP_EXIT_OK;
    }
    for (size_t i = 0; i < SUBCOMMAND_COUNT; i++)
        if (strcmp(argv[1], subcommands[i].name) == 0)
            return subcommands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "apiary: unknown command %s\n\n", argv[1]);
    print_usage(stderr);
    return AP_EXIT_USAGE;
}
