#include "pipeline/score/score_pipeline.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/preprocess.h"
#include "pipeline/score/score_input.h"
#include "pipeline/train/predict.h"

/* One chunk of images: decoded pixels at the model's input size and the
 * reason each image failed, if it did. */
typedef struct {
    uint8_t *pixels;
    char (*errors)[AP_SCORE_ERROR_MAX];
    size_t first; /* index of the chunk's first image in the pipeline's list */
    size_t count;
    double decode_seconds;
} chunk;

typedef struct {
    const ap_score_pipeline *pipeline;
    size_t capacity;        /* images per chunk, a multiple of the batch size */
    size_t image_bytes;     /* of one decoded image */
    chunk chunks[2];        /* one decoding while the other runs inference */
    ap_score_buffer *files; /* one read buffer per decode thread */
    float *input;           /* one batch, preprocessed */
    float *probabilities;   /* capacity x label_count */
} pipeline_state;

/* ---- Decoding ---- */

static void decode_image(const pipeline_state *state, ap_score_buffer *file, const char *image,
                         uint8_t *pixels, char *error)
{
    const ap_score_pipeline *pipeline = state->pipeline;
    const ap_loaded_model *model = pipeline->model;
    ap_error err = {0};
    ap_image decoded = {0};
    size_t size = 0;
    ap_status status =
        ap_score_read_input(pipeline->input, image, pipeline->limits.max_bytes, file, &size, &err);
    if (status == AP_OK)
        status = ap_image_decode(file->data, size, &pipeline->limits, &decoded, &err);
    if (status == AP_OK)
        status =
            ap_image_resize(&decoded, model->width, model->height, model->resize, pixels, &err);
    ap_image_free(&decoded);
    if (status == AP_OK) {
        error[0] = '\0';
        return;
    }
    snprintf(error, AP_SCORE_ERROR_MAX, "%s", err.message);
    memset(pixels, 0, state->image_bytes);
}

static void decode_chunk(const pipeline_state *state, chunk *target)
{
    const ap_score_pipeline *pipeline = state->pipeline;
    double start = omp_get_wtime();
    long count = (long)target->count;
#pragma omp parallel for num_threads(pipeline->threads) schedule(dynamic, 1)
    for (long i = 0; i < count; i++)
        decode_image(state, &state->files[omp_get_thread_num()],
                     pipeline->images[target->first + (size_t)i],
                     target->pixels + (size_t)i * state->image_bytes, target->errors[i]);
    target->decode_seconds = omp_get_wtime() - start;
}

typedef struct {
    const pipeline_state *state;
    chunk *target;
} decode_job;

static void *run_decode_job(void *argument)
{
    decode_job *job = argument;
    decode_chunk(job->state, job->target);
    return NULL;
}

/* ---- Inference ---- */

static ap_status infer_chunk(pipeline_state *state, chunk *source, ap_error *err)
{
    const ap_loaded_model *model = state->pipeline->model;
    size_t batch = (size_t)ap_net_batch(model->net);
    size_t labels = (size_t)model->label_count;
    for (size_t start = 0; start < source->count; start += batch) {
        /* A short last batch runs on stale pixels past count, whose outputs are unused. */
        ap_cpu_preprocess(source->pixels + start * state->image_bytes, (int)batch, model->height,
                          model->width, NULL, model->mean, model->std, state->input);
        ap_status status = ap_net_forward(model->net, state->input, false, 0, 0,
                                          state->probabilities + start * labels, err);
        if (status != AP_OK)
            return ap_error_prefix(err, "inference on images %zu to %zu", source->first + start,
                                   source->first + start + batch - 1);
    }
    ap_sigmoid_inplace(state->probabilities, source->count * labels);
    for (size_t i = 0; i < source->count; i++) {
        bool finite = true;
        for (size_t l = 0; l < labels; l++)
            finite = finite && isfinite(state->probabilities[i * labels + l]);
        if (!finite && source->errors[i][0] == '\0')
            snprintf(source->errors[i], AP_SCORE_ERROR_MAX,
                     "the model output for this image is not a number; check the weights");
    }
    return AP_OK;
}

/* ---- Buffers ---- */

static ap_status allocate_state(pipeline_state *state, const ap_score_pipeline *pipeline,
                                ap_error *err)
{
    const ap_loaded_model *model = pipeline->model;
    size_t batch = (size_t)ap_net_batch(model->net);
    memset(state, 0, sizeof(*state));
    state->pipeline = pipeline;
    state->capacity = (pipeline->chunk_size + batch - 1) / batch * batch;
    state->image_bytes = (size_t)model->width * (size_t)model->height * 3;
    for (int c = 0; c < 2; c++) {
        state->chunks[c].pixels = calloc(state->capacity, state->image_bytes);
        state->chunks[c].errors = calloc(state->capacity, sizeof(*state->chunks[c].errors));
    }
    state->files = calloc((size_t)pipeline->threads, sizeof(*state->files));
    state->input = malloc(batch * state->image_bytes * sizeof(float));
    state->probabilities = malloc(state->capacity * (size_t)model->label_count * sizeof(float));
    bool complete = state->files != NULL && state->input != NULL && state->probabilities != NULL;
    for (int c = 0; c < 2; c++)
        complete = complete && state->chunks[c].pixels != NULL && state->chunks[c].errors != NULL;
    if (!complete)
        return ap_error_set(err, AP_ERR_NOMEM,
                            "cannot allocate two chunks of %zu images at %dx%d; lower "
                            "score.chunk_size",
                            state->capacity, model->width, model->height);
    return AP_OK;
}

static void free_state(pipeline_state *state)
{
    for (int c = 0; c < 2; c++) {
        free(state->chunks[c].pixels);
        free(state->chunks[c].errors);
    }
    for (int t = 0; state->files != NULL && t < state->pipeline->threads; t++)
        ap_score_buffer_free(&state->files[t]);
    free(state->files);
    free(state->input);
    free(state->probabilities);
}

/* ---- The loop ---- */

static void assign_chunk(const pipeline_state *state, chunk *target, size_t first)
{
    size_t left = state->pipeline->count - first;
    target->first = first;
    target->count = left < state->capacity ? left : state->capacity;
    target->decode_seconds = 0;
}

/* Start decoding target on a second thread; decode it here when no thread
 * can be started. Returns whether a thread runs. */
static bool start_decoding(const pipeline_state *state, chunk *target, pthread_t *thread,
                           decode_job *job)
{
    job->state = state;
    job->target = target;
    if (pthread_create(thread, NULL, run_decode_job, job) == 0)
        return true;
    decode_chunk(state, target);
    return false;
}

static ap_status hand_over(const pipeline_state *state, const chunk *done, ap_error *err)
{
    const ap_score_pipeline *pipeline = state->pipeline;
    return pipeline->on_chunk(pipeline->context, pipeline->images + done->first, done->count,
                              state->probabilities, (const char(*)[AP_SCORE_ERROR_MAX])done->errors,
                              err);
}

static ap_status run_chunks(pipeline_state *state, ap_score_timing *timing, ap_error *err)
{
    const ap_score_pipeline *pipeline = state->pipeline;
    int current = 0;
    assign_chunk(state, &state->chunks[current], 0);
    decode_chunk(state, &state->chunks[current]);
    for (;;) {
        chunk *now = &state->chunks[current], *next = &state->chunks[1 - current];
        size_t next_first = now->first + now->count;
        bool more = next_first < pipeline->count;
        pthread_t thread;
        decode_job job;
        bool threaded = false;
        if (more) {
            assign_chunk(state, next, next_first);
            threaded = start_decoding(state, next, &thread, &job);
        }
        double start = omp_get_wtime();
        ap_status status = infer_chunk(state, now, err);
        timing->inference_seconds += omp_get_wtime() - start;
        timing->decode_seconds += now->decode_seconds;
        if (threaded)
            pthread_join(thread, NULL);
        if (status == AP_OK)
            status = hand_over(state, now, err);
        if (status != AP_OK || !more)
            return status;
        if (pipeline->stop != NULL && *pipeline->stop)
            return ap_error_set(err, AP_ERR_INTERRUPTED,
                                "stopped by a signal after %zu of %zu images; their rows are "
                                "saved, so a rerun continues from there",
                                next_first, pipeline->count);
        current = 1 - current;
    }
}

ap_status ap_score_pipeline_run(const ap_score_pipeline *pipeline, ap_score_timing *timing,
                                ap_error *err)
{
    memset(timing, 0, sizeof(*timing));
    if (pipeline->count == 0)
        return AP_OK;
    pipeline_state state;
    double start = omp_get_wtime();
    ap_status status = allocate_state(&state, pipeline, err);
    if (status == AP_OK)
        status = run_chunks(&state, timing, err);
    free_state(&state);
    timing->seconds = omp_get_wtime() - start;
    return status;
}
