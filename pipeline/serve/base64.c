#include "pipeline/serve/base64.h"

#include <stdlib.h>

/* Value of a base64 character, or -1 for any other byte. */
static int sextet(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Count the '=' padding at the end and check that it is where padding may be. */
static ap_status strip_padding(const char *text, size_t *length, ap_error *err)
{
    size_t padding = 0;
    while (padding < 2 && *length > 0 && text[*length - 1] == '=') {
        (*length)--;
        padding++;
    }
    if (padding > 0 && (*length + padding) % 4 != 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "invalid base64: %zu characters with padding is not a multiple of 4",
                            *length + padding);
    if (*length % 4 == 1)
        return ap_error_set(err, AP_ERR_INVALID,
                            "invalid base64: %zu characters cannot encode whole bytes "
                            "(the data is truncated)",
                            *length);
    return AP_OK;
}

ap_status ap_base64_decode(const char *text, size_t length, uint8_t **out, size_t *out_size,
                           ap_error *err)
{
    *out = NULL;
    *out_size = 0;
    /* Characters first, so that a wrong character is reported as such
     * rather than as a length that cannot encode whole bytes. */
    size_t body = length;
    while (body > 0 && length - body < 2 && text[body - 1] == '=')
        body--;
    for (size_t i = 0; i < body; i++)
        if (sextet((unsigned char)text[i]) < 0)
            return ap_error_set(err, AP_ERR_INVALID,
                                "invalid base64: character 0x%02x at offset %zu is not in the "
                                "standard alphabet (A-Z, a-z, 0-9, '+', '/', '=' at the end)",
                                (unsigned char)text[i], i);
    ap_status status = strip_padding(text, &length, err);
    if (status != AP_OK)
        return status;
    size_t size = length / 4 * 3 + (length % 4 == 0 ? 0 : length % 4 - 1);
    uint8_t *bytes = malloc(size + 1);
    if (bytes == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %zu bytes for base64 data", size);

    uint32_t bits = 0;
    int bit_count = 0;
    size_t written = 0;
    for (size_t i = 0; i < length; i++) {
        int value = sextet((unsigned char)text[i]);
        bits = (bits << 6) | (uint32_t)value;
        bit_count += 6;
        if (bit_count >= 8) {
            bit_count -= 8;
            bytes[written++] = (uint8_t)(bits >> bit_count);
            bits &= (1u << bit_count) - 1;
        }
    }
    *out = bytes;
    *out_size = written;
    return AP_OK;
}
