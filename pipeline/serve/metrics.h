#ifndef APIARY_SERVE_METRICS_H
#define APIARY_SERVE_METRICS_H

/* Server metrics in the Prometheus text exposition format (version 0.0.4):
 * request counts by endpoint and status code, request latency, images
 * scored per label and decision, inference batches, model loads and the
 * loaded model. Every function is safe to call from any thread. */

#include <stdbool.h>
#include <stddef.h>

#include "pipeline/common/status.h"

#define AP_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

typedef struct ap_serve_metrics ap_serve_metrics;

ap_status ap_serve_metrics_create(ap_serve_metrics **out, ap_error *err);
void ap_serve_metrics_destroy(ap_serve_metrics *metrics);

/* Count one finished request. endpoint is a route template with static
 * storage duration ("/v1/predict"); code 0 means that the connection closed
 * before a response was sent. */
void ap_serve_metrics_observe_request(ap_serve_metrics *metrics, const char *endpoint, int code,
                                      double seconds);

/* Count images whose decision for label was positive or negative. */
void ap_serve_metrics_count_decisions(ap_serve_metrics *metrics, const char *label, bool decision,
                                      long images);

/* Record one forward pass over images that took seconds. */
void ap_serve_metrics_observe_batch(ap_serve_metrics *metrics, size_t images, double seconds);

/* Count one model load attempt and, after a success, record the loaded model. */
void ap_serve_metrics_model_loaded(ap_serve_metrics *metrics, const char *name, const char *version,
                                   const char *sha256);
void ap_serve_metrics_model_load_failed(ap_serve_metrics *metrics);

/* Render every metric as a malloc'd string, or NULL when out of memory.
 * in_flight is the number of requests being served now. */
char *ap_serve_metrics_render(ap_serve_metrics *metrics, long in_flight);

#endif
