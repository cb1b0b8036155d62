/* The MLflow backend of the model registry: opening, the operations table,
 * and reading versions (list, show). Registration is in mlflow_register.c,
 * aliases in mlflow_alias.c, and checking and downloading files in
 * mlflow_files.c. */

#include "pipeline/registry/mlflow_registry.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/registry/mlflow_internal.h"
#include "pipeline/registry/registry_internal.h"

/* Buffers sized by MLFLOW_FILE_NAME_MAX must fit any name that passes the shared check. */
_Static_assert(MLFLOW_FILE_NAME_MAX >= REGISTRY_FILE_NAME_MAX,
               "MLFLOW_FILE_NAME_MAX must cover REGISTRY_FILE_NAME_MAX");

#define SEARCH_PAGE_SIZE 1000
#define SEARCH_PAGES_MAX 1000

static const ap_registry_ops mlflow_ops;

/* ---- Shared helpers ---- */

long long mlflow_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

void mlflow_format_time(long long ms, char text[32])
{
    time_t seconds = (time_t)(ms / 1000);
    struct tm parts;
    gmtime_r(&seconds, &parts);
    size_t length = strftime(text, 32, "%Y-%m-%dT%H:%M:%S", &parts);
    snprintf(text + length, 32 - length, ".%03dZ", (int)(ms % 1000));
}

json_t *mlflow_tags_to_object(const json_t *list)
{
    json_t *tags = json_object();
    size_t index;
    json_t *tag;
    json_array_foreach(list, index, tag)
    {
        const char *key = json_string_value(json_object_get(tag, "key"));
        json_t *value = json_object_get(tag, "value");
        if (tags != NULL && key != NULL && json_is_string(value))
            json_object_set(tags, key, value);
    }
    return tags;
}

ap_status mlflow_check_file_name(const char *name, ap_error *err)
{
    return registry_check_file_name(name, err);
}

ap_status mlflow_check_move(const ap_registry_move *move, ap_error *err)
{
    if (move == NULL || move->reason == NULL) {
        if (move != NULL && move->forced)
            return ap_error_set(err, AP_ERR_INVALID,
                                "a forced alias move needs a reason; give the operator's reason");
        return AP_OK;
    }
    if (move->forced && move->reason[0] == '\0')
        return ap_error_set(err, AP_ERR_INVALID,
                            "a forced alias move needs a reason; give the operator's reason");
    if (strlen(move->reason) > MLFLOW_REASON_MAX)
        return ap_error_set(err, AP_ERR_INVALID,
                            "the reason for the alias move has %zu bytes; shorten it to at most "
                            "%d",
                            strlen(move->reason), MLFLOW_REASON_MAX);
    return AP_OK;
}

static void version_text(int version, char text[16])
{
    snprintf(text, 16, "%d", version);
}

ap_status mlflow_get_version(mlflow_registry *registry, const char *model, int version,
                             mlflow_version *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    if (version < 1)
        return ap_error_set(err, AP_ERR_INVALID, "version %d is invalid; versions start at 1",
                            version);
    char number[16];
    version_text(version, number);
    json_t *request = json_pack("{s:s, s:s}", "name", model, "version", number);
    json_t *response = NULL;
    mlflow_failure failure;
    ap_status status = mlflow_call(&registry->client, "GET", "model-versions/get", request,
                                   MLFLOW_IDEMPOTENT, &response, &failure, err);
    json_decref(request);
    if (status == AP_ERR_NOT_FOUND)
        return ap_error_set(err, AP_ERR_NOT_FOUND,
                            "version %d not found; list the versions to see which exist", version);
    if (status != AP_OK)
        return status;
    json_t *record = json_object_get(response, "model_version");
    if (!json_is_object(record)) {
        json_decref(response);
        return ap_error_set(err, AP_ERR_FORMAT,
                            "model-versions/get returned no model_version for version %d", version);
    }
    out->record = json_incref(record);
    out->tags = mlflow_tags_to_object(json_object_get(record, "tags"));
    out->number = version;
    json_decref(response);
    if (out->tags == NULL) {
        mlflow_version_free(out);
        return ap_error_set(err, AP_ERR_NOMEM, "cannot read the tags of version %d", version);
    }
    return AP_OK;
}

void mlflow_version_free(mlflow_version *version)
{
    json_decref(version->record);
    json_decref(version->tags);
    memset(version, 0, sizeof(*version));
}

/* Parse "SHA256 SIZE" from an apiary.file.* tag. */
static bool parse_file_tag(const char *value, char sha256[65], long long *size)
{
    if (strlen(value) < 66 || value[64] != ' ')
        return false;
    for (int i = 0; i < 64; i++) {
        char c = value[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    memcpy(sha256, value, 64);
    sha256[64] = '\0';
    char *end = NULL;
    errno = 0;
    long long parsed = strtoll(value + 65, &end, 10);
    if (errno != 0 || end == value + 65 || *end != '\0' || parsed < 0 || value[65] == '+' ||
        value[65] == '-')
        return false;
    *size = parsed;
    return true;
}

ap_status mlflow_version_files(const mlflow_version *version, json_t **files, ap_error *err)
{
    *files = json_object();
    if (*files == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot list the files of version %d",
                            version->number);
    size_t prefix = strlen(MLFLOW_FILE_TAG_PREFIX);
    const char *key;
    json_t *value;
    json_object_foreach(version->tags, key, value)
    {
        if (strncmp(key, MLFLOW_FILE_TAG_PREFIX, prefix) != 0)
            continue;
        char sha256[65];
        long long size = 0;
        const char *name = key + prefix;
        ap_status status = mlflow_check_file_name(name, err);
        if (status == AP_OK && !parse_file_tag(json_string_value(value), sha256, &size))
            status = ap_error_set(err, AP_ERR_FORMAT,
                                  "version %d: tag %s is not \"SHA256 SIZE\"; register the model "
                                  "again as a new version",
                                  version->number, key);
        if (status == AP_OK && json_object_set_new(*files, name,
                                                   json_pack("{s:s, s:I}", "sha256", sha256, "size",
                                                             (json_int_t)size)) != 0)
            status = ap_error_set(err, AP_ERR_NOMEM, "cannot list the files of version %d",
                                  version->number);
        if (status != AP_OK) {
            json_decref(*files);
            *files = NULL;
            return status;
        }
    }
    return AP_OK;
}

/* Accepts mlflow-artifacts:/PATH and mlflow-artifacts://AUTHORITY/PATH.
 * NOTE: the authority is ignored and the artifacts are read through the
 * registry's own server, which holds when artifacts are served by the
 * tracking server itself (the default). */
ap_status mlflow_artifact_path(const char *uri, char *path, size_t size, ap_error *err)
{
    static const char scheme[] = "mlflow-artifacts:";
    const char *rest = uri != NULL && strncmp(uri, scheme, sizeof(scheme) - 1) == 0
                           ? uri + sizeof(scheme) - 1
                           : NULL;
    if (rest != NULL && strncmp(rest, "//", 2) == 0)
        rest = strchr(rest + 2, '/');
    while (rest != NULL && *rest == '/')
        rest++;
    if (rest == NULL || *rest == '\0' || strstr(rest, "..") != NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "artifacts are stored at %.300s, which is not served by the MLflow "
                            "server's mlflow-artifacts API; run the server with --serve-artifacts "
                            "and use versions registered through apiary",
                            uri != NULL ? uri : "(none)");
    size_t length = strlen(rest);
    while (length > 0 && rest[length - 1] == '/')
        length--;
    if (snprintf(path, size, "%.*s", (int)length, rest) >= (int)size)
        return ap_error_set(err, AP_ERR_INVALID, "artifact location %.200s... is too long", uri);
    return AP_OK;
}

/* ---- Listing versions ---- */

ap_status mlflow_get_model(mlflow_registry *registry, const char *model, json_t **registered,
                           ap_error *err)
{
    *registered = NULL;
    json_t *request = json_pack("{s:s}", "name", model);
    json_t *response = NULL;
    ap_status status = mlflow_call(&registry->client, "GET", "registered-models/get", request,
                                   MLFLOW_IDEMPOTENT, &response, NULL, err);
    json_decref(request);
    if (status == AP_ERR_NOT_FOUND)
        return ap_error_set(err, AP_ERR_NOT_FOUND,
                            "model %s is not registered on the server; check the model name or "
                            "register a version first",
                            model);
    if (status != AP_OK)
        return status;
    json_t *object = json_object_get(response, "registered_model");
    if (json_is_object(object))
        *registered = json_incref(object);
    json_decref(response);
    if (*registered == NULL)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "registered-models/get returned no registered_model");
    return AP_OK;
}

static ap_status collect_aliases(const json_t *registered, ap_registry_version_info *info,
                                 ap_error *err)
{
    size_t index;
    json_t *entry;
    json_array_foreach(json_object_get(registered, "aliases"), index, entry)
    {
        const char *alias = json_string_value(json_object_get(entry, "alias"));
        const char *version = json_string_value(json_object_get(entry, "version"));
        int number = 0;
        if (alias == NULL || version == NULL || !ap_registry_parse_version(version, &number) ||
            number != info->version)
            continue;
        ap_status status = registry_add_alias(info, alias, err);
        if (status != AP_OK)
            return status;
    }
    return AP_OK;
}

static void describe_version(const json_t *record, ap_registry_version_info *info)
{
    json_t *tags = mlflow_tags_to_object(json_object_get(record, "tags"));
    const char *status = json_string_value(json_object_get(record, "status"));
    const char *verdict = json_string_value(json_object_get(tags, "apiary.verdict"));
    info->complete = status != NULL && strcmp(status, "READY") == 0 &&
                     json_object_get(tags, MLFLOW_FILE_TAG_PREFIX AP_REGISTRY_MODEL_FILE) != NULL &&
                     json_object_get(tags, MLFLOW_FILE_TAG_PREFIX AP_REGISTRY_CARD_FILE) != NULL;
    json_t *created = json_object_get(record, "creation_timestamp");
    if (json_is_integer(created))
        mlflow_format_time((long long)json_integer_value(created), info->created);
    snprintf(info->verdict, sizeof(info->verdict), "%s", verdict != NULL ? verdict : "none");
    json_decref(tags);
}

static int compare_versions(const void *a, const void *b)
{
    int x = ((const ap_registry_version_info *)a)->version;
    int y = ((const ap_registry_version_info *)b)->version;
    return (x > y) - (x < y);
}

static ap_status append_versions(const json_t *page, const json_t *registered,
                                 ap_registry_version_info **list, size_t *count, ap_error *err)
{
    size_t index;
    json_t *record;
    json_array_foreach(json_object_get(page, "model_versions"), index, record)
    {
        int number = 0;
        const char *text = json_string_value(json_object_get(record, "version"));
        if (text == NULL || !ap_registry_parse_version(text, &number))
            return ap_error_set(err, AP_ERR_FORMAT,
                                "model-versions/search returned a version without a number");
        ap_registry_version_info *grown = realloc(*list, (*count + 1) * sizeof(**list));
        if (grown == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot list the versions");
        *list = grown;
        ap_registry_version_info *info = &(*list)[(*count)++];
        memset(info, 0, sizeof(*info));
        info->version = number;
        describe_version(record, info);
        ap_status status = collect_aliases(registered, info, err);
        if (status != AP_OK)
            return status;
    }
    return AP_OK;
}

/* Keep one entry per version of a sorted list, because pages that shift
 * between two requests, or a faulty server, can list a version twice.
 * Returns the new count. */
static size_t drop_repeated_versions(ap_registry_version_info *list, size_t count)
{
    size_t kept = 0;
    for (size_t i = 0; i < count; i++) {
        if (kept > 0 && list[kept - 1].version == list[i].version) {
            for (size_t j = 0; j < list[i].alias_count; j++)
                free(list[i].aliases[j]);
            free(list[i].aliases);
            continue;
        }
        list[kept++] = list[i];
    }
    return kept;
}

/* Fetch one page of model-versions/search, starting at token (NULL: the first page). */
static ap_status search_page(mlflow_registry *registry, const char *model, const char *token,
                             json_t **page, ap_error *err)
{
    char filter[128];
    snprintf(filter, sizeof(filter), "name='%s'", model);
    json_t *request = json_pack("{s:s, s:i}", "filter", filter, "max_results", SEARCH_PAGE_SIZE);
    if (request != NULL && token != NULL)
        json_object_set_new(request, "page_token", json_string(token));
    if (request == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot build a version search");
    ap_status status = mlflow_call(&registry->client, "GET", "model-versions/search", request,
                                   MLFLOW_IDEMPOTENT, page, NULL, err);
    json_decref(request);
    return status;
}

static ap_status list_versions(ap_registry *base, const char *model,
                               ap_registry_version_info **versions, size_t *count, ap_error *err)
{
    mlflow_registry *registry = (mlflow_registry *)base;
    *versions = NULL;
    *count = 0;
    json_t *registered = NULL;
    ap_status status = ap_registry_check_model_name(model, err);
    if (status == AP_OK)
        status = mlflow_get_model(registry, model, &registered, err);
    ap_registry_version_info *list = NULL;
    size_t found = 0;
    char *token = NULL;
    for (int page_index = 0; status == AP_OK; page_index++) {
        json_t *page = NULL;
        if (page_index >= SEARCH_PAGES_MAX)
            status = ap_error_set(err, AP_ERR_LIMIT, "model %s has more than %d pages of versions",
                                  model, SEARCH_PAGES_MAX);
        if (status == AP_OK)
            status = search_page(registry, model, token, &page, err);
        if (status == AP_OK)
            status = append_versions(page, registered, &list, &found, err);
        const char *next = json_string_value(json_object_get(page, "next_page_token"));
        free(token);
        token = next != NULL && next[0] != '\0' ? strdup(next) : NULL;
        json_decref(page);
        if (token == NULL)
            break;
    }
    free(token);
    json_decref(registered);
    if (status != AP_OK) {
        ap_registry_free_versions(list, found);
        return status;
    }
    if (found > 0)
        qsort(list, found, sizeof(*list), compare_versions);
    *versions = list;
    *count = drop_repeated_versions(list, found);
    return AP_OK;
}

static ap_status list_aliases(ap_registry *base, const char *model, ap_registry_alias **aliases,
                              size_t *count, ap_error *err)
{
    json_t *registered = NULL;
    *aliases = NULL;
    *count = 0;
    ap_status status = ap_registry_check_model_name(model, err);
    if (status == AP_OK)
        status = mlflow_get_model((mlflow_registry *)base, model, &registered, err);
    if (status != AP_OK)
        return status;
    const json_t *entries = json_object_get(registered, "aliases");
    ap_registry_alias *list = calloc(json_array_size(entries) + 1, sizeof(*list));
    if (list == NULL) {
        json_decref(registered);
        return ap_error_set(err, AP_ERR_NOMEM, "cannot list the aliases of model %s", model);
    }
    size_t index;
    const json_t *entry;
    json_array_foreach(entries, index, entry)
    {
        const char *alias = json_string_value(json_object_get(entry, "alias"));
        const char *version = json_string_value(json_object_get(entry, "version"));
        int number = 0;
        if (alias == NULL || strlen(alias) > AP_REGISTRY_ALIAS_NAME_MAX || version == NULL ||
            !ap_registry_parse_version(version, &number))
            continue;
        snprintf(list[*count].name, sizeof(list[*count].name), "%s", alias);
        list[*count].version = number;
        (*count)++;
    }
    json_decref(registered);
    *aliases = list;
    return AP_OK;
}

/* ---- Showing a version ---- */

static json_t *tag_or_null(const json_t *tags, const char *key)
{
    const char *value = json_string_value(json_object_get(tags, key));
    return value != NULL ? json_string(value) : json_null();
}

static json_t *match_value(const json_t *tags)
{
    const char *value = json_string_value(json_object_get(tags, "apiary.model_sha256_match"));
    if (value == NULL || strcmp(value, "none") == 0)
        return json_null();
    return json_boolean(strcmp(value, "true") == 0);
}

/* {"report", "verdict", "model_sha256_match", "passed", "failed_rules"} as the tags record them. */
static json_t *build_validation(const json_t *tags, const json_t *files)
{
    const char *verdict = json_string_value(json_object_get(tags, "apiary.verdict"));
    const char *rules_text = json_string_value(json_object_get(tags, "apiary.failed_rules"));
    json_t *rules = rules_text != NULL ? json_loads(rules_text, 0, NULL) : NULL;
    if (!json_is_array(rules)) {
        json_decref(rules);
        rules = json_array();
    }
    json_t *report = json_object_get(files, AP_REGISTRY_REPORT_FILE) != NULL
                         ? json_string(AP_REGISTRY_REPORT_FILE)
                         : json_null();
    const char *passed = json_string_value(json_object_get(tags, "apiary.passed"));
    json_t *passed_value = passed != NULL ? json_boolean(strcmp(passed, "true") == 0) : json_null();
    return json_pack("{s:o, s:s, s:o, s:o, s:o}", "report", report, "verdict",
                     verdict != NULL ? verdict : "none", "model_sha256_match", match_value(tags),
                     "passed", passed_value, "failed_rules", rules);
}

/* The request's own tags: every tag outside the apiary. and mlflow. namespaces. */
static json_t *user_tags(const json_t *tags)
{
    json_t *object = json_object();
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)tags, key, value)
    {
        if (object != NULL && strncmp(key, MLFLOW_TAG_PREFIX, strlen(MLFLOW_TAG_PREFIX)) != 0 &&
            strncmp(key, "mlflow.", 7) != 0)
            json_object_set(object, key, value);
    }
    return object;
}

static json_t *mlflow_details(const mlflow_version *version)
{
    json_t *record = version->record;
    json_t *aliases = json_object_get(record, "aliases");
    return json_pack("{s:O?, s:O?, s:O?, s:O?, s:O, s:o}", "run_id",
                     json_object_get(record, "run_id"), "source", json_object_get(record, "source"),
                     "status", json_object_get(record, "status"), "status_message",
                     json_object_get(record, "status_message"), "tags", version->tags, "aliases",
                     json_is_array(aliases) ? json_incref(aliases) : json_array());
}

ap_status mlflow_build_record(const char *model, const mlflow_version *version, json_t **record,
                              ap_error *err)
{
    json_t *files = NULL;
    ap_status status = mlflow_version_files(version, &files, err);
    if (status != AP_OK)
        return status;
    char created[32] = "";
    json_t *timestamp = json_object_get(version->record, "creation_timestamp");
    if (json_is_integer(timestamp))
        mlflow_format_time((long long)json_integer_value(timestamp), created);
    const json_t *tags = version->tags;
    *record = json_pack("{s:i, s:s, s:i, s:s, s:o, s:O, s:o, s:o, s:o}", "format_version",
                        MLFLOW_FORMAT_VERSION, "model", model, "version", version->number,
                        "created", created, "source_run", tag_or_null(tags, "apiary.source_run"),
                        "files", files, "validation", build_validation(tags, files), "tags",
                        user_tags(tags), "mlflow", mlflow_details(version));
    const char *forced = json_string_value(json_object_get(tags, "apiary.forced"));
    if (*record != NULL && forced != NULL && strcmp(forced, "true") == 0) {
        json_object_set_new(*record, "forced", json_true());
        json_object_set_new(*record, "force_reason", tag_or_null(tags, "apiary.force_reason"));
    }
    json_decref(files);
    if (*record == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot build the record of version %d",
                            version->number);
    return AP_OK;
}

static ap_status show_version(ap_registry *base, const char *model, int version, json_t **info,
                              ap_error *err)
{
    *info = NULL;
    mlflow_version found;
    ap_status status = ap_registry_check_model_name(model, err);
    if (status == AP_OK)
        status = mlflow_get_version((mlflow_registry *)base, model, version, &found, err);
    if (status != AP_OK)
        return status;
    status = mlflow_build_record(model, &found, info, err);
    mlflow_version_free(&found);
    return status;
}

static ap_status verify_version(ap_registry *base, const char *model, int version, ap_error *err)
{
    mlflow_registry *registry = (mlflow_registry *)base;
    mlflow_version found;
    ap_status status = ap_registry_check_model_name(model, err);
    if (status == AP_OK)
        status = mlflow_get_version(registry, model, version, &found, err);
    if (status != AP_OK)
        return status;
    status = mlflow_verify_files(registry, &found, err);
    mlflow_version_free(&found);
    return status;
}

ap_status ap_mlflow_registry_download(ap_registry *registry, const char *model, int version,
                                      const char *folder, ap_error *err)
{
    if (registry == NULL || registry->ops != &mlflow_ops)
        return ap_error_set(err, AP_ERR_INVALID,
                            "cannot download: the registry is not an MLflow registry");
    ap_status status =
        mlflow_download_version((mlflow_registry *)registry, model, version, folder, err);
    return ap_registry_add_context(registry, model, status, err);
}

/* ---- Opening ---- */

/* A server that cannot be reached fails the first request with AP_ERR_IO,
 * so there is nothing to check before it. */
static ap_status check_location(ap_registry *base, ap_error *err)
{
    (void)base;
    (void)err;
    return AP_OK;
}

static void mlflow_close(ap_registry *base)
{
    mlflow_registry *registry = (mlflow_registry *)base;
    mlflow_client_cleanup(&registry->client);
    free(registry);
}

static const ap_registry_ops mlflow_ops = {
    .register_version = mlflow_register_version,
    .set_alias = mlflow_set_alias,
    .get_alias = mlflow_get_alias,
    .rollback = mlflow_rollback,
    .list_versions = list_versions,
    .list_aliases = list_aliases,
    .show_version = show_version,
    .verify_version = verify_version,
    .history = mlflow_history,
    .file_path = mlflow_file_path,
    .check_location = check_location,
    .close = mlflow_close,
};

void ap_mlflow_options_default(ap_mlflow_options *options)
{
    *options = (ap_mlflow_options){
        .connect_timeout_ms = 10000,
        .request_timeout_ms = 60000,
        .transfer_timeout_ms = 30 * 60000,
        .max_attempts = 5,
        .backoff_initial_ms = 250,
        .backoff_max_ms = 8000,
        .ready_timeout_ms = 5 * 60000,
        .cache_dir = NULL,
    };
}

static void default_cache_dir(char *path, size_t size)
{
    const char *explicit_dir = getenv("APIARY_MLFLOW_CACHE");
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    int written = -1;
    if (explicit_dir != NULL && explicit_dir[0] != '\0')
        written = snprintf(path, size, "%s", explicit_dir);
    else if (xdg != NULL && xdg[0] == '/')
        written = snprintf(path, size, "%s/apiary/mlflow", xdg);
    else if (home != NULL && home[0] == '/')
        written = snprintf(path, size, "%s/.cache/apiary/mlflow", home);
    if (written < 0 || written >= (int)size)
        path[0] = '\0';
}

ap_status ap_mlflow_registry_open_with(const char *url, const ap_mlflow_options *options,
                                       ap_registry **registry, ap_error *err)
{
    *registry = NULL;
    ap_mlflow_options defaults;
    ap_mlflow_options_default(&defaults);
    if (options == NULL)
        options = &defaults;
    if (url == NULL || url[0] == '\0')
        return ap_error_set(err, AP_ERR_INVALID, "MLflow URL is empty; give http://HOST:PORT");
    if (options->cache_dir != NULL && strlen(options->cache_dir) >= MLFLOW_PATH_MAX / 2)
        return ap_error_set(err, AP_ERR_INVALID, "MLflow cache folder %.80s... is too long",
                            options->cache_dir);
    mlflow_registry *opened = calloc(1, sizeof(*opened));
    if (opened == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot open the MLflow registry");
    ap_status status = mlflow_client_init(&opened->client, url, options, err);
    if (status != AP_OK) {
        free(opened);
        return status;
    }
    snprintf(opened->location, sizeof(opened->location), "%s", opened->client.base_url);
    if (options->cache_dir != NULL)
        snprintf(opened->cache_dir, sizeof(opened->cache_dir), "%s", options->cache_dir);
    else
        default_cache_dir(opened->cache_dir, MLFLOW_PATH_MAX / 2);
    opened->base.ops = &mlflow_ops;
    opened->base.location = opened->location;
    *registry = &opened->base;
    return AP_OK;
}

ap_status ap_mlflow_registry_open(const char *url, ap_registry **registry, ap_error *err)
{
    return ap_mlflow_registry_open_with(url, NULL, registry, err);
}
