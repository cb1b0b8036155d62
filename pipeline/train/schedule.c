#include "pipeline/train/schedule.h"

#include <math.h>

double ap_lr_at_step(long step, long warmup_steps, long total_steps, double peak, double floor)
{
    if (step < warmup_steps)
        return peak * (double)(step + 1) / (double)warmup_steps;
    long decay_steps = total_steps - warmup_steps;
    if (decay_steps <= 0)
        return peak;
    double progress = (double)(step - warmup_steps) / (double)decay_steps;
    if (progress > 1.0)
        progress = 1.0;
    return floor + 0.5 * (peak - floor) * (1.0 + cos(M_PI * progress));
}
