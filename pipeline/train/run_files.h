#ifndef APIARY_TRAIN_RUN_FILES_H
#define APIARY_TRAIN_RUN_FILES_H

/* Files of a run folder that tell the state of its training. */

#include <stddef.h>

#include "pipeline/common/status.h"

#define AP_RUN_LOG_FILE      "train_log.jsonl"
#define AP_RUN_COMPLETE_FILE "complete.json"
#define AP_RUN_MODEL_FILE    "model.safetensors"
#define AP_RUN_CARD_FILE     "model_card.json"

/* Write run_dir/complete.json, which records the epochs, steps and weights
 * hash of the finished run. Call it last, once the model and card are
 * durable, since a run folder with this file counts as finished. */
ap_status ap_run_mark_complete(const char *run_dir, long epochs, long steps,
                               const char *weights_sha256, ap_error *err);

/* Check the outputs of a finished run: model_card.json must record the
 * weights hash that complete.json records, and the weights file the card
 * names must exist beside it with that hash. Fails with AP_ERR_NOT_FOUND or
 * AP_ERR_FORMAT and a message that names the run and the missing or
 * altered file, for the caller to add what to do. */
ap_status ap_run_check_complete(const char *run_dir, ap_error *err);

/* Rename run_dir/train_log.jsonl, unless it is missing or empty, to the
 * first of train_log.jsonl.1, train_log.jsonl.2, ... that does not exist,
 * so that a training that starts from the first epoch does not append to
 * the log of an earlier start. moved_to gets the new path, or "" when
 * nothing was moved. Call it only while holding the run folder's lock
 * (ap_run_lock), since another writer could take the same name. */
ap_status ap_run_set_aside_log(const char *run_dir, char *moved_to, size_t moved_to_size,
                               ap_error *err);

#endif
