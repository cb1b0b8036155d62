/* Registration in the MLflow backend: hash the files, upload them as the
 * artifacts of a new run and read every one back, log the run, then create
 * the model version with the tags that alias moves check. Nothing here
 * touches an alias, so a failure at any step leaves every alias where it was,
 * and a version exists only after all of its files were uploaded intact. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/rand.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/registry/mlflow_internal.h"

#define EXPERIMENT_PREFIX "apiary/"
#define TAG_KEY_MAX       128
/* Per-request limits of runs/log-batch. */
#define BATCH_PARAMS_MAX  100
#define BATCH_TAGS_MAX    100
#define BATCH_METRICS_MAX 1000
#define READY_POLL_MAX_MS 1000

typedef struct {
    const char *name;
    const char *path;
    char sha256[65];
    long long size;
} planned_file;

typedef struct {
    planned_file *files;
    size_t count;
} file_plan;

/* What a registration has created so far. */
typedef struct {
    const char *model;
    char experiment_id[64];
    char request_id[33];
    char run_id[64];
    char artifact_uri[MLFLOW_PATH_MAX];
    char artifact_dir[MLFLOW_PATH_MAX];
    int version;
} registration;

/* ---- Checking the request ---- */

static bool tag_key_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.' || c == ' ' || c == '/' || c == ':';
}

/* MLflow's rule for tag keys: letters, digits, "_-. /:", and no path
 * component that a path normalisation would change ("", "." or ".."). */
static bool tag_key_valid(const char *key)
{
    size_t length = strlen(key);
    if (length == 0 || length > TAG_KEY_MAX || key[0] == '/' || key[length - 1] == '/' ||
        strstr(key, "//") != NULL)
        return false;
    for (size_t i = 0; i < length; i++) {
        if (!tag_key_char_ok(key[i]))
            return false;
    }
    for (const char *part = key; part != NULL; part = strchr(part, '/')) {
        part += part[0] == '/';
        size_t part_length = strcspn(part, "/");
        if ((part_length == 1 && part[0] == '.') ||
            (part_length == 2 && part[0] == '.' && part[1] == '.'))
            return false;
        if (part[part_length] == '\0')
            break;
    }
    return true;
}

static ap_status check_tags(const ap_registry_new_version *request, ap_error *err)
{
    for (size_t i = 0; i < request->tag_count; i++) {
        const ap_registry_tag *tag = &request->tags[i];
        if (tag->key == NULL || !tag_key_valid(tag->key) || tag->value == NULL ||
            strlen(tag->value) > MLFLOW_TAG_VALUE_MAX)
            return ap_error_set(err, AP_ERR_INVALID,
                                "tag %zu is invalid: keys need 1 to %d letters, digits or \"_-. "
                                "/:\" and values up to %d bytes",
                                i, TAG_KEY_MAX, MLFLOW_TAG_VALUE_MAX);
        if (strncmp(tag->key, MLFLOW_TAG_PREFIX, strlen(MLFLOW_TAG_PREFIX)) == 0)
            return ap_error_set(err, AP_ERR_INVALID,
                                "tag \"%s\" uses the prefix %s, which the registry keeps for its "
                                "own tags; rename it",
                                tag->key, MLFLOW_TAG_PREFIX);
        for (size_t j = 0; j < i; j++) {
            if (strcmp(request->tags[j].key, tag->key) == 0)
                return ap_error_set(err, AP_ERR_INVALID,
                                    "tag \"%s\" is repeated; give each key once", tag->key);
        }
    }
    return AP_OK;
}

static ap_status check_request(const ap_registry_new_version *request, ap_error *err)
{
    if (request->model_path == NULL || request->model_card_path == NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "a new version needs both a weights file and a model card");
    if (request->force && (request->force_reason == NULL || request->force_reason[0] == '\0'))
        return ap_error_set(err, AP_ERR_INVALID,
                            "a forced registration needs a reason; give the operator's reason");
    if (request->force && strlen(request->force_reason) > MLFLOW_TAG_VALUE_MAX)
        return ap_error_set(err, AP_ERR_INVALID, "the force reason is longer than %d bytes",
                            MLFLOW_TAG_VALUE_MAX);
    if (request->source_run != NULL && strlen(request->source_run) > MLFLOW_TAG_VALUE_MAX)
        return ap_error_set(err, AP_ERR_INVALID, "the source run folder is longer than %d bytes",
                            MLFLOW_TAG_VALUE_MAX);
    return check_tags(request, err);
}

/* ---- Local files ---- */

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL ? slash + 1 : path;
}

static bool is_reserved_name(const char *name)
{
    return strcmp(name, AP_REGISTRY_MODEL_FILE) == 0 || strcmp(name, AP_REGISTRY_CARD_FILE) == 0 ||
           strcmp(name, AP_REGISTRY_REPORT_FILE) == 0 ||
           strcmp(name, AP_REGISTRY_VERSION_FILE) == 0;
}

static ap_status hash_local_file(planned_file *file, ap_error *err)
{
    struct stat info;
    if (stat(file->path, &info) != 0)
        return ap_error_set(err, errno == ENOENT ? AP_ERR_NOT_FOUND : AP_ERR_IO,
                            "cannot read %s: %s", file->path, strerror(errno));
    if (!S_ISREG(info.st_mode))
        return ap_error_set(err, AP_ERR_INVALID, "%s is not a regular file", file->path);
    file->size = (long long)info.st_size;
    return ap_sha256_file(file->path, file->sha256, err);
}

static ap_status add_planned_file(file_plan *plan, const char *name, const char *path,
                                  ap_error *err)
{
    for (size_t i = 0; i < plan->count; i++) {
        if (strcmp(plan->files[i].name, name) == 0)
            return ap_error_set(err, AP_ERR_INVALID,
                                "attachment %s would replace the version's file %s; rename it",
                                path, name);
    }
    planned_file *file = &plan->files[plan->count++];
    file->name = name;
    file->path = path;
    return hash_local_file(file, err);
}

/* List the files of the new version with their sha256 and size. */
static ap_status plan_files(const ap_registry_new_version *request, file_plan *plan, ap_error *err)
{
    plan->count = 0;
    plan->files = calloc(3 + request->attachment_count, sizeof(*plan->files));
    if (plan->files == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot list the files to register");
    ap_status status = add_planned_file(plan, AP_REGISTRY_MODEL_FILE, request->model_path, err);
    if (status == AP_OK)
        status = add_planned_file(plan, AP_REGISTRY_CARD_FILE, request->model_card_path, err);
    if (status == AP_OK && request->report_path != NULL)
        status = add_planned_file(plan, AP_REGISTRY_REPORT_FILE, request->report_path, err);
    for (size_t i = 0; status == AP_OK && i < request->attachment_count; i++) {
        const char *name = base_name(request->attachments[i]);
        status = mlflow_check_file_name(name, err);
        if (status == AP_OK && is_reserved_name(name))
            status = ap_error_set(err, AP_ERR_INVALID,
                                  "attachment %s would replace the version's file %s; rename it",
                                  request->attachments[i], name);
        if (status == AP_OK)
            status = add_planned_file(plan, name, request->attachments[i], err);
    }
    return status;
}

/* ---- The validation report ---- */

static ap_status summarize_report(const ap_registry_new_version *request, const file_plan *plan,
                                  mlflow_report *summary, ap_error *err)
{
    ap_status status = mlflow_report_init(summary, err);
    if (status != AP_OK || request->report_path == NULL)
        return status;
    status = mlflow_report_read(summary, request->report_path, plan->files[0].sha256, err);
    if (status == AP_OK && summary->sha256_match == 0 && !request->force)
        status = ap_error_set(err, AP_ERR_INVALID,
                              "validation report %s names weights other than %s; register the "
                              "report made for these weights, or force with a reason",
                              request->report_path, request->model_path);
    return status;
}

/* ---- Tags ---- */

static ap_status append_tag(json_t *list, const char *key, const char *value, ap_error *err)
{
    json_t *tag = json_pack("{s:s, s:s}", "key", key, "value", value);
    if (tag == NULL || json_array_append_new(list, tag) != 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "tag \"%.128s\" has a value that is not UTF-8; write it in UTF-8", key);
    return AP_OK;
}

static const char *match_text(int sha256_match)
{
    if (sha256_match < 0)
        return "none";
    return sha256_match ? "true" : "false";
}

/* The tags that both the run and the model version carry. */
static ap_status add_summary_tags(json_t *list, const ap_registry_new_version *request,
                                  const file_plan *plan, const mlflow_report *summary,
                                  ap_error *err)
{
    char number[32];
    snprintf(number, sizeof(number), "%d", MLFLOW_FORMAT_VERSION);
    ap_status status = append_tag(list, "apiary.format_version", number, err);
    if (status == AP_OK)
        status = append_tag(list, "apiary.model_sha256", plan->files[0].sha256, err);
    if (status == AP_OK)
        status = append_tag(list, "apiary.verdict", summary->verdict, err);
    if (status == AP_OK)
        status =
            append_tag(list, "apiary.model_sha256_match", match_text(summary->sha256_match), err);
    bool judged = strcmp(summary->verdict, "pass") == 0 || strcmp(summary->verdict, "fail") == 0;
    if (status == AP_OK && judged)
        status = append_tag(list, "apiary.passed",
                            strcmp(summary->verdict, "pass") == 0 ? "true" : "false", err);
    if (status == AP_OK && request->report_path != NULL) {
        char *rules = mlflow_failed_rules_text(summary->failed_rules);
        snprintf(number, sizeof(number), "%zu", json_array_size(summary->failed_rules));
        status = rules != NULL ? append_tag(list, "apiary.failed_rules", rules, err)
                               : ap_error_set(err, AP_ERR_NOMEM, "cannot list the failed rules");
        if (status == AP_OK)
            status = append_tag(list, "apiary.failed_rule_count", number, err);
        free(rules);
    }
    if (status == AP_OK && request->source_run != NULL)
        status = append_tag(list, "apiary.source_run", request->source_run, err);
    if (status == AP_OK && request->force)
        status = append_tag(list, "apiary.forced", "true", err);
    if (status == AP_OK && request->force)
        status = append_tag(list, "apiary.force_reason", request->force_reason, err);
    return status;
}

static ap_status add_request_tags(json_t *list, const ap_registry_new_version *request,
                                  ap_error *err)
{
    ap_status status = AP_OK;
    for (size_t i = 0; status == AP_OK && i < request->tag_count; i++)
        status = append_tag(list, request->tags[i].key, request->tags[i].value, err);
    return status;
}

static ap_status add_file_tags(json_t *list, const file_plan *plan, ap_error *err)
{
    ap_status status = AP_OK;
    for (size_t i = 0; status == AP_OK && i < plan->count; i++) {
        char key[MLFLOW_FILE_NAME_MAX + 32], value[96];
        snprintf(key, sizeof(key), "%s%s", MLFLOW_FILE_TAG_PREFIX, plan->files[i].name);
        snprintf(value, sizeof(value), "%s %lld", plan->files[i].sha256, plan->files[i].size);
        status = append_tag(list, key, value, err);
    }
    return status;
}

/* ---- Creating things on the server ---- */

typedef ap_status (*lookup_fn)(mlflow_registry *registry, registration *state, bool *found,
                               ap_error *err);

/* POST a create request. When a try failed after it may have reached the
 * server, or the server replies RESOURCE_ALREADY_EXISTS, lookup tells whether
 * the thing now exists (and fills state), and the create is sent again only
 * when it does not. lookup NULL means a repeat is harmless because the server
 * rejects a duplicate. On success *response is the reply, or NULL when lookup
 * found the thing. */
static ap_status create_checked(mlflow_registry *registry, const char *endpoint,
                                const json_t *request, lookup_fn lookup, registration *state,
                                json_t **response, ap_error *err)
{
    for (int attempt = 1;; attempt++) {
        mlflow_failure failure;
        *response = NULL;
        ap_status status = mlflow_call(&registry->client, "POST", endpoint, request, MLFLOW_CREATE,
                                       response, &failure, err);
        if (status == AP_OK)
            return AP_OK;
        bool exists = strcmp(failure.error_code, "RESOURCE_ALREADY_EXISTS") == 0;
        if (exists && lookup == NULL)
            return AP_OK;
        if (!exists &&
            (!failure.outcome_unknown || attempt >= registry->client.options.max_attempts))
            return status;
        ap_error first = err != NULL ? *err : (ap_error){0};
        if (!exists)
            mlflow_backoff(&registry->client, attempt, 0);
        bool found = false;
        if (lookup != NULL) {
            ap_status looked = lookup(registry, state, &found, err);
            if (looked != AP_OK || found)
                return looked;
        }
        if (exists || attempt >= registry->client.options.max_attempts) {
            if (err != NULL)
                *err = first;
            return status;
        }
    }
}

static ap_status find_experiment(mlflow_registry *registry, registration *state, bool *found,
                                 ap_error *err)
{
    char name[AP_REGISTRY_MODEL_NAME_MAX + 16];
    snprintf(name, sizeof(name), "%s%s", EXPERIMENT_PREFIX, state->model);
    json_t *request = json_pack("{s:s}", "experiment_name", name);
    json_t *response = NULL;
    ap_error lookup_error = {0};
    ap_status status = mlflow_call(&registry->client, "GET", "experiments/get-by-name", request,
                                   MLFLOW_IDEMPOTENT, &response, NULL, &lookup_error);
    json_decref(request);
    *found = false;
    if (status == AP_ERR_NOT_FOUND)
        return AP_OK;
    if (status != AP_OK) {
        if (err != NULL)
            *err = lookup_error;
        return status;
    }
    json_t *experiment = json_object_get(response, "experiment");
    const char *id = json_string_value(json_object_get(experiment, "experiment_id"));
    const char *stage = json_string_value(json_object_get(experiment, "lifecycle_stage"));
    if (id == NULL)
        status =
            ap_error_set(err, AP_ERR_FORMAT, "experiments/get-by-name returned no id for %s", name);
    else if (stage != NULL && strcmp(stage, "deleted") == 0)
        status = ap_error_set(err, AP_ERR_INVALID,
                              "experiment %s is deleted; restore it (mlflow experiments restore) "
                              "or remove it for good (mlflow gc)",
                              name);
    if (status == AP_OK) {
        snprintf(state->experiment_id, sizeof(state->experiment_id), "%s", id);
        *found = true;
    }
    json_decref(response);
    return status;
}

static ap_status ensure_experiment(mlflow_registry *registry, registration *state, ap_error *err)
{
    bool found = false;
    ap_status status = find_experiment(registry, state, &found, err);
    if (status != AP_OK || found)
        return status;
    char name[AP_REGISTRY_MODEL_NAME_MAX + 16];
    snprintf(name, sizeof(name), "%s%s", EXPERIMENT_PREFIX, state->model);
    json_t *request = json_pack("{s:s}", "name", name);
    json_t *response = NULL;
    status = create_checked(registry, "experiments/create", request, find_experiment, state,
                            &response, err);
    const char *id = json_string_value(json_object_get(response, "experiment_id"));
    if (status == AP_OK && response != NULL && id == NULL)
        status = ap_error_set(err, AP_ERR_FORMAT, "experiments/create returned no experiment_id");
    if (status == AP_OK && id != NULL)
        snprintf(state->experiment_id, sizeof(state->experiment_id), "%s", id);
    json_decref(request);
    json_decref(response);
    return status;
}

/* Take run_id and artifact_uri from a run object. */
static ap_status read_run(const json_t *run, registration *state, ap_error *err)
{
    json_t *info = json_object_get(run, "info");
    const char *id = json_string_value(json_object_get(info, "run_id"));
    const char *uri = json_string_value(json_object_get(info, "artifact_uri"));
    if (id == NULL || uri == NULL)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "the server returned a run without an id or an artifact_uri");
    snprintf(state->run_id, sizeof(state->run_id), "%s", id);
    snprintf(state->artifact_uri, sizeof(state->artifact_uri), "%s", uri);
    return mlflow_artifact_path(uri, state->artifact_dir, sizeof(state->artifact_dir), err);
}

/* Find the run by its apiary.request_id tag. */
static ap_status find_run(mlflow_registry *registry, registration *state, bool *found,
                          ap_error *err)
{
    char filter[128];
    snprintf(filter, sizeof(filter), "tags.`apiary.request_id` = '%s'", state->request_id);
    json_t *request = json_pack("{s:[s], s:s, s:i}", "experiment_ids", state->experiment_id,
                                "filter", filter, "max_results", 1);
    json_t *response = NULL;
    ap_status status = mlflow_call(&registry->client, "POST", "runs/search", request,
                                   MLFLOW_IDEMPOTENT, &response, NULL, err);
    json_decref(request);
    json_t *run = json_array_get(json_object_get(response, "runs"), 0);
    *found = status == AP_OK && run != NULL;
    if (*found)
        status = read_run(run, state, err);
    json_decref(response);
    return status;
}

static ap_status create_run(mlflow_registry *registry, registration *state, ap_error *err)
{
    unsigned char random[16];
    if (RAND_bytes(random, sizeof(random)) != 1)
        return ap_error_set(err, AP_ERR_BACKEND, "cannot draw a random request id");
    for (size_t i = 0; i < sizeof(random); i++)
        snprintf(state->request_id + 2 * i, 3, "%02x", random[i]);
    char run_name[AP_REGISTRY_MODEL_NAME_MAX + 16];
    snprintf(run_name, sizeof(run_name), "register-%s", state->model);
    json_t *request =
        json_pack("{s:s, s:s, s:I, s:[{s:s, s:s}, {s:s, s:s}]}", "experiment_id",
                  state->experiment_id, "run_name", run_name, "start_time",
                  (json_int_t)mlflow_now_ms(), "tags", "key", "apiary.request_id", "value",
                  state->request_id, "key", "apiary.model", "value", state->model);
    if (request == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot build the run request");
    json_t *response = NULL;
    ap_status status =
        create_checked(registry, "runs/create", request, find_run, state, &response, err);
    if (status == AP_OK && response != NULL)
        status = read_run(json_object_get(response, "run"), state, err);
    json_decref(request);
    json_decref(response);
    return status;
}

/* Best effort when status is FAILED: the registration already failed. */
static ap_status finish_run(mlflow_registry *registry, const registration *state,
                            const char *run_status, ap_error *err)
{
    json_t *request = json_pack("{s:s, s:s, s:I}", "run_id", state->run_id, "status", run_status,
                                "end_time", (json_int_t)mlflow_now_ms());
    ap_status status = mlflow_call(&registry->client, "POST", "runs/update", request,
                                   MLFLOW_IDEMPOTENT, NULL, NULL, err);
    json_decref(request);
    return status;
}

/* ---- Artifacts ---- */

static ap_status artifact_file(const registration *state, const char *name, char *path, size_t size,
                               ap_error *err)
{
    if (snprintf(path, size, "%s/%s", state->artifact_dir, name) >= (int)size)
        return ap_error_set(err, AP_ERR_INVALID, "artifact path %s/%s is too long",
                            state->artifact_dir, name);
    return AP_OK;
}

static ap_status upload_files(mlflow_registry *registry, const registration *state,
                              const file_plan *plan, ap_error *err)
{
    for (size_t i = 0; i < plan->count; i++) {
        char path[MLFLOW_PATH_MAX];
        ap_status status = artifact_file(state, plan->files[i].name, path, sizeof(path), err);
        if (status == AP_OK)
            status = mlflow_upload(&registry->client, path, plan->files[i].path, err);
        if (status != AP_OK)
            return ap_error_prefix(err, "cannot upload %s", plan->files[i].path);
    }
    return AP_OK;
}

/* Read every uploaded file back and compare its sha256 and size. */
static ap_status verify_uploads(mlflow_registry *registry, const registration *state,
                                const file_plan *plan, ap_error *err)
{
    for (size_t i = 0; i < plan->count; i++) {
        const planned_file *file = &plan->files[i];
        char path[MLFLOW_PATH_MAX], sha256[65];
        long long size = 0;
        ap_status status = artifact_file(state, file->name, path, sizeof(path), err);
        if (status == AP_OK)
            status = mlflow_download(&registry->client, path, NULL, sha256, &size, err);
        if (status != AP_OK)
            return ap_error_prefix(err, "cannot read back the uploaded %s", file->name);
        if (strcmp(sha256, file->sha256) != 0 || size != file->size)
            return ap_error_set(err, AP_ERR_IO,
                                "uploaded %s reads back with sha256 %s (%lld bytes), expected %s "
                                "(%lld bytes) from %s; the upload was damaged, so register again",
                                file->name, sha256, size, file->sha256, file->size, file->path);
    }
    return AP_OK;
}

/* ---- Logging the run ---- */

static json_t *slice(const json_t *array, size_t start, size_t max)
{
    json_t *part = json_array();
    for (size_t i = start; part != NULL && i < json_array_size(array) && i < start + max; i++)
        json_array_append(part, json_array_get(array, i));
    return part;
}

/* Send params, metrics and tags in as many runs/log-batch requests as MLflow's limits need. */
static ap_status log_batches(mlflow_registry *registry, const registration *state,
                             const json_t *params, const json_t *metrics, const json_t *tags,
                             ap_error *err)
{
    size_t params_sent = 0, metrics_sent = 0, tags_sent = 0;
    ap_status status = AP_OK;
    while (status == AP_OK &&
           (params_sent < json_array_size(params) || metrics_sent < json_array_size(metrics) ||
            tags_sent < json_array_size(tags))) {
        json_t *request = json_pack("{s:s, s:o, s:o, s:o}", "run_id", state->run_id, "params",
                                    slice(params, params_sent, BATCH_PARAMS_MAX), "metrics",
                                    slice(metrics, metrics_sent, BATCH_METRICS_MAX), "tags",
                                    slice(tags, tags_sent, BATCH_TAGS_MAX));
        if (request == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot build a runs/log-batch request");
        status = mlflow_call(&registry->client, "POST", "runs/log-batch", request,
                             MLFLOW_IDEMPOTENT, NULL, NULL, err);
        json_decref(request);
        params_sent += BATCH_PARAMS_MAX;
        metrics_sent += BATCH_METRICS_MAX;
        tags_sent += BATCH_TAGS_MAX;
    }
    return status;
}

static ap_status log_run(mlflow_registry *registry, const registration *state,
                         const ap_registry_new_version *request, const file_plan *plan,
                         const mlflow_report *summary, ap_error *err)
{
    json_t *params = mlflow_card_params(request->model_card_path), *tags = json_array();
    json_t *metrics = mlflow_report_metrics(summary);
    if (params == NULL || tags == NULL || metrics == NULL) {
        json_decref(params);
        json_decref(tags);
        json_decref(metrics);
        return ap_error_set(err, AP_ERR_NOMEM, "cannot build the run's log");
    }
    ap_status status = add_summary_tags(tags, request, plan, summary, err);
    if (status == AP_OK)
        status = add_request_tags(tags, request, err);
    if (status == AP_OK)
        status = log_batches(registry, state, params, metrics, tags, err);
    json_decref(params);
    json_decref(tags);
    json_decref(metrics);
    return status;
}

/* ---- The model version ---- */

static ap_status ensure_registered_model(mlflow_registry *registry, const char *model,
                                         ap_error *err)
{
    json_t *request = json_pack("{s:s, s:s}", "name", model, "description",
                                "Registered by apiary; versions carry apiary.* tags.");
    json_t *response = NULL;
    ap_status status =
        create_checked(registry, "registered-models/create", request, NULL, NULL, &response, err);
    json_decref(request);
    json_decref(response);
    return status;
}

static ap_status read_version_number(const json_t *record, int *version, ap_error *err)
{
    const char *text = json_string_value(json_object_get(record, "version"));
    if (text == NULL || !ap_registry_parse_version(text, version))
        return ap_error_set(err, AP_ERR_FORMAT,
                            "the server returned a model version without a "
                            "valid number");
    return AP_OK;
}

/* Find the version created from this registration's run. */
static ap_status find_version(mlflow_registry *registry, registration *state, bool *found,
                              ap_error *err)
{
    char filter[256];
    snprintf(filter, sizeof(filter), "name='%s' and run_id='%s'", state->model, state->run_id);
    json_t *request = json_pack("{s:s, s:i}", "filter", filter, "max_results", 10);
    json_t *response = NULL;
    ap_status status = mlflow_call(&registry->client, "GET", "model-versions/search", request,
                                   MLFLOW_IDEMPOTENT, &response, NULL, err);
    json_decref(request);
    json_t *record = json_array_get(json_object_get(response, "model_versions"), 0);
    *found = status == AP_OK && record != NULL;
    if (*found)
        status = read_version_number(record, &state->version, err);
    json_decref(response);
    return status;
}

static ap_status create_version(mlflow_registry *registry, registration *state,
                                const ap_registry_new_version *request, const file_plan *plan,
                                const mlflow_report *summary, ap_error *err)
{
    json_t *tags = json_array();
    if (tags == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot build the version's tags");
    ap_status status = add_summary_tags(tags, request, plan, summary, err);
    if (status == AP_OK)
        status = add_file_tags(tags, plan, err);
    if (status == AP_OK)
        status = add_request_tags(tags, request, err);
    json_t *body = status == AP_OK
                       ? json_pack("{s:s, s:s, s:s, s:O}", "name", state->model, "source",
                                   state->artifact_uri, "run_id", state->run_id, "tags", tags)
                       : NULL;
    if (status == AP_OK && body == NULL)
        status = ap_error_set(err, AP_ERR_NOMEM, "cannot build the model version request");
    json_t *response = NULL;
    if (status == AP_OK)
        status = create_checked(registry, "model-versions/create", body, find_version, state,
                                &response, err);
    if (status == AP_OK && response != NULL)
        status =
            read_version_number(json_object_get(response, "model_version"), &state->version, err);
    json_decref(response);
    json_decref(body);
    json_decref(tags);
    return status;
}

static void sleep_ms(long milliseconds)
{
    struct timespec pause = {milliseconds / 1000, (milliseconds % 1000) * 1000000L};
    while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
        ;
}

/* Poll the new version until MLflow marks it READY. */
static ap_status wait_until_ready(mlflow_registry *registry, const registration *state,
                                  ap_error *err)
{
    long long deadline = mlflow_now_ms() + registry->client.options.ready_timeout_ms;
    long pause = 50;
    for (;;) {
        mlflow_version found;
        ap_status status = mlflow_get_version(registry, state->model, state->version, &found, err);
        if (status != AP_OK)
            return status;
        const char *value = json_string_value(json_object_get(found.record, "status"));
        char current[64];
        snprintf(current, sizeof(current), "%s", value != NULL ? value : "(none)");
        const char *message = json_string_value(json_object_get(found.record, "status_message"));
        if (strcmp(current, "FAILED_REGISTRATION") == 0)
            status = ap_error_set(err, AP_ERR_IO,
                                  "MLflow failed to register version %d: %.300s; register again",
                                  state->version, message != NULL ? message : "no message");
        mlflow_version_free(&found);
        if (status != AP_OK || strcmp(current, "READY") == 0)
            return status;
        if (mlflow_now_ms() >= deadline)
            return ap_error_set(err, AP_ERR_IO,
                                "version %d is still %s after %ld ms; check the server, then "
                                "register again",
                                state->version, current, registry->client.options.ready_timeout_ms);
        sleep_ms(pause);
        pause = pause * 2 < READY_POLL_MAX_MS ? pause * 2 : READY_POLL_MAX_MS;
    }
}

/* ---- The operation ---- */

static ap_status publish(mlflow_registry *registry, registration *state,
                         const ap_registry_new_version *request, const file_plan *plan,
                         const mlflow_report *summary, ap_error *err)
{
    ap_status status = ensure_experiment(registry, state, err);
    if (status == AP_OK)
        status = create_run(registry, state, err);
    if (status != AP_OK)
        return status;
    status = upload_files(registry, state, plan, err);
    if (status == AP_OK)
        status = verify_uploads(registry, state, plan, err);
    if (status == AP_OK)
        status = log_run(registry, state, request, plan, summary, err);
    if (status == AP_OK)
        status = finish_run(registry, state, "FINISHED", err);
    if (status != AP_OK) {
        finish_run(registry, state, "FAILED", NULL);
        return status;
    }
    status = ensure_registered_model(registry, state->model, err);
    if (status == AP_OK)
        status = create_version(registry, state, request, plan, summary, err);
    if (status == AP_OK)
        status = wait_until_ready(registry, state, err);
    if (status != AP_OK)
        finish_run(registry, state, "FAILED", NULL);
    return status;
}

ap_status mlflow_register_version(ap_registry *base, const char *model,
                                  const ap_registry_new_version *request, int *version,
                                  ap_error *err)
{
    mlflow_registry *registry = (mlflow_registry *)base;
    file_plan plan = {0};
    mlflow_report summary = {0};
    ap_status status = ap_registry_check_model_name(model, err);
    if (status == AP_OK)
        status = check_request(request, err);
    if (status == AP_OK)
        status = plan_files(request, &plan, err);
    if (status == AP_OK)
        status = summarize_report(request, &plan, &summary, err);
    registration state = {.model = model};
    if (status == AP_OK)
        status = publish(registry, &state, request, &plan, &summary, err);
    if (status == AP_OK)
        *version = state.version;
    free(plan.files);
    mlflow_report_free(&summary);
    return status;
}
