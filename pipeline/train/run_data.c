#include "pipeline/train/run_data.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/common/log.h"
#include "pipeline/store/store.h"

/* Problems listed one by one in the log before the rest are only counted. */
#define LOGGED_PROBLEMS_MAX 20

static ap_status load_images(const ap_config *cfg, const char *run_dir, ap_run_data *data,
                             ap_error *err)
{
    char path[AP_PATH_MAX + 64];
    const char *labels[AP_MAX_LABELS];
    for (int i = 0; i < cfg->data.label_count; i++)
        labels[i] = cfg->data.labels[i];

    /* data.root may be an s3:// prefix; its local copy is read instead. */
    ap_data_config data_cfg = cfg->data;
    ap_status status = ap_store_materialize(cfg->data.root, cfg, data_cfg.root, err);
    if (status == AP_OK)
        snprintf(data->local_root, sizeof(data->local_root), "%s", data_cfg.root);
    if (status == AP_OK)
        status = ap_path_join(path, sizeof(path), data_cfg.root, cfg->data.manifest, err);
    /* A random split treats every image as its own group. */
    const char *group_column =
        cfg->split.method == AP_SPLIT_METHOD_RANDOM ? "" : cfg->data.group_column;
    if (status == AP_OK)
        status = ap_manifest_load(path, labels, cfg->data.label_count, group_column,
                                  &data->manifest, err);
    if (status == AP_OK)
        status = ap_sha256_file(path, data->manifest_hash, err);
    if (status != AP_OK)
        return status;

    char cache_dir[AP_PATH_MAX + 16];
    snprintf(cache_dir, sizeof(cache_dir), "%s/cache", run_dir);
    status = ap_mkdirs(cache_dir, err);
    if (status == AP_OK)
        status = ap_path_join(path, sizeof(path), cache_dir, "images.bin", err);
    if (status != AP_OK)
        return status;
    return ap_image_set_load(&data_cfg, &data->manifest, path, &data->images, &data->report,
                             err);
}

static ap_status load_or_make_split(const ap_config *cfg, const char *run_dir, ap_run_data *data,
                                    uint8_t *row_part, ap_error *err)
{
    char path[AP_PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/split.csv", run_dir);
    ap_status status;
    if (ap_path_exists(path)) {
        status = ap_split_read(path, &data->manifest, row_part, err);
    } else {
        status = ap_split_assign(&data->manifest, cfg->split.val_fraction,
                                 cfg->split.test_fraction, cfg->seed, row_part, err);
        if (status == AP_OK)
            status = ap_split_write(path, &data->manifest, row_part, err);
    }
    if (status == AP_OK)
        status = ap_sha256_file(path, data->split_hash, err);
    return status;
}

static ap_status index_parts(ap_run_data *data, const uint8_t *row_part, ap_error *err)
{
    for (int part = 0; part < 3; part++) {
        data->part_images[part] = malloc((data->images.count + 1) * sizeof(size_t));
        data->part_count[part] = 0;
        if (data->part_images[part] == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate split indices");
    }
    for (size_t i = 0; i < data->images.count; i++) {
        int part = row_part[data->images.row_index[i]];
        data->part_images[part][data->part_count[part]++] = i;
    }
    for (int part = 0; part < 3; part++)
        if (data->part_count[part] == 0)
            return ap_error_set(err, AP_ERR_INVALID,
                                "the %s split has no readable images; add images or groups, or "
                                "change split.val_fraction and split.test_fraction",
                                ap_split_part_name((ap_split_part)part));
    return AP_OK;
}

ap_status ap_run_data_prepare(const ap_config *cfg, const char *run_dir, ap_run_data *data,
                              ap_error *err)
{
    memset(data, 0, sizeof(*data));
    ap_status status = load_images(cfg, run_dir, data, err);
    if (status != AP_OK)
        return status;

    uint8_t *row_part = malloc(data->manifest.row_count + 1);
    if (row_part == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the split");
    status = load_or_make_split(cfg, run_dir, data, row_part, err);
    if (status == AP_OK)
        status = index_parts(data, row_part, err);
    free(row_part);
    return status;
}

void ap_run_data_free(ap_run_data *data)
{
    for (int part = 0; part < 3; part++)
        free(data->part_images[part]);
    ap_image_set_free(&data->images);
    ap_data_report_free(&data->report);
    ap_manifest_free(&data->manifest);
    memset(data, 0, sizeof(*data));
}

void ap_run_data_label_counts(const ap_run_data *data, ap_split_part part, int label,
                              long *positives, long *negatives, long *unknown)
{
    *positives = *negatives = *unknown = 0;
    const ap_image_set *images = &data->images;
    for (size_t i = 0; i < data->part_count[part]; i++) {
        size_t image = data->part_images[part][i];
        int8_t value = images->labels[image * (size_t)images->label_count + (size_t)label];
        if (value == 1)
            (*positives)++;
        else if (value == 0)
            (*negatives)++;
        else
            (*unknown)++;
    }
}

static void log_problems(const ap_data_report *report)
{
    for (size_t i = 0; i < report->bad_count && i < LOGGED_PROBLEMS_MAX; i++)
        AP_WARN("skipped image %s: %s", report->bad_images[i].file, report->bad_images[i].reason);
    for (size_t i = 0; i < report->missing_count && i < LOGGED_PROBLEMS_MAX; i++)
        AP_WARN("manifest row has no image file: %s", report->missing_files[i]);
    for (size_t i = 0; i < report->unlisted_count && i < LOGGED_PROBLEMS_MAX; i++)
        AP_WARN("image file has no manifest row: %s", report->unlisted_files[i]);
    if (report->bad_count + report->missing_count + report->unlisted_count > 0)
        AP_WARN("data problems: %zu unreadable, %zu missing, %zu unlisted (details in "
                "data_report.json)",
                report->bad_count, report->missing_count, report->unlisted_count);
}

void ap_run_data_log_summary(const ap_run_data *data)
{
    log_problems(&data->report);
    AP_INFO("images: %zu readable of %zu manifest rows; train %zu, val %zu, test %zu",
            data->images.count, data->manifest.row_count, data->part_count[AP_SPLIT_TRAIN],
            data->part_count[AP_SPLIT_VAL], data->part_count[AP_SPLIT_TEST]);
    for (int label = 0; label < data->manifest.label_count; label++) {
        char line[256];
        int used = snprintf(line, sizeof(line), "label %-14s", data->manifest.label_names[label]);
        for (int part = 0; part < 3; part++) {
            long pos, neg, unknown;
            ap_run_data_label_counts(data, (ap_split_part)part, label, &pos, &neg, &unknown);
            used += snprintf(line + used, sizeof(line) - (size_t)used, " %s %ld+/%ld-/%ld?",
                             ap_split_part_name((ap_split_part)part), pos, neg, unknown);
        }
        AP_INFO("%s", line);
    }
}

ap_status ap_run_data_write_report(const ap_run_data *data, const char *path, ap_error *err)
{
    const ap_data_report *report = &data->report;
    json_t *bad = json_array(), *missing = json_array(), *unlisted = json_array();
    for (size_t i = 0; i < report->bad_count; i++)
        json_array_append_new(bad, json_pack("{s:s, s:s}", "file", report->bad_images[i].file,
                                             "reason", report->bad_images[i].reason));
    for (size_t i = 0; i < report->missing_count; i++)
        json_array_append_new(missing, json_string(report->missing_files[i]));
    for (size_t i = 0; i < report->unlisted_count; i++)
        json_array_append_new(unlisted, json_string(report->unlisted_files[i]));
    json_t *root = json_pack("{s:I, s:I, s:o, s:o, s:o}", "manifest_rows",
                             (json_int_t)data->manifest.row_count, "readable_images",
                             (json_int_t)data->images.count, "unreadable", bad,
                             "missing_files", missing, "unlisted_files", unlisted);
    char *text = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (text == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot encode %s", path);
    ap_status status = ap_write_atomic(path, text, strlen(text), err);
    free(text);
    return status;
}

/* True for NAME.tmp.XXXXXX, the pattern ap_atomic_open passes to mkstemp. */
static bool is_atomic_temp(const char *name)
{
    const char *marker = strstr(name, ".tmp.");
    if (marker == NULL || marker == name)
        return false;
    const char *suffix = marker + strlen(".tmp.");
    if (strlen(suffix) != 6)
        return false;
    for (const char *c = suffix; *c != '\0'; c++)
        if (!isalnum((unsigned char)*c))
            return false;
    return true;
}

static ap_status remove_temps_in(const char *dir, ap_error *err)
{
    DIR *listing = opendir(dir);
    if (listing == NULL)
        return errno == ENOENT
                   ? AP_OK
                   : ap_error_set(err, AP_ERR_IO, "cannot list %s: %s", dir, strerror(errno));
    ap_status status = AP_OK;
    const struct dirent *entry;
    while (status == AP_OK && (entry = readdir(listing)) != NULL) {
        if (!is_atomic_temp(entry->d_name))
            continue;
        char path[AP_PATH_MAX + 320];
        snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
        if (unlink(path) == 0)
            AP_INFO("removed %s, left by a writer that stopped before finishing it", path);
        else if (errno != ENOENT)
            status = ap_error_set(err, AP_ERR_IO, "cannot remove the stale temporary file %s: %s",
                                  path, strerror(errno));
    }
    closedir(listing);
    return status;
}

ap_status ap_run_remove_stale_temps(const char *run_dir, ap_error *err)
{
    char cache_dir[AP_PATH_MAX + 16];
    snprintf(cache_dir, sizeof(cache_dir), "%s/cache", run_dir);
    ap_status status = remove_temps_in(run_dir, err);
    if (status == AP_OK)
        status = remove_temps_in(cache_dir, err);
    return status;
}
