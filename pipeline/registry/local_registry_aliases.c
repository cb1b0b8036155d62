/* Aliases in the local folder registry: MODEL/aliases.json stores each
 * alias's version and the history of moves, and every change is a
 * read-modify-write cycle under the model lock. */

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/registry/local_registry_internal.h"
#include "pipeline/registry/registry_internal.h"

#define JSON_FILE_MAX (64u << 20)

/* ---- Checking a move ---- */

static ap_status check_move(const ap_registry_move *move, ap_error *err)
{
    if (move != NULL && move->forced && (move->reason == NULL || move->reason[0] == '\0'))
        return ap_error_set(err, AP_ERR_INVALID,
                            "a forced alias move needs a reason; give the operator's reason");
    return AP_OK;
}

/* "champion" needs a passing report that names the weights, unless forced. */
static ap_status check_alias_policy(const char *alias, int version, const json_t *record,
                                    const ap_registry_move *move, ap_error *err)
{
    if (strcmp(alias, AP_REGISTRY_CHAMPION) != 0 || (move != NULL && move->forced))
        return AP_OK;
    json_t *validation = json_object_get(record, "validation");
    const char *verdict = json_string_value(json_object_get(validation, "verdict"));
    bool matches = json_is_true(json_object_get(validation, "model_sha256_match"));
    if (verdict != NULL && strcmp(verdict, "pass") == 0 && matches)
        return AP_OK;
    return ap_error_set(err, AP_ERR_INVALID,
                        "version %d cannot become %s: its validation verdict is %s and its "
                        "report %s its weights; choose a version with a passing report, or "
                        "force the move with --force --reason TEXT",
                        version, alias, verdict != NULL ? verdict : "missing",
                        matches ? "names" : "does not name");
}

/* Build the model folder path and check the alias name and the move. */
static ap_status check_alias_change(const local_registry *registry, const char *model,
                                    const char *alias, const ap_registry_move *move,
                                    char model_dir[PATH_SIZE], ap_error *err)
{
    ap_status status = local_model_dir_path(registry, model, model_dir, PATH_SIZE, err);
    if (status == AP_OK)
        status = ap_registry_check_alias_name(alias, err);
    if (status == AP_OK)
        status = check_move(move, err);
    return status;
}

/* ---- Aliases and history ---- */

static ap_status aliases_path(const char *model_dir, char *path, size_t size, ap_error *err)
{
    return ap_path_join(path, size, model_dir, ALIASES_FILE, err);
}

static ap_status check_aliases_doc(const json_t *doc, const char *path, ap_error *err)
{
    json_t *aliases = json_object_get(doc, "aliases");
    bool ok = json_is_object(aliases) && json_is_array(json_object_get(doc, "history"));
    const char *alias;
    json_t *version;
    json_object_foreach(aliases, alias, version)
    {
        ok = ok && json_is_integer(version) && json_integer_value(version) >= 1 &&
             ap_registry_check_alias_name(alias, NULL) == AP_OK;
    }
    if (!ok)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s does not hold an \"aliases\" object of version numbers and a "
                            "\"history\" array; restore it from a backup",
                            path);
    return AP_OK;
}

/* Load aliases.json. A model without one has no aliases and no history. */
static ap_status load_aliases(const char *model_dir, json_t **doc, ap_error *err)
{
    char path[PATH_SIZE];
    *doc = NULL;
    ap_status status = aliases_path(model_dir, path, sizeof(path), err);
    if (status != AP_OK)
        return status;
    uint8_t *text = NULL;
    size_t size = 0;
    ap_error read_error = {0};
    status = ap_read_file(path, JSON_FILE_MAX, &text, &size, &read_error);
    if (status == AP_ERR_NOT_FOUND) {
        *doc =
            json_pack("{s:i, s:{}, s:[]}", "format_version", FORMAT_VERSION, "aliases", "history");
        return *doc != NULL ? AP_OK : ap_error_set(err, AP_ERR_NOMEM, "cannot build %s", path);
    }
    if (status != AP_OK) {
        if (err != NULL)
            *err = read_error;
        return status;
    }
    json_error_t parse_error;
    json_t *value = json_loadb((const char *)text, size, JSON_REJECT_DUPLICATES, &parse_error);
    free(text);
    if (value == NULL)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s is not valid JSON (%s at line %d); restore "
                            "it from a backup",
                            path, parse_error.text, parse_error.line);
    status = check_aliases_doc(value, path, err);
    if (status != AP_OK) {
        json_decref(value);
        return status;
    }
    *doc = value;
    return AP_OK;
}

ap_status local_load_model_aliases(const local_registry *registry, const char *model,
                                   char model_dir[PATH_SIZE], json_t **doc, ap_error *err)
{
    ap_status status = local_model_dir_path(registry, model, model_dir, PATH_SIZE, err);
    if (status == AP_OK)
        status = local_require_model(model_dir, err);
    if (status == AP_OK)
        status = load_aliases(model_dir, doc, err);
    return status;
}

static int alias_target(const json_t *doc, const char *alias)
{
    json_t *version = json_object_get(json_object_get(doc, "aliases"), alias);
    return version != NULL ? (int)json_integer_value(version) : 0;
}

static json_t *version_or_null(int version)
{
    return version > 0 ? json_integer(version) : json_null();
}

/* Point alias at version in doc and append the move to its history. */
static ap_status record_move(json_t *doc, const char *alias, const char *action, int from, int to,
                             const ap_registry_move *move, ap_error *err)
{
    char now[32];
    local_format_utc_now(now);
    const char *reason = move != NULL ? move->reason : NULL;
    json_t *reason_value = reason != NULL ? json_string(reason) : json_null();
    if (reason_value == NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "the reason for moving alias %s is not valid "
                            "UTF-8; write it in UTF-8",
                            alias);
    json_t *entry = json_pack("{s:s, s:s, s:s, s:o, s:i, s:o, s:b}", "time", now, "alias", alias,
                              "action", action, "from", version_or_null(from), "to", to, "reason",
                              reason_value, "forced", move != NULL && move->forced);
    if (entry == NULL || json_array_append_new(json_object_get(doc, "history"), entry) != 0 ||
        json_object_set_new(json_object_get(doc, "aliases"), alias, json_integer(to)) != 0)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot record the move of alias %s", alias);
    return AP_OK;
}

static ap_status save_aliases(const char *model_dir, const json_t *doc, ap_error *err)
{
    char path[PATH_SIZE];
    ap_status status = aliases_path(model_dir, path, sizeof(path), err);
    if (status != AP_OK)
        return status;
    return local_write_json(path, doc, err);
}

static ap_status set_alias_locked(const char *model_dir, const char *alias, int version,
                                  const ap_registry_move *move, int *previous, ap_error *err)
{
    json_t *doc = NULL;
    ap_status status = load_aliases(model_dir, &doc, err);
    if (status != AP_OK)
        return status;
    int current = alias_target(doc, alias);
    if (previous != NULL)
        *previous = current;
    if (current != version)
        status = record_move(doc, alias, "set", current, version, move, err);
    if (current != version && status == AP_OK)
        status = save_aliases(model_dir, doc, err);
    json_decref(doc);
    return status;
}

ap_status local_set_alias(ap_registry *base, const char *model, const char *alias, int version,
                          const ap_registry_move *move, int *previous, ap_error *err)
{
    const local_registry *registry = (const local_registry *)base;
    char model_dir[PATH_SIZE];
    ap_status status = check_alias_change(registry, model, alias, move, model_dir, err);
    if (status == AP_OK)
        status = local_require_model(model_dir, err);
    if (status != AP_OK)
        return status;

    /* Versions never change after publishing, so they are checked before locking. */
    json_t *record = NULL;
    status = local_verify_record(registry, model, version, &record, err);
    if (status == AP_OK)
        status = check_alias_policy(alias, version, record, move, err);
    json_decref(record);
    if (status != AP_OK)
        return status;

    int lock_fd = -1;
    status = local_lock_model(model_dir, LOCK_EX, &lock_fd, err);
    if (status != AP_OK)
        return status;
    status = set_alias_locked(model_dir, alias, version, move, previous, err);
    local_unlock_model(lock_fd);
    return status;
}

ap_status local_get_alias(ap_registry *base, const char *model, const char *alias, int *version,
                          ap_error *err)
{
    const local_registry *registry = (const local_registry *)base;
    char model_dir[PATH_SIZE];
    ap_status status = local_model_dir_path(registry, model, model_dir, sizeof(model_dir), err);
    if (status == AP_OK)
        status = ap_registry_check_alias_name(alias, err);
    if (status == AP_OK)
        status = local_require_model(model_dir, err);
    json_t *doc = NULL;
    if (status == AP_OK)
        status = load_aliases(model_dir, &doc, err);
    if (status != AP_OK)
        return status;
    int target = alias_target(doc, alias);
    json_decref(doc);
    if (target == 0)
        return ap_error_set(err, AP_ERR_NOT_FOUND,
                            "alias %s does not point at any version; set it first", alias);
    char version_dir[PATH_SIZE];
    struct stat info;
    status = local_version_dir_path(registry, model, target, version_dir, sizeof(version_dir), err);
    if (status != AP_OK)
        return status;
    if (stat(version_dir, &info) != 0 || !S_ISDIR(info.st_mode))
        return ap_error_set(err, AP_ERR_IO,
                            "alias %s points at version %d, but %s does not exist; point the "
                            "alias at an existing version with apiary registry rollback --alias "
                            "%s --to VERSION --reason TEXT",
                            alias, target, version_dir, alias);
    *version = target;
    return AP_OK;
}

ap_status local_list_aliases(ap_registry *base, const char *model, ap_registry_alias **aliases,
                             size_t *count, ap_error *err)
{
    char model_dir[PATH_SIZE];
    json_t *doc = NULL;
    *aliases = NULL;
    *count = 0;
    ap_status status =
        local_load_model_aliases((const local_registry *)base, model, model_dir, &doc, err);
    if (status != AP_OK)
        return status;
    json_t *map = json_object_get(doc, "aliases");
    ap_registry_alias *list = calloc(json_object_size(map) + 1, sizeof(*list));
    if (list == NULL) {
        json_decref(doc);
        return ap_error_set(err, AP_ERR_NOMEM, "cannot list the aliases of model %s", model);
    }
    const char *alias;
    json_t *version;
    json_object_foreach(map, alias, version)
    {
        snprintf(list[*count].name, sizeof(list[*count].name), "%s", alias);
        list[*count].version = (int)json_integer_value(version);
        (*count)++;
    }
    json_decref(doc);
    *aliases = list;
    return AP_OK;
}

static ap_status rollback_locked(const local_registry *registry, const char *model,
                                 const char *model_dir, const char *alias, int target,
                                 const ap_registry_move *move, int *version, ap_error *err)
{
    json_t *doc = NULL, *record = NULL;
    ap_status status = load_aliases(model_dir, &doc, err);
    if (status != AP_OK)
        return status;
    int current = alias_target(doc, alias);
    int destination = 0;
    status = registry_choose_rollback(json_object_get(doc, "history"), alias, current, target,
                                      &destination, err);
    if (status == AP_OK)
        status = local_verify_record(registry, model, destination, &record, err);
    if (status == AP_OK)
        status = check_alias_policy(alias, destination, record, move, err);
    if (status == AP_OK)
        status = record_move(doc, alias, target > 0 ? "rollback-to" : "rollback", current,
                             destination, move, err);
    if (status == AP_OK)
        status = save_aliases(model_dir, doc, err);
    if (status == AP_OK && version != NULL)
        *version = destination;
    json_decref(record);
    json_decref(doc);
    return status;
}

ap_status local_rollback(ap_registry *base, const char *model, const char *alias, int target,
                         const ap_registry_move *move, int *version, ap_error *err)
{
    const local_registry *registry = (const local_registry *)base;
    char model_dir[PATH_SIZE];
    ap_status status = check_alias_change(registry, model, alias, move, model_dir, err);
    if (status == AP_OK && target < 0)
        status = ap_error_set(err, AP_ERR_INVALID,
                              "rollback target %d is invalid; give a version number, or 0 for "
                              "the previous version",
                              target);
    if (status == AP_OK)
        status = local_require_model(model_dir, err);
    int lock_fd = -1;
    if (status == AP_OK)
        status = local_lock_model(model_dir, LOCK_EX, &lock_fd, err);
    if (status != AP_OK)
        return status;
    status = rollback_locked(registry, model, model_dir, alias, target, move, version, err);
    local_unlock_model(lock_fd);
    return status;
}

ap_status local_history(ap_registry *base, const char *model, json_t **entries, ap_error *err)
{
    char model_dir[PATH_SIZE];
    json_t *doc = NULL;
    ap_status status =
        local_load_model_aliases((const local_registry *)base, model, model_dir, &doc, err);
    if (status != AP_OK)
        return status;
    *entries = json_incref(json_object_get(doc, "history"));
    json_decref(doc);
    return AP_OK;
}
