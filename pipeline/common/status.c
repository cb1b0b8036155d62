#include "pipeline/common/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

ap_status ap_error_set(ap_error *err, ap_status code, const char *format, ...)
{
    if (err == NULL)
        return code;
    va_list args;
    va_start(args, format);
    vsnprintf(err->message, sizeof(err->message), format, args);
    va_end(args);
    err->code = code;
    return code;
}

ap_status ap_error_prefix(ap_error *err, const char *format, ...)
{
    if (err == NULL)
        return AP_OK;
    char prefix[AP_ERROR_MESSAGE_MAX];
    va_list args;
    va_start(args, format);
    vsnprintf(prefix, sizeof(prefix), format, args);
    va_end(args);

    /* Truncation is acceptable: the start of the message carries the context. */
    char joined[2 * AP_ERROR_MESSAGE_MAX + 2];
    snprintf(joined, sizeof(joined), "%s: %s", prefix, err->message);
    snprintf(err->message, sizeof(err->message), "%.*s", AP_ERROR_MESSAGE_MAX - 1, joined);
    return err->code;
}

const char *ap_status_name(ap_status code)
{
    switch (code) {
    case AP_OK:
        return "ok";
    case AP_ERR_INVALID:
        return "invalid";
    case AP_ERR_IO:
        return "i/o error";
    case AP_ERR_NOMEM:
        return "out of memory";
    case AP_ERR_FORMAT:
        return "bad format";
    case AP_ERR_NOT_FOUND:
        return "not found";
    case AP_ERR_BACKEND:
        return "backend error";
    case AP_ERR_INTERRUPTED:
        return "interrupted";
    case AP_ERR_LIMIT:
        return "limit exceeded";
    }
    return "unknown";
}
