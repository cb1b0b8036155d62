#include "pipeline/data/manifest.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/config/config.h"

/* ---- CSV ---------------------------------------------------------------- */

typedef struct {
    const char *text;
    size_t size;
    size_t pos;
    int line; /* line of text[pos], 1-based */
    const char *source;
    char *out; /* write position in the table's storage */
} csv_cursor;

/* A growing list of field pointers and row lines. */
typedef struct {
    char **fields;
    size_t field_count;
    size_t field_capacity;
    int *lines;
    size_t line_capacity;
} csv_cells;

static ap_status push_field(csv_cells *cells, char *field, const char *source, ap_error *err)
{
    if (cells->field_count == cells->field_capacity) {
        size_t capacity = cells->field_capacity ? 2 * cells->field_capacity : 64;
        char **grown = realloc(cells->fields, capacity * sizeof(*grown));
        if (grown == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "%s: cannot allocate %zu CSV fields", source,
                                capacity);
        cells->fields = grown;
        cells->field_capacity = capacity;
    }
    cells->fields[cells->field_count++] = field;
    return AP_OK;
}

static ap_status push_line(csv_cells *cells, size_t row, int line, const char *source,
                           ap_error *err)
{
    if (row == cells->line_capacity) {
        size_t capacity = cells->line_capacity ? 2 * cells->line_capacity : 64;
        int *grown = realloc(cells->lines, capacity * sizeof(*grown));
        if (grown == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "%s: cannot allocate %zu CSV rows", source,
                                capacity);
        cells->lines = grown;
        cells->line_capacity = capacity;
    }
    cells->lines[row] = line;
    return AP_OK;
}

/* Decode a quoted field, starting at its opening quote. */
static ap_status read_quoted_field(csv_cursor *c, ap_error *err)
{
    int opening_line = c->line;
    c->pos++;
    for (;;) {
        if (c->pos >= c->size)
            return ap_error_set(err, AP_ERR_FORMAT,
                                "%s:%d: unterminated quoted field (the closing \" is missing)",
                                c->source, opening_line);
        char ch = c->text[c->pos];
        if (ch == '"') {
            if (c->pos + 1 < c->size && c->text[c->pos + 1] == '"') {
                *c->out++ = '"';
                c->pos += 2;
                continue;
            }
            c->pos++;
            break;
        }
        if (ch == '\0')
            return ap_error_set(err, AP_ERR_FORMAT, "%s:%d: NUL byte inside a field", c->source,
                                c->line);
        if (ch == '\n')
            c->line++;
        *c->out++ = ch;
        c->pos++;
    }
    if (c->pos < c->size && c->text[c->pos] != ',' && c->text[c->pos] != '\n' &&
        c->text[c->pos] != '\r')
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s:%d: unexpected character '%c' after a closing quote; a quote "
                            "inside a quoted field must be doubled (\"\")",
                            c->source, c->line, c->text[c->pos]);
    return AP_OK;
}

/* Decode an unquoted field up to the next comma or line end. */
static ap_status read_plain_field(csv_cursor *c, ap_error *err)
{
    while (c->pos < c->size) {
        char ch = c->text[c->pos];
        if (ch == ',' || ch == '\n' || ch == '\r')
            break;
        if (ch == '"')
            return ap_error_set(err, AP_ERR_FORMAT,
                                "%s:%d: quote inside an unquoted field; enclose the field in "
                                "quotes and double the quote (\"\")",
                                c->source, c->line);
        if (ch == '\0')
            return ap_error_set(err, AP_ERR_FORMAT, "%s:%d: NUL byte inside a field", c->source,
                                c->line);
        *c->out++ = ch;
        c->pos++;
    }
    return AP_OK;
}

/* Consume the separator after a field. Sets *record_done at a line end or
 * at the end of the text. */
static ap_status read_separator(csv_cursor *c, bool *record_done, ap_error *err)
{
    *record_done = true;
    if (c->pos >= c->size)
        return AP_OK;
    char ch = c->text[c->pos];
    if (ch == ',') {
        c->pos++;
        *record_done = false;
        return AP_OK;
    }
    if (ch == '\r') {
        if (c->pos + 1 >= c->size || c->text[c->pos + 1] != '\n')
            return ap_error_set(err, AP_ERR_FORMAT,
                                "%s:%d: carriage return not followed by a line feed; use LF or "
                                "CRLF line ends",
                                c->source, c->line);
        c->pos++;
    }
    c->pos++;
    c->line++;
    return AP_OK;
}

/* Read one record, appending its fields to cells. *blank is set for an
 * empty line (one empty unquoted field). */
static ap_status read_record(csv_cursor *c, csv_cells *cells, size_t *field_count, bool *blank,
                             ap_error *err)
{
    size_t first = cells->field_count;
    bool quoted_any = false;
    bool record_done = false;
    while (!record_done) {
        char *field = c->out;
        bool quoted = c->pos < c->size && c->text[c->pos] == '"';
        ap_status status = quoted ? read_quoted_field(c, err) : read_plain_field(c, err);
        if (status != AP_OK)
            return status;
        /* Each field ends on a separator or at the end of the text, so the
         * decoded text and its NUL bytes fit in size + 1 bytes of storage. */
        *c->out++ = '\0';
        quoted_any = quoted_any || quoted;
        status = push_field(cells, field, c->source, err);
        if (status != AP_OK)
            return status;
        status = read_separator(c, &record_done, err);
        if (status != AP_OK)
            return status;
    }
    *field_count = cells->field_count - first;
    *blank = *field_count == 1 && !quoted_any && cells->fields[first][0] == '\0';
    return AP_OK;
}

static char *trim_spaces(char *text)
{
    while (*text == ' ' || *text == '\t')
        text++;
    size_t length = strlen(text);
    while (length > 0 && (text[length - 1] == ' ' || text[length - 1] == '\t'))
        text[--length] = '\0';
    return text;
}

/* Move the fields of the first record into the header. */
static ap_status take_header(ap_csv_table *table, csv_cells *cells, size_t field_count,
                             const char *source, ap_error *err)
{
    if (field_count > INT_MAX / 2)
        return ap_error_set(err, AP_ERR_LIMIT, "%s:1: too many columns (%zu)", source, field_count);
    table->header = malloc(field_count * sizeof(char *));
    if (table->header == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "%s: cannot allocate the header", source);
    for (size_t i = 0; i < field_count; i++)
        table->header[i] = trim_spaces(cells->fields[i]);
    table->column_count = (int)field_count;
    cells->field_count = 0;
    return AP_OK;
}

static ap_status parse_records(csv_cursor *c, ap_csv_table *table, csv_cells *cells, ap_error *err)
{
    int blank_line = 0; /* first empty line not yet followed by a record */
    bool have_header = false;
    while (c->pos < c->size) {
        int line = c->line;
        size_t before = cells->field_count;
        size_t field_count = 0;
        bool blank = false;
        ap_status status = read_record(c, cells, &field_count, &blank, err);
        if (status != AP_OK)
            return status;
        if (blank) {
            cells->field_count = before;
            if (blank_line == 0)
                blank_line = line;
            continue;
        }
        if (blank_line != 0)
            return ap_error_set(err, AP_ERR_FORMAT,
                                "%s:%d: empty line before the end of the file; remove it",
                                c->source, blank_line);
        if (!have_header) {
            status = take_header(table, cells, field_count, c->source, err);
            if (status != AP_OK)
                return status;
            have_header = true;
            continue;
        }
        if (field_count != (size_t)table->column_count)
            return ap_error_set(err, AP_ERR_FORMAT,
                                "%s:%d: %zu fields, expected %d as in the header", c->source, line,
                                field_count, table->column_count);
        status = push_line(cells, table->row_count, line, c->source, err);
        if (status != AP_OK)
            return status;
        table->row_count++;
    }
    if (!have_header)
        return ap_error_set(err, AP_ERR_FORMAT, "%s: empty file; expected a header row", c->source);
    return AP_OK;
}

ap_status ap_csv_parse(const char *text, size_t size, const char *source, ap_csv_table *out,
                       ap_error *err)
{
    memset(out, 0, sizeof(*out));
    if (source == NULL)
        source = "CSV text";
    if (size > (size_t)INT_MAX)
        return ap_error_set(err, AP_ERR_LIMIT, "%s: %zu bytes, over the CSV limit of %d", source,
                            size, INT_MAX);
    out->storage = malloc(size + 1);
    if (out->storage == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "%s: cannot allocate %zu bytes", source, size + 1);

    csv_cursor cursor = {text, size, 0, 1, source, out->storage};
    if (size >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
        cursor.pos = 3;
    csv_cells cells = {0};
    ap_status status = parse_records(&cursor, out, &cells, err);
    out->fields = cells.fields;
    out->lines = cells.lines;
    if (status != AP_OK)
        ap_csv_free(out);
    return status;
}

int ap_csv_column(const ap_csv_table *table, const char *name)
{
    for (int i = 0; i < table->column_count; i++)
        if (strcmp(table->header[i], name) == 0)
            return i;
    return -1;
}

void ap_csv_describe_columns(const ap_csv_table *table, char *out, size_t out_size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; i < table->column_count && used < out_size; i++) {
        int written =
            snprintf(out + used, out_size - used, "%s%s", i > 0 ? ", " : "", table->header[i]);
        if (written < 0)
            break;
        used += (size_t)written;
    }
}

void ap_csv_free(ap_csv_table *table)
{
    free(table->header);
    free(table->fields);
    free(table->lines);
    free(table->storage);
    memset(table, 0, sizeof(*table));
}

/* ---- manifest ----------------------------------------------------------- */

typedef struct {
    int file;
    int group; /* -1: each image is its own group */
    int labels[AP_MAX_LABELS];
} manifest_columns;

static ap_status check_requested_labels(const char *const *labels, int label_count,
                                        const char *group_column, const char *source, ap_error *err)
{
    if (label_count < 0 || label_count > AP_MAX_LABELS)
        return ap_error_set(err, AP_ERR_LIMIT, "%s: %d labels requested, the maximum is %d", source,
                            label_count, AP_MAX_LABELS);
    for (int i = 0; i < label_count; i++) {
        if (labels[i] == NULL || labels[i][0] == '\0')
            return ap_error_set(err, AP_ERR_INVALID, "%s: label %d has an empty name", source,
                                i + 1);
        if (strcmp(labels[i], "file") == 0 ||
            (group_column != NULL && strcmp(labels[i], group_column) == 0))
            return ap_error_set(err, AP_ERR_INVALID,
                                "%s: \"%s\" is requested as a label but names the file or group "
                                "column",
                                source, labels[i]);
        for (int j = 0; j < i; j++)
            if (strcmp(labels[i], labels[j]) == 0)
                return ap_error_set(err, AP_ERR_INVALID, "%s: label \"%s\" is requested twice",
                                    source, labels[i]);
    }
    return AP_OK;
}

static ap_status check_unique_header(const ap_csv_table *table, const char *source, ap_error *err)
{
    for (int i = 0; i < table->column_count; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(table->header[i], table->header[j]) == 0)
                return ap_error_set(err, AP_ERR_INVALID,
                                    "%s:1: duplicate column \"%s\" (columns %d and %d)", source,
                                    table->header[i], j + 1, i + 1);
    return AP_OK;
}

static ap_status missing_column(const ap_csv_table *table, const char *source, const char *kind,
                                const char *name, ap_error *err)
{
    char columns[512];
    ap_csv_describe_columns(table, columns, sizeof(columns));
    return ap_error_set(err, AP_ERR_INVALID, "%s:1: %s column \"%s\" not found (columns: %s)",
                        source, kind, name, columns);
}

static ap_status find_columns(const ap_csv_table *table, const char *const *labels, int label_count,
                              const char *group_column, const char *source,
                              manifest_columns *columns, ap_error *err)
{
    ap_status status = check_unique_header(table, source, err);
    if (status != AP_OK)
        return status;
    columns->file = ap_csv_column(table, "file");
    if (columns->file < 0)
        return missing_column(table, source, "file", "file", err);
    for (int i = 0; i < label_count; i++) {
        columns->labels[i] = ap_csv_column(table, labels[i]);
        if (columns->labels[i] < 0)
            return missing_column(table, source, "label", labels[i], err);
    }
    columns->group = -1;
    if (group_column != NULL) {
        columns->group = ap_csv_column(table, group_column);
        if (columns->group < 0)
            return missing_column(table, source, "group", group_column, err);
    }
    return AP_OK;
}

/* Accept a path relative to the dataset folder that cannot leave it. */
static ap_status check_file_name(const char *name, const char *source, int line, ap_error *err)
{
    if (name[0] == '\0')
        return ap_error_set(err, AP_ERR_INVALID, "%s:%d: empty file name in column \"file\"",
                            source, line);
    if (name[0] == '/')
        return ap_error_set(err, AP_ERR_INVALID,
                            "%s:%d: file \"%s\" is an absolute path; give it relative to the "
                            "dataset folder",
                            source, line, name);
    if (strchr(name, '\\') != NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "%s:%d: file \"%s\" contains a backslash; separate folders with /",
                            source, line, name);
    for (const char *part = name; *part != '\0';) {
        size_t length = strcspn(part, "/");
        bool dot = length == 1 && part[0] == '.';
        bool dot_dot = length == 2 && part[0] == '.' && part[1] == '.';
        if (length == 0 || dot || dot_dot)
            return ap_error_set(err, AP_ERR_INVALID,
                                "%s:%d: file \"%s\" has an empty, \".\" or \"..\" path "
                                "component",
                                source, line, name);
        part += length;
        if (*part == '/')
            part++;
        if (*part == '\0' && part[-1] == '/')
            return ap_error_set(err, AP_ERR_INVALID, "%s:%d: file \"%s\" ends with /", source, line,
                                name);
    }
    return AP_OK;
}

static ap_status parse_label_value(char *text, const char *column, const char *source, int line,
                                   int8_t *value, ap_error *err)
{
    const char *trimmed = trim_spaces(text);
    if (strcmp(trimmed, "1") == 0)
        *value = 1;
    else if (strcmp(trimmed, "0") == 0)
        *value = 0;
    else if (trimmed[0] == '\0')
        *value = AP_LABEL_UNKNOWN;
    else
        return ap_error_set(err, AP_ERR_INVALID,
                            "%s:%d: invalid value \"%s\" in label column \"%s\"; expected 1, 0 "
                            "or empty for unknown",
                            source, line, trimmed, column);
    return AP_OK;
}

static char *copy_text(const char *text)
{
    size_t length = strlen(text);
    char *copy = malloc(length + 1);
    if (copy != NULL)
        memcpy(copy, text, length + 1);
    return copy;
}

static ap_status fill_row(const ap_csv_table *table, size_t index, const manifest_columns *columns,
                          int label_count, const char *const *labels, const char *source,
                          ap_manifest_row *row, ap_error *err)
{
    char **fields = table->fields + index * (size_t)table->column_count;
    row->line = table->lines[index];
    const char *file = fields[columns->file];
    ap_status status = check_file_name(file, source, row->line, err);
    if (status != AP_OK)
        return status;

    const char *group = columns->group >= 0 ? fields[columns->group] : "";
    row->file = copy_text(file);
    row->group = copy_text(group[0] != '\0' ? group : file);
    row->labels = malloc(label_count > 0 ? (size_t)label_count : 1);
    if (row->file == NULL || row->group == NULL || row->labels == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "%s:%d: cannot allocate the row", source, row->line);
    for (int i = 0; i < label_count; i++) {
        status = parse_label_value(fields[columns->labels[i]], labels[i], source, row->line,
                                   &row->labels[i], err);
        if (status != AP_OK)
            return status;
    }
    return AP_OK;
}

typedef struct {
    const char *file;
    size_t row;
} file_entry;

static int compare_file_entries(const void *a, const void *b)
{
    const file_entry *left = a, *right = b;
    int order = strcmp(left->file, right->file);
    if (order != 0)
        return order;
    return left->row < right->row ? -1 : left->row > right->row;
}

/* Report the first row (in file order) whose file name an earlier row already has. */
static ap_status check_duplicate_files(const ap_manifest *manifest, const char *source,
                                       ap_error *err)
{
    file_entry *entries = malloc(manifest->row_count * sizeof(*entries));
    if (entries == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "%s: cannot allocate the file index", source);
    for (size_t i = 0; i < manifest->row_count; i++)
        entries[i] = (file_entry){manifest->rows[i].file, i};
    qsort(entries, manifest->row_count, sizeof(*entries), compare_file_entries);

    size_t first = 0, duplicate = SIZE_MAX;
    for (size_t i = 1; i < manifest->row_count; i++) {
        if (strcmp(entries[i].file, entries[i - 1].file) != 0)
            continue;
        if (duplicate == SIZE_MAX || entries[i].row < duplicate) {
            duplicate = entries[i].row;
            first = entries[i - 1].row;
        }
    }
    free(entries);
    if (duplicate == SIZE_MAX)
        return AP_OK;
    const ap_manifest_row *row = &manifest->rows[duplicate];
    return ap_error_set(err, AP_ERR_INVALID, "%s:%d: file \"%s\" is listed twice (lines %d and %d)",
                        source, row->line, row->file, manifest->rows[first].line, row->line);
}

static ap_status copy_label_names(ap_manifest *out, const char *const *labels, int label_count,
                                  const char *source, ap_error *err)
{
    out->label_names = calloc(label_count > 0 ? (size_t)label_count : 1, sizeof(char *));
    if (out->label_names == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "%s: cannot allocate label names", source);
    out->label_count = label_count;
    for (int i = 0; i < label_count; i++) {
        out->label_names[i] = copy_text(labels[i]);
        if (out->label_names[i] == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "%s: cannot allocate label names", source);
    }
    return AP_OK;
}

static ap_status build_manifest(const ap_csv_table *table, const char *const *labels,
                                int label_count, const char *group_column, const char *source,
                                ap_manifest *out, ap_error *err)
{
    manifest_columns columns;
    ap_status status =
        find_columns(table, labels, label_count, group_column, source, &columns, err);
    if (status != AP_OK)
        return status;
    if (table->row_count == 0)
        return ap_error_set(err, AP_ERR_INVALID, "%s: no rows after the header", source);
    status = copy_label_names(out, labels, label_count, source, err);
    if (status != AP_OK)
        return status;

    out->rows = calloc(table->row_count, sizeof(ap_manifest_row));
    if (out->rows == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "%s: cannot allocate %zu rows", source,
                            table->row_count);
    for (size_t i = 0; i < table->row_count; i++) {
        out->row_count = i + 1;
        status = fill_row(table, i, &columns, label_count, labels, source, &out->rows[i], err);
        if (status != AP_OK)
            return status;
    }
    return check_duplicate_files(out, source, err);
}

ap_status ap_manifest_parse(const char *text, size_t size, const char *source,
                            const char *const *labels, int label_count, const char *group_column,
                            ap_manifest *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    if (source == NULL)
        source = "manifest";
    if (group_column != NULL && group_column[0] == '\0')
        group_column = NULL;
    ap_status status = check_requested_labels(labels, label_count, group_column, source, err);
    if (status != AP_OK)
        return status;

    ap_csv_table table;
    status = ap_csv_parse(text, size, source, &table, err);
    if (status != AP_OK)
        return status;
    status = build_manifest(&table, labels, label_count, group_column, source, out, err);
    ap_csv_free(&table);
    if (status != AP_OK)
        ap_manifest_free(out);
    return status;
}

ap_status ap_manifest_load(const char *path, const char *const *labels, int label_count,
                           const char *group_column, ap_manifest *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    uint8_t *text = NULL;
    size_t size = 0;
    ap_status status = ap_read_file(path, AP_MANIFEST_MAX_BYTES, &text, &size, err);
    if (status != AP_OK)
        return status;
    status = ap_manifest_parse((const char *)text, size, path, labels, label_count, group_column,
                               out, err);
    free(text);
    return status;
}

void ap_manifest_free(ap_manifest *manifest)
{
    for (size_t i = 0; i < manifest->row_count; i++) {
        free(manifest->rows[i].file);
        free(manifest->rows[i].group);
        free(manifest->rows[i].labels);
    }
    free(manifest->rows);
    for (int i = 0; manifest->label_names != NULL && i < manifest->label_count; i++)
        free(manifest->label_names[i]);
    free(manifest->label_names);
    memset(manifest, 0, sizeof(*manifest));
}
