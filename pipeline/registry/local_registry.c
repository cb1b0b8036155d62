/* The local folder backend of the model registry.
 *
 * Layout under the root folder:
 *   MODEL/versions/N/     one complete version: model.safetensors, model_card.json,
 *                         optional report.json and attachments, and version.json
 *   MODEL/aliases.json    {"format_version": 1, "aliases": {...}, "history": [...]}
 *   MODEL/.lock           flock target that serializes alias changes and registrations
 *   MODEL/.register-*     a version being written; renamed to versions/N when complete
 *
 * A version folder appears only through rename(2) of a finished staging
 * folder, so readers never see a partial version. Writers pick N as one more
 * than the highest existing number and move on to N + 1 when a concurrent
 * writer took N first. Registering weights that a complete version already
 * holds (the same model.safetensors sha256) returns that version instead,
 * and the check and the rename happen under the lock, so two concurrent
 * registrations of one model get one version. Alias changes are
 * read-modify-write cycles of
 * aliases.json under an exclusive flock, and the file is replaced atomically,
 * so readers need no lock.
 *
 * This file contains the operations table and opening. Paths, locks and file
 * copies are in local_registry_files.c, versions in local_registry_versions.c
 * and aliases in local_registry_aliases.c. */

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline/registry/local_registry_internal.h"

/* ---- The backend table ---- */

static ap_status show_version(ap_registry *base, const char *model, int version, json_t **info,
                              ap_error *err)
{
    *info = NULL;
    return local_load_record((const local_registry *)base, model, version, info, err);
}

static ap_status verify_version(ap_registry *base, const char *model, int version, ap_error *err)
{
    return local_verify_record((const local_registry *)base, model, version, NULL, err);
}

/* The root must be a folder that this process can list and enter. */
static ap_status check_location(ap_registry *base, ap_error *err)
{
    const local_registry *registry = (const local_registry *)base;
    struct stat info;
    if (stat(registry->root, &info) != 0)
        return ap_error_set(err, AP_ERR_IO,
                            "registry folder %s cannot be read (%s); check registry.uri, or "
                            "promote a model to create the registry",
                            registry->root, strerror(errno));
    if (access(registry->root, R_OK | X_OK) != 0)
        return ap_error_set(err, AP_ERR_IO,
                            "registry folder %s cannot be read (%s); check its permissions",
                            registry->root, strerror(errno));
    return AP_OK;
}

static void local_close(ap_registry *base)
{
    free(base);
}

static const ap_registry_ops local_ops = {
    .register_version = local_register_version,
    .set_alias = local_set_alias,
    .get_alias = local_get_alias,
    .rollback = local_rollback,
    .list_versions = local_list_versions,
    .list_aliases = local_list_aliases,
    .show_version = show_version,
    .verify_version = verify_version,
    .history = local_history,
    .file_path = local_file_path,
    .check_location = check_location,
    .close = local_close,
};

ap_status ap_local_registry_open(const char *root, ap_registry **registry, ap_error *err)
{
    *registry = NULL;
    size_t length = root != NULL ? strlen(root) : 0;
    if (length == 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "registry folder is empty; set it to a folder path");
    while (length > 1 && root[length - 1] == '/')
        length--;
    if (length > ROOT_MAX)
        return ap_error_set(err, AP_ERR_INVALID,
                            "registry folder %.80s... is too long; use a path of at most %d "
                            "bytes",
                            root, ROOT_MAX);
    struct stat info;
    if (stat(root, &info) == 0 && !S_ISDIR(info.st_mode))
        return ap_error_set(err, AP_ERR_INVALID,
                            "registry %s is not a folder; point it at a folder", root);
    local_registry *local = calloc(1, sizeof(*local));
    if (local == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot open registry %s", root);
    local->base.ops = &local_ops;
    local->base.location = local->root;
    memcpy(local->root, root, length);
    local->root[length] = '\0';
    *registry = &local->base;
    return AP_OK;
}
