#include "pipeline/train/schedule.h"

#include "tests/unit/check.h"

int main(void)
{
    const double peak = 1e-2, floor = 1e-4;

    /* Warm-up rises linearly to the peak over 10 steps. */
    CHECK_NEAR(ap_lr_at_step(0, 10, 110, peak, floor), peak / 10, 1e-15);
    CHECK_NEAR(ap_lr_at_step(4, 10, 110, peak, floor), peak / 2, 1e-15);
    CHECK_NEAR(ap_lr_at_step(9, 10, 110, peak, floor), peak, 1e-15);

    /* Cosine decay: peak at its start, the midpoint halfway, the floor at the end. */
    CHECK_NEAR(ap_lr_at_step(10, 10, 110, peak, floor), peak, 1e-15);
    CHECK_NEAR(ap_lr_at_step(60, 10, 110, peak, floor), (peak + floor) / 2, 1e-15);
    CHECK_NEAR(ap_lr_at_step(110, 10, 110, peak, floor), floor, 1e-15);
    CHECK_NEAR(ap_lr_at_step(500, 10, 110, peak, floor), floor, 1e-15);

    /* Monotone decay after warm-up. */
    double previous = peak;
    for (long step = 10; step <= 110; step++) {
        double lr = ap_lr_at_step(step, 10, 110, peak, floor);
        CHECK(lr <= previous + 1e-18);
        previous = lr;
    }

    /* No warm-up starts at the peak; warm-up longer than training stays in warm-up. */
    CHECK_NEAR(ap_lr_at_step(0, 0, 100, peak, floor), peak, 1e-15);
    CHECK_NEAR(ap_lr_at_step(99, 200, 100, peak, floor), peak / 2, 1e-15);
    return check_finish();
}
