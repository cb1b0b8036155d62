#ifndef APIARY_REGISTRY_REGISTRY_INTERNAL_H
#define APIARY_REGISTRY_REGISTRY_INTERNAL_H

/* Helpers shared by the local folder and MLflow registry backends
 * (registry_common.c). */

#include <jansson.h>

#include "pipeline/common/status.h"
#include "pipeline/registry/registry.h"

#define REGISTRY_FILE_NAME_MAX 128

/* Check a file name inside a version: [A-Za-z0-9][A-Za-z0-9._-]*, at most
 * REGISTRY_FILE_NAME_MAX bytes, so never a path. */
ap_status registry_check_file_name(const char *name, ap_error *err);

/* Choose the version a rollback of alias moves to. A target above 0 is used
 * as given. For target 0, the alias's entries in history (oldest first) are
 * replayed as a stack where a move pushes the version it left and a rollback
 * pops it, and the top version other than current is chosen. current is the
 * version alias points at, or 0. Fails when alias points nowhere, when no
 * earlier version is found, or when the destination is current. */
ap_status registry_choose_rollback(const json_t *history, const char *alias, int current,
                                   int target, int *destination, ap_error *err);

/* Append a copy of alias to the aliases of info. */
ap_status registry_add_alias(ap_registry_version_info *info, const char *alias, ap_error *err);

#endif
