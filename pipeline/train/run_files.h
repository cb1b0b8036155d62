#ifndef APIARY_TRAIN_RUN_FILES_H
#define APIARY_TRAIN_RUN_FILES_H

/* Files of a run folder that tell the state of its training. */

#include <stddef.h>

#include "pipeline/common/status.h"

#define AP_RUN_LOG_FILE "train_log.jsonl"

/* Rename run_dir/train_log.jsonl, unless it is missing or empty, to the
 * first of train_log.jsonl.1, train_log.jsonl.2, ... that does not exist,
 * so that a training that starts from the first epoch does not append to
 * the log of an earlier start. moved_to gets the new path, or "" when
 * nothing was moved. Call it only while holding the run folder's lock
 * (ap_run_lock), since another writer could take the same name. */
ap_status ap_run_set_aside_log(const char *run_dir, char *moved_to, size_t moved_to_size,
                               ap_error *err);

#endif
