#include "pipeline/config/config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/config/config_table.h"
#include "pipeline/config/config_text.h"

/* Config files are a few kilobytes, so a file near this size is the wrong file. */
#define CONFIG_FILE_MAX (1024 * 1024)

/* ---- Environment variables in values ---- */

static bool is_variable_name(const char *name, size_t length)
{
    if (length == 0 || (name[0] >= '0' && name[0] <= '9'))
        return false;
    for (size_t i = 0; i < length; i++) {
        char c = name[i];
        bool ok =
            (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        if (!ok)
            return false;
    }
    return true;
}

/* Expand one ${NAME} or ${NAME:-default} reference that starts at text and
 * ends at close (the '}'). */
static bool expand_reference(const char *text, const char *close, text_buffer *out, char *reason,
                             size_t reason_size)
{
    const char *name = text + 2;
    const char *separator = strstr(name, ":-");
    bool has_default = separator != NULL && separator < close;
    size_t name_length = (size_t)((has_default ? separator : close) - name);
    int reference_length = (int)(close - text + 1);

    if (!is_variable_name(name, name_length) || name_length >= KEY_PATH_MAX) {
        snprintf(reason, reason_size,
                 "'%.*s' is not a valid variable reference; expected ${NAME} or "
                 "${NAME:-default} with a name of letters, digits and '_'",
                 reference_length, text);
        return false;
    }
    const char *fallback = has_default ? separator + 2 : NULL;
    if (fallback != NULL && memchr(fallback, '$', (size_t)(close - fallback)) != NULL) {
        snprintf(reason, reason_size,
                 "'%.*s' nests a variable in its default; expected a plain default value",
                 reference_length, text);
        return false;
    }

    char variable[KEY_PATH_MAX];
    snprintf(variable, sizeof(variable), "%.*s", (int)name_length, name);
    const char *value = getenv(variable);
    if (has_default && (value == NULL || value[0] == '\0')) {
        text_append(out, fallback, (size_t)(close - fallback));
        return true;
    }
    if (value == NULL) {
        snprintf(reason, reason_size,
                 "environment variable %s is not set; set it or write ${%s:-default}", variable,
                 variable);
        return false;
    }
    text_append_string(out, value);
    return true;
}

/* Replace ${NAME}, ${NAME:-default} and $$ in text. On success *expanded is
 * a malloc'd string that the caller frees. */
static bool expand_variables(const char *text, char **expanded, char *reason, size_t reason_size)
{
    text_buffer out = {0};
    text_append(&out, "", 0);
    const char *c = text;
    bool ok = true;
    while (ok && *c != '\0') {
        const char *dollar = strchr(c, '$');
        if (dollar == NULL) {
            text_append_string(&out, c);
            break;
        }
        text_append(&out, c, (size_t)(dollar - c));
        const char *close = strchr(dollar, '}');
        if (dollar[1] == '$') {
            text_append(&out, "$", 1);
            c = dollar + 2;
        } else if (dollar[1] == '{' && close != NULL) {
            ok = expand_reference(dollar, close, &out, reason, reason_size);
            c = close + 1;
        } else {
            /* In a flow list or mapping, YAML ends a plain value at the '{'. */
            const char *hint = dollar[1] == '\0' ? "; in [ ] and { }, quote values that use "
                                                   "${NAME}"
                                                 : "";
            snprintf(reason, reason_size,
                     "'$' at position %zu starts no variable; write ${NAME} to use an "
                     "environment variable or $$ for a literal '$'%s",
                     (size_t)(dollar - text) + 1, hint);
            ok = false;
        }
    }
    if (ok && out.failed) {
        snprintf(reason, reason_size, "out of memory expanding variables");
        ok = false;
    }
    if (!ok) {
        free(out.data);
        return false;
    }
    *expanded = out.data;
    return true;
}

/* ---- Reading YAML ---- */

typedef struct {
    char path[KEY_PATH_MAX];
    yaml_mark_t mark;
} seen_key;

typedef struct {
    yaml_parser_t parser;
    const char *source; /* file name for messages */
    const char *text;
    size_t size;
    ap_config *cfg;
    ap_error *err;
    seen_key *seen; /* keys and sections read so far, to find duplicates */
    size_t seen_count;
    size_t seen_capacity;
    char last_key[KEY_PATH_MAX]; /* for syntax errors */
} config_reader;

static ap_status fail_at(config_reader *reader, yaml_mark_t mark, const char *key,
                         const char *format, ...) __attribute__((format(printf, 4, 5)));

/* Fail with "source:line:column: key: message". libyaml counts lines and columns from 0. */
static ap_status fail_at(config_reader *reader, yaml_mark_t mark, const char *key,
                         const char *format, ...)
{
    char message[AP_ERROR_MESSAGE_MAX];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof(message), format, args);
    va_end(args);
    return ap_error_set(reader->err, AP_ERR_INVALID, "%s:%zu:%zu: %s: %s", reader->source,
                        mark.line + 1, mark.column + 1, key, message);
}

/* Line and column of a byte offset, for reader errors that carry only the offset. */
static yaml_mark_t mark_at_offset(const char *text, size_t size, size_t offset)
{
    yaml_mark_t mark = {0};
    for (size_t i = 0; i < offset && i < size; i++) {
        if (text[i] == '\n') {
            mark.line++;
            mark.column = 0;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            mark.column++;
        }
    }
    return mark;
}

/* The byte at a line and column, or '\0' past the end. */
static char character_at(const char *text, size_t size, yaml_mark_t mark)
{
    size_t i = 0;
    for (size_t line = 0; line < mark.line && i < size; i++)
        if (text[i] == '\n')
            line++;
    for (size_t column = 0; i < size && text[i] != '\n'; i++) {
        if (((unsigned char)text[i] & 0xC0) == 0x80)
            continue;
        if (column == mark.column)
            return text[i];
        column++;
    }
    return '\0';
}

static ap_status fail_syntax(config_reader *reader)
{
    yaml_parser_t *parser = &reader->parser;
    if (parser->error == YAML_MEMORY_ERROR)
        return ap_error_set(reader->err, AP_ERR_NOMEM, "%s: out of memory parsing YAML",
                            reader->source);

    yaml_mark_t mark = parser->problem_mark;
    if (parser->error == YAML_READER_ERROR)
        mark = mark_at_offset(reader->text, reader->size, parser->problem_offset);
    char context[160] = "";
    if (parser->context != NULL)
        snprintf(context, sizeof(context), " (%s at line %zu column %zu)", parser->context,
                 parser->context_mark.line + 1, parser->context_mark.column + 1);
    const char *tab_hint = character_at(reader->text, reader->size, mark) == '\t'
                               ? "; tabs are not allowed for indentation, use spaces"
                               : "";
    char after[KEY_PATH_MAX + 16] = "";
    if (reader->last_key[0] != '\0')
        snprintf(after, sizeof(after), " after key %s", reader->last_key);
    return ap_error_set(reader->err, AP_ERR_FORMAT,
                        "%s:%zu:%zu: invalid YAML%s: %s%s%s; check the indentation, colons "
                        "and quotes there",
                        reader->source, mark.line + 1, mark.column + 1, after,
                        parser->problem != NULL ? parser->problem : "unknown problem", context,
                        tab_hint);
}

static ap_status next_event(config_reader *reader, yaml_event_t *event)
{
    if (!yaml_parser_parse(&reader->parser, event))
        return fail_syntax(reader);
    return AP_OK;
}

static const char *event_kind(const yaml_event_t *event)
{
    switch (event->type) {
    case YAML_MAPPING_START_EVENT:
        return "a mapping";
    case YAML_SEQUENCE_START_EVENT:
        return "a list";
    case YAML_ALIAS_EVENT:
        return "an alias (aliases are not supported)";
    case YAML_SCALAR_EVENT:
        return "a single value";
    default:
        return "an unexpected YAML event";
    }
}

/* A plain scalar that YAML reads as null: `key:`, `key: ~`, `key: null`. */
static bool is_null_scalar(const yaml_event_t *event)
{
    if (event->type != YAML_SCALAR_EVENT || event->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *text = (const char *)event->data.scalar.value;
    return strcmp(text, "") == 0 || strcmp(text, "~") == 0 || strcmp(text, "null") == 0 ||
           strcmp(text, "Null") == 0 || strcmp(text, "NULL") == 0;
}

static ap_status remember_key(config_reader *reader, const char *path, yaml_mark_t mark)
{
    for (size_t i = 0; i < reader->seen_count; i++) {
        if (strcmp(reader->seen[i].path, path) == 0)
            return fail_at(reader, mark, path,
                           "duplicate key; it was first set at line %zu column %zu, so remove "
                           "one of them",
                           reader->seen[i].mark.line + 1, reader->seen[i].mark.column + 1);
    }
    if (reader->seen_count == reader->seen_capacity) {
        size_t capacity = reader->seen_capacity > 0 ? 2 * reader->seen_capacity : 64;
        seen_key *grown = realloc(reader->seen, capacity * sizeof(*grown));
        if (grown == NULL)
            return ap_error_set(reader->err, AP_ERR_NOMEM, "%s: out of memory", reader->source);
        reader->seen = grown;
        reader->seen_capacity = capacity;
    }
    seen_key *entry = &reader->seen[reader->seen_count++];
    snprintf(entry->path, sizeof(entry->path), "%s", path);
    entry->mark = mark;
    return AP_OK;
}

/* Expand variables in a scalar event's text into *text, which the caller frees. */
static ap_status expand_scalar(config_reader *reader, const yaml_event_t *event, const char *key,
                               char **text)
{
    char reason[REASON_MAX];
    if (!expand_variables((const char *)event->data.scalar.value, text, reason, sizeof(reason)))
        return fail_at(reader, event->start_mark, key, "%s", reason);
    return AP_OK;
}

static ap_status read_scalar(config_reader *reader, const ap_config_key *key,
                             const yaml_event_t *event)
{
    char reason[REASON_MAX];
    if (ap_config_key_is_list(key)) {
        ap_config_key_describe(key, reason, sizeof(reason));
        return fail_at(reader, event->start_mark, key->name,
                       "expected %s, not %s; write a YAML list such as [a, b], or [] for none",
                       reason, is_null_scalar(event) ? "an empty value" : "a single value");
    }

    char *text = NULL;
    ap_status status = AP_OK;
    if (is_null_scalar(event))
        text = calloc(1, 1);
    else
        status = expand_scalar(reader, event, key->name, &text);
    if (status != AP_OK)
        return status;
    if (text == NULL)
        return ap_error_set(reader->err, AP_ERR_NOMEM, "%s: out of memory", reader->source);

    if (!ap_config_key_parse_scalar(key, text, reader->cfg, reason, sizeof(reason)))
        status = fail_at(reader, event->start_mark, key->name, "%s", reason);
    free(text);
    return status;
}

static ap_status read_item(config_reader *reader, const ap_config_key *key, int index,
                           const yaml_event_t *item)
{
    char reason[REASON_MAX];
    if (item->type != YAML_SCALAR_EVENT) {
        ap_config_key_describe(key, reason, sizeof(reason));
        return fail_at(reader, item->start_mark, key->name, "item %d: expected %s, not %s",
                       index + 1, reason, event_kind(item));
    }
    char *text = NULL;
    ap_status status = expand_scalar(reader, item, key->name, &text);
    if (status != AP_OK)
        return status;
    if (!ap_config_key_parse_item(key, index, text, reader->cfg, reason, sizeof(reason)))
        status = fail_at(reader, item->start_mark, key->name, "%s", reason);
    free(text);
    return status;
}

static ap_status read_sequence(config_reader *reader, const ap_config_key *key, yaml_mark_t start)
{
    int count = 0;
    for (;;) {
        yaml_event_t item;
        ap_status status = next_event(reader, &item);
        if (status != AP_OK)
            return status;
        bool done = item.type == YAML_SEQUENCE_END_EVENT;
        if (!done)
            status = read_item(reader, key, count, &item);
        yaml_event_delete(&item);
        if (status != AP_OK)
            return status;
        if (done)
            break;
        count++;
    }
    char reason[REASON_MAX];
    if (!ap_config_key_set_count(key, count, reader->cfg, reason, sizeof(reason)))
        return fail_at(reader, start, key->name, "%s", reason);
    return AP_OK;
}

static ap_status read_key_value(config_reader *reader, const ap_config_key *key,
                                const yaml_event_t *value)
{
    if (value->type == YAML_SCALAR_EVENT)
        return read_scalar(reader, key, value);
    if (value->type == YAML_SEQUENCE_START_EVENT && ap_config_key_is_list(key))
        return read_sequence(reader, key, value->start_mark);

    char allowed[REASON_MAX];
    ap_config_key_describe(key, allowed, sizeof(allowed));
    return fail_at(reader, value->start_mark, key->name, "expected %s, not %s", allowed,
                   event_kind(value));
}

static ap_status read_mapping(config_reader *reader, const char *prefix);

static ap_status read_section_value(config_reader *reader, const char *section,
                                    const yaml_event_t *value)
{
    if (value->type == YAML_MAPPING_START_EVENT)
        return read_mapping(reader, section);
    /* A section whose keys are all commented out is empty, not wrong. */
    if (is_null_scalar(value))
        return AP_OK;
    char children[REASON_MAX];
    ap_config_list_children(section, children, sizeof(children));
    return fail_at(reader, value->start_mark, section,
                   "expected a mapping of the keys under %s (%s), not %s", section, children,
                   event_kind(value));
}

static ap_status read_entry(config_reader *reader, const char *path, yaml_mark_t key_mark)
{
    const ap_config_key *key = ap_config_key_find(path);
    bool section = key == NULL && ap_config_is_section(path);
    if (key == NULL && !section) {
        char reason[REASON_MAX * 2];
        ap_config_describe_unknown_key(path, reason, sizeof(reason));
        return fail_at(reader, key_mark, path, "%s", reason);
    }
    ap_status status = remember_key(reader, path, key_mark);
    if (status != AP_OK)
        return status;
    snprintf(reader->last_key, sizeof(reader->last_key), "%s", path);

    yaml_event_t value;
    status = next_event(reader, &value);
    if (status != AP_OK)
        return status;
    if (section)
        status = read_section_value(reader, path, &value);
    else
        status = read_key_value(reader, key, &value);
    yaml_event_delete(&value);
    return status;
}

/* Read a mapping's entries up to its end. prefix is the dotted path of the
 * mapping ("" at the top level). */
static ap_status read_mapping(config_reader *reader, const char *prefix)
{
    for (;;) {
        yaml_event_t event;
        ap_status status = next_event(reader, &event);
        if (status != AP_OK)
            return status;
        if (event.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&event);
            return AP_OK;
        }
        if (event.type != YAML_SCALAR_EVENT) {
            status = fail_at(reader, event.start_mark, prefix[0] != '\0' ? prefix : "(top level)",
                             "a key must be a single value, not %s", event_kind(&event));
            yaml_event_delete(&event);
            return status;
        }

        char path[KEY_PATH_MAX];
        const char *name = (const char *)event.data.scalar.value;
        if (prefix[0] != '\0')
            snprintf(path, sizeof(path), "%s.%s", prefix, name);
        else
            snprintf(path, sizeof(path), "%s", name);
        yaml_mark_t key_mark = event.start_mark;
        yaml_event_delete(&event);

        status = read_entry(reader, path, key_mark);
        if (status != AP_OK)
            return status;
    }
}

static ap_status read_document(config_reader *reader)
{
    yaml_event_t event;
    ap_status status = next_event(reader, &event);
    if (status != AP_OK)
        return status;
    if (event.type == YAML_MAPPING_START_EVENT)
        status = read_mapping(reader, "");
    else if (!is_null_scalar(&event))
        status = fail_at(reader, event.start_mark, "(top level)",
                         "expected a mapping of keys such as `run_name: local`, not %s",
                         event_kind(&event));
    yaml_event_delete(&event);
    if (status != AP_OK)
        return status;

    status = next_event(reader, &event);
    if (status == AP_OK && event.type != YAML_DOCUMENT_END_EVENT)
        status = fail_at(reader, event.start_mark, "(top level)", "unexpected YAML content");
    if (status == AP_OK)
        yaml_event_delete(&event);
    return status;
}

/* Read the one document of a stream. An empty stream leaves the defaults. */
static ap_status read_stream(config_reader *reader)
{
    bool have_document = false;
    for (;;) {
        yaml_event_t event;
        ap_status status = next_event(reader, &event);
        if (status != AP_OK)
            return status;
        yaml_event_type_t type = event.type;
        yaml_mark_t mark = event.start_mark;
        yaml_event_delete(&event);

        if (type == YAML_STREAM_END_EVENT)
            return AP_OK;
        if (type != YAML_DOCUMENT_START_EVENT)
            continue;
        if (have_document)
            return fail_at(reader, mark, "(top level)",
                           "a second YAML document; expected one document per config file");
        have_document = true;
        status = read_document(reader);
        if (status != AP_OK)
            return status;
    }
}

/* Length of the valid UTF-8 sequence at text (at most available bytes), or
 * 0 when it is not one; overlong forms and surrogates are invalid. */
static size_t utf8_sequence_length(const unsigned char *text, size_t available)
{
    unsigned char first = text[0];
    size_t length = first < 0x80                     ? 1
                    : first >= 0xc2 && first <= 0xdf ? 2
                    : first >= 0xe0 && first <= 0xef ? 3
                    : first >= 0xf0 && first <= 0xf4 ? 4
                                                     : 0;
    if (length == 0 || length > available)
        return 0;
    for (size_t i = 1; i < length; i++)
        if ((text[i] & 0xc0) != 0x80)
            return 0;
    if ((first == 0xe0 && text[1] < 0xa0) || (first == 0xed && text[1] > 0x9f) ||
        (first == 0xf0 && text[1] < 0x90) || (first == 0xf4 && text[1] > 0x8f))
        return 0;
    return length;
}

/* Check that a config file is UTF-8 without NUL bytes, and name the line
 * and column of the first bad byte, because the YAML parser's message for
 * these does not say what to do. */
static ap_status check_encoding(const char *text, size_t size, const char *source, ap_error *err)
{
    const unsigned char *data = (const unsigned char *)text;
    size_t line = 1, column = 1;
    for (size_t at = 0; at < size;) {
        size_t length = utf8_sequence_length(data + at, size - at);
        if (data[at] == '\0')
            return ap_error_set(err, AP_ERR_INVALID,
                                "%s:%zu:%zu: the file contains a NUL byte, so it is not a "
                                "text file; save the config as plain UTF-8 text",
                                source, line, column);
        if (length == 0)
            return ap_error_set(err, AP_ERR_INVALID,
                                "%s:%zu:%zu: byte 0x%02x is not valid UTF-8; save the config "
                                "as UTF-8 (for example with iconv -f LATIN1 -t UTF-8)",
                                source, line, column, data[at]);
        if (data[at] == '\n') {
            line++;
            column = 0;
        }
        at += length;
        column++;
    }
    return AP_OK;
}

static ap_status load_text(const char *text, size_t size, const char *source, ap_config *cfg,
                           ap_error *err)
{
    ap_config parsed;
    ap_config_defaults(&parsed);
    if (strlen(source) >= sizeof(parsed.source_path))
        return ap_error_set(err, AP_ERR_INVALID,
                            "config path %.64s... is %zu characters long; at most %zu are allowed",
                            source, strlen(source), sizeof(parsed.source_path) - 1);
    snprintf(parsed.source_path, sizeof(parsed.source_path), "%s", source);

    config_reader reader = {
        .source = source, .text = text, .size = size, .cfg = &parsed, .err = err};
    if (!yaml_parser_initialize(&reader.parser))
        return ap_error_set(err, AP_ERR_NOMEM, "%s: out of memory starting the YAML parser",
                            source);
    yaml_parser_set_input_string(&reader.parser, (const unsigned char *)text, size);
    ap_status status = read_stream(&reader);
    yaml_parser_delete(&reader.parser);
    free(reader.seen);
    if (status == AP_OK)
        *cfg = parsed;
    return status;
}

ap_status ap_config_load_file(const char *path, ap_config *cfg, ap_error *err)
{
    uint8_t *data = NULL;
    size_t size = 0;
    ap_status status = ap_read_file(path, CONFIG_FILE_MAX, &data, &size, err);
    if (status != AP_OK)
        return status;
    status = check_encoding((const char *)data, size, path, err);
    if (status == AP_OK)
        status = load_text((const char *)data, size, path, cfg, err);
    free(data);
    return status;
}

ap_status ap_config_load_string(const char *yaml, const char *name, ap_config *cfg, ap_error *err)
{
    return load_text(yaml, strlen(yaml), name != NULL ? name : "(string)", cfg, err);
}
