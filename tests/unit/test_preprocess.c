#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/preprocess.h"
#include "tests/unit/check.h"

/* Output values are a few float roundings away from the double formula:
 * each is below 2 in magnitude with float epsilon 1.2e-7, so 1e-6 covers
 * four roundings and still catches any wrong pixel (steps of 1/255). */
#define VALUE_TOLERANCE 1e-6

#define SMALL_HEIGHT 2
#define SMALL_WIDTH  3

static const float unit_mean[3] = {0.0f, 0.0f, 0.0f};
static const float unit_std[3] = {1.0f, 1.0f, 1.0f};

/* A 2x3 image whose bytes are all distinct: 40 * y + 10 * x + channel + 1. */
static void fill_small_image(uint8_t image[SMALL_HEIGHT * SMALL_WIDTH * 3])
{
    for (int y = 0; y < SMALL_HEIGHT; y++)
        for (int x = 0; x < SMALL_WIDTH; x++)
            for (int c = 0; c < 3; c++)
                image[(y * SMALL_WIDTH + x) * 3 + c] = (uint8_t)(40 * y + 10 * x + c + 1);
}

static float small_output(const float *out, int channel, int y, int x)
{
    return out[(channel * SMALL_HEIGHT + y) * SMALL_WIDTH + x];
}

static float small_source(const uint8_t *image, int channel, int y, int x)
{
    return (float)image[(y * SMALL_WIDTH + x) * 3 + channel] / 255.0f;
}

static ap_augment_params plain_params(void)
{
    ap_augment_params params = {0, 0, 0, 0.0f, 1.0f};
    return params;
}

static void test_normalisation_endpoints(void)
{
    /* Pixels 0 and 255 map to 0 and 1. With mean 0.5 and std 0.5 they become
     * exactly -1 and 1, with mean 0.25 and std 0.25 exactly -1 and 3. */
    const uint8_t image[2 * 3] = {0, 0, 255, 255, 255, 0};
    const float mean[3] = {0.5f, 0.25f, 0.5f};
    const float std[3] = {0.5f, 0.25f, 0.5f};
    float out[2 * 3];
    ap_cpu_preprocess(image, 1, 1, 2, NULL, mean, std, out);
    CHECK_NEAR(out[0], -1.0, 0.0); /* channel 0, x 0: pixel 0 */
    CHECK_NEAR(out[1], 1.0, 0.0);  /* channel 0, x 1: pixel 255 */
    CHECK_NEAR(out[2], -1.0, 0.0); /* channel 1, x 0: pixel 0 */
    CHECK_NEAR(out[3], 3.0, 0.0);  /* channel 1, x 1: pixel 255 */
    CHECK_NEAR(out[4], 1.0, 0.0);  /* channel 2, x 0: pixel 255 */
    CHECK_NEAR(out[5], -1.0, 0.0); /* channel 2, x 1: pixel 0 */
}

static void test_normalisation_values(void)
{
    uint8_t image[SMALL_HEIGHT * SMALL_WIDTH * 3];
    fill_small_image(image);
    const float mean[3] = {0.485f, 0.456f, 0.406f};
    const float std[3] = {0.229f, 0.224f, 0.225f};
    float out[SMALL_HEIGHT * SMALL_WIDTH * 3];
    ap_cpu_preprocess(image, 1, SMALL_HEIGHT, SMALL_WIDTH, NULL, mean, std, out);

    for (int c = 0; c < 3; c++) {
        for (int y = 0; y < SMALL_HEIGHT; y++) {
            for (int x = 0; x < SMALL_WIDTH; x++) {
                double pixel = 40 * y + 10 * x + c + 1;
                double expected = (pixel / 255.0 - mean[c]) / std[c];
                CHECK_NEAR(small_output(out, c, y, x), expected, VALUE_TOLERANCE);
            }
        }
    }
}

/* Runs one geometric transform on the small image with unit normalisation
 * and checks every output value against the source pixel it must come from. */
static void check_geometry(ap_augment_params params, int flip_rows, int flip_columns)
{
    uint8_t image[SMALL_HEIGHT * SMALL_WIDTH * 3];
    fill_small_image(image);
    float out[SMALL_HEIGHT * SMALL_WIDTH * 3];
    ap_cpu_preprocess(image, 1, SMALL_HEIGHT, SMALL_WIDTH, &params, unit_mean, unit_std, out);

    for (int c = 0; c < 3; c++) {
        for (int y = 0; y < SMALL_HEIGHT; y++) {
            for (int x = 0; x < SMALL_WIDTH; x++) {
                int source_y = flip_rows ? SMALL_HEIGHT - 1 - y : y;
                int source_x = flip_columns ? SMALL_WIDTH - 1 - x : x;
                CHECK_NEAR(small_output(out, c, y, x), small_source(image, c, source_y, source_x),
                           0.0);
            }
        }
    }
}

static void test_flips_and_rotation(void)
{
    uint8_t image[SMALL_HEIGHT * SMALL_WIDTH * 3];
    fill_small_image(image);
    float out[SMALL_HEIGHT * SMALL_WIDTH * 3];

    /* Horizontal flip: output (y 0, x 0) of channel 0 is source (0, 2), byte 21. */
    ap_augment_params params = plain_params();
    params.flip_horizontal = 1;
    ap_cpu_preprocess(image, 1, SMALL_HEIGHT, SMALL_WIDTH, &params, unit_mean, unit_std, out);
    CHECK_NEAR(small_output(out, 0, 0, 0), 21.0f / 255.0f, 0.0);
    check_geometry(params, 0, 1);

    /* Vertical flip: output (0, 0) of channel 1 is source (1, 0), byte 42. */
    params = plain_params();
    params.flip_vertical = 1;
    ap_cpu_preprocess(image, 1, SMALL_HEIGHT, SMALL_WIDTH, &params, unit_mean, unit_std, out);
    CHECK_NEAR(small_output(out, 1, 0, 0), 42.0f / 255.0f, 0.0);
    check_geometry(params, 1, 0);

    /* 180-degree rotation: output (0, 0) of channel 2 is source (1, 2), byte 63. */
    params = plain_params();
    params.rotate_180 = 1;
    ap_cpu_preprocess(image, 1, SMALL_HEIGHT, SMALL_WIDTH, &params, unit_mean, unit_std, out);
    CHECK_NEAR(small_output(out, 2, 0, 0), 63.0f / 255.0f, 0.0);
    check_geometry(params, 1, 1);

    /* A rotation undoes both flips, and a rotation plus one flip is the other flip. */
    params.flip_horizontal = 1;
    params.flip_vertical = 1;
    check_geometry(params, 0, 0);
    params.flip_vertical = 0;
    check_geometry(params, 1, 0);
}

static void test_neutral_params_change_nothing(void)
{
    uint8_t image[SMALL_HEIGHT * SMALL_WIDTH * 3];
    fill_small_image(image);
    const float mean[3] = {0.485f, 0.456f, 0.406f};
    const float std[3] = {0.229f, 0.224f, 0.225f};
    float plain[SMALL_HEIGHT * SMALL_WIDTH * 3];
    float neutral[SMALL_HEIGHT * SMALL_WIDTH * 3];
    ap_augment_params params = plain_params();

    ap_cpu_preprocess(image, 1, SMALL_HEIGHT, SMALL_WIDTH, NULL, mean, std, plain);
    ap_cpu_preprocess(image, 1, SMALL_HEIGHT, SMALL_WIDTH, &params, mean, std, neutral);
    CHECK_INT_EQ(memcmp(plain, neutral, sizeof(plain)), 0);
}

static void test_contrast_and_brightness(void)
{
    /* A 1x2 image with every channel at byte 51 (0.2) and 153 (0.6): the
     * image mean is 0.4. Contrast 2 gives 0.4 + 2 * (0.2 - 0.4) = 0 and
     * 0.4 + 2 * (0.6 - 0.4) = 0.8. Brightness 0.1 then gives 0.1 and 0.9. */
    const uint8_t image[2 * 3] = {51, 51, 51, 153, 153, 153};
    float out[2 * 3];
    ap_augment_params params = plain_params();
    params.contrast = 2.0f;
    params.brightness = 0.1f;
    ap_cpu_preprocess(image, 1, 1, 2, &params, unit_mean, unit_std, out);
    for (int c = 0; c < 3; c++) {
        CHECK_NEAR(out[c * 2 + 0], 0.1, VALUE_TOLERANCE);
        CHECK_NEAR(out[c * 2 + 1], 0.9, VALUE_TOLERANCE);
    }

    /* Contrast 0.5 gives 0.3 and 0.5. Brightness 0.6 then gives 0.9 and 1.1,
     * which clamps to 1. */
    params.contrast = 0.5f;
    params.brightness = 0.6f;
    ap_cpu_preprocess(image, 1, 1, 2, &params, unit_mean, unit_std, out);
    CHECK_NEAR(out[0], 0.9, VALUE_TOLERANCE);
    CHECK_NEAR(out[1], 1.0, 0.0);

    /* Brightness -0.5 takes 0.2 below 0, which clamps to 0. */
    params = plain_params();
    params.brightness = -0.5f;
    ap_cpu_preprocess(image, 1, 1, 2, &params, unit_mean, unit_std, out);
    CHECK_NEAR(out[0], 0.0, 0.0);
    CHECK_NEAR(out[1], 0.1, VALUE_TOLERANCE);
}

static void test_contrast_uses_mean_over_channels(void)
{
    /* One pixel with channels 0, 102 and 204 (0, 0.4, 0.8): the mean over
     * all channels is 0.4, so contrast 0.5 gives 0.2, 0.4 and 0.6. A
     * per-channel mean would leave every value unchanged. */
    const uint8_t image[3] = {0, 102, 204};
    float out[3];
    ap_augment_params params = plain_params();
    params.contrast = 0.5f;
    ap_cpu_preprocess(image, 1, 1, 1, &params, unit_mean, unit_std, out);
    CHECK_NEAR(out[0], 0.2, VALUE_TOLERANCE);
    CHECK_NEAR(out[1], 0.4, VALUE_TOLERANCE);
    CHECK_NEAR(out[2], 0.6, VALUE_TOLERANCE);
}

/* Straightforward per-pixel version of the documented steps, in double. */
static void reference_preprocess(const uint8_t *images, int count, int height, int width,
                                 const ap_augment_params *params, const float mean[3],
                                 const float std[3], double *out)
{
    size_t image_bytes = (size_t)height * (size_t)width * 3;
    for (int n = 0; n < count; n++) {
        const uint8_t *image = images + (size_t)n * image_bytes;
        const ap_augment_params *p = &params[n];
        double image_mean = 0.0;
        for (size_t i = 0; i < image_bytes; i++)
            image_mean += image[i] / 255.0;
        image_mean /= (double)image_bytes;
        int flip_rows = (p->flip_vertical != 0) ^ (p->rotate_180 != 0);
        int flip_columns = (p->flip_horizontal != 0) ^ (p->rotate_180 != 0);

        for (int c = 0; c < 3; c++) {
            for (int y = 0; y < height; y++) {
                for (int x = 0; x < width; x++) {
                    int sy = flip_rows ? height - 1 - y : y;
                    int sx = flip_columns ? width - 1 - x : x;
                    double v = image[((size_t)sy * (size_t)width + (size_t)sx) * 3 + c] / 255.0;
                    v = (v - image_mean) * p->contrast + image_mean + p->brightness;
                    v = v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v);
                    size_t o = (((size_t)n * 3 + c) * (size_t)height + y) * (size_t)width + x;
                    out[o] = (v - mean[c]) / std[c];
                }
            }
        }
    }
}

/* malloc that counts a failed allocation as a failed check. */
static void *allocate(size_t bytes)
{
    void *memory = malloc(bytes);
    CHECK(memory != NULL);
    return memory;
}

static uint8_t *random_images(int count, int height, int width, unsigned seed)
{
    size_t bytes = (size_t)count * (size_t)height * (size_t)width * 3;
    uint8_t *images = allocate(bytes);
    if (images == NULL)
        return NULL;
    srand(seed);
    for (size_t i = 0; i < bytes; i++)
        images[i] = (uint8_t)(rand() & 0xff);
    return images;
}

static void test_random_batch_matches_reference(void)
{
    /* Seven images give 21 (image, channel) tasks, so two threads split
     * image 3 between them; odd sizes catch row and column mix-ups. */
    enum { count = 7, height = 17, width = 31 };
    const size_t values = (size_t)count * 3 * height * width;
    const float mean[3] = {0.485f, 0.456f, 0.406f};
    const float std[3] = {0.229f, 0.224f, 0.225f};
    ap_augment_params params[count];
    ap_augment_draw(11, 3, count, 1, 0.2f, 0.4f, params);
    uint8_t *images = random_images(count, height, width, 5);
    float *one_thread = allocate(values * sizeof(float));
    float *two_threads = allocate(values * sizeof(float));
    double *reference = allocate(values * sizeof(double));
    if (images == NULL || one_thread == NULL || two_threads == NULL || reference == NULL)
        goto cleanup;

    int saved_threads = omp_get_max_threads();
    omp_set_num_threads(1);
    ap_cpu_preprocess(images, count, height, width, params, mean, std, one_thread);
    omp_set_num_threads(2);
    ap_cpu_preprocess(images, count, height, width, params, mean, std, two_threads);
    omp_set_num_threads(saved_threads);
    CHECK_INT_EQ(memcmp(one_thread, two_threads, values * sizeof(float)), 0);

    /* Values reach about 2.6 after normalisation with std 0.225, and the
     * float path rounds up to eight times, so allow 4e-6. */
    reference_preprocess(images, count, height, width, params, mean, std, reference);
    double max_error = 0.0;
    for (size_t i = 0; i < values; i++) {
        double error = fabs(one_thread[i] - reference[i]);
        max_error = error > max_error ? error : max_error;
    }
    CHECK_NEAR(max_error, 0.0, 4e-6);

cleanup:
    free(images);
    free(one_thread);
    free(two_threads);
    free(reference);
}

static void test_augment_draw_ranges(void)
{
    enum { count = 20000 };
    static ap_augment_params first[count];
    static ap_augment_params second[count];
    const float brightness = 0.25f;
    const float contrast = 0.4f;
    ap_augment_draw(42, 7, count, 1, brightness, contrast, first);
    ap_augment_draw(42, 7, count, 1, brightness, contrast, second);
    CHECK_INT_EQ(memcmp(first, second, sizeof(first)), 0);

    int flips[3] = {0, 0, 0};
    int out_of_range = 0;
    for (int i = 0; i < count; i++) {
        flips[0] += first[i].flip_horizontal;
        flips[1] += first[i].flip_vertical;
        flips[2] += first[i].rotate_180;
        if (first[i].brightness < -brightness || first[i].brightness > brightness)
            out_of_range++;
        if (first[i].contrast < 1.0f - contrast || first[i].contrast > 1.0f + contrast)
            out_of_range++;
    }
    CHECK_INT_EQ(out_of_range, 0);

    /* Each flip count is binomial(20000, 0.5) with standard deviation about
     * 71, so [9500, 10500] is seven deviations wide on each side. */
    for (int k = 0; k < 3; k++) {
        CHECK_NEAR(flips[k], 10000, 500);
    }
}

static void test_augment_draw_options(void)
{
    enum { count = 64 };
    ap_augment_params params[count];
    ap_augment_params other_stream[count];

    ap_augment_draw(1, 2, count, 0, 0.0f, 0.0f, params);
    int changed = 0;
    for (int i = 0; i < count; i++) {
        changed += params[i].flip_horizontal + params[i].flip_vertical + params[i].rotate_180;
        changed += params[i].brightness != 0.0f;
        changed += params[i].contrast != 1.0f;
    }
    CHECK_INT_EQ(changed, 0);

    ap_augment_draw(1, 2, count, 1, 0.3f, 0.3f, params);
    ap_augment_draw(1, 3, count, 1, 0.3f, 0.3f, other_stream);
    int same_brightness = 0;
    for (int i = 0; i < count; i++)
        same_brightness += params[i].brightness == other_stream[i].brightness;
    CHECK_INT_EQ(same_brightness, 0);
}

int main(void)
{
    test_normalisation_endpoints();
    test_normalisation_values();
    test_flips_and_rotation();
    test_neutral_params_change_nothing();
    test_contrast_and_brightness();
    test_contrast_uses_mean_over_channels();
    test_random_batch_matches_reference();
    test_augment_draw_ranges();
    test_augment_draw_options();
    return check_finish();
}
