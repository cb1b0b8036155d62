/* Versions in the local folder registry: staging and publishing a version,
 * building, loading and verifying version.json, registering, and listing. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/registry/local_registry_internal.h"
#include "pipeline/registry/registry_internal.h"

#define TAG_KEY_MAX      128
#define TAG_VALUE_MAX    4096
#define PUBLISH_ATTEMPTS 1000

/* ---- Staging and publishing a version ---- */

static void staging_discard(staging *stage)
{
    if (stage->fd >= 0) {
        local_remove_tree_at(stage->model_fd, stage->name, 0);
        close(stage->fd);
    }
    if (stage->model_fd >= 0)
        close(stage->model_fd);
    stage->fd = -1;
    stage->model_fd = -1;
}

/* Create the staging folder and lock it for as long as this writer lives. */
static ap_status create_staging_folder(const char *model_dir, staging *stage, ap_error *err)
{
    ap_status status =
        ap_path_join(stage->path, sizeof(stage->path), model_dir, STAGING_PREFIX "XXXXXX", err);
    if (status != AP_OK)
        return status;
    if (mkdtemp(stage->path) == NULL)
        return ap_error_set(err, AP_ERR_IO, "cannot create a staging folder in %s: %s", model_dir,
                            strerror(errno));
    snprintf(stage->name, sizeof(stage->name), "%s", strrchr(stage->path, '/') + 1);
    stage->fd = open(stage->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (stage->fd < 0) {
        status = ap_error_set(err, AP_ERR_IO, "cannot open %s: %s", stage->path, strerror(errno));
        rmdir(stage->path);
        return status;
    }
    if (flock(stage->fd, LOCK_EX | LOCK_NB) != 0)
        return ap_error_set(err, AP_ERR_IO, "cannot lock %s: %s", stage->path, strerror(errno));
    /* mkdtemp creates mode 0700, but versions must be readable like other files. */
    if (fchmod(stage->fd, 0755) != 0)
        return ap_error_set(err, AP_ERR_IO, "cannot set the mode of %s: %s", stage->path,
                            strerror(errno));
    return AP_OK;
}

/* Create and lock a staging folder, clearing crash leftovers first. */
static ap_status staging_begin(const char *model_dir, staging *stage, ap_error *err)
{
    stage->fd = -1;
    stage->model_fd = open(model_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (stage->model_fd < 0)
        return ap_error_set(err, AP_ERR_IO, "cannot open %s: %s", model_dir, strerror(errno));
    int lock_fd = -1;
    ap_status status = local_lock_model(model_dir, LOCK_EX, &lock_fd, err);
    if (status == AP_OK) {
        local_remove_leftovers(stage->model_fd);
        status = create_staging_folder(model_dir, stage, err);
        local_unlock_model(lock_fd);
    }
    if (status != AP_OK)
        staging_discard(stage);
    return status;
}

/* Parse a version folder name: decimal digits without a leading zero. */
static bool parse_version_dir(const char *name, int *version)
{
    return name[0] != 'v' && ap_registry_parse_version(name, version);
}

static ap_status highest_version(const char *versions_dir, int *highest, ap_error *err)
{
    DIR *dir = opendir(versions_dir);
    if (dir == NULL)
        return ap_error_set(err, AP_ERR_IO, "cannot list %s: %s", versions_dir, strerror(errno));
    *highest = 0;
    struct dirent *entry;
    int number;
    while ((entry = readdir(dir)) != NULL) {
        if (parse_version_dir(entry->d_name, &number) && number > *highest)
            *highest = number;
    }
    closedir(dir);
    return AP_OK;
}

static void fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Write version.json with a candidate number N and rename the staging folder
 * to versions/N. When another writer took N first, try the next number. */
static ap_status staging_publish(staging *stage, const char *versions_dir, json_t *record,
                                 int *version, ap_error *err)
{
    char record_path[PATH_SIZE], target[PATH_SIZE];
    ap_status status =
        ap_path_join(record_path, sizeof(record_path), stage->path, AP_REGISTRY_VERSION_FILE, err);
    if (status != AP_OK)
        return status;
    int last_taken = 0;
    for (int attempt = 0; attempt < PUBLISH_ATTEMPTS; attempt++) {
        int highest = 0;
        status = highest_version(versions_dir, &highest, err);
        if (status != AP_OK)
            return status;
        int candidate = (highest > last_taken ? highest : last_taken) + 1;
        char created[32];
        local_format_utc_now(created);
        json_object_set_new(record, "version", json_integer(candidate));
        json_object_set_new(record, "created", json_string(created));
        status = local_write_json(record_path, record, err);
        if (status != AP_OK)
            return status;
        fsync(stage->fd);

        if (snprintf(target, sizeof(target), "%s/%d", versions_dir, candidate) >=
            (int)sizeof(target))
            return ap_error_set(err, AP_ERR_INVALID, "path too long: %s", versions_dir);
        if (rename(stage->path, target) == 0) {
            fsync_dir(versions_dir);
            close(stage->fd);
            stage->fd = -1;
            *version = candidate;
            return AP_OK;
        }
        if (errno != EEXIST && errno != ENOTEMPTY)
            return ap_error_set(err, AP_ERR_IO, "cannot rename %s to %s: %s", stage->path, target,
                                strerror(errno));
        last_taken = candidate;
    }
    return ap_error_set(err, AP_ERR_IO,
                        "no free version number in %s after %d attempts; other writers kept "
                        "taking them, so retry later",
                        versions_dir, PUBLISH_ATTEMPTS);
}

/* ---- Version records ---- */

/* Summarize the stored report.json as {"report", "verdict", "model_sha256_match"}. */
static ap_status summarize_report(const staging *stage, bool has_report, const char *model_sha,
                                  json_t **summary, ap_error *err)
{
    if (!has_report) {
        *summary = json_pack("{s:n, s:s, s:n}", "report", "verdict", "none", "model_sha256_match");
        return AP_OK;
    }
    char path[PATH_SIZE];
    ap_status status = ap_path_join(path, sizeof(path), stage->path, AP_REGISTRY_REPORT_FILE, err);
    if (status != AP_OK)
        return status;
    json_error_t parse_error;
    json_t *report = json_load_file(path, JSON_REJECT_DUPLICATES, &parse_error);
    if (report == NULL || !json_is_object(report)) {
        json_decref(report);
        return ap_error_set(err, AP_ERR_FORMAT,
                            "validation report is not a JSON object (%s at line %d); pass the "
                            "report.json written by validation",
                            report == NULL ? parse_error.text : "other JSON value",
                            report == NULL ? parse_error.line : 1);
    }
    json_t *passed = json_object_get(report, "passed");
    json_t *named_sha = json_object_get(report, "model_sha256");
    if (passed != NULL && !json_is_boolean(passed))
        status = ap_error_set(err, AP_ERR_FORMAT,
                              "validation report field \"passed\" must be true or false");
    else if (named_sha != NULL && !json_is_string(named_sha))
        status = ap_error_set(err, AP_ERR_FORMAT,
                              "validation report field \"model_sha256\" must be a string");
    if (status == AP_OK) {
        const char *verdict = passed == NULL ? "unknown" : json_is_true(passed) ? "pass" : "fail";
        json_t *match = named_sha == NULL
                            ? json_null()
                            : json_boolean(strcmp(json_string_value(named_sha), model_sha) == 0);
        *summary = json_pack("{s:s, s:s, s:o}", "report", AP_REGISTRY_REPORT_FILE, "verdict",
                             verdict, "model_sha256_match", match);
    }
    json_decref(report);
    return status;
}

static ap_status check_request(const ap_registry_new_version *request, ap_error *err)
{
    if (request->model_path == NULL || request->model_card_path == NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "a new version needs both a weights file and a model card");
    if (request->force && (request->force_reason == NULL || request->force_reason[0] == '\0'))
        return ap_error_set(err, AP_ERR_INVALID,
                            "a forced registration needs a reason; give the operator's reason");
    for (size_t i = 0; i < request->tag_count; i++) {
        const ap_registry_tag *tag = &request->tags[i];
        if (tag->key == NULL || tag->key[0] == '\0' || strlen(tag->key) > TAG_KEY_MAX ||
            tag->value == NULL || strlen(tag->value) > TAG_VALUE_MAX)
            return ap_error_set(err, AP_ERR_INVALID,
                                "tag %zu is invalid: keys need 1 to %d bytes and values up "
                                "to %d bytes",
                                i, TAG_KEY_MAX, TAG_VALUE_MAX);
    }
    return AP_OK;
}

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

/* Copy the weights, card, report and attachments into the staging folder. */
static ap_status copy_version_files(const staging *stage, const ap_registry_new_version *request,
                                    json_t *files, ap_error *err)
{
    ap_status status =
        local_copy_into_stage(stage, request->model_path, AP_REGISTRY_MODEL_FILE, files, err);
    if (status == AP_OK)
        status = local_copy_into_stage(stage, request->model_card_path, AP_REGISTRY_CARD_FILE,
                                       files, err);
    if (status == AP_OK && request->report_path != NULL)
        status =
            local_copy_into_stage(stage, request->report_path, AP_REGISTRY_REPORT_FILE, files, err);
    for (size_t i = 0; status == AP_OK && i < request->attachment_count; i++) {
        const char *name = base_name(request->attachments[i]);
        status = registry_check_file_name(name, err);
        if (status == AP_OK && (is_reserved_name(name) || json_object_get(files, name) != NULL))
            status = ap_error_set(err, AP_ERR_INVALID,
                                  "attachment %s would replace the version's file %s; rename it",
                                  request->attachments[i], name);
        if (status == AP_OK)
            status = local_copy_into_stage(stage, request->attachments[i], name, files, err);
    }
    return status;
}

static ap_status build_tags(const ap_registry_new_version *request, json_t **tags, ap_error *err)
{
    *tags = json_object();
    for (size_t i = 0; i < request->tag_count; i++) {
        const ap_registry_tag *tag = &request->tags[i];
        bool repeated = json_object_get(*tags, tag->key) != NULL;
        json_t *value = repeated ? NULL : json_string(tag->value);
        /* json_object_set_new takes the value's reference even when it fails. */
        if (value == NULL || json_object_set_new(*tags, tag->key, value) != 0) {
            json_decref(*tags);
            *tags = NULL;
            return ap_error_set(err, AP_ERR_INVALID,
                                "tag \"%.128s\" is repeated or not valid UTF-8; give each key "
                                "once, in UTF-8",
                                tag->key);
        }
    }
    return AP_OK;
}

/* Build version.json less its "version" and "created", which publishing sets. */
static ap_status build_record(const char *model, const ap_registry_new_version *request,
                              json_t *files, json_t *validation, json_t **record, ap_error *err)
{
    json_t *tags = NULL;
    ap_status status = build_tags(request, &tags, err);
    if (status != AP_OK)
        return status;
    json_t *source = request->source_run != NULL ? json_string(request->source_run) : json_null();
    if (source == NULL) {
        json_decref(tags);
        return ap_error_set(err, AP_ERR_INVALID, "source run folder is not valid UTF-8");
    }
    *record = json_pack("{s:i, s:s, s:i, s:n, s:o, s:O, s:O, s:o}", "format_version",
                        FORMAT_VERSION, "model", model, "version", 0, "created", "source_run",
                        source, "files", files, "validation", validation, "tags", tags);
    if (*record != NULL && request->force) {
        json_object_set_new(*record, "forced", json_true());
        json_object_set_new(*record, "force_reason", json_string(request->force_reason));
    }
    if (*record == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot build version.json");
    return AP_OK;
}

static ap_status check_report_weights(const ap_registry_new_version *request, json_t *validation,
                                      ap_error *err)
{
    if (request->force || !json_is_false(json_object_get(validation, "model_sha256_match")))
        return AP_OK;
    return ap_error_set(err, AP_ERR_INVALID,
                        "validation report %s names weights other than %s; register the report "
                        "made for these weights, or force with a reason",
                        request->report_path, request->model_path);
}

static ap_status stage_version(const staging *stage, const char *model,
                               const ap_registry_new_version *request, json_t **record,
                               ap_error *err)
{
    json_t *files = json_object(), *validation = NULL;
    ap_status status = copy_version_files(stage, request, files, err);
    if (status == AP_OK) {
        const char *model_sha = json_string_value(
            json_object_get(json_object_get(files, AP_REGISTRY_MODEL_FILE), "sha256"));
        status = summarize_report(stage, request->report_path != NULL, model_sha, &validation, err);
    }
    if (status == AP_OK)
        status = check_report_weights(request, validation, err);
    if (status == AP_OK)
        status = build_record(model, request, files, validation, record, err);
    json_decref(files);
    json_decref(validation);
    return status;
}

static ap_status scan_versions(const char *versions_dir, int **numbers, size_t *count,
                               ap_error *err);

static const char *record_model_sha(const json_t *record)
{
    const json_t *files = json_object_get(record, "files");
    return json_string_value(
        json_object_get(json_object_get(files, AP_REGISTRY_MODEL_FILE), "sha256"));
}

/* The newest complete version whose weights have the given sha256, or 0.
 * Versions whose record does not load are skipped. */
static ap_status find_same_weights(const local_registry *registry, const char *model,
                                   const char *versions_dir, const char *sha256, int *found,
                                   ap_error *err)
{
    *found = 0;
    int *numbers = NULL;
    size_t count = 0;
    ap_status status = scan_versions(versions_dir, &numbers, &count, err);
    for (size_t i = count; status == AP_OK && sha256 != NULL && i > 0 && *found == 0; i--) {
        json_t *record = NULL;
        ap_error ignored;
        if (local_load_record(registry, model, numbers[i - 1], &record, &ignored) != AP_OK)
            continue;
        const char *hash = record_model_sha(record);
        if (hash != NULL && strcmp(hash, sha256) == 0)
            *found = numbers[i - 1];
        json_decref(record);
    }
    free(numbers);
    return status;
}

/* Publish the staged version unless a complete version holds the same
 * weights, holding the model lock across the check and the rename. */
static ap_status publish_unless_registered(const local_registry *registry, const char *model,
                                           const char *model_dir, const char *versions_dir,
                                           staging *stage, json_t *record, int *version,
                                           ap_error *err)
{
    int lock_fd = -1;
    ap_status status = local_lock_model(model_dir, LOCK_EX, &lock_fd, err);
    int existing = 0;
    if (status == AP_OK)
        status = find_same_weights(registry, model, versions_dir, record_model_sha(record),
                                   &existing, err);
    if (status == AP_OK && existing > 0)
        *version = existing;
    else if (status == AP_OK)
        status = staging_publish(stage, versions_dir, record, version, err);
    local_unlock_model(lock_fd);
    return status;
}

ap_status local_register_version(ap_registry *base, const char *model,
                                 const ap_registry_new_version *request, int *version,
                                 ap_error *err)
{
    const local_registry *registry = (const local_registry *)base;
    char model_dir[PATH_SIZE], versions_dir[PATH_SIZE];
    ap_status status = local_model_dir_path(registry, model, model_dir, sizeof(model_dir), err);
    if (status == AP_OK)
        status = check_request(request, err);
    if (status == AP_OK)
        status = ap_path_join(versions_dir, sizeof(versions_dir), model_dir, "versions", err);
    if (status == AP_OK)
        status = ap_mkdirs(versions_dir, err);
    if (status != AP_OK)
        return status;

    staging stage;
    status = staging_begin(model_dir, &stage, err);
    if (status != AP_OK)
        return status;
    json_t *record = NULL;
    status = stage_version(&stage, model, request, &record, err);
    if (status == AP_OK)
        status = publish_unless_registered(registry, model, model_dir, versions_dir, &stage, record,
                                           version, err);
    json_decref(record);
    staging_discard(&stage);
    return status;
}

/* Read versions/N/version.json. The folder must exist, and the record must
 * carry its own number and a files object. */
ap_status local_load_record(const local_registry *registry, const char *model, int version,
                            json_t **record, ap_error *err)
{
    char version_dir[PATH_SIZE], path[PATH_SIZE];
    *record = NULL;
    ap_status status =
        local_version_dir_path(registry, model, version, version_dir, sizeof(version_dir), err);
    if (status != AP_OK)
        return status;
    struct stat info;
    if (stat(version_dir, &info) != 0 || !S_ISDIR(info.st_mode))
        return ap_error_set(err, AP_ERR_NOT_FOUND,
                            "version %d not found; list the versions to see which exist", version);
    status = ap_path_join(path, sizeof(path), version_dir, AP_REGISTRY_VERSION_FILE, err);
    if (status != AP_OK)
        return status;
    json_error_t parse_error;
    json_t *value = json_load_file(path, JSON_REJECT_DUPLICATES, &parse_error);
    json_t *number = json_object_get(value, "version");
    if (value == NULL || !json_is_integer(number) || json_integer_value(number) != version ||
        !json_is_object(json_object_get(value, "files"))) {
        json_decref(value);
        return ap_error_set(err, AP_ERR_FORMAT,
                            "version %d is incomplete: %s is missing or damaged (%s); register "
                            "the model again as a new version",
                            version, path, value == NULL ? parse_error.text : "wrong fields");
    }
    *record = value;
    return AP_OK;
}

static ap_status check_record_file(const char *version_dir, int version, const char *name,
                                   json_t *entry, ap_error *err)
{
    ap_status status = registry_check_file_name(name, err);
    if (status != AP_OK) {
        ap_error_prefix(err, "version %d lists an unsafe file name", version);
        return status;
    }
    const char *expected = json_string_value(json_object_get(entry, "sha256"));
    json_t *size_value = json_object_get(entry, "size");
    if (expected == NULL || !json_is_integer(size_value))
        return ap_error_set(err, AP_ERR_FORMAT,
                            "version %d: version.json lacks the sha256 or size of %s; register "
                            "the model again as a new version",
                            version, name);
    char path[PATH_SIZE], actual[65];
    long long size = 0;
    status = ap_path_join(path, sizeof(path), version_dir, name, err);
    if (status == AP_OK)
        status = local_hash_file(path, actual, &size, err);
    /* A listed file that is gone means a damaged registry folder, not a
     * name that the caller got wrong. */
    if (status == AP_ERR_NOT_FOUND) {
        status = AP_ERR_IO;
        if (err != NULL)
            err->code = AP_ERR_IO;
    }
    if (status != AP_OK) {
        ap_error_prefix(err,
                        "version %d is incomplete (restore the file, or point the alias at "
                        "another version with apiary registry rollback --to VERSION --reason "
                        "TEXT)",
                        version);
        return status;
    }
    if (strcmp(actual, expected) != 0 || size != json_integer_value(size_value))
        return ap_error_set(err, AP_ERR_FORMAT,
                            "version %d: %s has sha256 %s (%lld bytes) but was registered with "
                            "%s (%lld bytes); the file changed after registration, so restore it, "
                            "or point the alias at another version (apiary registry rollback "
                            "--to VERSION --reason TEXT)",
                            version, name, actual, size, expected,
                            (long long)json_integer_value(size_value));
    return AP_OK;
}

/* Load a version's record and check every listed file against its sha256. */
ap_status local_verify_record(const local_registry *registry, const char *model, int version,
                              json_t **record_out, ap_error *err)
{
    json_t *record = NULL;
    ap_status status = local_load_record(registry, model, version, &record, err);
    if (status != AP_OK)
        return status;
    char version_dir[PATH_SIZE];
    local_version_dir_path(registry, model, version, version_dir, sizeof(version_dir), err);
    json_t *files = json_object_get(record, "files");
    if (json_object_get(files, AP_REGISTRY_MODEL_FILE) == NULL ||
        json_object_get(files, AP_REGISTRY_CARD_FILE) == NULL)
        status = ap_error_set(err, AP_ERR_FORMAT,
                              "version %d lists no %s or %s; register the model again", version,
                              AP_REGISTRY_MODEL_FILE, AP_REGISTRY_CARD_FILE);
    const char *name;
    json_t *entry;
    json_object_foreach(files, name, entry)
    {
        if (status == AP_OK)
            status = check_record_file(version_dir, version, name, entry, err);
    }
    if (status == AP_OK && record_out != NULL)
        *record_out = record;
    else
        json_decref(record);
    return status;
}

/* ---- Listing and showing versions ---- */

static int compare_ints(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static ap_status scan_versions(const char *versions_dir, int **numbers, size_t *count,
                               ap_error *err)
{
    *numbers = NULL;
    *count = 0;
    DIR *dir = opendir(versions_dir);
    if (dir == NULL && errno == ENOENT)
        return AP_OK;
    if (dir == NULL)
        return ap_error_set(err, AP_ERR_IO, "cannot list %s: %s", versions_dir, strerror(errno));
    size_t capacity = 0;
    ap_status status = AP_OK;
    struct dirent *entry;
    int number;
    while (status == AP_OK && (entry = readdir(dir)) != NULL) {
        if (!parse_version_dir(entry->d_name, &number))
            continue;
        if (*count == capacity) {
            capacity = capacity > 0 ? 2 * capacity : 16;
            int *grown = realloc(*numbers, capacity * sizeof(**numbers));
            if (grown == NULL) {
                status = ap_error_set(err, AP_ERR_NOMEM, "cannot list %s", versions_dir);
                break;
            }
            *numbers = grown;
        }
        (*numbers)[(*count)++] = number;
    }
    closedir(dir);
    if (status != AP_OK) {
        free(*numbers);
        *numbers = NULL;
        *count = 0;
        return status;
    }
    /* A registry without versions has no array, and qsort must not get a null pointer. */
    if (*count > 1)
        qsort(*numbers, *count, sizeof(**numbers), compare_ints);
    return AP_OK;
}

static ap_status collect_aliases(const json_t *doc, ap_registry_version_info *info, ap_error *err)
{
    json_t *aliases = json_object_get(doc, "aliases");
    const char *alias;
    json_t *version;
    json_object_foreach(aliases, alias, version)
    {
        if (json_integer_value(version) != info->version)
            continue;
        ap_status status = registry_add_alias(info, alias, err);
        if (status != AP_OK)
            return status;
    }
    return AP_OK;
}

/* True when every file that record lists is present in the version's
 * folder. Only presence is checked, so that listing stays cheap; the files'
 * hashes are checked when a version is read. */
static bool listed_files_present(const local_registry *registry, const char *model, int version,
                                 const json_t *record)
{
    char version_dir[PATH_SIZE], path[PATH_SIZE];
    if (local_version_dir_path(registry, model, version, version_dir, sizeof(version_dir), NULL) !=
        AP_OK)
        return false;
    const char *name;
    const json_t *entry;
    json_object_foreach((json_t *)json_object_get(record, "files"), name, entry)
    {
        if (ap_path_join(path, sizeof(path), version_dir, name, NULL) != AP_OK ||
            !ap_path_exists(path))
            return false;
    }
    return true;
}

static void describe_version(const local_registry *registry, const char *model,
                             ap_registry_version_info *info)
{
    json_t *record = NULL;
    info->complete = local_load_record(registry, model, info->version, &record, NULL) == AP_OK &&
                     listed_files_present(registry, model, info->version, record);
    const char *created = json_string_value(json_object_get(record, "created"));
    const char *verdict =
        json_string_value(json_object_get(json_object_get(record, "validation"), "verdict"));
    snprintf(info->created, sizeof(info->created), "%s", created != NULL ? created : "");
    snprintf(info->verdict, sizeof(info->verdict), "%s", verdict != NULL ? verdict : "none");
    json_decref(record);
}

ap_status local_list_versions(ap_registry *base, const char *model,
                              ap_registry_version_info **versions, size_t *count, ap_error *err)
{
    const local_registry *registry = (const local_registry *)base;
    char model_dir[PATH_SIZE], versions_dir[PATH_SIZE];
    *versions = NULL;
    *count = 0;
    json_t *doc = NULL;
    ap_status status = local_load_model_aliases(registry, model, model_dir, &doc, err);
    int *numbers = NULL;
    size_t found = 0;
    if (status == AP_OK)
        status = ap_path_join(versions_dir, sizeof(versions_dir), model_dir, "versions", err);
    if (status == AP_OK)
        status = scan_versions(versions_dir, &numbers, &found, err);
    ap_registry_version_info *list = NULL;
    if (status == AP_OK && found > 0) {
        list = calloc(found, sizeof(*list));
        if (list == NULL)
            status = ap_error_set(err, AP_ERR_NOMEM, "cannot list %s", versions_dir);
    }
    for (size_t i = 0; status == AP_OK && i < found; i++) {
        list[i].version = numbers[i];
        describe_version(registry, model, &list[i]);
        status = collect_aliases(doc, &list[i], err);
    }
    free(numbers);
    json_decref(doc);
    if (status != AP_OK) {
        ap_registry_free_versions(list, found);
        return status;
    }
    *versions = list;
    *count = found;
    return AP_OK;
}

ap_status local_file_path(ap_registry *base, const char *model, int version, const char *file_name,
                          char *path, size_t path_size, ap_error *err)
{
    const local_registry *registry = (const local_registry *)base;
    char version_dir[PATH_SIZE];
    json_t *record = NULL;
    ap_status status = registry_check_file_name(file_name, err);
    if (status == AP_OK)
        status = local_load_record(registry, model, version, &record, err);
    if (status == AP_OK)
        status =
            local_version_dir_path(registry, model, version, version_dir, sizeof(version_dir), err);
    if (status == AP_OK)
        status = ap_path_join(path, path_size, version_dir, file_name, err);
    bool listed = json_object_get(json_object_get(record, "files"), file_name) != NULL;
    json_decref(record);
    if (status != AP_OK || ap_path_exists(path))
        return status;
    if (listed)
        return ap_error_set(err, AP_ERR_IO,
                            "version %d lists %s, but %s is missing; restore the file, or point "
                            "the alias at another version (apiary registry rollback --to VERSION "
                            "--reason TEXT)",
                            version, file_name, path);
    return ap_error_set(err, AP_ERR_NOT_FOUND,
                        "version %d has no file %s; show the version to see its files", version,
                        file_name);
}
