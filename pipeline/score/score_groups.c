#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/score/score_input.h"

/* Parse the ":N" after a pattern name; no suffix means 1. */
static ap_status parse_fields(const char *text, const char *suffix, int *fields, ap_error *err)
{
    if (suffix[0] == '\0') {
        *fields = 1;
        return AP_OK;
    }
    char *end = NULL;
    errno = 0;
    long value =
        suffix[0] == ':' && suffix[1] >= '0' && suffix[1] <= '9' ? strtol(suffix + 1, &end, 10) : 0;
    if (end == NULL || *end != '\0' || errno != 0 || value < 1 || value > AP_GROUP_MAX_FIELDS)
        return ap_error_set(err, AP_ERR_INVALID,
                            "score.group_pattern \"%s\": the count after ':' must be a number "
                            "from 1 to %d, as in dir:2",
                            text, AP_GROUP_MAX_FIELDS);
    *fields = (int)value;
    return AP_OK;
}

ap_status ap_group_pattern_parse(const char *text, ap_group_pattern *out, ap_error *err)
{
    out->kind = AP_GROUP_NONE;
    out->fields = 0;
    if (strcmp(text, "none") == 0)
        return AP_OK;
    if (strncmp(text, "dir", 3) == 0 && (text[3] == '\0' || text[3] == ':')) {
        out->kind = AP_GROUP_DIR;
        return parse_fields(text, text + 3, &out->fields, err);
    }
    if (strncmp(text, "name", 4) == 0 && (text[4] == '\0' || text[4] == ':')) {
        out->kind = AP_GROUP_NAME;
        return parse_fields(text, text + 4, &out->fields, err);
    }
    return ap_error_set(err, AP_ERR_INVALID,
                        "score.group_pattern \"%s\" is unknown; use none, dir (first folder), "
                        "dir:N (first N folders) or name:N (first N '_'-separated fields of "
                        "the file name)",
                        text);
}

/* The first `fields` components of text split at separator, or NULL when
 * text has fewer than `fields` separators. Returns the end of the prefix. */
static const char *prefix_end(const char *text, char separator, int fields)
{
    const char *at = text;
    for (int i = 0; i < fields; i++) {
        at = strchr(at, separator);
        if (at == NULL)
            return NULL;
        if (i + 1 < fields)
            at++;
    }
    return at;
}

bool ap_group_of_path(const ap_group_pattern *pattern, const char *path, char *group)
{
    const char *start = path, *end = NULL;
    if (pattern->kind == AP_GROUP_DIR) {
        end = prefix_end(path, '/', pattern->fields);
    } else if (pattern->kind == AP_GROUP_NAME) {
        const char *slash = strrchr(path, '/');
        start = slash != NULL ? slash + 1 : path;
        end = prefix_end(start, '_', pattern->fields);
    }
    if (end == NULL || end == start) {
        group[0] = '\0';
        return false;
    }
    memcpy(group, start, (size_t)(end - start));
    group[end - start] = '\0';
    return true;
}
