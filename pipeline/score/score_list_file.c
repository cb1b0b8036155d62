/* Images named by a file instead of found in a folder: a manifest (.csv
 * with a `file` column, such as a dataset's labels.csv) or a listing (.txt
 * or .lst, one path per line). Paths are relative to the file's folder. */

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/data/manifest.h"
#include "pipeline/score/score_input.h"
#include "pipeline/store/store.h"

/* Manifests and listings are read whole. A million paths fit well below this. */
#define LIST_FILE_MAX_BYTES ((size_t)256 << 20)

static bool has_extension(const char *name, const char *extension)
{
    size_t length = strlen(name), extension_length = strlen(extension);
    return length > extension_length &&
           strcasecmp(name + length - extension_length, extension) == 0;
}

ap_score_list_kind ap_score_list_kind_of(const char *name)
{
    if (has_extension(name, ".csv"))
        return AP_SCORE_LIST_MANIFEST;
    if (has_extension(name, ".txt") || has_extension(name, ".lst"))
        return AP_SCORE_LIST_LISTING;
    return AP_SCORE_LIST_NONE;
}

typedef struct {
    ap_score_inputs *out;
    size_t capacity;
    const char *source;
} path_list;

static ap_status add_listed(path_list *list, const char *name, int line, ap_error *err)
{
    ap_score_inputs *out = list->out;
    if (!ap_score_is_utf8(name)) {
        out->rejected++;
        return AP_OK;
    }
    if (ap_store_check_key(name, err) != AP_OK)
        return ap_error_prefix(err, "%s:%d", list->source, line);
    if (out->count == list->capacity) {
        size_t capacity = list->capacity > 0 ? 2 * list->capacity : 256;
        char **paths = realloc(out->paths, capacity * sizeof(*paths));
        if (paths == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate a list of %zu images",
                                capacity);
        out->paths = paths;
        list->capacity = capacity;
    }
    if ((out->paths[out->count] = strdup(name)) == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate image path %s", name);
    out->count++;
    return AP_OK;
}

static ap_status read_manifest(path_list *list, const char *text, size_t size, ap_error *err)
{
    ap_csv_table table;
    ap_status status = ap_csv_parse(text, size, list->source, &table, err);
    if (status != AP_OK)
        return status;
    int column = ap_csv_column(&table, "file");
    if (column < 0) {
        char columns[256];
        ap_csv_describe_columns(&table, columns, sizeof(columns));
        status = ap_error_set(err, AP_ERR_FORMAT,
                              "%s: no \"file\" column (the columns are %s); a manifest names "
                              "each image in a column called file",
                              list->source, columns);
    }
    for (size_t row = 0; status == AP_OK && row < table.row_count; row++) {
        const char *name = table.fields[row * (size_t)table.column_count + (size_t)column];
        status = add_listed(list, name, table.lines[row], err);
    }
    ap_csv_free(&table);
    return status;
}

/* Read one path per line. Blank lines and lines starting with '#' are
 * skipped, and spaces around a path and a CR before the LF are removed. */
static ap_status read_listing(path_list *list, char *text, ap_error *err)
{
    int line = 0;
    char *next = text;
    ap_status status = AP_OK;
    while (status == AP_OK && next != NULL && *next != '\0') {
        char *start = next;
        char *end = strchr(start, '\n');
        next = end != NULL ? end + 1 : NULL;
        if (end == NULL)
            end = start + strlen(start);
        line++;
        while (end > start && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
            end--;
        while (start < end && (*start == ' ' || *start == '\t'))
            start++;
        *end = '\0';
        if (*start != '\0' && *start != '#')
            status = add_listed(list, start, line, err);
    }
    return status;
}

static int compare_paths(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sort the paths and drop repeats, which would otherwise be scored twice. */
static void sort_unique(ap_score_inputs *out)
{
    if (out->count < 2)
        return;
    qsort(out->paths, out->count, sizeof(*out->paths), compare_paths);
    size_t kept = 1;
    for (size_t i = 1; i < out->count; i++) {
        if (strcmp(out->paths[i], out->paths[kept - 1]) == 0)
            free(out->paths[i]);
        else
            out->paths[kept++] = out->paths[i];
    }
    out->count = kept;
}

ap_status ap_score_read_list_file(const char *path, ap_score_inputs *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    ap_score_list_kind kind = ap_score_list_kind_of(path);
    if (kind == AP_SCORE_LIST_NONE)
        return ap_error_set(err, AP_ERR_INVALID,
                            "input %s is a file, but only a .csv manifest or a .txt or .lst "
                            "listing can name the images to score; pass one of those or a "
                            "folder",
                            path);
    uint8_t *data = NULL;
    size_t size = 0;
    ap_status status = ap_read_file(path, LIST_FILE_MAX_BYTES, &data, &size, err);
    if (status != AP_OK)
        return status;
    path_list list = {.out = out, .source = path};
    if (memchr(data, '\0', size) != NULL)
        status = ap_error_set(err, AP_ERR_FORMAT,
                              "%s contains a NUL byte, so it is not a text file; write the "
                              "image paths as UTF-8 text",
                              path);
    else if (kind == AP_SCORE_LIST_MANIFEST)
        status = read_manifest(&list, (const char *)data, size, err);
    else
        status = read_listing(&list, (char *)data, err);
    free(data);
    if (status != AP_OK) {
        ap_score_inputs_free(out);
        return status;
    }
    sort_unique(out);
    return AP_OK;
}
