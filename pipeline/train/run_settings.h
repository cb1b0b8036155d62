#ifndef APIARY_TRAIN_RUN_SETTINGS_H
#define APIARY_TRAIN_RUN_SETTINGS_H

/* The settings a run folder was trained with, compared with a new config,
 * so that rerunning a finished run with other settings fails instead of
 * silently keeping the old model. */

#include <stdbool.h>
#include <stddef.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"

/* Write into changed the keys, comma-separated, whose model settings (see
 * ap_config_model_settings) differ between cfg and run_dir/config.yaml,
 * or "" when none does or the run folder has no config.yaml. data.root is
 * not compared: it names where the data is, and a synced S3 copy moves
 * with store.cache_dir. */
ap_status ap_run_settings_changed(const ap_config *cfg, const char *run_dir, char *changed,
                                  size_t changed_size, ap_error *err);

/* Inspect run_dir: *complete when it contains complete.json, *has_checkpoint
 * when it contains checkpoint.safetensors. Fails with AP_ERR_INVALID when a
 * finished run's settings differ from cfg's (the message names the keys),
 * or when a started run would be continued without resume. Both are
 * mistakes in the command, not in the data. */
ap_status ap_run_check_state(const ap_config *cfg, const char *run_dir, bool resume, bool *complete,
                             bool *has_checkpoint, ap_error *err);

#endif
