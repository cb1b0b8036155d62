#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels/cpu/bce_loss.h"
#include "tests/unit/check.h"

/* Hand-computed values below carry at least six digits. Float results near 1
 * are good to about 1e-7, so 1e-6 separates a rounding from a wrong term. */
#define HAND_TOLERANCE 1e-6

static void test_plain_loss(void)
{
    /* One row, three labels, w = 1:
     *   x = 0,  t = 1: loss = log(2)                = 0.693147181, grad = -sigmoid(0) = -0.5
     *   x = 2,  t = 0: loss = log(1 + e^2)          = 2.126928011, grad = sigmoid(2)  = 0.880797078
     *   x = -1, t = 1: loss = log(1 + e^1)          = 1.313261688, grad = -sigmoid(1) =
     * -0.731058579 mean = (0.693147181 + 2.126928011 + 1.313261688) / 3 = 1.377778960, and each
     * gradient of the mean is the element's over 3. */
    const float logits[3] = {0.0f, 2.0f, -1.0f};
    const int8_t targets[3] = {1, 0, 1};
    float grad[3];
    float loss = ap_cpu_bce_loss(logits, targets, NULL, 1, 3, grad);
    CHECK_NEAR(loss, 1.377778960, HAND_TOLERANCE);
    CHECK_NEAR(grad[0], -0.5 / 3, HAND_TOLERANCE);
    CHECK_NEAR(grad[1], 0.880797078 / 3, HAND_TOLERANCE);
    CHECK_NEAR(grad[2], -0.731058579 / 3, HAND_TOLERANCE);

    /* With grad NULL the loss is the same. */
    CHECK_NEAR(ap_cpu_bce_loss(logits, targets, NULL, 1, 3, NULL), loss, 0.0);
}

static void test_pos_weight(void)
{
    /* The same row with pos_weight {3, 1, 2}: only positive targets scale.
     *   label 0: loss = 3 * 0.693147181 = 2.079441542, grad = -3 * 0.5 = -1.5
     *   label 1: t = 0, unchanged: loss = 2.126928011, grad = 0.880797078
     *   label 2: loss = 2 * 1.313261688 = 2.626523375, grad = -2 * 0.731058579 = -1.462117158
     * mean = (2.079441542 + 2.126928011 + 2.626523375) / 3 = 2.277630976. */
    const float logits[3] = {0.0f, 2.0f, -1.0f};
    const int8_t targets[3] = {1, 0, 1};
    const float pos_weight[3] = {3.0f, 1.0f, 2.0f};
    float grad[3];
    float loss = ap_cpu_bce_loss(logits, targets, pos_weight, 1, 3, grad);
    CHECK_NEAR(loss, 2.277630976, HAND_TOLERANCE);
    CHECK_NEAR(grad[0], -1.5 / 3, HAND_TOLERANCE);
    CHECK_NEAR(grad[1], 0.880797078 / 3, HAND_TOLERANCE);
    CHECK_NEAR(grad[2], -1.462117158 / 3, HAND_TOLERANCE);
}

static void test_unknown_targets_masked(void)
{
    /* Two rows, two labels; only (0, 0) and (1, 1) are known:
     *   x = 0,  t = 1: loss = log(2)         = 0.693147181, grad = -0.5
     *   x = -3, t = 0: loss = log(1 + e^-3)  = 0.048587352, grad = sigmoid(-3) = 0.047425873
     * mean = (0.693147181 + 0.048587352) / 2 = 0.370867267, gradients over 2.
     * The pos_weight of label 1 must not touch the negative target. */
    const float logits[4] = {0.0f, 5.0f, 1.0f, -3.0f};
    const int8_t targets[4] = {1, -1, -1, 0};
    const float pos_weight[2] = {1.0f, 4.0f};
    float grad[4] = {9.0f, 9.0f, 9.0f, 9.0f};
    float loss = ap_cpu_bce_loss(logits, targets, pos_weight, 2, 2, grad);
    CHECK_NEAR(loss, 0.370867267, HAND_TOLERANCE);
    CHECK_NEAR(grad[0], -0.25, HAND_TOLERANCE);
    CHECK_NEAR(grad[1], 0.0, 0.0);
    CHECK_NEAR(grad[2], 0.0, 0.0);
    CHECK_NEAR(grad[3], 0.047425873 / 2, HAND_TOLERANCE);
}

static void test_all_unknown(void)
{
    const float logits[3] = {1.0f, -2.0f, 30.0f};
    const int8_t targets[3] = {-1, -1, 5};
    float grad[3] = {9.0f, 9.0f, 9.0f};
    float loss = ap_cpu_bce_loss(logits, targets, NULL, 3, 1, grad);
    CHECK_NEAR(loss, 0.0, 0.0);
    for (int i = 0; i < 3; i++)
        CHECK_NEAR(grad[i], 0.0, 0.0);
}

static void test_extreme_logits(void)
{
    /* For |x| = 100, log(1 + e^-100) = 3.7e-44 is below float resolution:
     *   x = 100,  t = 1: loss -> 0,   grad -> -w * e^-100 -> 0
     *   x = -100, t = 1: loss -> 100 w, grad -> -w
     *   x = 100,  t = 0: loss -> 100, grad -> 1
     *   x = -100, t = 0: loss -> 0,   grad -> e^-100 -> 0
     * With w = 2: mean = (0 + 200 + 100 + 0) / 4 = 75, gradients over 4. */
    const float logits[4] = {100.0f, -100.0f, 100.0f, -100.0f};
    const int8_t targets[4] = {1, 1, 0, 0};
    const float pos_weight[1] = {2.0f};
    float grad[4];
    float loss = ap_cpu_bce_loss(logits, targets, pos_weight, 4, 1, grad);
    CHECK(isfinite(loss));
    CHECK_NEAR(loss, 75.0, 1e-5);
    const double expected[4] = {0.0, -0.5, 0.25, 0.0};
    for (int i = 0; i < 4; i++) {
        CHECK(isfinite(grad[i]));
        CHECK_NEAR(grad[i], expected[i], 1e-7);
    }
}

/* Direct textbook formula in double, for logits well inside (-30, 30) where
 * it is accurate. */
static double reference_loss(const double *logits, const int8_t *targets, const float *pos_weight,
                             int count, int labels)
{
    double sum = 0.0;
    int known = 0;
    for (int i = 0; i < count * labels; i++) {
        if (targets[i] != 0 && targets[i] != 1)
            continue;
        double sigmoid = 1.0 / (1.0 + exp(-logits[i]));
        double w = pos_weight[i % labels];
        double t = targets[i];
        sum += -(w * t * log(sigmoid) + (1.0 - t) * log(1.0 - sigmoid));
        known++;
    }
    return sum / known;
}

static void test_gradient_matches_finite_differences(void)
{
    enum { count = 6, labels = 4, total = count * labels };
    float logits[total];
    double shifted[total];
    int8_t targets[total];
    const float pos_weight[labels] = {1.0f, 2.5f, 0.5f, 7.0f};
    srand(17);
    for (int i = 0; i < total; i++) {
        logits[i] = 8.0f * ((float)rand() / (float)RAND_MAX) - 4.0f;
        targets[i] = (int8_t)(rand() % 3 - 1);
        shifted[i] = logits[i];
    }
    float grad[total];
    float loss = ap_cpu_bce_loss(logits, targets, pos_weight, count, labels, grad);
    CHECK_NEAR(loss, reference_loss(shifted, targets, pos_weight, count, labels), 1e-6);

    /* Central differences in double with h = 1e-4 have truncation error
     * h^2 / 6 * |f'''| < 1e-9 and rounding error near 1e-12, so the gap is
     * the float kernel's own rounding: a few 1e-8 against gradients up to
     * about 0.3. A relative 1e-5 of the largest gradient bounds that and
     * still catches a missing weight or count factor. */
    const double h = 1e-4;
    double max_error = 0.0, max_gradient = 0.0;
    for (int i = 0; i < total; i++) {
        shifted[i] = (double)logits[i] + h;
        double up = reference_loss(shifted, targets, pos_weight, count, labels);
        shifted[i] = (double)logits[i] - h;
        double down = reference_loss(shifted, targets, pos_weight, count, labels);
        shifted[i] = logits[i];
        double numeric = (up - down) / (2.0 * h);
        max_error = fmax(max_error, fabs(grad[i] - numeric));
        max_gradient = fmax(max_gradient, fabs(numeric));
    }
    CHECK(max_gradient > 0.0);
    CHECK_NEAR(max_error / max_gradient, 0.0, 1e-5);
}

static void test_gradient_matches_own_loss(void)
{
    /* Differences of the float kernel itself with h = 1e-2: two roundings
     * of a loss near 1 (6e-8 each) over 2h give up to 6e-6, about 6e-5 of a
     * largest gradient near 0.1, and the h^2 term is smaller still. A bound
     * of 5e-4 allows that with margin. */
    enum { count = 3, labels = 4, total = count * labels };
    float logits[total];
    int8_t targets[total];
    const float pos_weight[labels] = {1.0f, 3.0f, 0.7f, 1.5f};
    srand(23);
    for (int i = 0; i < total; i++) {
        logits[i] = 6.0f * ((float)rand() / (float)RAND_MAX) - 3.0f;
        targets[i] = (int8_t)(rand() % 3 - 1);
    }
    float grad[total];
    ap_cpu_bce_loss(logits, targets, pos_weight, count, labels, grad);

    const float h = 1e-2f;
    double max_error = 0.0, max_gradient = 0.0;
    for (int i = 0; i < total; i++) {
        float saved = logits[i];
        logits[i] = saved + h;
        double up = ap_cpu_bce_loss(logits, targets, pos_weight, count, labels, NULL);
        logits[i] = saved - h;
        double down = ap_cpu_bce_loss(logits, targets, pos_weight, count, labels, NULL);
        double step = (double)(saved + h) - (double)(saved - h);
        logits[i] = saved;
        double numeric = (up - down) / step;
        max_error = fmax(max_error, fabs(grad[i] - numeric));
        max_gradient = fmax(max_gradient, fabs(grad[i]));
    }
    CHECK(max_gradient > 0.0);
    CHECK_NEAR(max_error / max_gradient, 0.0, 5e-4);
}

int main(void)
{
    test_plain_loss();
    test_pos_weight();
    test_unknown_targets_masked();
    test_all_unknown();
    test_extreme_logits();
    test_gradient_matches_finite_differences();
    test_gradient_matches_own_loss();
    return check_finish();
}
