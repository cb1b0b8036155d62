#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "kernels/cpu/asymmetric_loss.h"
#include "kernels/cpu/bce_loss.h"
#include "tests/unit/check.h"

/* Hand-computed values below carry at least eight digits. Float results near
 * 1 are good to about 1e-7, so 1e-6 separates a rounding from a wrong term. */
#define HAND_TOLERANCE 1e-6

enum { CASE_COUNT = 5 };

/* Exponent and clip settings every general check runs: plain BCE, focal,
 * the asymmetric loss's usual setting, a positive exponent with a wide clip,
 * and fractional exponents whose r^(g - 1) is unbounded near r = 0. */
static const ap_asymmetric_params cases[CASE_COUNT] = {
    {.gamma_pos = 0.0f, .gamma_neg = 0.0f, .clip = 0.0f},
    {.gamma_pos = 2.0f, .gamma_neg = 2.0f, .clip = 0.0f},
    {.gamma_pos = 0.0f, .gamma_neg = 4.0f, .clip = 0.05f},
    {.gamma_pos = 1.0f, .gamma_neg = 3.0f, .clip = 0.2f},
    {.gamma_pos = 0.5f, .gamma_neg = 0.5f, .clip = 0.01f},
};

static void test_focal_hand_values(void)
{
    /* gamma = 2, w = 1, two known targets:
     *   x = 0, t = 1: p = q = 0.5, loss = 0.25 log 2 = 0.173286795,
     *     grad = q^2 (-2 p softplus(0) - q) = -0.298286795
     *   x = 1, t = 0: loss = -p^2 log(1 - p) = 0.701868303,
     *     grad = p q (p^2 / q - 2 p log q) = 0.768234723
     * mean = 0.437577549, each gradient of the mean over 2. */
    const float logits[2] = {0.0f, 1.0f};
    const int8_t targets[2] = {1, 0};
    float grad[2];
    float loss = ap_cpu_focal_loss(logits, targets, NULL, 1, 2, 2.0f, grad);
    CHECK_NEAR(loss, 0.437577549, HAND_TOLERANCE);
    CHECK_NEAR(grad[0], -0.298286795 / 2, HAND_TOLERANCE);
    CHECK_NEAR(grad[1], 0.768234723 / 2, HAND_TOLERANCE);
}

static void test_asymmetric_hand_values(void)
{
    /* gamma_pos = 1, gamma_neg = 4, clip = 0.05, pos_weight 3:
     *   x = -1, t = 1: loss = -3 q log p = 2.880213668, grad = -2.377948694
     *   x = 0,  t = 0: r = 0.45, loss = -r^4 log(0.55) = 0.024515054,
     *     grad = p q (r^4 / 0.55 - 4 r^3 log 0.55) = 0.073117101
     *   x = -5, t = 0: p = 0.0067 is below the clip, so loss and grad are 0
     * mean = (2.880213668 + 0.024515054) / 3 = 0.968242907. */
    const float logits[3] = {-1.0f, 0.0f, -5.0f};
    const int8_t targets[3] = {1, 0, 0};
    const float pos_weight[1] = {3.0f};
    const ap_asymmetric_params params = {.gamma_pos = 1.0f, .gamma_neg = 4.0f, .clip = 0.05f};
    float grad[3];
    float loss = ap_cpu_asymmetric_loss(logits, targets, pos_weight, 3, 1, &params, grad);
    CHECK_NEAR(loss, 0.968242907, HAND_TOLERANCE);
    CHECK_NEAR(grad[0], -2.377948694 / 3, HAND_TOLERANCE);
    CHECK_NEAR(grad[1], 0.073117101 / 3, HAND_TOLERANCE);
    CHECK_NEAR(grad[2], 0.0, 0.0);
}

static void random_batch(unsigned seed, int total, float spread, float *logits, int8_t *targets)
{
    srand(seed);
    for (int i = 0; i < total; i++) {
        logits[i] = 2.0f * spread * ((float)rand() / (float)RAND_MAX) - spread;
        targets[i] = (int8_t)(rand() % 3 - 1);
    }
}

static void test_zero_exponents_match_bce(void)
{
    /* Both kernels compute softplus from the same e = exp(-|x|), so the
     * element values agree to a few float roundings. */
    enum { count = 8, labels = 3, total = count * labels };
    float logits[total], grad[total], bce_grad[total];
    int8_t targets[total];
    const float pos_weight[labels] = {1.0f, 4.0f, 0.5f};
    random_batch(5, total, 12.0f, logits, targets);
    float loss =
        ap_cpu_asymmetric_loss(logits, targets, pos_weight, count, labels, &cases[0], grad);
    float bce = ap_cpu_bce_loss(logits, targets, pos_weight, count, labels, bce_grad);
    CHECK_NEAR(loss, bce, 1e-6 * fabs(bce));
    for (int i = 0; i < total; i++)
        CHECK_NEAR(grad[i], bce_grad[i], 1e-6);
}

static void test_unknown_targets_masked(void)
{
    /* Entries with target -1 or 7 are skipped: the loss equals that of the
     * known entries alone, and their gradients are 0. */
    const float logits[4] = {0.3f, 5.0f, -2.0f, 1.5f};
    const int8_t targets[4] = {1, -1, 7, 0};
    const float known_logits[2] = {0.3f, 1.5f};
    const int8_t known_targets[2] = {1, 0};
    for (int c = 0; c < CASE_COUNT; c++) {
        float grad[4] = {9.0f, 9.0f, 9.0f, 9.0f}, known_grad[2];
        float loss = ap_cpu_asymmetric_loss(logits, targets, NULL, 4, 1, &cases[c], grad);
        float known_loss =
            ap_cpu_asymmetric_loss(known_logits, known_targets, NULL, 2, 1, &cases[c], known_grad);
        CHECK_NEAR(loss, known_loss, 0.0);
        CHECK_NEAR(grad[0], known_grad[0], 0.0);
        CHECK_NEAR(grad[1], 0.0, 0.0);
        CHECK_NEAR(grad[2], 0.0, 0.0);
        CHECK_NEAR(grad[3], known_grad[1], 0.0);
    }
}

static void test_all_unknown(void)
{
    const float logits[3] = {1.0f, -2.0f, 30.0f};
    const int8_t targets[3] = {-1, -1, 5};
    float grad[3] = {9.0f, 9.0f, 9.0f};
    float loss = ap_cpu_asymmetric_loss(logits, targets, NULL, 3, 1, &cases[2], grad);
    CHECK_NEAR(loss, 0.0, 0.0);
    for (int i = 0; i < 3; i++)
        CHECK_NEAR(grad[i], 0.0, 0.0);
}

static void test_extreme_logits_finite(void)
{
    /* At |x| = 100 and 1e30, p and q underflow; every case must stay finite,
     * and a confident wrong prediction keeps a gradient of the right sign. */
    const float logits[6] = {100.0f, -100.0f, 1e30f, -1e30f, 100.0f, -100.0f};
    const int8_t targets[6] = {1, 1, 0, 0, 0, 0};
    for (int c = 0; c < CASE_COUNT; c++) {
        float grad[6];
        float loss = ap_cpu_asymmetric_loss(logits, targets, NULL, 6, 1, &cases[c], grad);
        CHECK(isfinite(loss));
        for (int i = 0; i < 6; i++)
            CHECK(isfinite(grad[i]));
        CHECK(grad[1] < 0.0f); /* positive at x = -100: push the logit up */
        CHECK(grad[4] > 0.0f); /* negative at x = 100: push the logit down */
    }
}

static void test_sum_matches_mean(void)
{
    enum { count = 5, labels = 4, total = count * labels };
    float logits[total], grad[total], sum_grad[total];
    int8_t targets[total];
    const float pos_weight[labels] = {2.0f, 1.0f, 6.0f, 0.3f};
    random_batch(11, total, 5.0f, logits, targets);
    long known = 0;
    double sum = ap_cpu_asymmetric_loss_sum(logits, targets, pos_weight, count, labels, &cases[3],
                                            sum_grad, &known);
    float mean =
        ap_cpu_asymmetric_loss(logits, targets, pos_weight, count, labels, &cases[3], grad);
    long expected_known = 0;
    for (int i = 0; i < total; i++)
        expected_known += targets[i] == 0 || targets[i] == 1;
    CHECK_INT_EQ(known, expected_known);
    CHECK_NEAR(sum / (double)known, mean, 1e-6 * fabs(mean));
    for (int i = 0; i < total; i++)
        CHECK_NEAR(sum_grad[i] / (float)known, grad[i], 1e-7);
}

/* Textbook formula in double, accurate for logits well inside (-30, 30). */
static double reference_loss(const double *logits, const int8_t *targets, const float *pos_weight,
                             int total, int labels, const ap_asymmetric_params *params)
{
    double sum = 0.0;
    int known = 0;
    for (int i = 0; i < total; i++) {
        if (targets[i] != 0 && targets[i] != 1)
            continue;
        double p = 1.0 / (1.0 + exp(-logits[i]));
        if (targets[i] == 1) {
            sum += -pos_weight[i % labels] * pow(1.0 - p, params->gamma_pos) * log(p);
        } else {
            double clipped = fmax(p - params->clip, 0.0);
            sum += -pow(clipped, params->gamma_neg) * log(1.0 - clipped);
        }
        known++;
    }
    return sum / known;
}

/* Central differences in double with h = 1e-4 have truncation error
 * h^2 / 6 * |f'''| below 1e-8 here and rounding error near 1e-12, so the gap
 * is the float kernel's own rounding, a few 1e-8 against gradients up to
 * about 0.3. A relative 1e-5 of the largest gradient bounds that and still
 * catches a wrong exponent, factor or sign. Logits stay 0.05 away from the
 * clip's kink at p = m, where the loss has no derivative. */
static double finite_difference_error(const ap_asymmetric_params *params, unsigned seed)
{
    enum { count = 6, labels = 4, total = count * labels };
    float logits[total], grad[total];
    double shifted[total];
    int8_t targets[total];
    const float pos_weight[labels] = {1.0f, 2.5f, 0.5f, 7.0f};
    random_batch(seed, total, 4.0f, logits, targets);
    for (int i = 0; i < total; i++) {
        double p = 1.0 / (1.0 + exp(-(double)logits[i]));
        if (targets[i] == 0 && fabs(p - params->clip) < 0.05)
            logits[i] = 3.0f;
        shifted[i] = logits[i];
    }
    float loss = ap_cpu_asymmetric_loss(logits, targets, pos_weight, count, labels, params, grad);
    double expected = reference_loss(shifted, targets, pos_weight, total, labels, params);
    CHECK_NEAR(loss, expected, 1e-6 * fabs(expected));

    const double h = 1e-4;
    double max_error = 0.0, max_gradient = 0.0;
    for (int i = 0; i < total; i++) {
        shifted[i] = (double)logits[i] + h;
        double up = reference_loss(shifted, targets, pos_weight, total, labels, params);
        shifted[i] = (double)logits[i] - h;
        double down = reference_loss(shifted, targets, pos_weight, total, labels, params);
        shifted[i] = logits[i];
        double numeric = (up - down) / (2.0 * h);
        max_error = fmax(max_error, fabs(grad[i] - numeric));
        max_gradient = fmax(max_gradient, fabs(numeric));
    }
    CHECK(max_gradient > 0.0);
    return max_gradient > 0.0 ? max_error / max_gradient : INFINITY;
}

static void test_gradient_matches_finite_differences(void)
{
    for (int c = 0; c < CASE_COUNT; c++) {
        for (unsigned seed = 1; seed <= 3; seed++) {
            double error = finite_difference_error(&cases[c], 100 * (unsigned)c + seed);
            if (!(error <= 1e-5))
                fprintf(stderr, "case %d (gamma_pos %g, gamma_neg %g, clip %g), seed %u:\n", c,
                        (double)cases[c].gamma_pos, (double)cases[c].gamma_neg,
                        (double)cases[c].clip, seed);
            CHECK_NEAR(error, 0.0, 1e-5);
        }
    }
}

static void test_near_clip_gradient(void)
{
    /* Just above the clip, r = p - m is tiny and the negative gradient's
     * log(1 - r) / r term is near -1. With gamma_neg = 0.5 the gradient is
     * p q (r^0.5 / (1 - r) - 0.5 r^0.5 log(1 - r) / r), about 1.5 p q r^0.5:
     * small, finite and positive. */
    const ap_asymmetric_params params = {.gamma_pos = 0.0f, .gamma_neg = 0.5f, .clip = 0.05f};
    const float logit = logf(0.0501f / 0.9499f); /* p = 0.0501, r = 1e-4 */
    const int8_t target = 0;
    float grad;
    float loss = ap_cpu_asymmetric_loss(&logit, &target, NULL, 1, 1, &params, &grad);
    double p = 0.0501, q = 0.9499, r = 1e-4;
    double expected = p * q * (sqrt(r) / (1.0 - r) - 0.5 * sqrt(r) * log1p(-r) / r);
    CHECK(isfinite(loss));
    CHECK_NEAR(grad, expected, 1e-3 * expected);
}

int main(void)
{
    test_focal_hand_values();
    test_asymmetric_hand_values();
    test_zero_exponents_match_bce();
    test_unknown_targets_masked();
    test_all_unknown();
    test_extreme_logits_finite();
    test_sum_matches_mean();
    test_gradient_matches_finite_differences();
    test_near_clip_gradient();
    return check_finish();
}
