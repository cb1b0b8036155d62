#ifndef APIARY_SERVE_BATCHER_H
#define APIARY_SERVE_BATCHER_H

/* Micro-batching: one inference thread takes the images of requests that
 * arrive together and runs them through the network as one batch. The
 * first job of a batch waits up to the configured time for others, and a
 * batch closes early once it contains batch_size images. Jobs of one batch share a
 * model, so a hot swap splits batches at the boundary between models. */

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pipeline/common/status.h"
#include "pipeline/serve/metrics.h"
#include "pipeline/serve/model_watch.h"

typedef struct ap_serve_job ap_serve_job;

/* The images of one request. The submitter fills the inputs and keeps the
 * job, the pixels and the model reference alive until on_done runs. */
struct ap_serve_job {
    ap_served_model *model; /* the model to run; its input size is the pixels' size */
    const uint8_t *pixels;  /* count x height x width x 3, RGB */
    size_t count;
    float *probabilities; /* count x label_count, written by the batcher */
    ap_status status;     /* result, with error set on failure */
    ap_error error;
    /* Called on the inference thread once the job has its result. */
    void (*on_done)(ap_serve_job *job);
    void *context; /* for on_done */

    /* private to the batcher */
    ap_serve_job *next;
    double enqueued;
};

typedef struct ap_batcher ap_batcher;

typedef struct {
    int batch_size;        /* images per forward pass */
    int wait_ms;           /* how long a batch waits to fill */
    int inference_threads; /* OpenMP threads, 0: every core */
    ap_serve_metrics *metrics;
} ap_batcher_options;

ap_status ap_batcher_start(const ap_batcher_options *options, ap_batcher **out, ap_error *err);

/* Queue a job. Fails with AP_ERR_INTERRUPTED once ap_batcher_stop has begun. */
ap_status ap_batcher_submit(ap_batcher *batcher, ap_serve_job *job, ap_error *err);

/* Run every queued job, then stop the thread. Later submissions fail, so
 * the batcher stays allocated for callers that may still submit. */
void ap_batcher_stop(ap_batcher *batcher);
/* Stop the batcher if that has not happened yet, and free it. */
void ap_batcher_free(ap_batcher *batcher);

#endif
