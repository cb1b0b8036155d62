#ifndef APIARY_TRAIN_RUN_LOCK_H
#define APIARY_TRAIN_RUN_LOCK_H

/* An exclusive lock on a run folder for the whole of a training, so that a
 * second training of the same run fails at once instead of mixing its
 * checkpoints and logs with the first one's. */

#include "pipeline/common/status.h"

#define AP_RUN_LOCK_FILE "train.lock"

/* Take the lock (flock on run_dir/train.lock, which records the holder's
 * pid) without waiting. When another process holds it, fail with
 * AP_ERR_IO naming the folder and that process's pid. The lock lasts
 * until ap_run_unlock or the process exits. */
ap_status ap_run_lock(const char *run_dir, int *fd, ap_error *err);
void ap_run_unlock(int fd);

#endif
