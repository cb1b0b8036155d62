#ifndef APIARY_TRAIN_TRAIN_BACKEND_H
#define APIARY_TRAIN_TRAIN_BACKEND_H

/* Where the trainer's steps run. The host network (ap_net) and optimizer
 * are the master copy that checkpoints, model files, digests and broadcasts
 * read. A device backend trains its own copy, so the trainer syncs it to
 * the master before those reads, and the backend starts from the master
 * after a restore. With train.device=cpu the trainer trains the master
 * directly and no backend exists. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/cpu/preprocess.h"
#include "pipeline/common/status.h"
#include "pipeline/config/config.h"
#include "pipeline/data/dataset.h"
#include "pipeline/nn/net.h"
#include "pipeline/parallel/comm.h"
#include "pipeline/parallel/data_parallel.h"
#include "pipeline/train/optimizer.h"

/* One optimizer step over the global batch. */
typedef struct {
    const size_t *images;             /* the global batch: layout.global_batch image indices */
    const ap_augment_params *augment; /* one per image of the global batch, or NULL */
    uint64_t step;                    /* global step, 0-based */
    uint64_t dropout_seed;
    double learning_rate;
    bool stop_requested; /* this process was asked to stop */
} ap_backend_step;

typedef struct {
    const char *name; /* "cpu" or "cuda" */
    void *state;
    /* Train one step; *loss is the mean over the known targets of the global
     * batch and *stop is true when any process was asked to stop. */
    ap_status (*step)(void *state, const ap_backend_step *step, float *loss, bool *stop,
                      ap_error *err);
    /* Logits of count images (count x labels) on every process, as ap_dp_predict. */
    ap_status (*predict)(void *state, const size_t *indices, size_t count, float *logits,
                         ap_error *err);
    /* Copy the backend's weights, statistics and optimizer state to the
     * master copy, or from it. */
    ap_status (*to_host)(void *state, ap_error *err);
    ap_status (*from_host)(void *state, ap_error *err);
    void (*destroy)(void *state);
} ap_train_backend;

/* What a device backend trains with; pointers stay owned by the trainer. */
typedef struct {
    const ap_config *cfg;
    const ap_net_spec *spec;
    ap_net *net;
    ap_optimizer *opt;
    ap_comm *comm;
    const ap_dp_layout *layout;
    const ap_image_set *images;
    const float *pos_weight; /* label_count values */
} ap_backend_setup;

/* Check that train.device, train.precision and train.deterministic can run
 * in this build on this machine, before any file is written: cuda needs a
 * build with cuDNN and a visible GPU, and the GPU-only settings need cuda. */
ap_status ap_train_device_check(const ap_config *cfg, ap_error *err);

/* Create the backend of train.device=cuda. */
ap_status ap_train_backend_cuda(const ap_backend_setup *setup, ap_train_backend *out,
                                ap_error *err);

#endif
