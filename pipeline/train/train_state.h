#ifndef APIARY_TRAIN_TRAIN_STATE_H
#define APIARY_TRAIN_TRAIN_STATE_H

#include "pipeline/common/status.h"
#include "pipeline/nn/net.h"
#include "pipeline/train/checkpoint.h"
#include "pipeline/train/optimizer.h"

/* Position of a training run, saved with every checkpoint. */
typedef struct {
    long epoch;         /* completed epochs */
    long step_in_epoch; /* steps done in the current epoch (non-zero after an interruption) */
    long global_step;
    char config_hash[65]; /* SHA-256 of the settings that shape training */
    /* Training losses of the current epoch's steps so far, summed, and their
     * count, so that a resumed epoch reports the mean over all its steps.
     * Both are 0 when loaded from a checkpoint written without them. */
    double epoch_loss_sum;
    long epoch_loss_steps;
} ap_train_position;

/* Save the network's tensors and, when opt is not NULL, the optimizer's
 * moments and position, as one safetensors file written atomically.
 * extra contains more metadata pairs (may be NULL). */
ap_status ap_train_state_save(const char *path, ap_net *net, const ap_optimizer *opt,
                              const ap_train_position *position, const ap_st_meta *extra,
                              size_t extra_count, ap_error *err);

/* Load tensors into net (every tensor must be present with its shape) and,
 * when opt and position are not NULL, the optimizer state and position. */
ap_status ap_train_state_load(const char *path, ap_net *net, ap_optimizer *opt,
                              ap_train_position *position, ap_error *err);

#endif
