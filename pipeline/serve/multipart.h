#ifndef APIARY_SERVE_MULTIPART_H
#define APIARY_SERVE_MULTIPART_H

/* multipart/form-data bodies (RFC 7578 on the framing of RFC 2046, section
 * 5.1): the boundary from the Content-Type header and the parts of a body
 * that is held whole in memory. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/common/status.h"

#define AP_MULTIPART_BOUNDARY_MAX 70 /* RFC 2046 limit */
#define AP_MULTIPART_NAME_MAX     256

typedef struct {
    const uint8_t *data; /* content, pointing into the body */
    size_t size;
    char name[AP_MULTIPART_NAME_MAX];         /* form field name from Content-Disposition */
    char filename[AP_MULTIPART_NAME_MAX];     /* file name; empty when has_filename is false */
    bool has_filename;                        /* a filename parameter was present */
    char content_type[AP_MULTIPART_NAME_MAX]; /* the part's Content-Type, empty when absent */
} ap_multipart_part;

/* True when the media type of a Content-Type value, before any parameters,
 * is type (compared case-insensitively). */
bool ap_media_type_is(const char *content_type, const char *type);

/* Read the boundary parameter of a multipart/form-data Content-Type value
 * (quoted or not) into boundary, a buffer of AP_MULTIPART_BOUNDARY_MAX + 1
 * bytes. Fails with AP_ERR_INVALID when the type is not multipart/form-data
 * or the boundary is missing, empty or longer than 70 characters. */
ap_status ap_multipart_boundary(const char *content_type, char *boundary, ap_error *err);

/* Split body into parts. Every part needs a Content-Disposition: form-data
 * header; the body must end with the closing delimiter (a body without it
 * is truncated). At most max_parts parts are accepted: more fail with
 * AP_ERR_LIMIT. Malformed framing or headers fail with AP_ERR_INVALID. */
ap_status ap_multipart_parse(const uint8_t *body, size_t size, const char *boundary,
                             ap_multipart_part *parts, size_t max_parts, size_t *count,
                             ap_error *err);

#endif
