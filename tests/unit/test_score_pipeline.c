/* The overlapped decode and inference loop of apiary score on a small
 * random network: every image lands in its own row, in order, across chunk
 * and batch boundaries, and matches a plain forward pass. */

#include <turbojpeg.h>

#include "kernels/cpu/preprocess.h"
#include "pipeline/score/score_pipeline.h"
#include "pipeline/train/predict.h"

#include "tests/unit/check.h"

#define IMAGE_COUNT 7
#define BATCH       2
#define SIDE        16

typedef struct {
    const char *const *images; /* the pipeline's list, to find each image's index */
    int chunks;
    size_t seen;
    float probabilities[IMAGE_COUNT][2];
    char errors[IMAGE_COUNT][AP_SCORE_ERROR_MAX];
} collected;

static ap_status collect_chunk(void *context, const char *const *images, size_t count,
                               const float *probabilities, const char (*errors)[AP_SCORE_ERROR_MAX],
                               ap_error *err)
{
    collected *out = context;
    size_t first = (size_t)(images - out->images);
    CHECK_INT_EQ(first, out->seen); /* chunks arrive in input order */
    for (size_t i = 0; i < count; i++) {
        memcpy(out->probabilities[first + i], probabilities + 2 * i, sizeof(float) * 2);
        snprintf(out->errors[first + i], AP_SCORE_ERROR_MAX, "%s", errors[i]);
    }
    out->seen += count;
    out->chunks++;
    return AP_OK;
}

/* Write a JPEG of width x height with a pattern that depends on seed. */
static bool write_jpeg(const char *path, int width, int height, int seed, size_t keep_bytes)
{
    uint8_t *pixels = malloc((size_t)width * (size_t)height * 3);
    if (pixels == NULL)
        return false;
    for (int i = 0; i < width * height * 3; i++)
        pixels[i] = (uint8_t)((i * (seed + 3) + seed * 41) % 251);
    tjhandle encoder = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long size = 0;
    bool ok = encoder != NULL && tjCompress2(encoder, pixels, width, 0, height, TJPF_RGB, &jpeg,
                                             &size, TJSAMP_444, 95, 0) == 0;
    FILE *file = ok ? fopen(path, "wb") : NULL;
    if (file != NULL) {
        size_t length = keep_bytes > 0 && keep_bytes < size ? keep_bytes : size;
        ok = fwrite(jpeg, 1, length, file) == length;
        fclose(file);
    }
    tjFree(jpeg);
    if (encoder != NULL)
        tjDestroy(encoder);
    free(pixels);
    return ok && file != NULL;
}

static ap_status make_model(ap_loaded_model *model, ap_error *err)
{
    memset(model, 0, sizeof(*model));
    ap_net_spec spec = {.in_channels = 3,
                        .height = SIDE,
                        .width = SIDE,
                        .stem_channels = 4,
                        .stem_kernel = 3,
                        .stem_stride = 1,
                        .stage_count = 1,
                        .stage_channels = {4},
                        .stage_blocks = {1},
                        .label_count = 2};
    model->spec = spec;
    model->label_count = 2;
    model->width = SIDE;
    model->height = SIDE;
    model->resize = AP_RESIZE_LETTERBOX;
    for (int c = 0; c < 3; c++) {
        model->mean[c] = 0.5f;
        model->std[c] = 0.25f;
    }
    return ap_net_create(&spec, BATCH, 7, &model->net, err);
}

/* Probabilities of one image through a plain forward pass (the image twice,
 * because the network takes batches of two). */
static void reference_probabilities(const ap_loaded_model *model, const char *path,
                                    float probabilities[2])
{
    ap_image_limits limits = {.max_bytes = 1 << 20, .max_pixels = 1 << 20};
    ap_image image;
    ap_error err = {0};
    uint8_t pixels[2 * SIDE * SIDE * 3];
    float input[2 * SIDE * SIDE * 3], logits[4];
    CHECK_INT_EQ(ap_image_load(path, &limits, &image, &err), AP_OK);
    CHECK_INT_EQ(ap_image_resize(&image, SIDE, SIDE, model->resize, pixels, &err), AP_OK);
    ap_image_free(&image);
    memcpy(pixels + SIDE * SIDE * 3, pixels, SIDE * SIDE * 3);
    ap_cpu_preprocess(pixels, 2, SIDE, SIDE, NULL, model->mean, model->std, input);
    CHECK_INT_EQ(ap_net_forward(model->net, input, false, 0, 0, logits, &err), AP_OK);
    ap_sigmoid_inplace(logits, 2);
    probabilities[0] = logits[0];
    probabilities[1] = logits[1];
}

int main(void)
{
    const char *dir = check_temp_dir("score-pipeline");
    if (dir == NULL)
        return 1;
    char folder[4200];
    snprintf(folder, sizeof(folder), "%s", dir);
    static const char *const names[IMAGE_COUNT] = {"a.jpg", "b.jpg",      "c.jpg", "d-cut.jpg",
                                                   "e.jpg", "f-text.png", "g.jpg"};
    for (int i = 0; i < IMAGE_COUNT; i++) {
        char path[4300];
        snprintf(path, sizeof(path), "%s/%s", folder, names[i]);
        if (i == 5) {
            FILE *file = fopen(path, "w");
            CHECK(file != NULL);
            if (file != NULL) {
                fputs("not an image", file);
                fclose(file);
            }
            continue;
        }
        CHECK(write_jpeg(path, 20 + 7 * i, 40 - 3 * i, i, i == 3 ? 300 : 0));
    }

    ap_loaded_model model;
    ap_error err = {0};
    CHECK_INT_EQ(make_model(&model, &err), AP_OK);
    collected results = {.images = names};
    ap_score_pipeline pipeline = {
        .model = &model,
        .input = folder,
        .images = names,
        .count = IMAGE_COUNT,
        .chunk_size = 3, /* rounded up to 4: chunks of 4 and 3, the last batch short */
        .threads = 2,
        .limits = {.max_bytes = 1 << 20, .max_pixels = 1 << 20},
        .on_chunk = collect_chunk,
        .context = &results,
    };
    ap_score_timing timing;
    ap_status status = ap_score_pipeline_run(&pipeline, &timing, &err);
    if (status != AP_OK)
        fprintf(stderr, "pipeline: %s\n", err.message);
    CHECK_INT_EQ(status, AP_OK);
    CHECK_INT_EQ(results.chunks, 2);
    CHECK_INT_EQ(results.seen, IMAGE_COUNT);
    CHECK(timing.seconds > 0);

    for (int i = 0; i < IMAGE_COUNT; i++) {
        if (i == 3 || i == 5) {
            CHECK(results.errors[i][0] != '\0');
            continue;
        }
        if (results.errors[i][0] != '\0')
            fprintf(stderr, "image %s: %s\n", names[i], results.errors[i]);
        CHECK(results.errors[i][0] == '\0');
        char path[4300];
        float expected[2];
        snprintf(path, sizeof(path), "%s/%s", folder, names[i]);
        reference_probabilities(&model, path, expected);
        /* Same weights and pixels; only the batch neighbour differs, which may
         * change oneDNN's summation order by a few float roundings. */
        CHECK_NEAR(results.probabilities[i][0], expected[0], 1e-5);
        CHECK_NEAR(results.probabilities[i][1], expected[1], 1e-5);
    }
    CHECK_STR_CONTAINS(results.errors[3], "JPEG");
    CHECK_STR_CONTAINS(results.errors[5], "expected JPEG or PNG");

    /* A stop request ends the loop after the chunk in progress. */
    volatile sig_atomic_t stop = 1;
    collected stopped = {.images = names};
    pipeline.context = &stopped;
    pipeline.stop = &stop;
    CHECK_INT_EQ(ap_score_pipeline_run(&pipeline, &timing, &err), AP_ERR_INTERRUPTED);
    CHECK_INT_EQ(stopped.chunks, 1);
    CHECK_INT_EQ(stopped.seen, 4);
    CHECK_STR_CONTAINS(err.message, "after 4 of 7 images");

    ap_loaded_model_free(&model);
    return check_finish();
}
