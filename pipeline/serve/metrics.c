#include "pipeline/serve/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUEST_SERIES_MAX 256
#define ENDPOINTS_MAX      32
#define LABELS_MAX         64
#define LABEL_NAME_MAX     64

static const double latency_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

#define LATENCY_BUCKETS (sizeof(latency_bounds) / sizeof(latency_bounds[0]))
#define BATCH_BUCKETS   (sizeof(batch_bounds) / sizeof(batch_bounds[0]))

/* Cumulative counts per upper bound as Prometheus wants them are made at
 * render time; each slot here counts observations that fall into it. */
typedef struct {
    uint64_t buckets[LATENCY_BUCKETS + 1]; /* the last is +Inf */
    double sum;
    uint64_t count;
} histogram;

typedef struct {
    const char *endpoint;
    int code;
    uint64_t count;
} request_series;

typedef struct {
    const char *endpoint;
    histogram latency;
} endpoint_latency;

typedef struct {
    char label[LABEL_NAME_MAX];
    uint64_t decisions[2]; /* negative, positive */
} label_decisions;

struct ap_serve_metrics {
    pthread_mutex_t lock;
    request_series requests[REQUEST_SERIES_MAX];
    size_t request_count;
    endpoint_latency latencies[ENDPOINTS_MAX];
    size_t latency_count;
    label_decisions labels[LABELS_MAX];
    size_t label_count;
    histogram batch_images;
    histogram batch_seconds;
    uint64_t loads_succeeded;
    uint64_t loads_failed;
    bool has_model;
    char model_name[LABEL_NAME_MAX];
    char model_version[32];
    char model_sha256[65];
};

ap_status ap_serve_metrics_create(ap_serve_metrics **out, ap_error *err)
{
    *out = calloc(1, sizeof(**out));
    if (*out == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the server metrics");
    pthread_mutex_init(&(*out)->lock, NULL);
    return AP_OK;
}

void ap_serve_metrics_destroy(ap_serve_metrics *metrics)
{
    if (metrics == NULL)
        return;
    pthread_mutex_destroy(&metrics->lock);
    free(metrics);
}

static void observe(histogram *h, const double *bounds, size_t bound_count, double value)
{
    size_t slot = 0;
    while (slot < bound_count && value > bounds[slot])
        slot++;
    h->buckets[slot]++;
    h->sum += value;
    h->count++;
}

static histogram *endpoint_histogram(ap_serve_metrics *metrics, const char *endpoint)
{
    for (size_t i = 0; i < metrics->latency_count; i++)
        if (strcmp(metrics->latencies[i].endpoint, endpoint) == 0)
            return &metrics->latencies[i].latency;
    if (metrics->latency_count == ENDPOINTS_MAX)
        return NULL;
    endpoint_latency *added = &metrics->latencies[metrics->latency_count++];
    added->endpoint = endpoint;
    return &added->latency;
}

void ap_serve_metrics_observe_request(ap_serve_metrics *metrics, const char *endpoint, int code,
                                      double seconds)
{
    pthread_mutex_lock(&metrics->lock);
    request_series *series = NULL;
    for (size_t i = 0; i < metrics->request_count && series == NULL; i++)
        if (metrics->requests[i].code == code &&
            strcmp(metrics->requests[i].endpoint, endpoint) == 0)
            series = &metrics->requests[i];
    if (series == NULL && metrics->request_count < REQUEST_SERIES_MAX) {
        series = &metrics->requests[metrics->request_count++];
        series->endpoint = endpoint;
        series->code = code;
    }
    /* Routes and codes are few, so the table is never full in practice. */
    if (series != NULL)
        series->count++;
    histogram *latency = endpoint_histogram(metrics, endpoint);
    if (latency != NULL)
        observe(latency, latency_bounds, LATENCY_BUCKETS, seconds);
    pthread_mutex_unlock(&metrics->lock);
}

void ap_serve_metrics_count_decisions(ap_serve_metrics *metrics, const char *label, bool decision,
                                      long images)
{
    pthread_mutex_lock(&metrics->lock);
    label_decisions *entry = NULL;
    for (size_t i = 0; i < metrics->label_count && entry == NULL; i++)
        if (strcmp(metrics->labels[i].label, label) == 0)
            entry = &metrics->labels[i];
    if (entry == NULL && metrics->label_count < LABELS_MAX) {
        entry = &metrics->labels[metrics->label_count++];
        snprintf(entry->label, sizeof(entry->label), "%s", label);
    }
    if (entry != NULL)
        entry->decisions[decision ? 1 : 0] += (uint64_t)images;
    pthread_mutex_unlock(&metrics->lock);
}

void ap_serve_metrics_observe_batch(ap_serve_metrics *metrics, size_t images, double seconds)
{
    pthread_mutex_lock(&metrics->lock);
    observe(&metrics->batch_images, batch_bounds, BATCH_BUCKETS, (double)images);
    observe(&metrics->batch_seconds, latency_bounds, LATENCY_BUCKETS, seconds);
    pthread_mutex_unlock(&metrics->lock);
}

void ap_serve_metrics_model_loaded(ap_serve_metrics *metrics, const char *name, const char *version,
                                   const char *sha256)
{
    pthread_mutex_lock(&metrics->lock);
    metrics->loads_succeeded++;
    metrics->has_model = true;
    snprintf(metrics->model_name, sizeof(metrics->model_name), "%s", name);
    snprintf(metrics->model_version, sizeof(metrics->model_version), "%s", version);
    snprintf(metrics->model_sha256, sizeof(metrics->model_sha256), "%s", sha256);
    pthread_mutex_unlock(&metrics->lock);
}

void ap_serve_metrics_model_load_failed(ap_serve_metrics *metrics)
{
    pthread_mutex_lock(&metrics->lock);
    metrics->loads_failed++;
    pthread_mutex_unlock(&metrics->lock);
}

/* ---- Rendering ---- */

typedef struct {
    char *text;
    size_t used;
    size_t capacity;
    bool failed;
} text_buffer;

__attribute__((format(printf, 2, 3))) static void append(text_buffer *out, const char *format, ...)
{
    for (int attempt = 0; attempt < 2 && !out->failed; attempt++) {
        va_list args;
        va_start(args, format);
        int written = vsnprintf(out->text + out->used, out->capacity - out->used, format, args);
        va_end(args);
        if (written < 0) {
            out->failed = true;
        } else if ((size_t)written < out->capacity - out->used) {
            out->used += (size_t)written;
            return;
        } else {
            size_t capacity = (out->capacity + (size_t)written + 1) * 2;
            char *grown = realloc(out->text, capacity);
            if (grown == NULL)
                out->failed = true;
            out->text = grown != NULL ? grown : out->text;
            out->capacity = grown != NULL ? capacity : out->capacity;
        }
    }
}

/* Escape a label value: backslash, double quote and newline (text format 0.0.4). */
static void escape_label(const char *value, char *out, size_t out_size)
{
    size_t used = 0;
    for (const char *p = value; *p != '\0' && used + 3 < out_size; p++) {
        if (*p == '\\' || *p == '"' || *p == '\n') {
            out[used++] = '\\';
            out[used++] = *p == '\n' ? 'n' : *p;
        } else {
            out[used++] = *p;
        }
    }
    out[used] = '\0';
}

static void append_header(text_buffer *out, const char *name, const char *type, const char *help)
{
    append(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One histogram's series; labels is "" or `key="value",` with the trailing comma. */
static void append_histogram(text_buffer *out, const char *name, const char *labels,
                             const histogram *h, const double *bounds, size_t bound_count)
{
    uint64_t cumulative = 0;
    for (size_t i = 0; i < bound_count; i++) {
        cumulative += h->buckets[i];
        append(out, "%s_bucket{%sle=\"%g\"} %llu\n", name, labels, bounds[i],
               (unsigned long long)cumulative);
    }
    cumulative += h->buckets[bound_count];
    append(out, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels, (unsigned long long)cumulative);
    /* the sum and count lines take the labels without the trailing comma */
    char plain[320] = "";
    size_t length = strlen(labels);
    if (length > 0)
        snprintf(plain, sizeof(plain), "{%.*s}", (int)length - 1, labels);
    append(out, "%s_sum%s %.9g\n", name, plain, h->sum);
    append(out, "%s_count%s %llu\n", name, plain, (unsigned long long)h->count);
}

static void render_requests(const ap_serve_metrics *metrics, text_buffer *out)
{
    char endpoint[256], labels[300];
    append_header(out, "apiary_http_requests_total", "counter",
                  "HTTP requests by route and status code (code 0: closed before a response)");
    for (size_t i = 0; i < metrics->request_count; i++) {
        escape_label(metrics->requests[i].endpoint, endpoint, sizeof(endpoint));
        append(out, "apiary_http_requests_total{endpoint=\"%s\",code=\"%d\"} %llu\n", endpoint,
               metrics->requests[i].code, (unsigned long long)metrics->requests[i].count);
    }
    append_header(out, "apiary_http_request_duration_seconds", "histogram",
                  "Time from the request headers to the end of the response, by route");
    for (size_t i = 0; i < metrics->latency_count; i++) {
        escape_label(metrics->latencies[i].endpoint, endpoint, sizeof(endpoint));
        snprintf(labels, sizeof(labels), "endpoint=\"%s\",", endpoint);
        append_histogram(out, "apiary_http_request_duration_seconds", labels,
                         &metrics->latencies[i].latency, latency_bounds, LATENCY_BUCKETS);
    }
}

static void render_images(const ap_serve_metrics *metrics, text_buffer *out)
{
    char label[2 * LABEL_NAME_MAX + 1];
    append_header(out, "apiary_images_scored_total", "counter",
                  "Images scored, by label and decision (probability at or above the label's "
                  "threshold)");
    for (size_t i = 0; i < metrics->label_count; i++) {
        escape_label(metrics->labels[i].label, label, sizeof(label));
        for (int decision = 1; decision >= 0; decision--)
            append(out, "apiary_images_scored_total{label=\"%s\",decision=\"%s\"} %llu\n", label,
                   decision ? "true" : "false",
                   (unsigned long long)metrics->labels[i].decisions[decision]);
    }
    append_header(out, "apiary_inference_batch_images", "histogram",
                  "Images per forward pass of the network");
    append_histogram(out, "apiary_inference_batch_images", "", &metrics->batch_images, batch_bounds,
                     BATCH_BUCKETS);
    append_header(out, "apiary_inference_batch_duration_seconds", "histogram",
                  "Time of one forward pass of the network");
    append_histogram(out, "apiary_inference_batch_duration_seconds", "", &metrics->batch_seconds,
                     latency_bounds, LATENCY_BUCKETS);
}

static void render_model(const ap_serve_metrics *metrics, text_buffer *out)
{
    char name[2 * LABEL_NAME_MAX + 1], version[80];
    append_header(out, "apiary_model_info", "gauge",
                  "The model being served: 1 for its name, registry version and weights sha256");
    if (metrics->has_model) {
        escape_label(metrics->model_name, name, sizeof(name));
        escape_label(metrics->model_version, version, sizeof(version));
        append(out, "apiary_model_info{name=\"%s\",version=\"%s\",sha256=\"%s\"} 1\n", name,
               version, metrics->model_sha256);
    }
    append_header(out, "apiary_model_loads_total", "counter",
                  "Model loads from the registry, by result");
    append(out, "apiary_model_loads_total{result=\"success\"} %llu\n",
           (unsigned long long)metrics->loads_succeeded);
    append(out, "apiary_model_loads_total{result=\"failure\"} %llu\n",
           (unsigned long long)metrics->loads_failed);
}

char *ap_serve_metrics_render(ap_serve_metrics *metrics, long in_flight)
{
    text_buffer out = {.text = malloc(8192), .capacity = 8192};
    if (out.text == NULL)
        return NULL;
    pthread_mutex_lock(&metrics->lock);
    render_requests(metrics, &out);
    append_header(&out, "apiary_http_requests_in_flight", "gauge",
                  "Requests being served now, health checks and this scrape included");
    append(&out, "apiary_http_requests_in_flight %ld\n", in_flight);
    render_images(metrics, &out);
    render_model(metrics, &out);
    pthread_mutex_unlock(&metrics->lock);
    if (out.failed) {
        free(out.text);
        return NULL;
    }
    return out.text;
}
