#ifndef APIARY_COMMON_STATUS_H
#define APIARY_COMMON_STATUS_H

/* Error reporting for library code: functions return an ap_status and, on
 * failure, fill an ap_error with a message that names the input and what to
 * do. Libraries never print and never exit; stage entry points report. */

typedef enum {
    AP_OK = 0,
    AP_ERR_INVALID,     /* invalid argument, config value or input data */
    AP_ERR_IO,          /* file system or network failure */
    AP_ERR_NOMEM,       /* allocation failed */
    AP_ERR_FORMAT,      /* corrupt, truncated or unsupported file content */
    AP_ERR_NOT_FOUND,   /* a file, key or object does not exist */
    AP_ERR_BACKEND,     /* oneDNN, CUDA or another compute library failed */
    AP_ERR_INTERRUPTED, /* stopped by a signal; state was saved */
    AP_ERR_LIMIT,       /* a configured limit was exceeded */
} ap_status;

#define AP_ERROR_MESSAGE_MAX 1024

typedef struct {
    ap_status code;
    char message[AP_ERROR_MESSAGE_MAX];
} ap_error;

/* Store code and a printf-style message in err (which may be NULL); return code. */
ap_status ap_error_set(ap_error *err, ap_status code, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix err's message with more context, for example the file being read.
 * Returns err->code, or AP_OK when err is NULL: callers that return the
 * result must pass a non-NULL err. */
ap_status ap_error_prefix(ap_error *err, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

const char *ap_status_name(ap_status code);

#endif
