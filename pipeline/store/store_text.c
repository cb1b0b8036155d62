#include "pipeline/store/store_text.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool reserve(store_text *text, size_t extra)
{
    if (text->failed)
        return false;
    if (text->size + extra + 1 <= text->capacity)
        return true;
    size_t capacity = text->capacity ? text->capacity : 256;
    while (capacity < text->size + extra + 1)
        capacity *= 2;
    char *grown = realloc(text->data, capacity);
    if (grown == NULL) {
        text->failed = true;
        return false;
    }
    text->data = grown;
    text->capacity = capacity;
    return true;
}

void store_text_append(store_text *text, const void *bytes, size_t size)
{
    if (!reserve(text, size))
        return;
    memcpy(text->data + text->size, bytes, size);
    text->size += size;
    text->data[text->size] = '\0';
}

void store_text_append_string(store_text *text, const char *string)
{
    store_text_append(text, string, strlen(string));
}

void store_text_appendf(store_text *text, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    int needed = vsnprintf(NULL, 0, format, args);
    va_end(args);
    if (needed < 0 || !reserve(text, (size_t)needed)) {
        text->failed = true;
        return;
    }
    va_start(args, format);
    vsnprintf(text->data + text->size, (size_t)needed + 1, format, args);
    va_end(args);
    text->size += (size_t)needed;
}

void store_text_clear(store_text *text)
{
    text->size = 0;
    if (text->data != NULL)
        text->data[0] = '\0';
}

char *store_text_take(store_text *text)
{
    if (text->failed || !reserve(text, 0)) {
        store_text_free(text);
        return NULL;
    }
    text->data[text->size] = '\0';
    char *data = text->data;
    memset(text, 0, sizeof(*text));
    return data;
}

void store_text_free(store_text *text)
{
    free(text->data);
    memset(text, 0, sizeof(*text));
}
