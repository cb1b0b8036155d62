#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pipeline/cli/cli.h"
#include "pipeline/common/log.h"
#include "pipeline/common/uri.h"
#include "pipeline/store/dataset_fetch.h"
#include "pipeline/store/store.h"

static void print_dataset_help(void)
{
    puts("usage: apiary dataset fetch NAME|URL --to DIR [--sha256 HEX] [--size BYTES]\n"
         "                            [-c CONFIG] [--set KEY=VALUE]...\n"
         "       apiary dataset push DIR URI [-c CONFIG] [--set KEY=VALUE]...\n"
         "\n"
         "fetch downloads a dataset archive over HTTPS, resuming an interrupted\n"
         "download, checks its size and SHA-256, and unpacks it (zip or tar) into\n"
         "DIR. NAME is a built-in dataset; a URL needs --sha256 (and --size when\n"
         "known). A BeeDataset archive gets a labels.csv in each images_* folder,\n"
         "so that folder can be data.root. A failed fetch leaves DIR as it was,\n"
         "except for a download that the next run resumes or reuses. Built-in\n"
         "datasets:");
    const ap_dataset_entry *entry = ap_dataset_find("beedataset");
    printf("  %-12s %s\n", entry->name, entry->description);
    puts("\n"
         "push uploads every file below DIR to URI (s3://BUCKET/PREFIX or a folder),\n"
         "skipping files whose copy there is identical.\n"
         "\n"
         "The store.* config keys (endpoint, region, path_style, ca_bundle,\n"
         "concurrency, retries, timeout) apply; without -c their defaults and the\n"
         "AWS_* environment variables do.");
}

typedef struct {
    const char *positional[3]; /* the action, then its arguments */
    int positional_count;
    const char *to;
    const char *sha256;
    const char *size;
    ap_cli_options common;
} dataset_options;

static bool take(int argc, char **argv, int *i, const char **value)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "apiary: %s needs a value (see apiary dataset --help)\n", argv[*i]);
        return false;
    }
    *value = argv[++*i];
    return true;
}

static bool parse_options(int argc, char **argv, dataset_options *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        bool ok = true;
        if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)
            o->common.help = true;
        else if (strcmp(arg, "-c") == 0 || strcmp(arg, "--config") == 0)
            ok = take(argc, argv, &i, &o->common.config_path);
        else if (strcmp(arg, "--set") == 0 && o->common.override_count < 64)
            ok = take(argc, argv, &i, &o->common.overrides[o->common.override_count++]);
        else if (strcmp(arg, "--to") == 0)
            ok = take(argc, argv, &i, &o->to);
        else if (strcmp(arg, "--sha256") == 0)
            ok = take(argc, argv, &i, &o->sha256);
        else if (strcmp(arg, "--size") == 0)
            ok = take(argc, argv, &i, &o->size);
        else if (arg[0] != '-' && o->positional_count < 3)
            o->positional[o->positional_count++] = arg;
        else {
            fprintf(stderr, "apiary: unexpected argument %s (see apiary dataset --help)\n", arg);
            return false;
        }
        if (!ok)
            return false;
    }
    return true;
}

/* Reject a password inside any URI argument before it can reach a request,
 * a log line or an error message. */
static bool check_uri_passwords(const dataset_options *o)
{
    const char *arguments[4];
    int count = 0;
    for (int i = 1; i < o->positional_count; i++)
        arguments[count++] = o->positional[i];
    if (o->to != NULL)
        arguments[count++] = o->to;
    for (int i = 0; i < count; i++) {
        if (!ap_uri_has_password(arguments[i]))
            continue;
        char shown[AP_PATH_MAX];
        ap_uri_redact(arguments[i], shown, sizeof(shown));
        fprintf(stderr,
                "apiary: %s: " AP_URI_PASSWORD_MESSAGE "; remove it and set AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY for S3 (a dataset download sends no credentials), "
                "so that the password stays out of logs\n",
                shown);
        return false;
    }
    return true;
}

/* The config of -c with the overrides, or the defaults with the overrides. */
static bool load_store_config(const ap_cli_options *options, ap_config *cfg)
{
    if (options->config_path != NULL)
        return ap_cli_load_config(options, cfg);
    ap_config_defaults(cfg);
    for (int i = 0; i < options->override_count; i++) {
        ap_error err = {0};
        if (ap_config_set(cfg, options->overrides[i], &err) != AP_OK) {
            fprintf(stderr, "apiary: invalid --set %s: %s\n", options->overrides[i], err.message);
            return false;
        }
    }
    return true;
}

static bool parse_size(const char *text, int64_t *size)
{
    if (text == NULL) {
        *size = -1;
        return true;
    }
    char *end = NULL;
    errno = 0;
    long long value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < 0) {
        fprintf(stderr, "apiary: --size %s is not a byte count\n", text);
        return false;
    }
    *size = value;
    return true;
}

static int fetch(const dataset_options *o, const ap_config *cfg)
{
    if (o->positional_count != 2 || o->to == NULL) {
        fprintf(stderr, "apiary: dataset fetch needs NAME or URL and --to DIR\n");
        return AP_EXIT_USAGE;
    }
    const char *source = o->positional[1];
    ap_dataset_fetch_request request = {
        .url = source,
        .sha256 = o->sha256,
        .dir = o->to,
        .ca_bundle = cfg->store.ca_bundle,
        .retries = cfg->store.retries,
        .stall_timeout_s = cfg->store.timeout,
    };
    if (!parse_size(o->size, &request.size))
        return AP_EXIT_USAGE;
    if (strstr(source, "://") == NULL) {
        const ap_dataset_entry *entry = ap_dataset_find(source);
        if (entry == NULL) {
            fprintf(stderr,
                    "apiary: unknown dataset %s; give a URL or a built-in name (see "
                    "apiary dataset --help)\n",
                    source);
            return AP_EXIT_USAGE;
        }
        /* A built-in dataset has its own checksum and size; other values
         * given with its name would be ignored, so they are rejected. */
        if ((o->sha256 != NULL && strcasecmp(o->sha256, entry->sha256) != 0) ||
            (o->size != NULL && request.size != entry->size)) {
            fprintf(stderr,
                    "apiary: dataset fetch: --sha256 and --size apply to a URL; the built-in "
                    "dataset %s has sha256 %s and %lld bytes, so leave them out\n",
                    source, entry->sha256, (long long)entry->size);
            return AP_EXIT_USAGE;
        }
        request.url = entry->url;
        request.sha256 = entry->sha256;
        request.size = entry->size;
    }
    ap_error err = {0};
    if (ap_dataset_check_request(&request, &err) != AP_OK) {
        fprintf(stderr, "apiary: dataset fetch: %s\n", err.message);
        return AP_EXIT_USAGE;
    }
    ap_dataset_fetch_result result;
    if (ap_dataset_fetch(&request, &result, &err) != AP_OK)
        return ap_cli_report("dataset fetch", &err);
    char url[AP_PATH_MAX];
    ap_uri_redact(request.url, url, sizeof(url));
    if (result.already_done)
        printf("%s is already unpacked in %s\n", url, request.dir);
    else
        printf("fetched %s: %lld bytes downloaded%s, %ld files unpacked, %d manifests written\n",
               url, (long long)result.downloaded, result.resumed_at > 0 ? " (resumed)" : "",
               result.files, result.manifests);
    printf("data.root: %s\n", result.data_root);
    return AP_EXIT_OK;
}

static int push(const dataset_options *o, const ap_config *cfg)
{
    if (o->positional_count != 3 || o->to != NULL || o->sha256 != NULL || o->size != NULL) {
        fprintf(stderr, "apiary: dataset push needs DIR and URI only\n");
        return AP_EXIT_USAGE;
    }
    static const char *const skip[] = {".download", ".apiary-dataset.json", NULL};
    ap_store_sync_stats stats;
    ap_error err = {0};
    if (ap_store_sync_up(o->positional[1], o->positional[2], cfg, skip, &stats, &err) != AP_OK)
        return ap_cli_report("dataset push", &err);
    printf("pushed %s to %s: %zu files, %zu sent (%lld bytes), %zu unchanged; %ld requests\n",
           o->positional[1], o->positional[2], stats.objects, stats.transferred,
           (long long)stats.bytes, stats.reused, stats.requests.requests);
    return AP_EXIT_OK;
}

int ap_cmd_dataset(int argc, char **argv)
{
    dataset_options options;
    if (!parse_options(argc, argv, &options))
        return AP_EXIT_USAGE;
    if (options.common.help || options.positional_count == 0) {
        print_dataset_help();
        return options.common.help ? AP_EXIT_OK : AP_EXIT_USAGE;
    }
    if (!check_uri_passwords(&options))
        return AP_EXIT_USAGE;
    static ap_config cfg;
    if (!load_store_config(&options.common, &cfg))
        return AP_EXIT_USAGE;
    if (strcmp(options.positional[0], "fetch") == 0)
        return fetch(&options, &cfg);
    if (strcmp(options.positional[0], "push") == 0)
        return push(&options, &cfg);
    fprintf(stderr, "apiary: unknown dataset action %s; use fetch or push\n",
            options.positional[0]);
    return AP_EXIT_USAGE;
}
