#ifndef APIARY_TRAIN_TRAINER_H
#define APIARY_TRAIN_TRAINER_H

#include <signal.h>
#include <stdbool.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"

typedef struct {
    const ap_config *cfg;
    /* Continue from run_dir/checkpoint.safetensors when it exists. Without
     * it, a run folder that already contains a checkpoint is an error. */
    bool resume;
    /* Set by a signal handler; the loop saves a checkpoint and stops. */
    const volatile sig_atomic_t *stop_requested;
    /* The command that continues this run after a stop, for the message
     * of a stop; NULL for a generic hint to rerun with --resume. */
    const char *continue_command;
} ap_train_request;

typedef struct {
    char run_dir[AP_PATH_MAX];
    char model_path[AP_PATH_MAX + 32];
    char card_path[AP_PATH_MAX + 32];
    bool already_complete; /* the run had finished before; nothing was trained */
    bool interrupted;      /* stopped by a signal after saving a checkpoint */
    long epochs_done;
    double images_per_second;
} ap_train_outcome;

/* Train the network of request->cfg in output_dir/run_name: data and split,
 * epochs with validation, checkpoints, and finally model.safetensors,
 * model_card.json and a completion marker. Progress goes to the log and to
 * train_log.jsonl. */
ap_status ap_train(const ap_train_request *request, ap_train_outcome *outcome, ap_error *err);

/* Folder of a run: output_dir/run_name. */
ap_status ap_run_dir(const ap_config *cfg, char *out, size_t out_size, ap_error *err);

#endif
