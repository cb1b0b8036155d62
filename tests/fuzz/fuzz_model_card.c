/* Fuzz model loading from a model card and its weights, as validate, score
 * and serve do it. The input is the card (JSON), a line "--weights--", then
 * the weights file. The text @WEIGHTS_SHA256@ in the card is replaced by the
 * sha256 of the weights, so the fuzzer reaches the checks past the hash. A
 * model that loads is run on one black image. */

#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/validate/model_load.h"
#include "tests/fuzz/fuzz_support.h"

#define SEPARATOR   "\n--weights--\n"
#define PLACEHOLDER "@WEIGHTS_SHA256@"

/* Cards over these sizes are skipped: their networks take seconds and
 * gigabytes to build, which tests the allocator rather than the reader. */
#define MAX_SIDE     64
#define MAX_CHANNELS 32
#define MAX_BLOCKS   2

/* The number a card field will turn into, or 0 for any other value. */
static double field_number(const json_t *value)
{
    if (json_is_number(value))
        return json_number_value(value);
    if (json_is_string(value))
        return strtod(json_string_value(value), NULL);
    return 0.0;
}

/* True when every item of value (a scalar or an array) is at most limit. */
static bool within(const json_t *value, double limit)
{
    if (!json_is_array(value))
        return !(fabs(field_number(value)) > limit);
    size_t index;
    const json_t *item;
    json_array_foreach(value, index, item)
    {
        if (!within(item, limit))
            return false;
    }
    return true;
}

static bool small_enough(const uint8_t *card, size_t size)
{
    json_t *root = json_loadb((const char *)card, size, 0, NULL);
    if (root == NULL)
        return true;
    const json_t *input = json_object_get(root, "input");
    const json_t *architecture = json_object_get(root, "architecture");
    bool small = within(json_object_get(input, "width"), MAX_SIDE) &&
                 within(json_object_get(input, "height"), MAX_SIDE) &&
                 within(json_object_get(architecture, "stem_channels"), MAX_CHANNELS) &&
                 within(json_object_get(architecture, "stage_channels"), MAX_CHANNELS) &&
                 within(json_object_get(architecture, "stage_blocks"), MAX_BLOCKS);
    json_decref(root);
    return small;
}

/* Write the card with every placeholder replaced by the weights' sha256. */
static void write_card(const char *path, const uint8_t *card, size_t size, const char *sha256)
{
    size_t placeholder = strlen(PLACEHOLDER);
    char *text = malloc(size / placeholder * 64 + size + 1);
    FUZZ_REQUIRE(text != NULL, "out of memory");
    size_t used = 0;
    for (size_t i = 0; i < size;) {
        if (size - i >= placeholder && memcmp(card + i, PLACEHOLDER, placeholder) == 0) {
            memcpy(text + used, sha256, 64);
            used += 64;
            i += placeholder;
        } else {
            text[used++] = (char)card[i++];
        }
    }
    fuzz_write_file(path, text, used);
    free(text);
}

static void check_model(const ap_loaded_model *model)
{
    FUZZ_REQUIRE(model->label_count >= 1 && model->label_count <= AP_MAX_LABELS, "%d labels",
                 model->label_count);
    for (int l = 0; l < model->label_count; l++)
        FUZZ_REQUIRE(model->thresholds[l] >= 0.0f && model->thresholds[l] <= 1.0f,
                     "threshold %d is %g", l, (double)model->thresholds[l]);

    ap_image_set images = {.width = model->width, .height = model->height, .count = 1};
    images.pixels = calloc((size_t)model->width * model->height * 3, 1);
    float probabilities[AP_MAX_LABELS];
    size_t index = 0;
    ap_error err = {0};
    FUZZ_REQUIRE(images.pixels != NULL, "out of memory");
    ap_status status = ap_loaded_model_predict(model, &images, &index, 1, probabilities, &err);
    FUZZ_REQUIRE(status == AP_OK, "prediction failed: %s", err.message);
    free(images.pixels);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *card, *weights;
    size_t card_size, weights_size;
    fuzz_split(data, size, SEPARATOR, &card, &card_size, &weights, &weights_size);
    if (!small_enough(card, card_size))
        return 0;
    omp_set_num_threads(1);

    char folder[2048], card_path[2200], weights_path[2200], sha256[65];
    snprintf(folder, sizeof(folder), "%s", fuzz_temp_path("model"));
    snprintf(card_path, sizeof(card_path), "%s/model_card.json", folder);
    snprintf(weights_path, sizeof(weights_path), "%s/model.safetensors", folder);
    fuzz_make_folder(folder);
    ap_sha256_hex(weights, weights_size, sha256);
    fuzz_write_file(weights_path, weights, weights_size);
    write_card(card_path, card, card_size, sha256);

    ap_loaded_model model;
    ap_error err = {0};
    ap_status status = ap_model_load(card_path, 1, &model, &err);
    fuzz_note("model card: %s", status == AP_OK ? "loaded" : err.message);
    if (status == AP_OK)
        check_model(&model);
    else
        FUZZ_REQUIRE(err.message[0] != '\0', "load failed without a message");
    ap_loaded_model_free(&model);
    return 0;
}
