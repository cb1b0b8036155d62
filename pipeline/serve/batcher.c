#include "pipeline/serve/batcher.h"

#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ap_batcher {
    int batch_size;
    int wait_ms;
    int inference_threads;
    ap_serve_metrics *metrics;

    pthread_t thread;
    pthread_mutex_t lock; /* guards the queue and stopping */
    pthread_cond_t wake;
    ap_serve_job *head;
    ap_serve_job *tail;
    bool stopping;
    bool joined; /* the thread has been joined */

    /* used by the inference thread only */
    uint8_t *pixels;
    float *probabilities;
    size_t *indices;
    size_t image_capacity; /* images that probabilities and indices hold */
    size_t pixel_capacity; /* bytes of pixels */
};

/* Images queued from the head on that share the head's model. */
static size_t images_ready(const ap_batcher *batcher)
{
    size_t images = 0;
    for (const ap_serve_job *job = batcher->head; job != NULL && job->model == batcher->head->model;
         job = job->next)
        images += job->count;
    return images;
}

static struct timespec deadline_after(double start, int wait_ms)
{
    double seconds = start + wait_ms * 1e-3;
    struct timespec deadline;
    deadline.tv_sec = (time_t)seconds;
    deadline.tv_nsec = (long)((seconds - (double)deadline.tv_sec) * 1e9);
    return deadline;
}

/* Wait for a first job, then for the batch to fill or the wait to end, and
 * unlink the jobs of one batch: the head and the jobs after it with the
 * same model, while they fit in batch_size images. Returns NULL to stop. */
static ap_serve_job *take_batch(ap_batcher *batcher)
{
    pthread_mutex_lock(&batcher->lock);
    while (batcher->head == NULL && !batcher->stopping)
        pthread_cond_wait(&batcher->wake, &batcher->lock);
    if (batcher->head == NULL) {
        pthread_mutex_unlock(&batcher->lock);
        return NULL;
    }
    struct timespec deadline = deadline_after(batcher->head->enqueued, batcher->wait_ms);
    while (!batcher->stopping && images_ready(batcher) < (size_t)batcher->batch_size &&
           pthread_cond_timedwait(&batcher->wake, &batcher->lock, &deadline) == 0) {
    }

    ap_serve_job *first = batcher->head, *last = first;
    size_t images = first->count;
    while (last->next != NULL && last->next->model == first->model &&
           images + last->next->count <= (size_t)batcher->batch_size) {
        last = last->next;
        images += last->count;
    }
    batcher->head = last->next;
    if (batcher->head == NULL)
        batcher->tail = NULL;
    last->next = NULL;
    pthread_mutex_unlock(&batcher->lock);
    return first;
}

/* Grow the batch buffers to hold images of image_bytes each. The
 * probabilities have room for AP_MAX_LABELS, since a swap may change the
 * label count, and image_bytes changes with the model's input size. */
static ap_status reserve(ap_batcher *batcher, size_t images, size_t image_bytes, ap_error *err)
{
    if (images <= batcher->image_capacity && images * image_bytes <= batcher->pixel_capacity)
        return AP_OK;
    size_t needed = images > (size_t)batcher->batch_size ? images : (size_t)batcher->batch_size;
    free(batcher->pixels);
    free(batcher->probabilities);
    free(batcher->indices);
    batcher->pixels = malloc(needed * image_bytes);
    batcher->probabilities = malloc(needed * AP_MAX_LABELS * sizeof(float));
    batcher->indices = malloc(needed * sizeof(size_t));
    batcher->image_capacity = needed;
    batcher->pixel_capacity = needed * image_bytes;
    if (batcher->pixels == NULL || batcher->probabilities == NULL || batcher->indices == NULL) {
        batcher->image_capacity = 0;
        batcher->pixel_capacity = 0;
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate an inference batch of %zu images",
                            needed);
    }
    return AP_OK;
}

/* Run the jobs of one batch as one forward pass and hand out the results. */
static void run_batch(ap_batcher *batcher, ap_serve_job *jobs)
{
    const ap_loaded_model *model = &jobs->model->loaded;
    size_t image_bytes = (size_t)model->width * (size_t)model->height * 3;
    size_t images = 0;
    for (ap_serve_job *job = jobs; job != NULL; job = job->next)
        images += job->count;

    ap_error err = {0};
    ap_status status = reserve(batcher, images, image_bytes, &err);
    if (status == AP_OK) {
        size_t offset = 0;
        for (ap_serve_job *job = jobs; job != NULL; job = job->next) {
            memcpy(batcher->pixels + offset * image_bytes, job->pixels, job->count * image_bytes);
            offset += job->count;
        }
        for (size_t i = 0; i < images; i++)
            batcher->indices[i] = i;
        ap_image_set view = {.width = model->width,
                             .height = model->height,
                             .label_count = model->label_count,
                             .count = images,
                             .pixels = batcher->pixels};
        double started = ap_serve_now();
        status = ap_loaded_model_predict(model, &view, batcher->indices, images,
                                         batcher->probabilities, &err);
        ap_serve_metrics_observe_batch(batcher->metrics, images, ap_serve_now() - started);
    }

    size_t offset = 0, labels = (size_t)model->label_count;
    ap_serve_job *job = jobs;
    while (job != NULL) {
        ap_serve_job *next = job->next; /* on_done may free the job */
        job->status = status;
        if (status == AP_OK)
            memcpy(job->probabilities, batcher->probabilities + offset * labels,
                   job->count * labels * sizeof(float));
        else
            job->error = err;
        offset += job->count;
        job->on_done(job);
        job = next;
    }
}

static void *batcher_main(void *argument)
{
    ap_batcher *batcher = argument;
    if (batcher->inference_threads > 0)
        omp_set_num_threads(batcher->inference_threads);
    ap_serve_job *jobs;
    while ((jobs = take_batch(batcher)) != NULL)
        run_batch(batcher, jobs);
    return NULL;
}

ap_status ap_batcher_start(const ap_batcher_options *options, ap_batcher **out, ap_error *err)
{
    *out = NULL;
    ap_batcher *batcher = calloc(1, sizeof(*batcher));
    if (batcher == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the batcher");
    batcher->batch_size = options->batch_size;
    batcher->wait_ms = options->wait_ms;
    batcher->inference_threads = options->inference_threads;
    batcher->metrics = options->metrics;
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&batcher->wake, &attributes);
    pthread_condattr_destroy(&attributes);
    pthread_mutex_init(&batcher->lock, NULL);
    int failed = pthread_create(&batcher->thread, NULL, batcher_main, batcher);
    if (failed != 0) {
        pthread_cond_destroy(&batcher->wake);
        pthread_mutex_destroy(&batcher->lock);
        free(batcher);
        return ap_error_set(err, AP_ERR_NOMEM, "cannot start the inference thread (error %d)",
                            failed);
    }
    *out = batcher;
    return AP_OK;
}

ap_status ap_batcher_submit(ap_batcher *batcher, ap_serve_job *job, ap_error *err)
{
    job->next = NULL;
    job->enqueued = ap_serve_now();
    pthread_mutex_lock(&batcher->lock);
    if (batcher->stopping) {
        pthread_mutex_unlock(&batcher->lock);
        return ap_error_set(err, AP_ERR_INTERRUPTED, "the server is shutting down");
    }
    if (batcher->tail != NULL)
        batcher->tail->next = job;
    else
        batcher->head = job;
    batcher->tail = job;
    pthread_cond_signal(&batcher->wake);
    pthread_mutex_unlock(&batcher->lock);
    return AP_OK;
}

void ap_batcher_stop(ap_batcher *batcher)
{
    if (batcher == NULL || batcher->joined)
        return;
    pthread_mutex_lock(&batcher->lock);
    batcher->stopping = true;
    pthread_cond_signal(&batcher->wake);
    pthread_mutex_unlock(&batcher->lock);
    /* take_batch hands out what is queued before it returns NULL */
    pthread_join(batcher->thread, NULL);
    batcher->joined = true;
}

void ap_batcher_free(ap_batcher *batcher)
{
    if (batcher == NULL)
        return;
    ap_batcher_stop(batcher);
    pthread_cond_destroy(&batcher->wake);
    pthread_mutex_destroy(&batcher->lock);
    free(batcher->pixels);
    free(batcher->probabilities);
    free(batcher->indices);
    free(batcher);
}
