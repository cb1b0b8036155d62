/* split.method on a small synthetic dataset of 16x16 PNG images in 8 groups
 * of 6: group keeps every group in one part, random ignores the groups. */

#include <stdbool.h>
#include <stdint.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/common/log.h"
#include "pipeline/config/config.h"
#include "pipeline/data/split.h"
#include "pipeline/train/run_data.h"
#include "tests/unit/check.h"
#include "tests/unit/png_check.h"

#define SIDE      16
#define GROUPS    8
#define PER_GROUP 6
#define IMAGES    (GROUPS * PER_GROUP)

static char work_dir[1024];

static void write_png(const char *path, int index)
{
    uint8_t pixels[SIDE * SIDE * 3];
    uint32_t state = 2654435761u * (uint32_t)(index + 1);
    for (int i = 0; i < SIDE * SIDE * 3; i++) {
        state = state * 1664525u + 1013904223u;
        pixels[i] = (uint8_t)((index % 2 ? 160 : 60) + (state >> 27));
    }
    check_write_png(path, SIDE, pixels);
}

static void make_dataset(const char *data_dir)
{
    char path[1400];
    CHECK_INT_EQ(ap_mkdirs(data_dir, NULL), AP_OK);
    snprintf(path, sizeof(path), "%s/labels.csv", data_dir);
    FILE *manifest = fopen(path, "w");
    if (manifest == NULL)
        exit(1);
    fprintf(manifest, "file,bright,group\n");
    for (int index = 0; index < IMAGES; index++) {
        snprintf(path, sizeof(path), "%s/img%02d.png", data_dir, index);
        write_png(path, index);
        fprintf(manifest, "img%02d.png,%d,g%d\n", index, index % 2, index / PER_GROUP);
    }
    fclose(manifest);
}

static void make_config(ap_config *cfg, const char *data_dir, const char *method)
{
    char yaml[4096];
    snprintf(yaml, sizeof(yaml),
             "run_name: %s\n"
             "output_dir: %s/runs\n"
             "log_level: warn\n"
             "data: {root: %s, labels: [bright], group_column: group, width: 16, height: 16}\n"
             "split: {val_fraction: 0.25, test_fraction: 0.25, method: %s}\n",
             method, work_dir, data_dir, method);
    ap_error err = {0};
    ap_status status = ap_config_load_string(yaml, "test config", cfg, &err);
    if (status == AP_OK)
        status = ap_config_validate(cfg, &err);
    if (status != AP_OK) {
        fprintf(stderr, "config: %s\n", err.message);
        exit(1);
    }
}

/* Fills part_of_image (IMAGES entries, in manifest order) from a fresh or
 * existing run folder of the method; returns false when preparing failed. */
static bool split_images(const char *data_dir, const char *method, int *part_of_image)
{
    ap_config cfg;
    make_config(&cfg, data_dir, method);
    char run_dir[1200];
    snprintf(run_dir, sizeof(run_dir), "%s/runs/%s", work_dir, method);
    CHECK_INT_EQ(ap_mkdirs(run_dir, NULL), AP_OK);
    ap_run_data data;
    ap_error err = {0};
    ap_status status = ap_run_data_prepare(&cfg, run_dir, &data, &err);
    if (status != AP_OK) {
        fprintf(stderr, "prepare (%s): %s\n", method, err.message);
        CHECK_INT_EQ(status, AP_OK);
        return false;
    }
    CHECK_INT_EQ(data.images.count, IMAGES);
    for (int part = 0; part < 3; part++)
        for (size_t i = 0; i < data.part_count[part]; i++)
            part_of_image[data.images.row_index[data.part_images[part][i]]] = part;
    ap_run_data_free(&data);
    return true;
}

/* The number of groups whose images are in more than one part. */
static int straddling_groups(const int *part_of_image)
{
    int count = 0;
    for (int group = 0; group < GROUPS; group++) {
        bool mixed = false;
        for (int i = 1; i < PER_GROUP; i++)
            mixed |= part_of_image[group * PER_GROUP + i] != part_of_image[group * PER_GROUP];
        count += mixed;
    }
    return count;
}

static void test_group_method(const char *data_dir)
{
    int parts[IMAGES];
    if (!split_images(data_dir, "group", parts))
        return;
    CHECK_INT_EQ(straddling_groups(parts), 0);
}

static void test_random_method(const char *data_dir)
{
    int parts[IMAGES], again[IMAGES];
    if (!split_images(data_dir, "random", parts))
        return;
    /* With 48 single images split 24/12/12, a split that kept all 8 groups
     * whole would be a coincidence of the seed (probability far below 1e-6). */
    CHECK(straddling_groups(parts) > 0);
    int counts[3] = {0, 0, 0};
    for (int i = 0; i < IMAGES; i++)
        counts[parts[i]]++;
    CHECK_INT_EQ(counts[0], 24);
    CHECK_INT_EQ(counts[1], 12);
    CHECK_INT_EQ(counts[2], 12);

    /* The second call reads split.csv back, which must accept the mixed groups. */
    if (!split_images(data_dir, "random", again))
        return;
    for (int i = 0; i < IMAGES; i++)
        CHECK_INT_EQ(again[i], parts[i]);
}

static void test_method_names(void)
{
    ap_config cfg;
    ap_config_defaults(&cfg);
    CHECK_INT_EQ(cfg.split.method, AP_SPLIT_METHOD_GROUP);
    ap_error err = {0};
    CHECK_INT_EQ(ap_config_set(&cfg, "split.method=random", &err), AP_OK);
    CHECK_INT_EQ(cfg.split.method, AP_SPLIT_METHOD_RANDOM);
    CHECK(ap_config_set(&cfg, "split.method=shuffle", &err) != AP_OK);
    CHECK_STR_CONTAINS(err.message, "shuffle");
    CHECK_INT_EQ(cfg.split.method, AP_SPLIT_METHOD_RANDOM);
}

int main(void)
{
    ap_log_threshold = AP_LOG_WARN;
    const char *dir = check_temp_dir("apiary-split-method");
    if (dir == NULL)
        return 1;
    snprintf(work_dir, sizeof(work_dir), "%s", dir);
    char data_dir[1100];
    snprintf(data_dir, sizeof(data_dir), "%s/data", work_dir);
    make_dataset(data_dir);

    test_method_names();
    test_group_method(data_dir);
    test_random_method(data_dir);
    return check_finish();
}
