#ifndef APIARY_SERVE_BASE64_H
#define APIARY_SERVE_BASE64_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/common/status.h"

/* Decode standard base64 (RFC 4648, section 4: A-Z, a-z, 0-9, '+', '/').
 * Padding with '=' may be present or left out; whitespace and the URL-safe
 * alphabet are rejected. On success *out is a malloc'd buffer of *out_size
 * bytes (one spare byte allocated so that an empty result is not NULL).
 * Fails with AP_ERR_INVALID and the offset of the first bad character. */
ap_status ap_base64_decode(const char *text, size_t length, uint8_t **out, size_t *out_size,
                           ap_error *err);

#endif
