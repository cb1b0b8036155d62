/* Helpers shared by the local folder and MLflow registry backends, and the
 * listing of versions and aliases that callers append to an error. */

#include "pipeline/registry/registry_internal.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Versions named one by one in a listing; the rest are counted. */
#define LISTED_VERSIONS_MAX 20

ap_status registry_check_file_name(const char *name, ap_error *err)
{
    size_t length = strlen(name);
    bool ok = length > 0 && length <= REGISTRY_FILE_NAME_MAX && name[0] != '.' && name[0] != '-';
    for (size_t i = 0; ok && i < length; i++) {
        char c = name[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    }
    if (!ok)
        return ap_error_set(err, AP_ERR_INVALID,
                            "invalid file name \"%.160s\": use up to %d letters, digits, '.', "
                            "'_' or '-', starting with a letter or digit",
                            name, REGISTRY_FILE_NAME_MAX);
    return AP_OK;
}

/* Replay the history of alias as a stack where a move pushes the version it
 * left and a rollback pops it. Returns the top version other than current,
 * 0 when there is none, or -1 when memory runs out. */
static int rollback_target(const json_t *history, const char *alias, int current)
{
    size_t count = json_array_size(history), depth = 0;
    int *stack = malloc((count + 1) * sizeof(*stack));
    if (stack == NULL)
        return -1;
    for (size_t i = 0; i < count; i++) {
        json_t *entry = json_array_get(history, i);
        const char *entry_alias = json_string_value(json_object_get(entry, "alias"));
        const char *action = json_string_value(json_object_get(entry, "action"));
        json_t *from = json_object_get(entry, "from");
        if (entry_alias == NULL || strcmp(entry_alias, alias) != 0)
            continue;
        if (action != NULL && strcmp(action, "rollback") == 0) {
            if (depth > 0)
                depth--;
        } else if (json_is_integer(from) && json_integer_value(from) > 0) {
            stack[depth++] = (int)json_integer_value(from);
        }
    }
    while (depth > 0 && stack[depth - 1] == current)
        depth--;
    int target = depth > 0 ? stack[depth - 1] : 0;
    free(stack);
    return target;
}

ap_status registry_choose_rollback(const json_t *history, const char *alias, int current,
                                   int target, int *destination, ap_error *err)
{
    *destination = target > 0 ? target : rollback_target(history, alias, current);
    if (current == 0)
        return ap_error_set(err, AP_ERR_NOT_FOUND,
                            "alias %s does not point at any version, so there is nothing to roll "
                            "back",
                            alias);
    if (*destination < 0)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot replay the history of alias %s", alias);
    if (*destination == 0)
        return ap_error_set(err, AP_ERR_NOT_FOUND,
                            "alias %s has no earlier version in its history; name the version "
                            "to roll back to",
                            alias);
    if (*destination == current)
        return ap_error_set(err, AP_ERR_INVALID, "alias %s already points at version %d", alias,
                            current);
    return AP_OK;
}

ap_status registry_add_alias(ap_registry_version_info *info, const char *alias, ap_error *err)
{
    char **grown = realloc(info->aliases, (info->alias_count + 1) * sizeof(*grown));
    char *copy = grown != NULL ? strdup(alias) : NULL;
    if (grown != NULL)
        info->aliases = grown;
    if (copy == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot list the aliases of version %d",
                            info->version);
    info->aliases[info->alias_count++] = copy;
    return AP_OK;
}

/* Append printf output to text, which has room for size bytes, truncating. */
static void append_text(char *text, size_t size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void append_text(char *text, size_t size, const char *format, ...)
{
    size_t used = strlen(text);
    if (used + 1 >= size)
        return;
    va_list args;
    va_start(args, format);
    vsnprintf(text + used, size - used, format, args);
    va_end(args);
}

void ap_registry_append_contents(ap_registry *registry, const char *model, ap_error *err)
{
    ap_registry_version_info *versions = NULL;
    size_t count = 0;
    ap_error list_err = {0};
    if (err == NULL || ap_registry_list(registry, model, &versions, &count, &list_err) != AP_OK)
        return;
    char *text = err->message;
    size_t size = sizeof(err->message);
    if (count == 0)
        append_text(text, size, "; model %s has no versions yet", model);
    else
        append_text(text, size, "; model %s has version%s ", model, count > 1 ? "s" : "");
    for (size_t i = 0; i < count && i < LISTED_VERSIONS_MAX; i++)
        append_text(text, size, "%s%d", i > 0 ? ", " : "", versions[i].version);
    if (count > LISTED_VERSIONS_MAX)
        append_text(text, size, " and %zu more", count - LISTED_VERSIONS_MAX);
    size_t aliases = 0;
    for (size_t i = 0; i < count; i++) {
        for (size_t j = 0; j < versions[i].alias_count; j++)
            append_text(text, size, "%s%s (version %d)", aliases++ > 0 ? ", " : ", aliases ",
                        versions[i].aliases[j], versions[i].version);
    }
    if (count > 0 && aliases == 0)
        append_text(text, size, ", no aliases");
    ap_registry_free_versions(versions, count);
}
