#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/dense.h"
#include "tests/unit/check.h"

/* Odd sizes, and more inputs than one 256-column block of d_weight. */
#define BATCH   5
#define INPUTS  300
#define OUTPUTS 7

static float inputs[BATCH * INPUTS];
static float weights[OUTPUTS * INPUTS];
static float biases[OUTPUTS];
static float output_weights[BATCH * OUTPUTS];

static float uniform(float low, float high)
{
    return low + (high - low) * ((float)rand() / (float)RAND_MAX);
}

static void fill_layer(unsigned seed)
{
    srand(seed);
    for (int i = 0; i < BATCH * INPUTS; i++)
        inputs[i] = uniform(-1.0f, 1.0f);
    for (int i = 0; i < OUTPUTS * INPUTS; i++)
        weights[i] = uniform(-0.1f, 0.1f);
    for (int i = 0; i < OUTPUTS; i++)
        biases[i] = uniform(-0.5f, 0.5f);
    for (int i = 0; i < BATCH * OUTPUTS; i++)
        output_weights[i] = uniform(-1.0f, 1.0f);
}

static void test_forward_matches_naive(void)
{
    fill_layer(3);
    static float out[BATCH * OUTPUTS], out_without_bias[BATCH * OUTPUTS];
    ap_cpu_dense_forward(inputs, weights, biases, BATCH, INPUTS, OUTPUTS, out);
    ap_cpu_dense_forward(inputs, weights, NULL, BATCH, INPUTS, OUTPUTS, out_without_bias);

    /* Each output sums 300 products below 0.1 in float: the rounding error
     * stays below 300 * 6e-8 * 0.1 = 2e-6 in the worst case. */
    double max_error = 0.0, max_error_without_bias = 0.0;
    for (int n = 0; n < BATCH; n++) {
        for (int o = 0; o < OUTPUTS; o++) {
            double sum = 0.0;
            for (int i = 0; i < INPUTS; i++)
                sum += (double)inputs[n * INPUTS + i] * weights[o * INPUTS + i];
            max_error = fmax(max_error, fabs(out[n * OUTPUTS + o] - (sum + biases[o])));
            max_error_without_bias =
                fmax(max_error_without_bias, fabs(out_without_bias[n * OUTPUTS + o] - sum));
        }
    }
    CHECK_NEAR(max_error, 0.0, 2e-6);
    CHECK_NEAR(max_error_without_bias, 0.0, 2e-6);
}

/* The scalar whose gradient is checked: sum of out[n][o] * output_weights[n][o],
 * so d_out = output_weights. */
static double objective(void)
{
    static float out[BATCH * OUTPUTS];
    ap_cpu_dense_forward(inputs, weights, biases, BATCH, INPUTS, OUTPUTS, out);
    double total = 0.0;
    for (int i = 0; i < BATCH * OUTPUTS; i++)
        total += (double)out[i] * output_weights[i];
    return total;
}

/* Central difference of the objective along values[index]. The objective is
 * linear in every value, so the only error is float rounding of the outputs. */
static double numeric_gradient(float *values, int index, float step)
{
    float saved = values[index];
    values[index] = saved + step;
    double up = objective();
    values[index] = saved - step;
    double down = objective();
    double actual_step = (double)(saved + step) - (double)(saved - step);
    values[index] = saved;
    return (up - down) / actual_step;
}

/* Largest gap between the analytic and numeric gradient over the largest
 * numeric gradient, sampling every stride-th value. */
static double gradient_error(float *values, const float *analytic, int size, int stride)
{
    double max_error = 0.0, max_gradient = 0.0;
    for (int i = 0; i < size; i += stride) {
        double numeric = numeric_gradient(values, i, 0.05f);
        max_error = fmax(max_error, fabs(analytic[i] - numeric));
        max_gradient = fmax(max_gradient, fabs(numeric));
    }
    return max_error / max_gradient;
}

static void test_backward_matches_finite_differences(void)
{
    fill_layer(5);
    static float d_in[BATCH * INPUTS], d_weight[OUTPUTS * INPUTS], d_bias[OUTPUTS];
    ap_cpu_dense_backward(inputs, weights, output_weights, BATCH, INPUTS, OUTPUTS, d_in, d_weight,
                          d_bias);

    /* Each objective sums 35 outputs near 1 with float rounding of about
     * 1e-7 each, so its noise is near 4e-6. Over 2h = 0.1 that adds up to
     * 1e-4 to a numeric gradient. Gradients reach about 1 (d_bias, d_weight)
     * or 0.2 (d_in), so 2e-3 of the largest leaves margin. */
    CHECK_NEAR(gradient_error(inputs, d_in, BATCH * INPUTS, 7), 0.0, 2e-3);
    CHECK_NEAR(gradient_error(weights, d_weight, OUTPUTS * INPUTS, 11), 0.0, 2e-3);
    CHECK_NEAR(gradient_error(biases, d_bias, OUTPUTS, 1), 0.0, 2e-3);
}

static void test_backward_sets_and_is_deterministic(void)
{
    fill_layer(7);
    static float d_in[2][BATCH * INPUTS], d_weight[2][OUTPUTS * INPUTS], d_bias[2][OUTPUTS];
    static float d_weight_only[OUTPUTS * INPUTS];

    /* Stale values in the outputs must not leak into the result. */
    for (int i = 0; i < OUTPUTS * INPUTS; i++)
        d_weight[1][i] = 1000.0f;
    for (int i = 0; i < OUTPUTS; i++)
        d_bias[1][i] = 1000.0f;
    for (int i = 0; i < BATCH * INPUTS; i++)
        d_in[1][i] = 1000.0f;

    int saved_threads = omp_get_max_threads();
    omp_set_num_threads(1);
    ap_cpu_dense_backward(inputs, weights, output_weights, BATCH, INPUTS, OUTPUTS, d_in[0],
                          d_weight[0], d_bias[0]);
    omp_set_num_threads(2);
    ap_cpu_dense_backward(inputs, weights, output_weights, BATCH, INPUTS, OUTPUTS, d_in[1],
                          d_weight[1], d_bias[1]);
    ap_cpu_dense_backward(inputs, weights, output_weights, BATCH, INPUTS, OUTPUTS, NULL,
                          d_weight_only, NULL);
    omp_set_num_threads(saved_threads);

    CHECK_INT_EQ(memcmp(d_in[0], d_in[1], sizeof(d_in[0])), 0);
    CHECK_INT_EQ(memcmp(d_weight[0], d_weight[1], sizeof(d_weight[0])), 0);
    CHECK_INT_EQ(memcmp(d_bias[0], d_bias[1], sizeof(d_bias[0])), 0);
    CHECK_INT_EQ(memcmp(d_weight[0], d_weight_only, sizeof(d_weight_only)), 0);
}

static void test_dropout_rate_zero_is_identity(void)
{
    enum { size = 1000 };
    static float values[size], original[size], mask[size];
    for (int i = 0; i < size; i++)
        values[i] = original[i] = uniform(-3.0f, 3.0f);
    ap_cpu_dropout_forward(values, mask, size, 0.0f, 1, 2);
    CHECK_INT_EQ(memcmp(values, original, sizeof(values)), 0);
    int not_one = 0;
    for (int i = 0; i < size; i++)
        not_one += mask[i] != 1.0f;
    CHECK_INT_EQ(not_one, 0);
}

static void test_dropout_rate_and_scale(void)
{
    enum { size = 200000 };
    static float values[size], original[size], mask[size], d_values[size];
    const float rate = 0.3f;
    const float scale = 1.0f / (1.0f - rate);
    for (int i = 0; i < size; i++)
        values[i] = original[i] = uniform(0.5f, 2.0f);
    ap_cpu_dropout_forward(values, mask, size, rate, 9, 4);

    int dropped = 0, wrong_value = 0, wrong_mask = 0;
    for (int i = 0; i < size; i++) {
        if (mask[i] == 0.0f) {
            dropped++;
            wrong_value += values[i] != 0.0f;
        } else {
            wrong_mask += mask[i] != scale;
            wrong_value += values[i] != original[i] * scale;
        }
    }
    CHECK_INT_EQ(wrong_value, 0);
    CHECK_INT_EQ(wrong_mask, 0);
    /* The dropped count is binomial(200000, 0.3) with standard deviation
     * 205, so 0.3 +- 0.005 of the values is about five deviations wide. */
    CHECK_NEAR((double)dropped / size, rate, 0.005);

    /* Backward multiplies by the same mask: gradients of 1 become the mask. */
    for (int i = 0; i < size; i++)
        d_values[i] = 1.0f;
    ap_cpu_dropout_backward(d_values, mask, size);
    CHECK_INT_EQ(memcmp(d_values, mask, sizeof(mask)), 0);
}

static void test_dropout_is_deterministic(void)
{
    enum { size = 10001 };
    static float first[size], second[size], other_stream[size];
    static float first_mask[size], second_mask[size], other_mask[size];
    for (int i = 0; i < size; i++)
        first[i] = second[i] = other_stream[i] = 1.0f;

    int saved_threads = omp_get_max_threads();
    omp_set_num_threads(1);
    ap_cpu_dropout_forward(first, first_mask, size, 0.5f, 77, 1);
    omp_set_num_threads(2);
    ap_cpu_dropout_forward(second, second_mask, size, 0.5f, 77, 1);
    ap_cpu_dropout_forward(other_stream, other_mask, size, 0.5f, 77, 2);
    omp_set_num_threads(saved_threads);

    CHECK_INT_EQ(memcmp(first_mask, second_mask, sizeof(first_mask)), 0);
    CHECK_INT_EQ(memcmp(first, second, sizeof(first)), 0);
    CHECK(memcmp(first_mask, other_mask, sizeof(first_mask)) != 0);
}

static void test_dropout_rate_one_drops_all(void)
{
    float values[4] = {1.0f, -2.0f, 3.0f, 4.0f}, mask[4];
    ap_cpu_dropout_forward(values, mask, 4, 1.0f, 5, 5);
    for (int i = 0; i < 4; i++) {
        CHECK_NEAR(values[i], 0.0, 0.0);
        CHECK_NEAR(mask[i], 0.0, 0.0);
    }
}

int main(void)
{
    test_forward_matches_naive();
    test_backward_matches_finite_differences();
    test_backward_sets_and_is_deterministic();
    test_dropout_rate_zero_is_identity();
    test_dropout_rate_and_scale();
    test_dropout_is_deterministic();
    test_dropout_rate_one_drops_all();
    return check_finish();
}
