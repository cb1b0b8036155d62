#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/data/image.h"
#include "pipeline/serve/serve_internal.h"

bool ap_request_acquire_model(ap_request *request)
{
    request->model = ap_model_watch_acquire(request->server->models);
    if (request->model != NULL)
        return true;
    ap_respond_error(request, MHD_HTTP_SERVICE_UNAVAILABLE,
                     "no model is loaded yet: model %s %s is not in registry %s or failed to "
                     "load (see the server log); retry later",
                     request->server->cfg.registry.model_name, request->server->cfg.serve.model,
                     request->server->cfg.registry.uri);
    return false;
}

bool ap_request_reserve_images(ap_request *request, size_t count)
{
    const ap_serve_config *settings = &request->server->cfg.serve;
    const ap_loaded_model *model = &request->model->loaded;
    if (count == 0) {
        ap_respond_error(request, MHD_HTTP_BAD_REQUEST, "the request contains no images");
        return false;
    }
    if (count > (size_t)settings->max_images) {
        ap_respond_error(request, MHD_HTTP_CONTENT_TOO_LARGE,
                         "the request contains %zu images, more than the limit of %d "
                         "(serve.max_images); split it into smaller requests",
                         count, settings->max_images);
        return false;
    }
    size_t image_bytes = (size_t)model->width * (size_t)model->height * 3;
    request->pixels = malloc(count * image_bytes);
    request->probabilities = malloc(count * (size_t)model->label_count * sizeof(float));
    if (request->pixels == NULL || request->probabilities == NULL) {
        ap_respond_error(request, MHD_HTTP_SERVICE_UNAVAILABLE,
                         "cannot allocate memory for %zu images; retry later", count);
        return false;
    }
    request->image_count = count;
    return true;
}

/* The decoder's limit message ends with the training key
 * "(data.max_image_pixels)"; the server's limit is serve.max_image_pixels. */
static void name_server_limit(ap_error *err)
{
    char *key = strstr(err->message, "(data.max_image_pixels)");
    if (key != NULL)
        snprintf(key, sizeof(err->message) - (size_t)(key - err->message),
                 "(serve.max_image_pixels)");
}

bool ap_request_decode_image(ap_request *request, size_t index, const char *name,
                             const uint8_t *data, size_t size)
{
    const ap_serve_config *settings = &request->server->cfg.serve;
    const ap_loaded_model *model = &request->model->loaded;
    if (size == 0) {
        ap_respond_error(request, MHD_HTTP_BAD_REQUEST, "image %s is empty", name);
        return false;
    }
    ap_image_limits limits = {.max_bytes = (size_t)settings->max_body_bytes,
                              .max_pixels = settings->max_image_pixels};
    ap_image image = {0};
    ap_error err = {0};
    /* Several connection threads decode at once. Each resizes on its own
     * thread, because an OpenMP team per request would compete with the
     * inference thread for the cores. */
    omp_set_num_threads(1);
    ap_status status = ap_image_decode(data, size, &limits, &image, &err);
    size_t image_bytes = (size_t)model->width * (size_t)model->height * 3;
    if (status == AP_OK)
        status = ap_image_resize(&image, model->width, model->height, model->resize,
                                 request->pixels + index * image_bytes, &err);
    ap_image_free(&image);
    if (status == AP_OK)
        return true;
    if (status == AP_ERR_LIMIT)
        name_server_limit(&err);
    ap_respond_error(request, ap_http_status_for(status), "image %s: %s", name, err.message);
    return false;
}

static void on_job_done(ap_serve_job *job)
{
    ap_request *request = job->context;
    atomic_store(&request->job_done, true);
    MHD_resume_connection(request->connection);
}

void ap_request_start_inference(ap_request *request)
{
    ap_server *server = request->server;
    request->job = (ap_serve_job){
        .model = request->model,
        .pixels = request->pixels,
        .count = request->image_count,
        .probabilities = request->probabilities,
        .on_done = on_job_done,
        .context = request,
    };
    atomic_store(&request->job_done, false);
    request->phase = AP_PHASE_INFERRING;
    pthread_mutex_lock(&server->lock);
    server->suspended++;
    pthread_mutex_unlock(&server->lock);
    /* Suspend before submitting: the job may finish, and resume the
     * connection, before this function returns. */
    MHD_suspend_connection(request->connection);
    ap_error err = {0};
    if (ap_batcher_submit(server->batcher, &request->job, &err) != AP_OK) {
        request->job.status = err.code;
        request->job.error = err;
        on_job_done(&request->job);
    }
}

bool ap_request_decide(ap_request *request, size_t image, int label)
{
    const ap_loaded_model *model = &request->model->loaded;
    float probability = request->probabilities[image * (size_t)model->label_count + (size_t)label];
    bool decision = probability >= model->thresholds[label];
    ap_serve_metrics_count_decisions(request->server->metrics, model->labels[label], decision, 1);
    return decision;
}
