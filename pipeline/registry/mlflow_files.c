/* Checking and downloading the files of a version in the MLflow backend.
 * Every download is hashed on the fly and compared with the sha256 and size
 * in the version's apiary.file.* tags, so a file that changed on the server
 * after registration is reported, never used. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/registry/mlflow_internal.h"

/* ---- Checking files on the server ---- */

static ap_status require_ready(const mlflow_version *version, ap_error *err)
{
    const char *status = json_string_value(json_object_get(version->record, "status"));
    if (status != NULL && strcmp(status, "READY") == 0)
        return AP_OK;
    const char *message = json_string_value(json_object_get(version->record, "status_message"));
    return ap_error_set(err, AP_ERR_INVALID, "version %d is not READY but %s%s%.300s",
                        version->number, status != NULL ? status : "without a status",
                        message != NULL && message[0] != '\0' ? ": " : "",
                        message != NULL ? message : "");
}

static ap_status version_artifact_path(const mlflow_version *version, const char *name, char *path,
                                       size_t size, ap_error *err)
{
    char dir[MLFLOW_PATH_MAX];
    const char *source = json_string_value(json_object_get(version->record, "source"));
    ap_status status = mlflow_artifact_path(source, dir, sizeof(dir), err);
    if (status != AP_OK)
        return ap_error_prefix(err, "version %d", version->number);
    if (snprintf(path, size, "%s/%s", dir, name) >= (int)size)
        return ap_error_set(err, AP_ERR_INVALID, "artifact path %s/%s is too long", dir, name);
    return AP_OK;
}

static ap_status check_download(const mlflow_version *version, const char *name,
                                const json_t *entry, const char *sha256, long long size,
                                ap_error *err)
{
    const char *expected = json_string_value(json_object_get(entry, "sha256"));
    long long expected_size = (long long)json_integer_value(json_object_get(entry, "size"));
    if (expected != NULL && strcmp(expected, sha256) == 0 && expected_size == size)
        return AP_OK;
    return ap_error_set(err, AP_ERR_FORMAT,
                        "version %d: %s on the server has sha256 %s (%lld bytes) but was "
                        "registered with %s (%lld bytes); the artifact changed after "
                        "registration, so register the model again as a new version",
                        version->number, name, sha256, size, expected != NULL ? expected : "?",
                        expected_size);
}

/* Download one file of a version, into file when it is not NULL, and check it. */
static ap_status fetch_file(mlflow_registry *registry, const mlflow_version *version,
                            const char *name, const json_t *entry, ap_atomic_file *file,
                            ap_error *err)
{
    char path[MLFLOW_PATH_MAX], sha256[65];
    long long size = 0;
    ap_status status = version_artifact_path(version, name, path, sizeof(path), err);
    if (status == AP_OK)
        status = mlflow_download(&registry->client, path, file, sha256, &size, err);
    if (status == AP_OK)
        status = check_download(version, name, entry, sha256, size, err);
    return status;
}

static ap_status require_model_files(const mlflow_version *version, const json_t *files,
                                     ap_error *err)
{
    if (json_object_get(files, AP_REGISTRY_MODEL_FILE) != NULL &&
        json_object_get(files, AP_REGISTRY_CARD_FILE) != NULL)
        return AP_OK;
    return ap_error_set(err, AP_ERR_FORMAT,
                        "version %d lists no %s or %s in its %s* tags; it was not registered "
                        "through apiary, so register the model again",
                        version->number, AP_REGISTRY_MODEL_FILE, AP_REGISTRY_CARD_FILE,
                        MLFLOW_FILE_TAG_PREFIX);
}

ap_status mlflow_verify_files(mlflow_registry *registry, const mlflow_version *version,
                              ap_error *err)
{
    json_t *files = NULL;
    ap_status status = require_ready(version, err);
    if (status == AP_OK)
        status = mlflow_version_files(version, &files, err);
    if (status == AP_OK)
        status = require_model_files(version, files, err);
    const char *name;
    json_t *entry;
    json_object_foreach(files, name, entry)
    {
        if (status == AP_OK)
            status = fetch_file(registry, version, name, entry, NULL, err);
    }
    json_decref(files);
    return status;
}

/* ---- Downloading files ---- */

/* True when the file at path has the size and sha256 that the entry records. */
static bool cached_copy_matches(const char *path, const json_t *entry)
{
    struct stat info;
    char sha256[65];
    if (stat(path, &info) != 0 || !S_ISREG(info.st_mode) ||
        (long long)info.st_size != (long long)json_integer_value(json_object_get(entry, "size")))
        return false;
    if (ap_sha256_file(path, sha256, NULL) != AP_OK)
        return false;
    const char *expected = json_string_value(json_object_get(entry, "sha256"));
    return expected != NULL && strcmp(expected, sha256) == 0;
}

/* Download one file to path unless a matching copy is already there. */
static ap_status download_to(mlflow_registry *registry, const mlflow_version *version,
                             const char *name, const json_t *entry, const char *path, ap_error *err)
{
    if (cached_copy_matches(path, entry))
        return AP_OK;
    ap_atomic_file file;
    ap_status status = ap_atomic_open(&file, path, err);
    if (status != AP_OK)
        return status;
    status = fetch_file(registry, version, name, entry, &file, err);
    if (status == AP_OK)
        return ap_atomic_commit(&file, err);
    ap_atomic_abort(&file);
    return status;
}

static ap_status find_file_entry(const mlflow_version *version, const char *file_name,
                                 json_t **files, json_t **entry, ap_error *err)
{
    ap_status status = mlflow_version_files(version, files, err);
    if (status != AP_OK)
        return status;
    *entry = json_object_get(*files, file_name);
    if (*entry == NULL)
        return ap_error_set(err, AP_ERR_NOT_FOUND,
                            "version %d has no file %s; show the version to see its files",
                            version->number, file_name);
    return AP_OK;
}

/* CACHE/SERVER/MODEL/VERSION, where SERVER is the URL without its scheme and
 * with every character other than letters, digits, '.' and '-' made '_'. */
static ap_status cache_folder(const mlflow_registry *registry, const char *model, int version,
                              char *path, size_t size, ap_error *err)
{
    if (registry->cache_dir[0] == '\0')
        return ap_error_set(err, AP_ERR_INVALID,
                            "no folder for downloaded MLflow files: set APIARY_MLFLOW_CACHE or "
                            "HOME");
    const char *server = strstr(registry->location, "://");
    server = server != NULL ? server + 3 : registry->location;
    char key[MLFLOW_URL_MAX];
    size_t length = 0;
    for (const char *p = server; *p != '\0' && length + 1 < sizeof(key); p++) {
        char c = *p;
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                     c == '.' || c == '-';
        key[length++] = plain ? c : '_';
    }
    key[length] = '\0';
    if (snprintf(path, size, "%s/%s/%s/%d", registry->cache_dir, key, model, version) >= (int)size)
        return ap_error_set(err, AP_ERR_INVALID, "cache path under %s is too long",
                            registry->cache_dir);
    return AP_OK;
}

ap_status mlflow_file_path(ap_registry *base, const char *model, int version, const char *file_name,
                           char *path, size_t path_size, ap_error *err)
{
    mlflow_registry *registry = (mlflow_registry *)base;
    char folder[MLFLOW_PATH_MAX];
    mlflow_version found = {0};
    json_t *files = NULL, *entry = NULL;
    ap_status status = ap_registry_check_model_name(model, err);
    if (status == AP_OK)
        status = mlflow_check_file_name(file_name, err);
    if (status == AP_OK)
        status = mlflow_get_version(registry, model, version, &found, err);
    if (status == AP_OK)
        status = find_file_entry(&found, file_name, &files, &entry, err);
    if (status == AP_OK)
        status = cache_folder(registry, model, version, folder, sizeof(folder), err);
    if (status == AP_OK)
        status = ap_mkdirs(folder, err);
    if (status == AP_OK)
        status = ap_path_join(path, path_size, folder, file_name, err);
    if (status == AP_OK)
        status = download_to(registry, &found, file_name, entry, path, err);
    json_decref(files);
    mlflow_version_free(&found);
    return status;
}

static ap_status write_record(const char *folder, const char *model, const mlflow_version *version,
                              ap_error *err)
{
    json_t *record = NULL;
    char path[MLFLOW_PATH_MAX];
    ap_status status = mlflow_build_record(model, version, &record, err);
    if (status == AP_OK)
        status = ap_path_join(path, sizeof(path), folder, AP_REGISTRY_VERSION_FILE, err);
    char *text = status == AP_OK ? json_dumps(record, JSON_INDENT(2)) : NULL;
    if (status == AP_OK && text == NULL)
        status = ap_error_set(err, AP_ERR_NOMEM, "cannot format %s", path);
    if (status == AP_OK)
        status = ap_write_atomic(path, text, strlen(text), err);
    free(text);
    json_decref(record);
    return status;
}

ap_status mlflow_download_version(mlflow_registry *registry, const char *model, int version,
                                  const char *folder, ap_error *err)
{
    mlflow_version found = {0};
    json_t *files = NULL;
    ap_status status = ap_registry_check_model_name(model, err);
    if (status == AP_OK)
        status = mlflow_get_version(registry, model, version, &found, err);
    if (status == AP_OK)
        status = mlflow_version_files(&found, &files, err);
    if (status == AP_OK)
        status = require_model_files(&found, files, err);
    if (status == AP_OK)
        status = ap_mkdirs(folder, err);
    const char *name;
    json_t *entry;
    json_object_foreach(files, name, entry)
    {
        char path[MLFLOW_PATH_MAX];
        if (status == AP_OK)
            status = ap_path_join(path, sizeof(path), folder, name, err);
        if (status == AP_OK)
            status = download_to(registry, &found, name, entry, path, err);
    }
    if (status == AP_OK)
        status = write_record(folder, model, &found, err);
    json_decref(files);
    mlflow_version_free(&found);
    return status;
}
