#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/data/manifest.h"
#include "pipeline/data/split.h"
#include "pipeline/validate/validate_internal.h"

/* Examples named in a failed check's detail. */
#define EXAMPLES_MAX 3
/* The dataset layout with labels.csv beside an images folder, as the image loader reads it. */
#define IMAGES_FOLDER "images"

static ap_data_check *add_check(ap_validation *v, const char *name)
{
    ap_data_check *check = &v->checks[v->check_count++];
    memset(check, 0, sizeof(*check));
    snprintf(check->name, sizeof(check->name), "%s", name);
    return check;
}

/* Append printf output to out, which contains *used bytes, up to the end of out. */
static void append(char *out, size_t out_size, size_t *used, const char *format, ...)
    __attribute__((format(printf, 4, 5)));

static void append(char *out, size_t out_size, size_t *used, const char *format, ...)
{
    if (*used >= out_size)
        return;
    va_list args;
    va_start(args, format);
    int written = vsnprintf(out + *used, out_size - *used, format, args);
    va_end(args);
    if (written > 0)
        *used += (size_t)written;
}

/* ---- Groups on both sides of the split ---- */

typedef struct {
    const char *group;
    int part;
} group_entry;

static int compare_group_entries(const void *a, const void *b)
{
    const group_entry *x = a, *y = b;
    int order = strcmp(x->group, y->group);
    return order != 0 ? order : (x->part > y->part) - (x->part < y->part);
}

static ap_status read_group_entries(const char *path, const ap_csv_table *table,
                                    group_entry *entries, ap_error *err)
{
    int group_column = ap_csv_column(table, "group"), part_column = ap_csv_column(table, "part");
    if (group_column < 0 || part_column < 0)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s has no group or part column; expected file,group,part as "
                            "apiary train writes it",
                            path);
    for (size_t i = 0; i < table->row_count; i++) {
        char **fields = table->fields + i * (size_t)table->column_count;
        const char *part = fields[part_column];
        entries[i].group = fields[group_column];
        entries[i].part = -1;
        for (int p = AP_SPLIT_TRAIN; p <= AP_SPLIT_TEST; p++)
            if (strcmp(part, ap_split_part_name((ap_split_part)p)) == 0)
                entries[i].part = p;
        if (entries[i].part < 0)
            return ap_error_set(err, AP_ERR_FORMAT,
                                "%s:%d: invalid part \"%s\"; expected train, val or test", path,
                                table->lines[i], part);
    }
    return AP_OK;
}

/* Walk the sorted entries one group at a time and describe the groups
 * that have test images and train or val images. */
static void describe_groups(const group_entry *entries, size_t count, ap_data_check *check)
{
    size_t groups = 0, test_groups = 0, shared = 0, used = 0;
    char examples[512] = "";
    for (size_t i = 0; i < count;) {
        unsigned parts = 0;
        size_t start = i;
        for (; i < count && strcmp(entries[i].group, entries[start].group) == 0; i++)
            parts |= 1u << entries[i].part;
        groups++;
        bool in_test = (parts & (1u << AP_SPLIT_TEST)) != 0;
        test_groups += in_test;
        if (!in_test || parts == (1u << AP_SPLIT_TEST))
            continue;
        if (shared < EXAMPLES_MAX)
            append(examples, sizeof(examples), &used, "%s\"%.60s\" (test and %s)",
                   shared > 0 ? ", " : "", entries[start].group,
                   (parts & (1u << AP_SPLIT_TRAIN)) ? "train" : "val");
        shared++;
    }
    check->passed = shared == 0;
    if (check->passed)
        snprintf(check->detail, sizeof(check->detail),
                 "each of the %zu groups in split.csv is on one side; the %zu test groups share "
                 "no group with train or val",
                 groups, test_groups);
    else
        snprintf(check->detail, sizeof(check->detail),
                 "%zu of the %zu test groups also have images in train or val, for example %s; "
                 "test metrics on images the model has seen in training overstate it, so make a "
                 "new group-aware split and retrain",
                 shared, test_groups, examples);
}

ap_status ap_validation_check_groups(ap_validation *v, ap_error *err)
{
    char path[AP_PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/split.csv", v->run_dir);
    uint8_t *text = NULL;
    size_t size = 0;
    ap_status status = ap_read_file(path, AP_MANIFEST_MAX_BYTES, &text, &size, err);
    if (status != AP_OK)
        return status;
    ap_csv_table table;
    status = ap_csv_parse((const char *)text, size, path, &table, err);
    free(text);
    if (status != AP_OK)
        return status;

    group_entry *entries = malloc((table.row_count + 1) * sizeof(*entries));
    if (entries == NULL)
        status = ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the group check of %s", path);
    else
        status = read_group_entries(path, &table, entries, err);
    if (status == AP_OK) {
        qsort(entries, table.row_count, sizeof(*entries), compare_group_entries);
        describe_groups(entries, table.row_count, add_check(v, "group_overlap"));
    }
    free(entries);
    ap_csv_free(&table);
    return status;
}

/* ---- Identical image files ---- */

typedef struct {
    char hash[65];
    size_t image; /* index into the run's image set */
} file_hash;

static int compare_file_hashes(const void *a, const void *b)
{
    return strcmp(((const file_hash *)a)->hash, ((const file_hash *)b)->hash);
}

static const char *image_file(const ap_validation *v, size_t image)
{
    return v->data.manifest.rows[v->data.images.row_index[image]].file;
}

/* Hash an image file where the image loader finds it: root/file, else root/images/file. */
static ap_status hash_image_file(const ap_validation *v, size_t image, char hex[65], ap_error *err)
{
    const char *root = v->data.local_root, *file = image_file(v, image);
    char path[2 * AP_PATH_MAX + 16];
    ap_status status = ap_path_join(path, sizeof(path), root, file, err);
    if (status == AP_OK && !ap_path_exists(path))
        snprintf(path, sizeof(path), "%s/%s/%s", root, IMAGES_FOLDER, file);
    if (status == AP_OK)
        status = ap_sha256_file(path, hex, err);
    return status;
}

static ap_status hash_parts(const ap_validation *v, const ap_split_part *parts, int part_count,
                            file_hash *out, size_t *count, ap_error *err)
{
    *count = 0;
    for (int p = 0; p < part_count; p++)
        for (size_t i = 0; i < v->data.part_count[parts[p]]; i++)
            out[(*count)++].image = v->data.part_images[parts[p]][i];
    long failed = -1;
#pragma omp parallel for schedule(dynamic, 16)
    for (long i = 0; i < (long)*count; i++) {
        if (hash_image_file(v, out[i].image, out[i].hash, NULL) != AP_OK) {
#pragma omp critical
            if (failed < 0 || i < failed)
                failed = i;
        }
    }
    /* Hash the first failed file again to get its message. */
    if (failed >= 0)
        return hash_image_file(v, out[failed].image, out[failed].hash, err);
    return AP_OK;
}

static void describe_duplicates(const ap_validation *v, const file_hash *seen, size_t seen_count,
                                const file_hash *test, size_t test_count, ap_data_check *check)
{
    size_t duplicates = 0, used = 0;
    char examples[640] = "";
    for (size_t i = 0; i < test_count; i++) {
        const file_hash *match =
            bsearch(&test[i], seen, seen_count, sizeof(*seen), compare_file_hashes);
        if (match == NULL)
            continue;
        if (duplicates < EXAMPLES_MAX)
            append(examples, sizeof(examples), &used, "%stest \"%.80s\" = \"%.80s\"",
                   duplicates > 0 ? ", " : "", image_file(v, test[i].image),
                   image_file(v, match->image));
        duplicates++;
    }
    check->passed = duplicates == 0;
    if (check->passed)
        snprintf(check->detail, sizeof(check->detail),
                 "none of the %zu test image files has the SHA-256 of one of the %zu train or "
                 "val image files",
                 test_count, seen_count);
    else
        snprintf(check->detail, sizeof(check->detail),
                 "%zu of the %zu test image files are byte-identical (same SHA-256) to train or "
                 "val files, for example %s; remove the copies from the manifest or give them "
                 "one group, then retrain",
                 duplicates, test_count, examples);
}

ap_status ap_validation_check_duplicates(ap_validation *v, ap_error *err)
{
    size_t total = v->data.images.count;
    file_hash *seen = malloc((total + 1) * sizeof(*seen));
    file_hash *test = malloc((total + 1) * sizeof(*test));
    size_t seen_count = 0, test_count = 0;
    ap_status status = AP_OK;
    if (seen == NULL || test == NULL)
        status =
            ap_error_set(err, AP_ERR_NOMEM, "cannot allocate hashes of %zu image files", total);
    const ap_split_part seen_parts[] = {AP_SPLIT_TRAIN, AP_SPLIT_VAL};
    const ap_split_part test_part[] = {AP_SPLIT_TEST};
    if (status == AP_OK)
        status = hash_parts(v, seen_parts, 2, seen, &seen_count, err);
    if (status == AP_OK)
        status = hash_parts(v, test_part, 1, test, &test_count, err);
    if (status == AP_OK) {
        qsort(seen, seen_count, sizeof(*seen), compare_file_hashes);
        describe_duplicates(v, seen, seen_count, test, test_count,
                            add_check(v, "duplicate_images"));
    }
    free(seen);
    free(test);
    return status;
}

/* ---- Test support ---- */

void ap_validation_check_support(ap_validation *v)
{
    long positives[AP_MAX_LABELS], negatives[AP_MAX_LABELS], unknown;
    int label_count = v->cfg->data.label_count;
    for (int l = 0; l < label_count; l++)
        ap_run_data_label_counts(&v->data, AP_SPLIT_TEST, l, &positives[l], &negatives[l],
                                 &unknown);
    ap_gate_check_support(v->rules, v->rule_count, v->cfg->data.labels, label_count, positives,
                          negatives, v->cfg->gate.min_positives, v->cfg->gate.min_negatives,
                          add_check(v, "test_support"));
}
