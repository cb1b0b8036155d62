#include <math.h>
#include <stdlib.h>

#include "kernels/cpu/adamw.h"
#include "tests/unit/check.h"

/* An odd size leaves a remainder after any vector width. */
#define SIZE  1001
#define STEPS 6

typedef struct {
    const char *name;
    ap_adamw_args args;
    double gradient_scale;
} adamw_case;

/* Textbook AdamW in double: decoupled decay, then bias-corrected moments. */
static void reference_step(double *param, const double *grad, double *m, double *v, size_t size,
                           const ap_adamw_args *args)
{
    double lr = args->learning_rate, beta1 = args->beta1, beta2 = args->beta2;
    double correction1 = 1.0 - pow(beta1, (double)args->step);
    double correction2 = 1.0 - pow(beta2, (double)args->step);
    for (size_t i = 0; i < size; i++) {
        param[i] *= 1.0 - lr * args->weight_decay;
        m[i] = beta1 * m[i] + (1.0 - beta1) * grad[i];
        v[i] = beta2 * v[i] + (1.0 - beta2) * grad[i] * grad[i];
        double m_hat = m[i] / correction1;
        double v_hat = v[i] / correction2;
        param[i] -= lr * m_hat / (sqrt(v_hat) + args->epsilon);
    }
}

static double uniform(double low, double high)
{
    return low + (high - low) * ((double)rand() / (double)RAND_MAX);
}

static double max_abs_error(const float *actual, const double *expected, size_t size)
{
    double max_error = 0.0;
    for (size_t i = 0; i < size; i++)
        max_error = fmax(max_error, fabs(actual[i] - expected[i]));
    return max_error;
}

/* Largest absolute difference over the largest absolute reference value. */
static double scale_free_error(const float *actual, const double *expected, size_t size)
{
    double max_error = 0.0, max_value = 0.0;
    for (size_t i = 0; i < size; i++) {
        max_error = fmax(max_error, fabs(actual[i] - expected[i]));
        max_value = fmax(max_value, fabs(expected[i]));
    }
    return max_value > 0.0 ? max_error / max_value : max_error;
}

static void run_case(const adamw_case *test)
{
    static float param[SIZE], grad[SIZE], m[SIZE], v[SIZE];
    static double ref_param[SIZE], ref_grad[SIZE], ref_m[SIZE], ref_v[SIZE];

    srand(31);
    for (size_t i = 0; i < SIZE; i++) {
        param[i] = (float)uniform(-1.0, 1.0);
        ref_param[i] = param[i];
        m[i] = v[i] = 0.0f;
        ref_m[i] = ref_v[i] = 0.0;
    }
    ap_adamw_args args = test->args;
    for (long step = 1; step <= STEPS; step++) {
        for (size_t i = 0; i < SIZE; i++) {
            grad[i] = (float)(test->gradient_scale * uniform(-1.0, 1.0));
            ref_grad[i] = grad[i];
        }
        args.step = step;
        ap_cpu_adamw(param, grad, m, v, SIZE, &args);
        reference_step(ref_param, ref_grad, ref_m, ref_v, SIZE, &args);
    }
    /* Moments take a few float roundings per step, relative 6e-8 each, so
     * 1e-6 of the largest value bounds six steps. Parameters stay below 1.1
     * in magnitude and take two roundings per step (decay and update) of at
     * most 6e-8 each. Twelve of them stay below 1e-6. A missing bias
     * correction, or a misplaced epsilon in the large-epsilon case, moves a
     * parameter by 1e-3 or more. */
    int failures_before = check_failures;
    CHECK_NEAR(scale_free_error(m, ref_m, SIZE), 0.0, 1e-6);
    CHECK_NEAR(scale_free_error(v, ref_v, SIZE), 0.0, 1e-6);
    CHECK_NEAR(max_abs_error(param, ref_param, SIZE), 0.0, 1e-6);
    if (check_failures > failures_before)
        fprintf(stderr, "  in case \"%s\"\n", test->name);
}

static void test_against_reference(void)
{
    const adamw_case cases[] = {
        {"no weight decay", {1e-2f, 0.9f, 0.999f, 1e-8f, 0.0f, 1}, 1.0},
        {"weight decay", {1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, 1}, 1.0},
        /* Gradients near 1e-3 make an epsilon of 1e-3 half the denominator,
         * so its place in the formula shows. */
        {"large epsilon", {5e-3f, 0.8f, 0.99f, 1e-3f, 0.05f, 1}, 1e-3},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
        run_case(&cases[k]);
}

static void test_first_step_bias_correction(void)
{
    /* At step 1 from zero moments, m / (1 - beta1) = g and
     * v / (1 - beta2) = g^2, so the update is lr * g / (|g| + eps): almost
     * exactly lr in the direction opposite to g, whatever its size. Without
     * bias correction it would be 0.1 / sqrt(0.001) = 3.2 times that. */
    enum { size = 5 };
    const float grads[size] = {1.0f, -0.01f, 0.3f, -2.5f, 1e-4f};
    float param[size], m[size] = {0}, v[size] = {0};
    const ap_adamw_args args = {1e-3f, 0.9f, 0.999f, 1e-8f, 0.0f, 1};
    for (int i = 0; i < size; i++)
        param[i] = 0.5f;
    ap_cpu_adamw(param, grads, m, v, size, &args);
    for (int i = 0; i < size; i++) {
        double g = grads[i];
        double expected = 0.5 - 1e-3 * g / (fabs(g) + 1e-8);
        CHECK_NEAR(param[i], expected, 1e-7);
        CHECK_NEAR(m[i], 0.1 * g, 1e-7 * fabs(g));
        CHECK_NEAR(v[i], 0.001 * g * g, 1e-7 * g * g);
    }
}

static void test_decay_without_gradient(void)
{
    /* With zero gradients the moments stay 0 and only the decay acts:
     * 2 * (1 - 0.1 * 0.5) = 1.9. */
    float param[1] = {2.0f}, grad[1] = {0.0f}, m[1] = {0.0f}, v[1] = {0.0f};
    const ap_adamw_args args = {0.1f, 0.9f, 0.999f, 1e-8f, 0.5f, 3};
    ap_cpu_adamw(param, grad, m, v, 1, &args);
    CHECK_NEAR(param[0], 1.9, 1e-6);
    CHECK_NEAR(m[0], 0.0, 0.0);
    CHECK_NEAR(v[0], 0.0, 0.0);
}

int main(void)
{
    test_against_reference();
    test_first_step_bias_correction();
    test_decay_without_gradient();
    return check_finish();
}
