#ifndef APIARY_SERVE_SERVE_LOG_H
#define APIARY_SERVE_SERVE_LOG_H

/* Error logging for the server with repeats suppressed, so that a client
 * that sends the same bad request in a loop does not flood the log. The
 * first occurrence of a message is written. Identical messages in the next
 * AP_SERVE_LOG_WINDOW_SECONDS are only counted. The count is written with
 * the next occurrence after the window, when the message leaves the table
 * of recent messages, or at ap_serve_log_destroy. */

#include <pthread.h>
#include <stdint.h>

#include "pipeline/common/log.h"

#define AP_SERVE_LOG_WINDOW_SECONDS 60.0
#define AP_SERVE_LOG_RECENT         32

typedef struct {
    uint64_t hash; /* of the formatted message; 0 for a free slot */
    double window_start;
    long suppressed;
    char excerpt[128]; /* start of the message, for the repeat count line */
} ap_serve_log_entry;

typedef struct {
    pthread_mutex_t lock;
    ap_serve_log_entry recent[AP_SERVE_LOG_RECENT];
} ap_serve_log;

void ap_serve_log_init(ap_serve_log *log);
void ap_serve_log_destroy(ap_serve_log *log);

/* Write a message at level unless it repeats one written in the window. */
void ap_serve_log_write(ap_serve_log *log, ap_log_level level, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

/* Seconds on the monotonic clock. */
double ap_serve_now(void);

#endif
