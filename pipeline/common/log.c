#include "pipeline/common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

ap_log_level ap_log_threshold = AP_LOG_INFO;
static int log_rank;

void ap_log_set_rank(int rank)
{
    log_rank = rank;
}

int ap_log_level_parse(const char *name)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

void ap_log_write(ap_log_level level, const char *format, ...)
{
    static const char *const tags[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    char stamp[32];
    struct timespec now;
    struct tm parts;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &parts);
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &parts);

    char line[2048];
    int used = snprintf(line, sizeof(line), "%s.%03ldZ rank=%d %-5s ", stamp,
                        now.tv_nsec / 1000000, log_rank, tags[level]);
    va_list args;
    va_start(args, format);
    vsnprintf(line + used, sizeof(line) - (size_t)used, format, args);
    va_end(args);
    /* One fputs per line keeps lines from concurrent threads whole. */
    strncat(line, "\n", sizeof(line) - strlen(line) - 1);
    fputs(line, stderr);
}
