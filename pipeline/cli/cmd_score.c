#include <stdio.h>
#include <string.h>

#include "pipeline/cli/cli.h"
#include "pipeline/common/log.h"
#include "pipeline/score/score.h"
#include "pipeline/score/score_alerts.h"
#include "pipeline/score/score_input.h"
#include "pipeline/score/score_store.h"

static void print_score_help(void)
{
    puts("usage: apiary score -c CONFIG [--model REF] [--input INPUT] [--output DIR]\n"
         "                    [--set KEY=VALUE]...\n"
         "\n"
         "Score the images of INPUT with a registered model (registry.uri,\n"
         "registry.model_name). INPUT is a folder, whose .jpg, .jpeg and .png files are\n"
         "scored, or a file naming the images relative to its folder: a .csv manifest\n"
         "with a file column, or a .txt listing with one path per line. INPUT and DIR\n"
         "may be s3://bucket/prefix URIs (see the store.* keys): images are cached in\n"
         "store.cache_dir and not downloaded again while unchanged, and results are\n"
         "staged there and uploaded when scoring stops. The results, in DIR/v<VERSION>:\n"
         "  predictions.jsonl  one row per image: probability and decision per label,\n"
         "                     or the error for an image that cannot be decoded\n"
         "  predictions.csv    the same rows as CSV\n"
         "  summary.json       counts and rates per label, in total and per group, and\n"
         "                     the score.alerts conditions that are met\n"
         "A rerun skips images that already have a row for the same model version, so an\n"
         "interrupted run continues where it stopped; predictions.csv and summary.json\n"
         "are rewritten when a run completes. Another version writes its own folder.\n"
         "\n"
         "  -c, --config FILE   YAML config (see the score section of configs/local.yaml)\n"
         "  --model REF         alias or version number, such as champion or 3\n"
         "                      (default score.model)\n"
         "  --input INPUT       folder, manifest or listing of images (default score.input)\n"
         "  --output DIR        folder or s3:// prefix for the results (default score.output)\n"
         "  --set KEY=VALUE     override one config key, for example\n"
         "                      --set 'score.alerts=wasp.count >= 1,varroa.rate > 0.05'\n"
         "  -h, --help          show this help\n"
         "\n"
         "Alerts are printed and written to summary.json; they do not change the exit\n"
         "code, which is 0 whenever scoring completes, also with alerts and with images\n"
         "that failed to decode. An unknown model version or alias exits with 2, a stop\n"
         "by SIGTERM or SIGINT with 6; see apiary --help for the other codes.");
}

/* The options only score has, taken out of argv before the shared parser reads it. */
typedef struct {
    const char *model;
    const char *input;
    const char *output;
} score_flags;

/* The flags that set score.model, score.input and score.output. */
static const char *const flag_names[] = {"--model", "--input", "--output"};

/* Move --model, --input and --output into flags and the other arguments into
 * rest. Returns false after printing a usage error. */
static bool split_flags(int argc, char **argv, score_flags *flags, char **rest, int *rest_count)
{
    const char **targets[] = {&flags->model, &flags->input, &flags->output};
    memset(flags, 0, sizeof(*flags));
    *rest_count = 0;
    for (int i = 0; i < argc; i++) {
        int match = -1;
        for (int n = 0; n < 3; n++)
            if (strcmp(argv[i], flag_names[n]) == 0)
                match = n;
        bool is_value =
            i > 0 && (strcmp(argv[i - 1], "--set") == 0 || strcmp(argv[i - 1], "-c") == 0 ||
                      strcmp(argv[i - 1], "--config") == 0);
        if (match < 0 || is_value) {
            rest[(*rest_count)++] = argv[i];
            continue;
        }
        if (i + 1 >= argc || argv[i + 1][0] == '\0') {
            fprintf(stderr, "apiary: %s needs a value (see --help)\n", argv[i]);
            return false;
        }
        *targets[match] = argv[++i];
    }
    return true;
}

/* Apply the flags as overrides of their config keys, with the same checks. */
static bool apply_flags(const score_flags *flags, ap_config *cfg)
{
    static const char *const keys[] = {"score.model", "score.input", "score.output"};
    const char *values[] = {flags->model, flags->input, flags->output};
    for (int i = 0; i < 3; i++) {
        if (values[i] == NULL)
            continue;
        ap_error err = {0};
        if (ap_config_set_key(cfg, keys[i], values[i], &err) != AP_OK) {
            fprintf(stderr, "apiary: invalid %s (%s): %s\n", flag_names[i], keys[i], err.message);
            return false;
        }
    }
    return true;
}

/* Reject a bad group pattern or alert before any work; labels are checked
 * once the model is loaded. */
static bool check_settings(const ap_config *cfg)
{
    ap_group_pattern pattern;
    static ap_score_alert alerts[AP_SCORE_MAX_ALERTS];
    int alert_count = 0;
    ap_error err = {0};
    if (ap_group_pattern_parse(cfg->score.group_pattern, &pattern, &err) != AP_OK ||
        ap_score_alerts_parse(&cfg->score, alerts, &alert_count, &err) != AP_OK) {
        fprintf(stderr, "apiary: invalid config: %s\n", err.message);
        return false;
    }
    if (cfg->score.input[0] == '\0') {
        fprintf(stderr, "apiary: no input folder; pass --input DIR or set score.input\n");
        return false;
    }
    return true;
}

static void log_warnings(const ap_score_outcome *outcome)
{
    if (!outcome->card_thresholds)
        AP_WARN("the model card has no validated threshold for every label; labels without "
                "one use 0.5");
    if (outcome->repaired)
        AP_WARN("dropped a damaged last line of %s/predictions.jsonl, left by an interrupted "
                "run; its image is scored again",
                outcome->output_dir);
    if (outcome->rejected > 0)
        AP_WARN("skipped %zu files whose names are not valid UTF-8; rename them to score them",
                outcome->rejected);
    if (outcome->listed == 0)
        AP_WARN("the input contains no .jpg, .jpeg or .png images");
}

static void print_label_table(const ap_score_outcome *outcome)
{
    const json_t *summary = outcome->summary;
    const json_t *totals = json_object_get(summary, "totals");
    const json_t *thresholds = json_object_get(json_object_get(summary, "model"), "thresholds");
    printf("  all %" JSON_INTEGER_FORMAT " rows, %" JSON_INTEGER_FORMAT
           " decoded, %" JSON_INTEGER_FORMAT " errors:\n",
           json_integer_value(json_object_get(totals, "images")),
           json_integer_value(json_object_get(totals, "decoded")),
           json_integer_value(json_object_get(totals, "errors")));
    printf("    %-16s %-9s %-9s %s\n", "label", "threshold", "positive", "rate");
    const char *label;
    const json_t *counts;
    json_object_foreach((json_t *)json_object_get(totals, "labels"), label, counts)
    {
        const json_t *rate = json_object_get(counts, "rate");
        printf("    %-16s %-9.3f %-9" JSON_INTEGER_FORMAT " ", label,
               json_number_value(json_object_get(thresholds, label)),
               json_integer_value(json_object_get(counts, "count")));
        if (json_is_number(rate))
            printf("%.4f\n", json_number_value(rate));
        else
            printf("n/a\n");
    }
}

static void print_summary(const ap_config *cfg, const ap_score_outcome *outcome)
{
    printf("scored %zu image%s with %s version %d (sha256 %.12s): %zu error%s, %zu already "
           "scored\n",
           outcome->scored, outcome->scored == 1 ? "" : "s", cfg->registry.model_name,
           outcome->model_version, outcome->model_sha256, outcome->errors,
           outcome->errors == 1 ? "" : "s", outcome->skipped);
    if (outcome->scored > 0)
        printf("  %.1f images/s with %d threads (%.2f s; decoding %.2f s, inference %.2f s)\n",
               (double)outcome->scored / outcome->seconds, outcome->threads, outcome->seconds,
               outcome->decode_seconds, outcome->inference_seconds);
    print_label_table(outcome);
    for (size_t i = 0; i < outcome->hit_count; i++) {
        const ap_score_alert_hit *hit = &outcome->hits[i];
        const char *scope = hit->group != NULL ? "in group " : "over all images";
        const char *group = hit->group != NULL ? hit->group : "";
        printf("alert: %s: %g %s%s\n", hit->alert, hit->value, scope, group);
        AP_WARN("alert %s: %g %s%s", hit->alert, hit->value, scope, group);
    }
    printf("alerts: %zu\noutput: %s\n", outcome->hit_count, outcome->output_dir);
}

/* Fetch the model; a reference that does not resolve is a usage error. */
static int fetch_model(const ap_config *cfg, ap_score_model_source *source)
{
    ap_error err = {0};
    ap_status status = ap_score_fetch_model(cfg, source, &err);
    if (status == AP_OK)
        return AP_EXIT_OK;
    if (source->version == 0 && (status == AP_ERR_NOT_FOUND || status == AP_ERR_INVALID)) {
        AP_ERROR("score failed: model %s: %s", cfg->score.model, err.message);
        return AP_EXIT_USAGE;
    }
    return ap_cli_report("score", &err);
}

/* Fetch an s3:// input and stage an s3:// output; returns the exit code. */
static int prepare_store(ap_config *cfg, ap_score_store *store)
{
    ap_error err = {0};
    if (ap_score_store_stage_output(cfg, store, &err) != AP_OK ||
        ap_score_store_fetch_input(cfg, store, &err) != AP_OK)
        return ap_cli_report("score", &err);
    if (store->remote_input) {
        const ap_store_sync_stats *fetched = &store->fetched;
        AP_INFO("fetched %s into %s: %zu objects, %zu downloaded (%lld bytes), %zu unchanged, "
                "%zu removed",
                store->input_uri, cfg->score.input, fetched->objects, fetched->transferred,
                (long long)fetched->bytes, fetched->reused, fetched->removed);
        if (fetched->objects == 0)
            AP_WARN("%s names no image objects", store->input_uri);
    }
    return AP_EXIT_OK;
}

/* Upload the results of an s3:// output; returns the exit code. */
static int upload_results(const ap_config *cfg, const ap_score_store *store, int version)
{
    if (!store->remote_output)
        return AP_EXIT_OK;
    ap_error err = {0};
    ap_store_sync_stats stats;
    if (ap_score_store_upload(store, cfg, version, &stats, &err) != AP_OK)
        return ap_cli_report("score", &err);
    AP_INFO("uploaded the results to %s/v%d: %zu files sent (%lld bytes), %zu unchanged",
            store->output_uri, version, stats.transferred, (long long)stats.bytes, stats.reused);
    return AP_EXIT_OK;
}

int ap_cmd_score(int argc, char **argv)
{
    char *rest[256];
    int rest_count = 0;
    score_flags flags;
    if (argc > (int)(sizeof(rest) / sizeof(rest[0]))) {
        fprintf(stderr, "apiary: too many arguments\n");
        return AP_EXIT_USAGE;
    }
    ap_cli_options options;
    if (!split_flags(argc, argv, &flags, rest, &rest_count) ||
        !ap_cli_parse(rest_count, rest, 0, &options))
        return AP_EXIT_USAGE;
    if (options.help) {
        print_score_help();
        return AP_EXIT_OK;
    }
    static ap_config cfg;
    if (!ap_cli_load_config(&options, &cfg) || !apply_flags(&flags, &cfg) || !check_settings(&cfg))
        return AP_EXIT_USAGE;

    static ap_score_store store;
    int code = prepare_store(&cfg, &store);
    if (code != AP_EXIT_OK)
        return code;
    ap_score_model_source source;
    code = fetch_model(&cfg, &source);
    if (code != AP_EXIT_OK)
        return code;
    ap_error err = {0};
    if (ap_score_store_resume(&store, &cfg, source.version, &err) != AP_OK)
        return ap_cli_report("score", &err);
    AP_INFO("scoring %s with %s version %d", cfg.score.input, cfg.registry.model_name,
            source.version);
    ap_score_request request = {.cfg = &cfg,
                                .model = &source,
                                .input_name = store.remote_input ? store.input_uri : NULL,
                                .stop = ap_cli_install_stop_handler()};
    ap_score_outcome outcome;
    ap_status status = ap_score_run(&request, &outcome, &err);
    if (status == AP_OK || status == AP_ERR_INTERRUPTED)
        log_warnings(&outcome);
    /* An interrupted run uploads its journal too, so a rerun elsewhere resumes. */
    int uploaded = status == AP_OK || status == AP_ERR_INTERRUPTED
                       ? upload_results(&cfg, &store, source.version)
                       : AP_EXIT_OK;
    if (status == AP_OK && uploaded != AP_EXIT_OK) {
        code = uploaded;
    } else if (status == AP_OK) {
        print_summary(&cfg, &outcome);
        if (store.remote_output)
            printf("uploaded: %s/v%d\n", store.output_uri, source.version);
    } else if (outcome.alert_rejected) {
        fprintf(stderr, "apiary: invalid config: %s\n", err.message);
        code = AP_EXIT_USAGE;
    } else {
        code = ap_cli_report("score", &err);
    }
    ap_score_outcome_free(&outcome);
    return code;
}
