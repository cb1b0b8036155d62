#include "pipeline/config/config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <yaml.h>

#include "pipeline/config/config_table.h"
#include "pipeline/config/config_text.h"

/* ---- Key table and YAML output ---- */

/* A value as the key table shows it: lists in brackets, empty text as "". */
static void format_for_table(const ap_config_key *key, const ap_config *cfg, char *out,
                             size_t out_size)
{
    if (!ap_config_key_is_list(key)) {
        ap_config_key_format_scalar(key, cfg, out, out_size);
        if (out[0] == '\0')
            snprintf(out, out_size, "\"\"");
        return;
    }
    text_buffer list = {0};
    text_append_string(&list, "[");
    int count = ap_config_key_item_count(key, cfg);
    for (int i = 0; i < count; i++) {
        char item[128];
        ap_config_key_format_item(key, cfg, i, item, sizeof(item));
        text_append_string(&list, i > 0 ? ", " : "");
        text_append_string(&list, item);
    }
    text_append_string(&list, "]");
    snprintf(out, out_size, "%s", list.failed ? "?" : list.data);
    free(list.data);
}

void ap_config_print_keys(void *file)
{
    FILE *out = file;
    ap_config defaults;
    ap_config_defaults(&defaults);

    /* One line of key, type, default and allowed values in aligned columns,
     * then the meaning, indented, on the next line. */
    int key_width = 3, type_width = 4, default_width = 7;
    for (size_t i = 0; i < ap_config_key_count; i++) {
        const ap_config_key *key = &ap_config_keys[i];
        char value[256];
        format_for_table(key, &defaults, value, sizeof(value));
        int lengths[3] = {(int)strlen(key->name), (int)strlen(ap_config_key_type_name(key)),
                          (int)strlen(value)};
        int *widths[3] = {&key_width, &type_width, &default_width};
        for (int column = 0; column < 3; column++)
            if (lengths[column] > *widths[column])
                *widths[column] = lengths[column];
    }

    fprintf(out, "%-*s  %-*s  %-*s  %s\n    %s\n", key_width, "key", type_width, "type",
            default_width, "default", "allowed", "meaning");
    for (size_t i = 0; i < ap_config_key_count; i++) {
        const ap_config_key *key = &ap_config_keys[i];
        char value[256], range[256];
        format_for_table(key, &defaults, value, sizeof(value));
        ap_config_key_describe_short(key, range, sizeof(range));
        fprintf(out, "%-*s  %-*s  %-*s  %s\n    %s\n", key_width, key->name, type_width,
                ap_config_key_type_name(key), default_width, value, range, key->help);
    }
}

static int write_to_buffer(void *data, unsigned char *bytes, size_t size)
{
    text_buffer *text = data;
    text_append(text, (const char *)bytes, size);
    return text->failed ? 0 : 1;
}

static bool emit_scalar(yaml_emitter_t *emitter, const char *text, yaml_scalar_style_t style)
{
    yaml_event_t event;
    if (!yaml_scalar_event_initialize(&event, NULL, NULL, (yaml_char_t *)text, (int)strlen(text), 1,
                                      1, style))
        return false;
    return yaml_emitter_emit(emitter, &event) != 0;
}

static bool emit_mapping_start(yaml_emitter_t *emitter)
{
    yaml_event_t event;
    if (!yaml_mapping_start_event_initialize(&event, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE))
        return false;
    return yaml_emitter_emit(emitter, &event) != 0;
}

static bool emit_mapping_end(yaml_emitter_t *emitter)
{
    yaml_event_t event;
    if (!yaml_mapping_end_event_initialize(&event))
        return false;
    return yaml_emitter_emit(emitter, &event) != 0;
}

/* Emit text so that reading it back gives text again: '$' doubled so that it
 * is not expanded, and null-looking text quoted so that it stays text. */
static bool emit_text(yaml_emitter_t *emitter, const char *text)
{
    text_buffer escaped = {0};
    text_append(&escaped, "", 0);
    for (const char *c = text; *c != '\0'; c++) {
        text_append(&escaped, c, 1);
        if (*c == '$')
            text_append(&escaped, "$", 1);
    }
    if (escaped.failed) {
        free(escaped.data);
        return false;
    }
    bool null_like = escaped.data[0] == '\0' || strcmp(escaped.data, "~") == 0 ||
                     strcasecmp(escaped.data, "null") == 0;
    bool ok = emit_scalar(emitter, escaped.data,
                          null_like ? YAML_DOUBLE_QUOTED_SCALAR_STYLE : YAML_ANY_SCALAR_STYLE);
    free(escaped.data);
    return ok;
}

static bool emit_value(yaml_emitter_t *emitter, const ap_config_key *key, const ap_config *cfg)
{
    char value[AP_PATH_MAX + 16];
    if (!ap_config_key_is_list(key)) {
        ap_config_key_format_scalar(key, cfg, value, sizeof(value));
        if (key->type == AP_VALUE_STRING)
            return emit_text(emitter, value);
        return emit_scalar(emitter, value, YAML_PLAIN_SCALAR_STYLE);
    }

    yaml_event_t event;
    if (!yaml_sequence_start_event_initialize(&event, NULL, NULL, 1, YAML_FLOW_SEQUENCE_STYLE) ||
        !yaml_emitter_emit(emitter, &event))
        return false;
    int count = ap_config_key_item_count(key, cfg);
    for (int i = 0; i < count; i++) {
        ap_config_key_format_item(key, cfg, i, value, sizeof(value));
        bool ok = key->type == AP_VALUE_STRING_LIST
                      ? emit_text(emitter, value)
                      : emit_scalar(emitter, value, YAML_PLAIN_SCALAR_STYLE);
        if (!ok)
            return false;
    }
    return yaml_sequence_end_event_initialize(&event) && yaml_emitter_emit(emitter, &event);
}

/* Emit every key, opening and closing a nested mapping wherever the
 * section part of the dotted names changes. */
static bool emit_keys(yaml_emitter_t *emitter, const ap_config *cfg)
{
    char open[8][KEY_PATH_MAX];
    int depth = 0;
    for (size_t i = 0; i < ap_config_key_count; i++) {
        const ap_config_key *key = &ap_config_keys[i];
        char parts[8][KEY_PATH_MAX];
        int count = 0;
        for (const char *part = key->name; count < 8; count++) {
            size_t length = strcspn(part, ".");
            snprintf(parts[count], sizeof(parts[count]), "%.*s", (int)length, part);
            if (part[length] == '\0') {
                count++;
                break;
            }
            part += length + 1;
        }

        int common = 0;
        while (common < depth && common < count - 1 && strcmp(open[common], parts[common]) == 0)
            common++;
        for (; depth > common; depth--)
            if (!emit_mapping_end(emitter))
                return false;
        for (; depth < count - 1; depth++) {
            if (!emit_scalar(emitter, parts[depth], YAML_PLAIN_SCALAR_STYLE) ||
                !emit_mapping_start(emitter))
                return false;
            snprintf(open[depth], sizeof(open[depth]), "%s", parts[depth]);
        }
        if (!emit_scalar(emitter, parts[count - 1], YAML_PLAIN_SCALAR_STYLE) ||
            !emit_value(emitter, key, cfg))
            return false;
    }
    for (; depth > 0; depth--)
        if (!emit_mapping_end(emitter))
            return false;
    return true;
}

static bool emit_config(yaml_emitter_t *emitter, const ap_config *cfg)
{
    yaml_event_t event;
    if (!yaml_stream_start_event_initialize(&event, YAML_UTF8_ENCODING) ||
        !yaml_emitter_emit(emitter, &event))
        return false;
    if (!yaml_document_start_event_initialize(&event, NULL, NULL, NULL, 1) ||
        !yaml_emitter_emit(emitter, &event))
        return false;
    if (!emit_mapping_start(emitter) || !emit_keys(emitter, cfg) || !emit_mapping_end(emitter))
        return false;
    if (!yaml_document_end_event_initialize(&event, 1) || !yaml_emitter_emit(emitter, &event))
        return false;
    return yaml_stream_end_event_initialize(&event) && yaml_emitter_emit(emitter, &event);
}

char *ap_config_to_yaml(const ap_config *cfg)
{
    text_buffer text = {0};
    text_append_string(&text, "# apiary configuration: every key, with environment variables "
                              "already expanded\n");
    yaml_emitter_t emitter;
    if (!yaml_emitter_initialize(&emitter)) {
        free(text.data);
        return NULL;
    }
    yaml_emitter_set_output(&emitter, write_to_buffer, &text);
    yaml_emitter_set_unicode(&emitter, 1);
    yaml_emitter_set_width(&emitter, -1);
    bool ok = emit_config(&emitter, cfg);
    yaml_emitter_delete(&emitter);
    if (!ok || text.failed) {
        free(text.data);
        return NULL;
    }
    return text.data;
}
