#ifndef APIARY_TRAIN_RUN_SETTINGS_H
#define APIARY_TRAIN_RUN_SETTINGS_H

/* The settings a run folder was trained with, compared with a new config,
 * so that rerunning a finished run with other settings fails instead of
 * silently keeping the old model. */

#include <stdbool.h>
#include <stddef.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"

/* Write into changed the model settings (see ap_config_model_settings) that
 * differ between cfg and run_dir/config.yaml, comma-separated and each with
 * both values, as in "train.batch_size (32 in the run, 16 now)", or "" when
 * none does or the run folder has no config.yaml. data.root is compared
 * only with with_root: it names where the data is, and a synced S3 copy
 * moves with store.cache_dir, but a checkpoint was trained from that path. */
ap_status ap_run_settings_changed(const ap_config *cfg, const char *run_dir, bool with_root,
                                  char *changed, size_t changed_size, ap_error *err);

/* Write into hex the SHA-256 of the settings that shape the trained
 * weights, as checkpoints record it. The epoch count is left out, because
 * checkpoints were hashed without it when a resume could change it.
 * ap_run_check_state rejects a changed epoch count through the run's
 * config.yaml instead. The collective timeout is left out so that a resumed
 * job may wait longer. */
void ap_run_settings_hash(const ap_config *cfg, char hex[65]);

/* Inspect run_dir: *complete when it contains complete.json, *has_checkpoint
 * when it contains checkpoint.safetensors. Fails with AP_ERR_INVALID, naming
 * the changed keys and both values, when a finished run's settings differ
 * from cfg's, or when a started run would be resumed with other settings
 * (data.root included). It also fails when a started run would be continued
 * without resume. A resume also fails when the checkpoint's settings hash
 * differs from cfg's (config.yaml missing or edited) or when it was written
 * by a job of another process count than world. All are mistakes in the
 * command, not in the data, and the check reads no image and writes nothing. */
ap_status ap_run_check_state(const ap_config *cfg, const char *run_dir, bool resume, int world,
                             bool *complete, bool *has_checkpoint, ap_error *err);

#endif
