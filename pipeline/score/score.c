/* The score stage: fetch a registered model, score the images of a folder
 * that have no row yet, and rewrite the CSV and the summary. */

#include "pipeline/score/score.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/registry/registry.h"
#include "pipeline/score/score_alerts.h"
#include "pipeline/score/score_journal.h"
#include "pipeline/score/score_pipeline.h"

#define JOURNAL_FILE "predictions.jsonl"
#define SUMMARY_FILE "summary.json"

/* ---- Model ---- */

ap_status ap_score_fetch_model(const ap_config *cfg, ap_score_model_source *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    const char *model = cfg->registry.model_name;
    ap_registry *registry = NULL;
    ap_status status = ap_registry_open_existing(cfg->registry.uri, &registry, err);
    if (status != AP_OK)
        return status;
    int version = 0;
    status = ap_registry_resolve(registry, model, cfg->score.model, &version, err);
    if (status == AP_ERR_NOT_FOUND || status == AP_ERR_INVALID)
        ap_registry_append_contents(registry, model, err);
    /* Fetch the weights first: a remote registry downloads each file it is
     * asked for into one folder, and the card names its weights beside it. */
    if (status == AP_OK) {
        out->version = version;
        status = ap_registry_file_path(registry, model, version, AP_REGISTRY_MODEL_FILE,
                                       out->card_path, sizeof(out->card_path), err);
    }
    if (status == AP_OK)
        status = ap_registry_file_path(registry, model, version, AP_REGISTRY_CARD_FILE,
                                       out->card_path, sizeof(out->card_path), err);
    ap_registry_close(registry);
    return status;
}

/* ---- State of one run ---- */

typedef struct {
    const ap_config *cfg;
    const char *input_name; /* the input as summary.json records it */
    ap_group_pattern pattern;
    ap_score_alert alerts[AP_SCORE_MAX_ALERTS];
    int alert_count;
    ap_loaded_model model;
    ap_score_model_info info;
    ap_score_inputs inputs;
    ap_score_journal journal;
    const char **pending; /* images without a row, in input order */
    size_t pending_count;
    ap_text lines; /* rows of one chunk */
    ap_score_outcome *out;
} score_run;

static void free_run(score_run *run)
{
    ap_loaded_model_free(&run->model);
    ap_score_inputs_free(&run->inputs);
    ap_score_journal_close(&run->journal);
    free(run->pending);
    free(run->lines.data);
}

static ap_status parse_settings(score_run *run, ap_error *err)
{
    const ap_score_config *settings = &run->cfg->score;
    ap_status status = ap_group_pattern_parse(settings->group_pattern, &run->pattern, err);
    if (status == AP_OK)
        status = ap_score_alerts_parse(settings, run->alerts, &run->alert_count, err);
    return status;
}

static ap_status resolve_alerts(score_run *run, ap_error *err)
{
    const char(*labels)[AP_NAME_MAX] = (const char(*)[AP_NAME_MAX])run->model.labels;
    for (int a = 0; a < run->alert_count; a++) {
        ap_status status =
            ap_score_alert_resolve(&run->alerts[a], labels, run->model.label_count, err);
        if (status != AP_OK) {
            run->out->alert_rejected = true;
            return status;
        }
    }
    return AP_OK;
}

/* Copy what every row records about the model into run->info and the outcome. */
static void describe_model(score_run *run, int version)
{
    ap_score_model_info *info = &run->info;
    info->version = version;
    snprintf(info->sha256_short, sizeof(info->sha256_short), "%.*s", AP_SCORE_SHA_SHORT,
             run->model.weights_sha256);
    info->label_count = run->model.label_count;
    memcpy(info->labels, run->model.labels, sizeof(info->labels));
    memcpy(info->thresholds, run->model.thresholds, sizeof(info->thresholds));
    run->out->model_version = version;
    memcpy(run->out->model_sha256, run->model.weights_sha256, sizeof(run->out->model_sha256));
    run->out->card_thresholds = run->model.has_thresholds;
}

static ap_status load_model(score_run *run, const ap_score_model_source *source, ap_error *err)
{
    int threads = run->cfg->score.threads > 0 ? run->cfg->score.threads : omp_get_num_procs();
    /* oneDNN plans its primitives for the thread count set when they are created. */
    omp_set_num_threads(threads);
    run->out->threads = threads;
    ap_status status =
        ap_model_load(source->card_path, run->cfg->score.batch_size, &run->model, err);
    if (status == AP_OK)
        status = resolve_alerts(run, err);
    if (status == AP_OK)
        describe_model(run, source->version);
    return status;
}

static ap_status open_output(score_run *run, ap_error *err)
{
    ap_score_outcome *out = run->out;
    char version[32];
    snprintf(version, sizeof(version), "v%d", run->info.version);
    ap_status status = ap_path_join(out->output_dir, sizeof(out->output_dir),
                                    run->cfg->score.output, version, err);
    if (status == AP_OK)
        status = ap_mkdirs(out->output_dir, err);
    char journal_path[AP_PATH_MAX + 128];
    if (status == AP_OK)
        status =
            ap_path_join(journal_path, sizeof(journal_path), out->output_dir, JOURNAL_FILE, err);
    if (status == AP_OK)
        status = ap_score_journal_open(journal_path, &run->info, &run->journal, err);
    out->repaired = run->journal.dropped_bytes > 0;
    return status;
}

static ap_status find_pending(score_run *run, ap_error *err)
{
    ap_status status = ap_score_list_inputs(run->cfg->score.input, &run->inputs, err);
    if (status != AP_OK)
        return status;
    run->out->listed = run->inputs.count;
    run->out->rejected = run->inputs.rejected;
    run->pending = malloc((run->inputs.count + 1) * sizeof(*run->pending));
    if (run->pending == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the list of images to score");
    for (size_t i = 0; i < run->inputs.count; i++)
        if (!ap_score_journal_contains(&run->journal, run->inputs.paths[i]))
            run->pending[run->pending_count++] = run->inputs.paths[i];
    run->out->skipped = run->inputs.count - run->pending_count;
    return AP_OK;
}

/* ---- Scoring ---- */

static ap_status write_chunk_rows(void *context, const char *const *images, size_t count,
                                  const float *probabilities,
                                  const char (*errors)[AP_SCORE_ERROR_MAX], ap_error *err)
{
    score_run *run = context;
    size_t labels = (size_t)run->info.label_count;
    run->lines.length = 0;
    for (size_t i = 0; i < count; i++) {
        bool failed = errors[i][0] != '\0';
        ap_score_format_row(&run->lines, &run->info, images[i],
                            failed ? NULL : probabilities + i * labels, errors[i]);
        run->out->errors += failed ? 1 : 0;
    }
    if (run->lines.out_of_memory)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the rows of %zu images", count);
    ap_status status =
        ap_score_journal_append(&run->journal, run->lines.data, run->lines.length, err);
    if (status == AP_OK)
        run->out->scored += count;
    return status;
}

static ap_status score_pending(score_run *run, const volatile sig_atomic_t *stop, ap_error *err)
{
    const ap_config *cfg = run->cfg;
    ap_score_pipeline pipeline = {
        .model = &run->model,
        .input = cfg->score.input,
        .images = run->pending,
        .count = run->pending_count,
        .chunk_size = (size_t)cfg->score.chunk_size,
        .threads = run->out->threads,
        .limits = {.max_bytes = (size_t)cfg->data.max_image_bytes,
                   .max_pixels = cfg->data.max_image_pixels},
        .on_chunk = write_chunk_rows,
        .context = run,
        .stop = stop,
    };
    ap_score_timing timing;
    ap_status status = ap_score_pipeline_run(&pipeline, &timing, err);
    run->out->seconds = timing.seconds;
    run->out->decode_seconds = timing.decode_seconds;
    run->out->inference_seconds = timing.inference_seconds;
    return status;
}

/* ---- Summary ---- */

static json_t *model_json(const score_run *run)
{
    json_t *thresholds = json_object();
    for (int l = 0; thresholds != NULL && l < run->info.label_count; l++)
        json_object_set_new(thresholds, run->info.labels[l],
                            json_real((double)run->info.thresholds[l]));
    return json_pack("{s:s, s:s, s:i, s:s, s:o, s:b}", "name", run->cfg->registry.model_name,
                     "reference", run->cfg->score.model, "version", run->info.version, "sha256",
                     run->out->model_sha256, "thresholds", thresholds, "thresholds_from_card",
                     run->out->card_thresholds);
}

static json_t *this_run_json(const score_run *run)
{
    const ap_score_outcome *out = run->out;
    double rate = out->seconds > 0 ? (double)out->scored / out->seconds : 0.0;
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:b, s:i, s:f, s:f}", "listed",
                     (json_int_t)out->listed, "skipped", (json_int_t)out->skipped, "scored",
                     (json_int_t)out->scored, "errors", (json_int_t)out->errors, "rejected_names",
                     (json_int_t)out->rejected, "repaired_journal", out->repaired, "threads",
                     out->threads, "seconds", out->seconds, "images_per_second", rate);
}

static json_t *alert_rules_json(const score_run *run)
{
    json_t *rules = json_array();
    for (int a = 0; rules != NULL && a < run->alert_count; a++)
        json_array_append_new(rules, json_string(run->alerts[a].text));
    return rules;
}

static json_t *summary_json(const score_run *run, const ap_score_tally *tally)
{
    char created[32];
    time_t now = time(NULL);
    struct tm utc;
    gmtime_r(&now, &utc);
    strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &utc);
    json_t *summary = ap_score_tally_json(tally, &run->info, run->alerts, run->alert_count);
    json_t *head =
        json_pack("{s:s, s:i, s:s, s:s, s:o, s:s, s:o, s:o}", "format", "apiary-score-summary",
                  "format_version", 1, "created", created, "input", run->input_name, "model",
                  model_json(run), "group_pattern", run->cfg->score.group_pattern, "alert_rules",
                  alert_rules_json(run), "this_run", this_run_json(run));
    if (summary == NULL || head == NULL || json_object_update(head, summary) != 0) {
        json_decref(summary);
        json_decref(head);
        return NULL;
    }
    json_decref(summary);
    return head;
}

/* Point the outcome's hits at the summary's "alerts" entries. */
static ap_status collect_hits(ap_score_outcome *out, ap_error *err)
{
    const json_t *alerts = json_object_get(out->summary, "alerts");
    out->hits = calloc(json_array_size(alerts) + 1, sizeof(*out->hits));
    if (out->hits == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the list of alerts");
    size_t index;
    const json_t *hit;
    json_array_foreach(alerts, index, hit)
    {
        out->hits[index].alert = json_string_value(json_object_get(hit, "alert"));
        out->hits[index].group = json_string_value(json_object_get(hit, "group"));
        out->hits[index].value = json_number_value(json_object_get(hit, "value"));
    }
    out->hit_count = json_array_size(alerts);
    return AP_OK;
}

static ap_status write_summary(score_run *run, ap_error *err)
{
    ap_score_tally tally;
    ap_status status = ap_score_tally_init(&tally, err);
    if (status == AP_OK)
        status = ap_score_write_csv(run->journal.path, run->out->output_dir, &run->info,
                                    &run->pattern, &tally, err);
    if (status == AP_OK) {
        run->out->summary = summary_json(run, &tally);
        if (run->out->summary == NULL)
            status = ap_error_set(err, AP_ERR_NOMEM, "cannot build the summary");
    }
    ap_score_tally_free(&tally);
    char *text = status == AP_OK
                     ? json_dumps(run->out->summary, JSON_INDENT(2) | JSON_REAL_PRECISION(9))
                     : NULL;
    char path[AP_PATH_MAX + 128];
    if (status == AP_OK && text == NULL)
        status = ap_error_set(err, AP_ERR_NOMEM, "cannot format the summary");
    if (status == AP_OK)
        status = ap_path_join(path, sizeof(path), run->out->output_dir, SUMMARY_FILE, err);
    if (status == AP_OK)
        status = ap_write_atomic(path, text, strlen(text), err);
    free(text);
    if (status == AP_OK)
        status = collect_hits(run->out, err);
    return status;
}

ap_status ap_score_run(const ap_score_request *request, ap_score_outcome *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    score_run run = {.cfg = request->cfg,
                     .input_name =
                         request->input_name ? request->input_name : request->cfg->score.input,
                     .out = out,
                     .journal = {.fd = -1}};
    ap_status status = parse_settings(&run, err);
    if (status == AP_OK)
        status = load_model(&run, request->model, err);
    if (status == AP_OK)
        status = open_output(&run, err);
    if (status == AP_OK)
        status = find_pending(&run, err);
    if (status == AP_OK)
        status = score_pending(&run, request->stop, err);
    if (status == AP_OK)
        status = write_summary(&run, err);
    free_run(&run);
    return status;
}

void ap_score_outcome_free(ap_score_outcome *out)
{
    json_decref(out->summary);
    free(out->hits);
    memset(out, 0, sizeof(*out));
}
