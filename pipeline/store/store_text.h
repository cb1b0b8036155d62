#ifndef APIARY_STORE_STORE_TEXT_H
#define APIARY_STORE_STORE_TEXT_H

/* A growing, NUL-terminated byte buffer for request lines, signatures and
 * response bodies. Private to pipeline/store. After a failed append the
 * buffer keeps its earlier content and failed is set, so a caller may
 * append several pieces and check once. */

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *data; /* NULL until the first append */
    size_t size;
    size_t capacity;
    bool failed; /* an allocation failed */
} store_text;

void store_text_append(store_text *text, const void *bytes, size_t size);
void store_text_append_string(store_text *text, const char *string);
void store_text_appendf(store_text *text, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
/* Empty the buffer but keep its memory. */
void store_text_clear(store_text *text);
/* Return the malloc'd content and leave text empty; NULL after a failure. */
char *store_text_take(store_text *text);
void store_text_free(store_text *text);

#endif
