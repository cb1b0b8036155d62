/* train.loss in the trainer on a small synthetic dataset: the first logged
 * step compares losses of the same initial weights and batch, and the model
 * card names the loss and its settings. */

#include <stdint.h>

#include <jansson.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/common/log.h"
#include "pipeline/config/config.h"
#include "pipeline/train/trainer.h"
#include "tests/unit/check.h"
#include "tests/unit/png_check.h"

#define SIDE   16
#define IMAGES 32

static char work_dir[1024];

static void write_png(const char *path, int index)
{
    uint8_t pixels[SIDE * SIDE * 3];
    uint32_t state = 2246822519u * (uint32_t)(index + 1);
    for (int i = 0; i < SIDE * SIDE * 3; i++) {
        state = state * 1664525u + 1013904223u;
        pixels[i] = (uint8_t)((index % 3 == 0 ? 170 : 50) + (state >> 27));
    }
    check_write_png(path, SIDE, pixels);
}

/* One label known for every image, one known for half of them. */
static void make_dataset(const char *data_dir)
{
    char path[1400];
    CHECK_INT_EQ(ap_mkdirs(data_dir, NULL), AP_OK);
    snprintf(path, sizeof(path), "%s/labels.csv", data_dir);
    FILE *manifest = fopen(path, "w");
    if (manifest == NULL)
        exit(1);
    fprintf(manifest, "file,bright,odd,group\n");
    for (int index = 0; index < IMAGES; index++) {
        snprintf(path, sizeof(path), "%s/img%02d.png", data_dir, index);
        write_png(path, index);
        const char *odd = "";
        if (index % 4 < 2)
            odd = index % 2 ? "1" : "0";
        fprintf(manifest, "img%02d.png,%d,%s,g%d\n", index, index % 3 == 0, odd, index / 2);
    }
    fclose(manifest);
}

/* Trains run_name with the extra "key=value" settings and returns its folder. */
static const char *train_run(const char *data_dir, const char *run_name,
                             const char *const *settings, int setting_count)
{
    static char run_dir[1200];
    char yaml[4096];
    snprintf(yaml, sizeof(yaml),
             "run_name: %s\n"
             "output_dir: %s/runs\n"
             "seed: 3\n"
             "log_level: warn\n"
             "data: {root: %s, labels: [bright, odd], group_column: group, width: 16, "
             "height: 16}\n"
             "split: {val_fraction: 0.25, test_fraction: 0.25}\n"
             "model: {stem_channels: 4, stage_channels: [8], stage_blocks: [1], dropout: 0}\n"
             "train: {threads: 1, epochs: 1, batch_size: 8, warmup_epochs: 0, augment: false, "
             "log_every: 1}\n",
             run_name, work_dir, data_dir);
    ap_config cfg;
    ap_error err = {0};
    ap_status status = ap_config_load_string(yaml, "test config", &cfg, &err);
    for (int i = 0; i < setting_count && status == AP_OK; i++)
        status = ap_config_set(&cfg, settings[i], &err);
    if (status == AP_OK)
        status = ap_config_validate(&cfg, &err);
    ap_train_request request = {.cfg = &cfg};
    ap_train_outcome outcome;
    if (status == AP_OK)
        status = ap_train(&request, &outcome, &err);
    if (status != AP_OK) {
        fprintf(stderr, "%s: %s\n", run_name, err.message);
        exit(1);
    }
    snprintf(run_dir, sizeof(run_dir), "%s/runs/%s", work_dir, run_name);
    return run_dir;
}

/* The loss of the first logged optimizer step in train_log.jsonl. */
static double first_step_loss(const char *run_dir)
{
    char path[1400];
    snprintf(path, sizeof(path), "%s/train_log.jsonl", run_dir);
    FILE *file = fopen(path, "r");
    CHECK(file != NULL);
    if (file == NULL)
        return NAN;
    char line[8192];
    double loss = NAN;
    while (isnan(loss) && fgets(line, sizeof(line), file) != NULL) {
        json_t *entry = json_loads(line, 0, NULL);
        const char *event = json_string_value(json_object_get(entry, "event"));
        if (event != NULL && strcmp(event, "step") == 0)
            loss = json_number_value(json_object_get(entry, "loss"));
        json_decref(entry);
    }
    fclose(file);
    CHECK(!isnan(loss));
    return loss;
}

static void check_card_loss(const char *run_dir, const char *expected)
{
    char path[1400];
    snprintf(path, sizeof(path), "%s/model_card.json", run_dir);
    json_t *card = json_load_file(path, 0, NULL);
    CHECK(card != NULL);
    const char *loss =
        json_string_value(json_object_get(json_object_get(card, "training"), "loss"));
    CHECK(loss != NULL);
    if (loss != NULL) {
        CHECK(strcmp(loss, expected) == 0);
        if (strcmp(loss, expected) != 0)
            fprintf(stderr, "card loss \"%s\", expected \"%s\"\n", loss, expected);
    }
    json_decref(card);
}

int main(void)
{
    ap_log_threshold = AP_LOG_WARN;
    const char *dir = check_temp_dir("apiary-train-loss");
    if (dir == NULL)
        return 1;
    snprintf(work_dir, sizeof(work_dir), "%s", dir);
    char data_dir[1100];
    snprintf(data_dir, sizeof(data_dir), "%s/data", work_dir);
    make_dataset(data_dir);

    const char *bce_settings[] = {"train.loss=bce"};
    const char *zero_settings[] = {"train.loss=asymmetric", "train.asymmetric_gamma_neg=0",
                                   "train.asymmetric_clip=0"};
    const char *focal_settings[] = {"train.loss=focal", "train.focal_gamma=2"};
    const char *asymmetric_settings[] = {"train.loss=asymmetric", "train.pos_weight=none"};
    double bce = first_step_loss(train_run(data_dir, "bce", bce_settings, 1));
    const char *zero_dir = train_run(data_dir, "zero", zero_settings, 3);
    const char *zero_card = "asymmetric (gamma_pos 0, gamma_neg 0, clip 0), positive weights "
                            "from train split";
    check_card_loss(zero_dir, zero_card);
    double zero = first_step_loss(zero_dir);
    const char *focal_dir = train_run(data_dir, "focal", focal_settings, 2);
    check_card_loss(focal_dir, "focal (gamma 2), positive weights from train split");
    double focal = first_step_loss(focal_dir);
    const char *asymmetric_dir = train_run(data_dir, "asymmetric", asymmetric_settings, 2);
    check_card_loss(asymmetric_dir, "asymmetric (gamma_pos 0, gamma_neg 4, clip 0.05)");
    double asymmetric = first_step_loss(asymmetric_dir);

    /* Same initial weights and first batch: the asymmetric loss without
     * exponents or clip is bce (to float rounding), and focusing lowers every
     * element's loss, so the focal and asymmetric means are below bce. */
    CHECK_NEAR(zero, bce, 1e-5 * bce);
    CHECK(focal < 0.9 * bce);
    CHECK(asymmetric < 0.9 * bce);
    if (!(focal < 0.9 * bce) || !(asymmetric < 0.9 * bce))
        fprintf(stderr, "first-step losses: bce %g, focal %g, asymmetric %g\n", bce, focal,
                asymmetric);
    return check_finish();
}
