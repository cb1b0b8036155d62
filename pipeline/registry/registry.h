#ifndef APIARY_REGISTRY_REGISTRY_H
#define APIARY_REGISTRY_REGISTRY_H

/* The model registry: numbered, immutable versions of a named model and
 * aliases ("champion", "challenger", ...) that point at one version each.
 * Every alias move is appended to a history so that it can be audited and
 * rolled back. Callers use only the functions below. Each backend (the local
 * folder, an MLflow Model Registry) fills an ap_registry_ops table.
 *
 * Names: a model or alias name matches [a-z][a-z0-9_-]* (models up to 64
 * characters, aliases up to 32). An alias may not look like a version
 * reference ("3" or "v3"), because ap_registry_resolve reads those as numbers.
 *
 * Policy: the alias "champion" moves only to a version whose validation
 * report passed and names the same model.safetensors sha256, unless the move
 * is forced with an operator reason. No alias moves to a version whose files
 * no longer match the hashes recorded at registration, forced or not. */

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pipeline/common/status.h"

#define AP_REGISTRY_MODEL_NAME_MAX 64
#define AP_REGISTRY_ALIAS_NAME_MAX 32
#define AP_REGISTRY_CHAMPION       "champion"
#define AP_REGISTRY_CHALLENGER     "challenger"

/* File names inside a version. */
#define AP_REGISTRY_MODEL_FILE   "model.safetensors"
#define AP_REGISTRY_CARD_FILE    "model_card.json"
#define AP_REGISTRY_REPORT_FILE  "report.json"
#define AP_REGISTRY_VERSION_FILE "version.json"

/* A free-form key and value recorded with a version. */
typedef struct {
    const char *key;
    const char *value;
} ap_registry_tag;

/* The files and facts of a new version. Files are copied, never moved.
 *
 * The validation report, when given, must be a JSON object. The registry
 * reads two of its fields: "passed" (boolean, the gate verdict) and
 * "model_sha256" (the sha256 of the weights it validated). A report that
 * names different weights is rejected unless force is set. */
typedef struct {
    const char *model_path;         /* required; stored as model.safetensors */
    const char *model_card_path;    /* required; stored as model_card.json */
    const char *report_path;        /* optional; stored as report.json */
    const char *const *attachments; /* optional extra files, stored under their base names */
    size_t attachment_count;
    const char *source_run; /* optional run folder the files came from */
    const ap_registry_tag *tags;
    size_t tag_count;
    bool force;               /* accept a report that names other weights */
    const char *force_reason; /* required when force is set */
} ap_registry_new_version;

/* One row of a version listing. */
typedef struct {
    int version;
    bool complete;    /* version.json is present and parses (files are not hashed) */
    char created[32]; /* UTC, ISO 8601 */
    char verdict[16]; /* "pass", "fail", "unknown" (report without a verdict) or "none" */
    char **aliases;   /* aliases pointing at this version */
    size_t alias_count;
} ap_registry_version_info;

/* An alias and the version it points at. */
typedef struct {
    char name[AP_REGISTRY_ALIAS_NAME_MAX + 1];
    int version;
} ap_registry_alias;

/* How an alias moves: to a named version or back through its history. */
typedef struct {
    const char *reason; /* recorded in the history; required when forced */
    bool forced;        /* allow "champion" on a version without a passing report */
} ap_registry_move;

typedef struct ap_registry ap_registry;

/* The operations a backend provides; see the wrappers below for contracts. */
typedef struct {
    ap_status (*register_version)(ap_registry *registry, const char *model,
                                  const ap_registry_new_version *request, int *version,
                                  ap_error *err);
    ap_status (*set_alias)(ap_registry *registry, const char *model, const char *alias, int version,
                           const ap_registry_move *move, int *previous, ap_error *err);
    ap_status (*get_alias)(ap_registry *registry, const char *model, const char *alias,
                           int *version, ap_error *err);
    ap_status (*rollback)(ap_registry *registry, const char *model, const char *alias, int target,
                          const ap_registry_move *move, int *version, ap_error *err);
    ap_status (*list_versions)(ap_registry *registry, const char *model,
                               ap_registry_version_info **versions, size_t *count, ap_error *err);
    ap_status (*list_aliases)(ap_registry *registry, const char *model, ap_registry_alias **aliases,
                              size_t *count, ap_error *err);
    ap_status (*show_version)(ap_registry *registry, const char *model, int version, json_t **info,
                              ap_error *err);
    ap_status (*verify_version)(ap_registry *registry, const char *model, int version,
                                ap_error *err);
    ap_status (*history)(ap_registry *registry, const char *model, json_t **history, ap_error *err);
    ap_status (*file_path)(ap_registry *registry, const char *model, int version,
                           const char *file_name, char *path, size_t path_size, ap_error *err);
    ap_status (*check_location)(ap_registry *registry, ap_error *err);
    void (*close)(ap_registry *registry);
} ap_registry_ops;

/* Every backend's handle starts with this header. */
struct ap_registry {
    const ap_registry_ops *ops;
    const char *location; /* folder or URI, named in error messages */
};

/* Open the local folder backend at root (created on the first registration). */
ap_status ap_local_registry_open(const char *root, ap_registry **registry, ap_error *err);

/* Open the MLflow backend at a tracking server URL (http://, https:// or
 * mlflow://, which means plain HTTP) with default timeouts and retries; see
 * mlflow_registry.h. */
ap_status ap_mlflow_registry_open(const char *url, ap_registry **registry, ap_error *err);

/* Open the registry at uri: a folder path or file:// URI selects the local
 * backend, an http://, https:// or mlflow:// URL the MLflow backend. */
static inline ap_status ap_registry_open(const char *uri, ap_registry **registry, ap_error *err)
{
    *registry = NULL;
    if (uri == NULL || uri[0] == '\0')
        return ap_error_set(err, AP_ERR_INVALID,
                            "registry location is empty; set it to a folder path, a file:// URI "
                            "or an MLflow http:// URL");
    if (strncmp(uri, "file://", 7) == 0)
        return ap_local_registry_open(uri + 7, registry, err);
    if (strncmp(uri, "http://", 7) == 0 || strncmp(uri, "https://", 8) == 0 ||
        strncmp(uri, "mlflow://", 9) == 0)
        return ap_mlflow_registry_open(uri, registry, err);
    if (strstr(uri, "://") != NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "registry %.200s: unsupported scheme; use a folder path, a file:// "
                            "URI or an MLflow http://, https:// or mlflow:// URL",
                            uri);
    return ap_local_registry_open(uri, registry, err);
}

static inline void ap_registry_close(ap_registry *registry)
{
    if (registry != NULL)
        registry->ops->close(registry);
}

/* Open the registry at uri for a command that reads an existing registry:
 * like ap_registry_open, but a local folder that does not exist or cannot
 * be read fails with AP_ERR_IO. A missing model, version or alias inside it
 * stays AP_ERR_NOT_FOUND. An MLflow server is first reached by the request
 * that follows. */
static inline ap_status ap_registry_open_existing(const char *uri, ap_registry **registry,
                                                  ap_error *err)
{
    ap_status status = ap_registry_open(uri, registry, err);
    if (status == AP_OK)
        status = (*registry)->ops->check_location(*registry, err);
    if (status != AP_OK && *registry != NULL) {
        ap_registry_close(*registry);
        *registry = NULL;
    }
    return status;
}

static inline bool ap_registry_name_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* Parse a version reference, "3" or "v3", into a positive number. Returns
 * false for anything else, including leading zeros, signs and overflow. */
static inline bool ap_registry_parse_version(const char *text, int *version)
{
    const char *digits = (text[0] == 'v') ? text + 1 : text;
    if (digits[0] < '1' || digits[0] > '9')
        return false;
    long value = 0;
    for (const char *p = digits; *p != '\0'; p++) {
        if (*p < '0' || *p > '9')
            return false;
        value = value * 10 + (*p - '0');
        if (value > 1000000000L)
            return false;
    }
    *version = (int)value;
    return true;
}

/* Check the characters of a name. The kind ("model" or "alias") appears in the message. */
static inline ap_status ap_registry_check_name_chars(const char *kind, const char *name, size_t max,
                                                     ap_error *err)
{
    if (name == NULL || name[0] == '\0')
        return ap_error_set(err, AP_ERR_INVALID, "%s name is empty", kind);
    size_t length = strlen(name);
    bool chars_ok = name[0] >= 'a' && name[0] <= 'z' && length <= max;
    for (size_t i = 1; chars_ok && i < length; i++)
        chars_ok = ap_registry_name_char_ok(name[i]);
    if (!chars_ok)
        return ap_error_set(err, AP_ERR_INVALID,
                            "invalid %s name \"%.80s\": use a lowercase letter followed by up "
                            "to %zu lowercase letters, digits, '_' or '-'",
                            kind, name, max - 1);
    return AP_OK;
}

static inline ap_status ap_registry_check_model_name(const char *name, ap_error *err)
{
    return ap_registry_check_name_chars("model", name, AP_REGISTRY_MODEL_NAME_MAX, err);
}

static inline ap_status ap_registry_check_alias_name(const char *name, ap_error *err)
{
    if (name == NULL)
        return ap_error_set(err, AP_ERR_INVALID, "alias name is empty");
    ap_status status = ap_registry_check_name_chars("alias", name, AP_REGISTRY_ALIAS_NAME_MAX, err);
    if (status != AP_OK)
        return status;
    if (name[0] == 'v' && name[1] != '\0' && name[1 + strspn(name + 1, "0123456789")] == '\0')
        return ap_error_set(err, AP_ERR_INVALID,
                            "invalid alias name \"%s\": it reads as a version number; "
                            "choose a name that is not v followed by digits",
                            name);
    return AP_OK;
}

/* Prefix a failed operation's message with the registry location and model. */
static inline ap_status ap_registry_add_context(const ap_registry *registry, const char *model,
                                                ap_status status, ap_error *err)
{
    if (status != AP_OK)
        ap_error_prefix(err, "registry %s, model %s", registry->location,
                        model != NULL ? model : "(none)");
    return status;
}

/* Register a new version of model. On success *version is its number, one
 * more than the highest existing version. */
static inline ap_status ap_registry_register(ap_registry *registry, const char *model,
                                             const ap_registry_new_version *request, int *version,
                                             ap_error *err)
{
    ap_status status = registry->ops->register_version(registry, model, request, version, err);
    return ap_registry_add_context(registry, model, status, err);
}

/* Point alias at version after checking the version's files. *previous (may
 * be NULL) receives the version the alias pointed at before, or 0. Setting
 * an alias to the version it already points at changes nothing and records
 * no history. */
static inline ap_status ap_registry_set_alias(ap_registry *registry, const char *model,
                                              const char *alias, int version,
                                              const ap_registry_move *move, int *previous,
                                              ap_error *err)
{
    ap_status status =
        registry->ops->set_alias(registry, model, alias, version, move, previous, err);
    return ap_registry_add_context(registry, model, status, err);
}

/* Look up alias. Returns AP_ERR_NOT_FOUND when it points nowhere, and
 * AP_ERR_IO when it points at a version that does not exist, which a
 * version folder removed by hand leaves behind. */
static inline ap_status ap_registry_get_alias(ap_registry *registry, const char *model,
                                              const char *alias, int *version, ap_error *err)
{
    ap_status status = registry->ops->get_alias(registry, model, alias, version, err);
    return ap_registry_add_context(registry, model, status, err);
}

/* Move alias back: to the version it pointed at before the current one
 * (target 0), skipping moves already rolled back, or to the version the
 * operator names (target > 0). *version (may be NULL) receives the new one. */
static inline ap_status ap_registry_rollback(ap_registry *registry, const char *model,
                                             const char *alias, int target,
                                             const ap_registry_move *move, int *version,
                                             ap_error *err)
{
    ap_status status = registry->ops->rollback(registry, model, alias, target, move, version, err);
    return ap_registry_add_context(registry, model, status, err);
}

/* List every version of model in ascending order with the aliases pointing at
 * each. Free the result with ap_registry_free_versions. */
static inline ap_status ap_registry_list(ap_registry *registry, const char *model,
                                         ap_registry_version_info **versions, size_t *count,
                                         ap_error *err)
{
    ap_status status = registry->ops->list_versions(registry, model, versions, count, err);
    return ap_registry_add_context(registry, model, status, err);
}

/* List every alias of model with the version it points at, also a version
 * that does not exist. Free the result with free(). */
static inline ap_status ap_registry_list_aliases(ap_registry *registry, const char *model,
                                                 ap_registry_alias **aliases, size_t *count,
                                                 ap_error *err)
{
    ap_status status = registry->ops->list_aliases(registry, model, aliases, count, err);
    return ap_registry_add_context(registry, model, status, err);
}

static inline void ap_registry_free_versions(ap_registry_version_info *versions, size_t count)
{
    for (size_t i = 0; versions != NULL && i < count; i++) {
        for (size_t j = 0; j < versions[i].alias_count; j++)
            free(versions[i].aliases[j]);
        free(versions[i].aliases);
    }
    free(versions);
}

/* Return a version's record (its version.json) as a new JSON reference. */
static inline ap_status ap_registry_show(ap_registry *registry, const char *model, int version,
                                         json_t **info, ap_error *err)
{
    ap_status status = registry->ops->show_version(registry, model, version, info, err);
    return ap_registry_add_context(registry, model, status, err);
}

/* Check that a version is complete and every file still has its recorded sha256. */
static inline ap_status ap_registry_verify(ap_registry *registry, const char *model, int version,
                                           ap_error *err)
{
    ap_status status = registry->ops->verify_version(registry, model, version, err);
    return ap_registry_add_context(registry, model, status, err);
}

/* Return the alias history, oldest first, as a new JSON array. Each entry has
 * "time", "alias", "action" ("set", "rollback" or "rollback-to"), "from"
 * (null for a new alias), "to", "reason" and "forced". */
static inline ap_status ap_registry_history(ap_registry *registry, const char *model,
                                            json_t **history, ap_error *err)
{
    ap_status status = registry->ops->history(registry, model, history, err);
    return ap_registry_add_context(registry, model, status, err);
}

/* Write into path a local path at which file_name of a version can be read. */
static inline ap_status ap_registry_file_path(ap_registry *registry, const char *model, int version,
                                              const char *file_name, char *path, size_t path_size,
                                              ap_error *err)
{
    ap_status status =
        registry->ops->file_path(registry, model, version, file_name, path, path_size, err);
    return ap_registry_add_context(registry, model, status, err);
}

/* Append to err's message the versions and aliases of model that exist,
 * for an error about a reference that names none of them. The code of err
 * stays as it is; a listing that fails appends nothing. */
void ap_registry_append_contents(ap_registry *registry, const char *model, ap_error *err);

/* Resolve ref, an alias name or a version reference ("3" or "v3"), to an
 * existing version number. AP_ERR_NOT_FOUND when nothing matches. */
static inline ap_status ap_registry_resolve(ap_registry *registry, const char *model,
                                            const char *ref, int *version, ap_error *err)
{
    int number;
    if (ref != NULL && ap_registry_parse_version(ref, &number)) {
        json_t *info = NULL;
        ap_status status = ap_registry_show(registry, model, number, &info, err);
        json_decref(info);
        if (status == AP_OK)
            *version = number;
        return status;
    }
    ap_status status = ap_registry_check_alias_name(ref, err);
    if (status != AP_OK)
        return ap_error_prefix(err, "cannot resolve \"%.80s\" as an alias or version number",
                               ref != NULL ? ref : "");
    return ap_registry_get_alias(registry, model, ref, version, err);
}

#endif
