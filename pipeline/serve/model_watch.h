#ifndef APIARY_SERVE_MODEL_WATCH_H
#define APIARY_SERVE_MODEL_WATCH_H

/* The model being served and its hot swap. A background thread resolves a
 * registry alias (or version) every watch interval. When the alias points
 * at another version, the thread loads that version and swaps it in. Each
 * request takes a reference to the current model for its whole life, so a
 * swap never changes the model under a request that is already running:
 * the old model is freed when its last reference is released. */

#include <stdatomic.h>

#include "pipeline/common/status.h"
#include "pipeline/serve/metrics.h"
#include "pipeline/serve/serve_log.h"
#include "pipeline/validate/model_load.h"

typedef struct {
    ap_loaded_model loaded;
    char name[AP_NAME_MAX]; /* registered model name */
    int version;            /* registry version */
    char version_text[16];  /* the version as a decimal string, as responses show it */
    atomic_int references;
} ap_served_model;

typedef struct {
    const char *registry_uri;
    const char *model_name;
    const char *reference; /* alias ("champion") or version ("3", "v3") */
    int batch_size;        /* images per forward pass the networks are built for */
    int inference_threads; /* OpenMP threads the networks plan for; 0: every core */
    int watch_seconds;
    ap_serve_metrics *metrics;
    ap_serve_log *log;
} ap_model_watch_options;

typedef struct ap_model_watch ap_model_watch;

/* Start the watch thread, which loads the first model at once. The server
 * is not ready until that load succeeds: a registry without the alias yet,
 * or one that cannot be reached, is retried every watch interval. */
ap_status ap_model_watch_start(const ap_model_watch_options *options, ap_model_watch **out,
                               ap_error *err);

/* Return a new reference to the current model, or NULL when none is loaded. */
ap_served_model *ap_model_watch_acquire(ap_model_watch *watch);

/* Drop a reference (NULL is ignored); the last one frees the model. */
void ap_served_model_release(ap_served_model *model);

/* Stop the thread (waiting for a load in progress) and drop the watch's
 * reference to the current model. */
void ap_model_watch_stop(ap_model_watch *watch);

#endif
