#ifndef APIARY_TRAIN_SCHEDULE_H
#define APIARY_TRAIN_SCHEDULE_H

/* Learning rate for a 0-based step: linear warm-up from peak / warmup_steps
 * to peak over warmup_steps, then cosine decay to floor at total_steps. */
double ap_lr_at_step(long step, long warmup_steps, long total_steps, double peak, double floor);

#endif
