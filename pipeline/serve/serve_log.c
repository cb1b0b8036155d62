#include "pipeline/serve/serve_log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

double ap_serve_now(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec * 1e-9;
}

void ap_serve_log_init(ap_serve_log *log)
{
    memset(log, 0, sizeof(*log));
    pthread_mutex_init(&log->lock, NULL);
}

static void write_repeats(const ap_serve_log_entry *entry, double now)
{
    if (entry->suppressed > 0)
        AP_WARN("the message \"%s\" repeated %ld more times in the last %.0f s", entry->excerpt,
                entry->suppressed, now - entry->window_start);
}

void ap_serve_log_destroy(ap_serve_log *log)
{
    double now = ap_serve_now();
    for (int i = 0; i < AP_SERVE_LOG_RECENT; i++)
        write_repeats(&log->recent[i], now);
    pthread_mutex_destroy(&log->lock);
}

/* FNV-1a, 64 bits; 0 is kept for free slots. */
static uint64_t hash_text(const char *text)
{
    uint64_t hash = 14695981039346656037ull;
    for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++)
        hash = (hash ^ *p) * 1099511628211ull;
    return hash != 0 ? hash : 1;
}

/* Find the message's slot, or take the free or least recently started one. */
static ap_serve_log_entry *find_slot(ap_serve_log *log, uint64_t hash, double now)
{
    ap_serve_log_entry *oldest = &log->recent[0];
    for (int i = 0; i < AP_SERVE_LOG_RECENT; i++) {
        ap_serve_log_entry *entry = &log->recent[i];
        if (entry->hash == hash)
            return entry;
        if (entry->hash == 0 || entry->window_start < oldest->window_start)
            oldest = entry;
        if (entry->hash == 0)
            break;
    }
    write_repeats(oldest, now);
    memset(oldest, 0, sizeof(*oldest));
    return oldest;
}

void ap_serve_log_write(ap_serve_log *log, ap_log_level level, const char *format, ...)
{
    if (level < ap_log_threshold)
        return;
    char message[1536];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof(message), format, args);
    va_end(args);
    uint64_t hash = hash_text(message);
    double now = ap_serve_now();

    pthread_mutex_lock(&log->lock);
    ap_serve_log_entry *entry = find_slot(log, hash, now);
    bool repeat = entry->hash == hash && now - entry->window_start < AP_SERVE_LOG_WINDOW_SECONDS;
    if (repeat) {
        entry->suppressed++;
    } else {
        write_repeats(entry, now);
        entry->hash = hash;
        entry->window_start = now;
        entry->suppressed = 0;
        snprintf(entry->excerpt, sizeof(entry->excerpt), "%.*s", (int)sizeof(entry->excerpt) - 1,
                 message);
    }
    pthread_mutex_unlock(&log->lock);
    if (!repeat)
        AP_LOG(level, "%s", message);
}
