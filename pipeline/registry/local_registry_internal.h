#ifndef APIARY_REGISTRY_LOCAL_REGISTRY_INTERNAL_H
#define APIARY_REGISTRY_LOCAL_REGISTRY_INTERNAL_H

/* Types and functions shared by the source files of the local folder
 * registry backend. The folder layout and the concurrency rules are
 * described in local_registry.c. */

#include <stddef.h>

#include <jansson.h>

#include "pipeline/registry/registry.h"

#define STAGING_PREFIX ".register-"
#define ALIASES_FILE   "aliases.json"
/* ap_write_atomic writes PATH.tmp.XXXXXX and renames it over PATH. */
#define ALIASES_TEMP_PREFIX ALIASES_FILE ".tmp."
#define FORMAT_VERSION      1

/* The root is at most ROOT_MAX bytes, so every path built below (root, model
 * name, "versions", a number and a file name) fits in PATH_SIZE. */
#define ROOT_MAX  3000
#define PATH_SIZE 4096

typedef struct {
    ap_registry base;
    char root[PATH_SIZE];
} local_registry;

/* A staging folder inside the model folder, locked while its writer lives. */
typedef struct {
    int model_fd;
    int fd;
    char name[64];
    char path[PATH_SIZE];
} staging;

/* ---- Paths, names and time (local_registry_files.c) ---- */

/* Build ROOT/MODEL after checking the model name. */
ap_status local_model_dir_path(const local_registry *registry, const char *model, char *path,
                               size_t size, ap_error *err);
/* Build ROOT/MODEL/versions/N after checking the model name and that N >= 1. */
ap_status local_version_dir_path(const local_registry *registry, const char *model, int version,
                                 char *path, size_t size, ap_error *err);
/* Check that the model folder exists, or fail with AP_ERR_NOT_FOUND. */
ap_status local_require_model(const char *model_dir, ap_error *err);
/* Format the current time as UTC ISO 8601 with milliseconds. */
void local_format_utc_now(char text[32]);

/* ---- Locks and clean-up (local_registry_files.c) ---- */

/* Take an flock (operation LOCK_SH or LOCK_EX) on MODEL/.lock, waiting at
 * most two minutes. local_unlock_model releases it. */
ap_status local_lock_model(const char *model_dir, int operation, int *lock_fd, ap_error *err);
void local_unlock_model(int lock_fd);
/* Remove the file or folder tree name under parent_fd, down to a fixed
 * depth. Returns 0, or -1 when something remains. */
int local_remove_tree_at(int parent_fd, const char *name, int depth);
/* Remove staging folders and temporary files that crashed writers left. The
 * caller must hold the model lock exclusively. */
void local_remove_leftovers(int model_fd);

/* ---- Writing, copying and hashing files (local_registry_files.c) ---- */

/* Write value as indented JSON with a final newline, replacing path atomically. */
ap_status local_write_json(const char *path, const json_t *value, ap_error *err);
/* Compute the sha256 (lowercase hex) and size of a file. */
ap_status local_hash_file(const char *path, char hex[65], long long *size, ap_error *err);
/* Copy source into the staging folder as name, verify the copy and add
 * {"sha256", "size"} to files under name. */
ap_status local_copy_into_stage(const staging *stage, const char *source, const char *name,
                                json_t *files, ap_error *err);

/* ---- Version records (local_registry_versions.c) ---- */

/* Read and check versions/N/version.json, or fail with AP_ERR_NOT_FOUND when
 * the version does not exist. */
ap_status local_load_record(const local_registry *registry, const char *model, int version,
                            json_t **record, ap_error *err);
/* Check every file a version lists against its sha256 and size. record_out
 * may be NULL. Otherwise it receives the record on success. */
ap_status local_verify_record(const local_registry *registry, const char *model, int version,
                              json_t **record_out, ap_error *err);

/* ---- Aliases (local_registry_aliases.c) ---- */

/* Load MODEL/aliases.json of an existing model, or an empty document when
 * the model has none. model_dir receives the model folder path. */
ap_status local_load_model_aliases(const local_registry *registry, const char *model,
                                   char model_dir[PATH_SIZE], json_t **doc, ap_error *err);

/* ---- Backend operations (local_registry_versions.c, local_registry_aliases.c) ---- */

ap_status local_register_version(ap_registry *base, const char *model,
                                 const ap_registry_new_version *request, int *version,
                                 ap_error *err);
ap_status local_list_versions(ap_registry *base, const char *model,
                              ap_registry_version_info **versions, size_t *count, ap_error *err);
ap_status local_file_path(ap_registry *base, const char *model, int version, const char *file_name,
                          char *path, size_t path_size, ap_error *err);
ap_status local_set_alias(ap_registry *base, const char *model, const char *alias, int version,
                          const ap_registry_move *move, int *previous, ap_error *err);
ap_status local_get_alias(ap_registry *base, const char *model, const char *alias, int *version,
                          ap_error *err);
ap_status local_rollback(ap_registry *base, const char *model, const char *alias, int target,
                         const ap_registry_move *move, int *version, ap_error *err);
ap_status local_list_aliases(ap_registry *base, const char *model, ap_registry_alias **aliases,
                             size_t *count, ap_error *err);
ap_status local_history(ap_registry *base, const char *model, json_t **entries, ap_error *err);

#endif
