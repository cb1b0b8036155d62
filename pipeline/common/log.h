#ifndef APIARY_COMMON_LOG_H
#define APIARY_COMMON_LOG_H

/* One log macro for the whole program. The level is checked before the
 * message is formatted. Lines go to stderr as "TIME rank=R LEVEL message".
 * Only stage entry points and long-running loops log; libraries return errors. */

typedef enum { AP_LOG_DEBUG = 0, AP_LOG_INFO, AP_LOG_WARN, AP_LOG_ERROR } ap_log_level;

extern ap_log_level ap_log_threshold;

void ap_log_set_rank(int rank);
/* Parse "debug", "info", "warn" or "error"; return -1 for any other name. */
int ap_log_level_parse(const char *name);
void ap_log_write(ap_log_level level, const char *format, ...) __attribute__((format(printf, 2, 3)));

#define AP_LOG(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) >= ap_log_threshold)                                                           \
            ap_log_write((level), __VA_ARGS__);                                                    \
    } while (0)

#define AP_DEBUG(...) AP_LOG(AP_LOG_DEBUG, __VA_ARGS__)
#define AP_INFO(...)  AP_LOG(AP_LOG_INFO, __VA_ARGS__)
#define AP_WARN(...)  AP_LOG(AP_LOG_WARN, __VA_ARGS__)
#define AP_ERROR(...) AP_LOG(AP_LOG_ERROR, __VA_ARGS__)

#endif
