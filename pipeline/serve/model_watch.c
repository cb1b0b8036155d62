#include "pipeline/serve/model_watch.h"

#include <omp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipeline/registry/registry.h"

struct ap_model_watch {
    char registry_uri[AP_PATH_MAX];
    char model_name[AP_NAME_MAX];
    char reference[AP_NAME_MAX];
    int batch_size;
    int inference_threads;
    int watch_seconds;
    ap_serve_metrics *metrics;
    ap_serve_log *log;

    pthread_t thread;
    pthread_mutex_t lock; /* guards current and stopping */
    pthread_cond_t wake;
    ap_served_model *current;
    bool stopping;
};

ap_served_model *ap_model_watch_acquire(ap_model_watch *watch)
{
    pthread_mutex_lock(&watch->lock);
    ap_served_model *model = watch->current;
    if (model != NULL)
        atomic_fetch_add(&model->references, 1);
    pthread_mutex_unlock(&watch->lock);
    return model;
}

void ap_served_model_release(ap_served_model *model)
{
    if (model == NULL || atomic_fetch_sub(&model->references, 1) != 1)
        return;
    AP_INFO("serve: model %s version %d unloaded; no request uses it any more", model->name,
            model->version);
    ap_loaded_model_free(&model->loaded);
    free(model);
}

/* Find the local paths of a version's card, fetching its weights first: a
 * remote registry downloads each file it is asked for into one folder, and
 * the card names its weights beside it. */
static ap_status fetch_version(ap_registry *registry, const ap_model_watch *watch, int version,
                               char *card_path, size_t card_path_size, ap_error *err)
{
    ap_status status =
        ap_registry_file_path(registry, watch->model_name, version, AP_REGISTRY_MODEL_FILE,
                              card_path, card_path_size, err);
    if (status == AP_OK)
        status = ap_registry_file_path(registry, watch->model_name, version, AP_REGISTRY_CARD_FILE,
                                       card_path, card_path_size, err);
    return status;
}

static ap_status load_version(ap_registry *registry, const ap_model_watch *watch, int version,
                              ap_served_model **out, ap_error *err)
{
    char card_path[AP_PATH_MAX + 64];
    ap_status status = fetch_version(registry, watch, version, card_path, sizeof(card_path), err);
    if (status != AP_OK)
        return status;
    ap_served_model *model = calloc(1, sizeof(*model));
    if (model == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate a served model");
    status = ap_model_load(card_path, watch->batch_size, &model->loaded, err);
    if (status != AP_OK) {
        ap_loaded_model_free(&model->loaded);
        free(model);
        return status;
    }
    snprintf(model->name, sizeof(model->name), "%s", watch->model_name);
    model->version = version;
    snprintf(model->version_text, sizeof(model->version_text), "%d", version);
    atomic_init(&model->references, 1); /* the watch's own reference */
    *out = model;
    return AP_OK;
}

static int current_version(ap_model_watch *watch)
{
    pthread_mutex_lock(&watch->lock);
    int version = watch->current != NULL ? watch->current->version : 0;
    pthread_mutex_unlock(&watch->lock);
    return version;
}

static void swap_in(ap_model_watch *watch, ap_served_model *model, double seconds)
{
    pthread_mutex_lock(&watch->lock);
    ap_served_model *old = watch->current;
    watch->current = model;
    pthread_mutex_unlock(&watch->lock);

    ap_serve_metrics_model_loaded(watch->metrics, model->name, model->version_text,
                                  model->loaded.weights_sha256);
    if (old == NULL)
        AP_INFO("serve: loaded model %s version %d (%s, weights sha256 %.12s) in %.2f s; the "
                "server is ready",
                model->name, model->version, watch->reference, model->loaded.weights_sha256,
                seconds);
    else
        AP_INFO("serve: swapped model %s from version %d to version %d (%s moved, weights "
                "sha256 %.12s, loaded in %.2f s); requests in flight finish on version %d",
                model->name, old->version, model->version, watch->reference,
                model->loaded.weights_sha256, seconds, old->version);
    ap_served_model_release(old);
}

/* One poll: resolve the reference and load the version it names when that
 * is not the one being served. */
static void check_registry(ap_model_watch *watch)
{
    ap_error err = {0};
    ap_registry *registry = NULL;
    int version = 0;
    ap_status status = ap_registry_open(watch->registry_uri, &registry, &err);
    if (status == AP_OK)
        status = ap_registry_resolve(registry, watch->model_name, watch->reference, &version, &err);
    if (status == AP_OK && version != current_version(watch)) {
        double started = ap_serve_now();
        ap_served_model *model = NULL;
        status = load_version(registry, watch, version, &model, &err);
        if (status == AP_OK)
            swap_in(watch, model, ap_serve_now() - started);
        else
            ap_serve_metrics_model_load_failed(watch->metrics);
    }
    ap_registry_close(registry);
    if (status == AP_OK)
        return;
    bool serving = current_version(watch) != 0;
    ap_serve_log_write(watch->log, serving ? AP_LOG_WARN : AP_LOG_ERROR,
                       "serve: cannot load model %s %s from registry %s (%s); %s, retrying every "
                       "%d s: %s",
                       watch->model_name, watch->reference, watch->registry_uri,
                       ap_status_name(status),
                       serving ? "the current model stays" : "the server is not ready",
                       watch->watch_seconds, err.message);
}

static void *watch_main(void *argument)
{
    ap_model_watch *watch = argument;
    /* oneDNN primitives plan for the thread count they see when created. */
    if (watch->inference_threads > 0)
        omp_set_num_threads(watch->inference_threads);
    pthread_mutex_lock(&watch->lock);
    while (!watch->stopping) {
        pthread_mutex_unlock(&watch->lock);
        check_registry(watch);
        pthread_mutex_lock(&watch->lock);
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += watch->watch_seconds;
        while (!watch->stopping &&
               pthread_cond_timedwait(&watch->wake, &watch->lock, &deadline) == 0) {
        }
    }
    pthread_mutex_unlock(&watch->lock);
    return NULL;
}

static void copy_options(const ap_model_watch_options *options, ap_model_watch *watch)
{
    snprintf(watch->registry_uri, sizeof(watch->registry_uri), "%s", options->registry_uri);
    snprintf(watch->model_name, sizeof(watch->model_name), "%s", options->model_name);
    snprintf(watch->reference, sizeof(watch->reference), "%s", options->reference);
    watch->batch_size = options->batch_size;
    watch->inference_threads = options->inference_threads;
    watch->watch_seconds = options->watch_seconds;
    watch->metrics = options->metrics;
    watch->log = options->log;
}

ap_status ap_model_watch_start(const ap_model_watch_options *options, ap_model_watch **out,
                               ap_error *err)
{
    *out = NULL;
    ap_model_watch *watch = calloc(1, sizeof(*watch));
    if (watch == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the model watch");
    copy_options(options, watch);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&watch->wake, &attributes);
    pthread_condattr_destroy(&attributes);
    pthread_mutex_init(&watch->lock, NULL);
    int failed = pthread_create(&watch->thread, NULL, watch_main, watch);
    if (failed != 0) {
        pthread_cond_destroy(&watch->wake);
        pthread_mutex_destroy(&watch->lock);
        free(watch);
        return ap_error_set(err, AP_ERR_NOMEM, "cannot start the model watch thread (error %d)",
                            failed);
    }
    *out = watch;
    return AP_OK;
}

void ap_model_watch_stop(ap_model_watch *watch)
{
    if (watch == NULL)
        return;
    pthread_mutex_lock(&watch->lock);
    watch->stopping = true;
    pthread_cond_signal(&watch->wake);
    pthread_mutex_unlock(&watch->lock);
    pthread_join(watch->thread, NULL);
    ap_served_model_release(watch->current);
    pthread_cond_destroy(&watch->wake);
    pthread_mutex_destroy(&watch->lock);
    free(watch);
}
