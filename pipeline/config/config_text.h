#ifndef APIARY_CONFIG_CONFIG_TEXT_H
#define APIARY_CONFIG_CONFIG_TEXT_H

/* Growable text for messages and YAML output. Private to pipeline/config. */

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *data;
    size_t length;
    size_t capacity;
    bool failed; /* set when an allocation failed and data is incomplete */
} text_buffer;

static inline void text_append(text_buffer *text, const char *bytes, size_t count)
{
    if (text->failed)
        return;
    if (text->length + count + 1 > text->capacity) {
        size_t capacity = text->capacity > 0 ? text->capacity : 256;
        while (capacity < text->length + count + 1)
            capacity *= 2;
        char *grown = realloc(text->data, capacity);
        if (grown == NULL) {
            text->failed = true;
            return;
        }
        text->data = grown;
        text->capacity = capacity;
    }
    memcpy(text->data + text->length, bytes, count);
    text->length += count;
    text->data[text->length] = '\0';
}

static inline void text_append_string(text_buffer *text, const char *string)
{
    text_append(text, string, strlen(string));
}

#endif
