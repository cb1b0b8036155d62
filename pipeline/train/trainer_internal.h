#ifndef APIARY_TRAIN_TRAINER_INTERNAL_H
#define APIARY_TRAIN_TRAINER_INTERNAL_H

/* The trainer state and the functions that trainer.c, trainer_step.c and
 * trainer_eval.c share. Private to pipeline/train. */

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "kernels/cpu/preprocess.h"
#include "pipeline/common/status.h"
#include "pipeline/config/config.h"
#include "pipeline/parallel/comm.h"
#include "pipeline/parallel/data_parallel.h"
#include "pipeline/train/optimizer.h"
#include "pipeline/train/run_data.h"
#include "pipeline/train/train_backend.h"
#include "pipeline/train/train_state.h"
#include "pipeline/train/trainer.h"

/* Random streams: each use of the seed draws from its own stream. */
#define STREAM_SHUFFLE 0x5348554646000000ULL
#define STREAM_AUGMENT 0x4155474d00000000ULL
#define STREAM_DROPOUT 0x44524f5000000000ULL
#define STREAM_INIT    0x494e495400000000ULL

typedef struct {
    const ap_config *cfg;
    const ap_train_request *request;
    char run_dir[AP_PATH_MAX];
    ap_comm *comm;
    int rank;  /* only rank 0 writes files and logs below warnings */
    int world; /* processes of the job */
    ap_dp_layout layout;
    ap_dp_bucket bucket; /* used when a step has several micro-batches */
    ap_dp_tally tally;   /* used when the job has several processes */
    ap_run_data data;
    ap_net_spec spec;
    ap_net *net;
    ap_train_backend device; /* GPU backend, whose step is NULL when the CPU trains */
    ap_optimizer opt;
    ap_train_position position;
    float pos_weight[AP_MAX_LABELS];
    long steps_per_epoch;
    long total_steps;
    long warmup_steps;
    int batch; /* the global batch: images per optimizer step over all processes */
    size_t *permutation;
    uint8_t *raw;
    float *input;
    float *logits;
    float *d_logits;
    int8_t *targets;
    ap_augment_params *augment;
    FILE *log_file;
    int lock_fd; /* rank 0's lock on the run folder, or -1 when not held */
    double train_seconds;
    long train_images;
    json_t *last_val_metrics;
} trainer;

/* Defined in trainer_step.c. */

/* Run the optimizer step at t->position on the device backend, over micro-batches or on
 * the whole batch, as t is set up. The caller advances the position. */
ap_status trainer_train_step(trainer *t, float *loss, bool *stop, ap_error *err);

float trainer_mean_loss(const trainer *t, const float *logits, const int8_t *targets, int count,
                        float *grad);

/* Defined in trainer_eval.c. */

ap_status trainer_evaluate(trainer *t, ap_split_part part, double *loss, json_t **metrics,
                           ap_error *err);
/* Log an epoch or a step, to the log and to train_log.jsonl. A number without
 * a value (NAN) is null in the JSON line, and the epoch log line prints it as n/a. */
ap_status trainer_log_epoch(trainer *t, double train_loss, double val_loss, json_t *metrics,
                            double images_per_second, ap_error *err);
ap_status trainer_log_step(trainer *t, float loss, double lr, double images_per_second,
                           ap_error *err);

#endif
