#ifndef APIARY_SCORE_SCORE_PIPELINE_H
#define APIARY_SCORE_SCORE_PIPELINE_H

/* Decoding and inference over a list of images, overlapped: while the main
 * thread runs inference on one chunk, a second thread decodes and resizes
 * the next chunk with an OpenMP loop. Every buffer is allocated once, before
 * the first chunk; the image decoder still allocates each decoded image. */

#include <signal.h>
#include <stddef.h>

#include "pipeline/common/status.h"
#include "pipeline/data/image.h"
#include "pipeline/score/score_output.h"
#include "pipeline/validate/model_load.h"

/* Receives each finished chunk, in input order. probabilities has
 * count x label_count values; errors[i] is empty for an image that decoded,
 * and then its probabilities are valid. */
typedef ap_status (*ap_score_chunk_done)(void *context, const char *const *images, size_t count,
                                         const float *probabilities,
                                         const char (*errors)[AP_SCORE_ERROR_MAX], ap_error *err);

typedef struct {
    const ap_loaded_model *model; /* its network's batch size is the batch size */
    const char *input;            /* location the image paths are relative to */
    const char *const *images;
    size_t count;
    size_t chunk_size; /* rounded up to a multiple of the batch size */
    int threads;       /* decode threads */
    ap_image_limits limits;
    ap_score_chunk_done on_chunk;
    void *context;
    const volatile sig_atomic_t *stop; /* checked after each chunk; may be NULL */
} ap_score_pipeline;

typedef struct {
    double seconds;           /* wall time of the whole pipeline */
    double decode_seconds;    /* summed over chunks */
    double inference_seconds; /* summed over chunks */
} ap_score_timing;

/* Run every image through the model. Returns AP_ERR_INTERRUPTED when stop
 * was set and images remain, after the finished chunks were handed over. */
ap_status ap_score_pipeline_run(const ap_score_pipeline *pipeline, ap_score_timing *timing,
                                ap_error *err);

#endif
