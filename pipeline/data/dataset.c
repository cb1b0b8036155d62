#include "pipeline/data/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "pipeline/data/image.h"
#include "pipeline/data/image_cache.h"

/* Deeper folders are not searched for unlisted files. */
#define SCAN_DEPTH_MAX 32
/* Problems quoted in the error message when too many rows fail. */
#define QUOTED_PROBLEMS 3

typedef enum { ROW_PENDING, ROW_DECODED, ROW_MISSING, ROW_BAD, ROW_FAILED } row_state;

/* Outcome of one manifest row, written by the thread that decoded it. */
typedef struct {
    row_state state;
    ap_status status;
    char reason[256];
} row_result;

typedef struct {
    char **items;
    size_t count;
    size_t capacity;
} string_list;

static ap_status append_string(string_list *list, const char *text, ap_error *err)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity > 0 ? 2 * list->capacity : 64;
        char **grown = realloc(list->items, capacity * sizeof(char *));
        if (grown == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate a list of %zu files", capacity);
        list->items = grown;
        list->capacity = capacity;
    }
    list->items[list->count] = strdup(text);
    if (list->items[list->count] == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate a file name");
    list->count++;
    return AP_OK;
}

static void free_strings(char **items, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(items[i]);
    free(items);
}

static void copy_truncated(char *out, size_t size, const char *text)
{
    size_t length = strnlen(text, size - 1);
    memcpy(out, text, length);
    out[length] = '\0';
}

static int compare_strings(const void *left, const void *right)
{
    return strcmp(*(const char *const *)left, *(const char *const *)right);
}

static ap_status check_inputs(const ap_data_config *cfg, const ap_manifest *manifest, ap_error *err)
{
    if (cfg->width <= 0 || cfg->height <= 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "data.width and data.height must be positive, not %dx%d", cfg->width,
                            cfg->height);
    if (cfg->max_image_bytes <= 0 || cfg->max_image_pixels <= 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "data.max_image_bytes (%lld) and data.max_image_pixels (%lld) must "
                            "be positive",
                            (long long)cfg->max_image_bytes, (long long)cfg->max_image_pixels);
    if (manifest->row_count == 0)
        return ap_error_set(err, AP_ERR_INVALID, "the manifest of %s has no rows", cfg->root);
    struct stat info;
    if (stat(cfg->root, &info) != 0 || !S_ISDIR(info.st_mode))
        return ap_error_set(err, AP_ERR_NOT_FOUND,
                            "dataset folder %s does not exist or is not a folder; check data.root",
                            cfg->root);
    return AP_OK;
}

/* Fills file from stat(root/relative). Returns false when it does not exist. */
static bool stat_row_file(const char *root, const char *relative, ap_row_file *file)
{
    char path[AP_PATH_MAX * 2];
    struct stat info;
    if (ap_path_join(path, sizeof(path), root, relative, NULL) != AP_OK) {
        file->state = AP_ROW_FILE_UNREADABLE;
        snprintf(file->reason, sizeof(file->reason), "path too long");
        return true;
    }
    if (stat(path, &info) != 0) {
        if (errno == ENOENT || errno == ENOTDIR)
            return false;
        file->state = AP_ROW_FILE_UNREADABLE;
        snprintf(file->reason, sizeof(file->reason), "cannot stat the file: %s", strerror(errno));
        return true;
    }
    if (!S_ISREG(info.st_mode)) {
        file->state = AP_ROW_FILE_UNREADABLE;
        snprintf(file->reason, sizeof(file->reason), "not a regular file");
        return true;
    }
    file->state = AP_ROW_FILE_FOUND;
    file->size = (int64_t)info.st_size;
    file->mtime_seconds = (int64_t)info.st_mtim.tv_sec;
    file->mtime_nanoseconds = (int64_t)info.st_mtim.tv_nsec;
    return true;
}

static ap_status locate_row_file(const char *root, const char *name, ap_row_file *file,
                                 ap_error *err)
{
    memset(file, 0, sizeof(*file));
    char under_images[AP_PATH_MAX * 2];
    snprintf(under_images, sizeof(under_images), "%s/%s", AP_MANIFEST_IMAGES_FOLDER, name);
    const char *relative = name;
    if (!stat_row_file(root, name, file)) {
        if (stat_row_file(root, under_images, file))
            relative = under_images;
        else
            file->state = AP_ROW_FILE_MISSING;
    }
    file->relative = strdup(relative);
    if (file->relative == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate a file name");
    return AP_OK;
}

static void free_row_files(ap_row_file *files, size_t count)
{
    for (size_t i = 0; files != NULL && i < count; i++)
        free(files[i].relative);
    free(files);
}

static bool has_image_extension(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot != NULL && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 ||
                           strcasecmp(dot, ".png") == 0);
}

/* Adds the image files below root/relative to found. Symbolic links to
 * files count. Links to folders are not followed, so a link loop cannot
 * recurse forever. */
static ap_status scan_folder(const char *root, const char *relative, int depth, string_list *found,
                             ap_error *err)
{
    char folder[AP_PATH_MAX * 2];
    ap_status status = ap_path_join(folder, sizeof(folder), root, relative, err);
    if (status != AP_OK)
        return status;
    DIR *dir = opendir(folder);
    if (dir == NULL)
        return ap_error_set(err, AP_ERR_IO, "cannot list folder %s: %s", folder, strerror(errno));
    struct dirent *entry;
    while (status == AP_OK && (entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        char child[AP_PATH_MAX * 2], path[AP_PATH_MAX * 2];
        status = ap_path_join(child, sizeof(child), relative, entry->d_name, err);
        if (status == AP_OK)
            status = ap_path_join(path, sizeof(path), root, child, err);
        struct stat info;
        if (status != AP_OK || lstat(path, &info) != 0)
            continue;
        bool is_link = S_ISLNK(info.st_mode);
        if (is_link && stat(path, &info) != 0)
            continue; /* a dangling link */
        if (S_ISDIR(info.st_mode) && !is_link && depth < SCAN_DEPTH_MAX)
            status = scan_folder(root, child, depth + 1, found, err);
        else if (S_ISREG(info.st_mode) && has_image_extension(entry->d_name))
            status = append_string(found, child, err);
    }
    closedir(dir);
    return status;
}

/* Lists image files under the root that no manifest row refers to. */
static ap_status find_unlisted_files(const char *root, const ap_row_file *files, size_t row_count,
                                     ap_data_report *report, ap_error *err)
{
    string_list found = {0};
    ap_status status = scan_folder(root, "", 0, &found, err);
    const char **listed = malloc(row_count * sizeof(char *));
    if (status == AP_OK && listed == NULL)
        status = ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %zu file names", row_count);
    if (status == AP_OK) {
        for (size_t i = 0; i < row_count; i++)
            listed[i] = files[i].relative;
        qsort(listed, row_count, sizeof(char *), compare_strings);
        /* found.items is NULL when the folder has no images. */
        if (found.count > 1)
            qsort(found.items, found.count, sizeof(char *), compare_strings);
    }
    string_list unlisted = {0};
    for (size_t i = 0; status == AP_OK && i < found.count; i++) {
        if (bsearch(&found.items[i], listed, row_count, sizeof(char *), compare_strings) == NULL)
            status = append_string(&unlisted, found.items[i], err);
    }
    free(listed);
    free_strings(found.items, found.count);
    report->unlisted_files = unlisted.items;
    report->unlisted_count = unlisted.count;
    return status;
}

static void decode_row(const ap_data_config *cfg, const ap_row_file *file,
                       const ap_image_limits *limits, uint8_t *slot, row_result *result)
{
    ap_error error = {0};
    char path[AP_PATH_MAX * 2];
    uint8_t *data = NULL;
    size_t size = 0;
    ap_image image = {0};
    ap_status status = ap_path_join(path, sizeof(path), cfg->root, file->relative, &error);
    if (status == AP_OK)
        status = ap_read_file(path, limits->max_bytes, &data, &size, &error);
    if (status == AP_OK) {
        status = ap_image_decode(data, size, limits, &image, &error);
        free(data);
    }
    if (status == AP_OK) {
        status = ap_image_resize(&image, cfg->width, cfg->height, cfg->resize, slot, &error);
        ap_image_free(&image);
    }

    result->status = status;
    if (status == AP_OK)
        result->state = ROW_DECODED;
    else if (status == AP_ERR_NOT_FOUND)
        result->state = ROW_MISSING; /* deleted since it was located */
    else if (status == AP_ERR_NOMEM)
        result->state = ROW_FAILED;
    else
        result->state = ROW_BAD;
    if (status != AP_OK)
        copy_truncated(result->reason, sizeof(result->reason), error.message);
}

/* Decodes every located row into its own slot of pixels, one image per
 * thread at a time. Images differ in size, hence the dynamic schedule. */
static void decode_rows(const ap_data_config *cfg, const ap_row_file *files, size_t row_count,
                        uint8_t *pixels, row_result *results)
{
    ap_image_limits limits = {(size_t)cfg->max_image_bytes, cfg->max_image_pixels};
    size_t image_bytes = (size_t)cfg->width * (size_t)cfg->height * 3;
#pragma omp parallel for schedule(dynamic)
    for (size_t i = 0; i < row_count; i++) {
        if (files[i].state == AP_ROW_FILE_FOUND)
            decode_row(cfg, &files[i], &limits, pixels + i * image_bytes, &results[i]);
    }
}

static void mark_unfound_rows(const ap_row_file *files, size_t row_count, row_result *results)
{
    for (size_t i = 0; i < row_count; i++) {
        if (files[i].state == AP_ROW_FILE_MISSING) {
            results[i].state = ROW_MISSING;
        } else if (files[i].state == AP_ROW_FILE_UNREADABLE) {
            results[i].state = ROW_BAD;
            copy_truncated(results[i].reason, sizeof(results[i].reason), files[i].reason);
        }
    }
}

static ap_status record_problems(const ap_manifest *manifest, const row_result *results,
                                 ap_data_report *report, ap_error *err)
{
    size_t row_count = manifest->row_count;
    report->bad_images = calloc(row_count, sizeof(ap_data_problem));
    report->missing_files = calloc(row_count, sizeof(char *));
    if (report->bad_images == NULL || report->missing_files == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the data report");
    for (size_t i = 0; i < row_count; i++) {
        char *file = NULL;
        if (results[i].state == ROW_BAD) {
            ap_data_problem *problem = &report->bad_images[report->bad_count++];
            file = problem->file = strdup(manifest->rows[i].file);
            problem->row = i;
            copy_truncated(problem->reason, sizeof(problem->reason), results[i].reason);
        } else if (results[i].state == ROW_MISSING) {
            file = report->missing_files[report->missing_count++] = strdup(manifest->rows[i].file);
        } else {
            continue;
        }
        if (file == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the data report");
    }
    return AP_OK;
}

/* Moves decoded images to the front of the pixel block in manifest order and
 * copies their labels. Slots only move towards the start, so memmove in
 * increasing order never overwrites an image that is still to be moved. */
static ap_status compact_images(const ap_manifest *manifest, const row_result *results,
                                ap_image_set *set, ap_error *err)
{
    size_t label_count = (size_t)manifest->label_count;
    size_t image_bytes = (size_t)set->width * (size_t)set->height * 3;
    set->labels = malloc(manifest->row_count * label_count + 1);
    set->row_index = malloc(manifest->row_count * sizeof(size_t));
    if (set->labels == NULL || set->row_index == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate labels for %zu images",
                            manifest->row_count);
    size_t count = 0;
    for (size_t i = 0; i < manifest->row_count; i++) {
        if (results[i].state != ROW_DECODED)
            continue;
        if (count != i)
            memmove(set->pixels + count * image_bytes, set->pixels + i * image_bytes, image_bytes);
        memcpy(set->labels + count * label_count, manifest->rows[i].labels, label_count);
        set->row_index[count] = i;
        count++;
    }
    set->count = count;
    if (count > 0 && count < manifest->row_count) {
        uint8_t *shrunk = realloc(set->pixels, count * image_bytes);
        if (shrunk != NULL)
            set->pixels = shrunk;
    }
    return AP_OK;
}

static ap_status first_failure(const row_result *results, size_t row_count, ap_error *err)
{
    for (size_t i = 0; i < row_count; i++) {
        if (results[i].state == ROW_FAILED)
            return ap_error_set(err, results[i].status, "%s", results[i].reason);
    }
    return AP_OK;
}

static ap_status decode_set(const ap_data_config *cfg, const ap_manifest *manifest,
                            const ap_row_file *files, ap_image_set *set, ap_data_report *report,
                            ap_error *err)
{
    size_t row_count = manifest->row_count;
    size_t image_bytes = (size_t)cfg->width * (size_t)cfg->height * 3;
    if (image_bytes > SIZE_MAX / row_count)
        return ap_error_set(err, AP_ERR_LIMIT, "%zu images of %dx%d do not fit in memory",
                            row_count, cfg->width, cfg->height);
    set->pixels = malloc(row_count * image_bytes);
    row_result *results = calloc(row_count, sizeof(row_result));
    if (set->pixels == NULL || results == NULL) {
        free(results);
        return ap_error_set(err, AP_ERR_NOMEM,
                            "cannot allocate %zu bytes for %zu images of %dx%d; lower data.width "
                            "and data.height or use fewer images",
                            row_count * image_bytes, row_count, cfg->width, cfg->height);
    }

    mark_unfound_rows(files, row_count, results);
    decode_rows(cfg, files, row_count, set->pixels, results);
    ap_status status = first_failure(results, row_count, err);
    if (status == AP_OK)
        status = record_problems(manifest, results, report, err);
    if (status == AP_OK)
        status = compact_images(manifest, results, set, err);
    if (status == AP_OK && set->count > 0)
        status = ap_image_set_hash(manifest, set, set->content_hash, err);
    free(results);
    return status;
}

ap_status ap_image_set_hash(const ap_manifest *manifest, const ap_image_set *set, char hex[65],
                            ap_error *err)
{
    ap_sha256_ctx *ctx = ap_sha256_begin();
    if (ctx == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate a SHA-256 context");
    size_t label_count = (size_t)set->label_count;
    size_t image_bytes = (size_t)set->width * (size_t)set->height * 3;
    ap_hash_u64(ctx, (uint64_t)set->width);
    ap_hash_u64(ctx, (uint64_t)set->height);
    ap_hash_u64(ctx, label_count);
    for (size_t i = 0; i < label_count; i++)
        ap_hash_string(ctx, manifest->label_names[i]);
    ap_hash_u64(ctx, set->count);
    for (size_t i = 0; i < set->count; i++) {
        ap_hash_string(ctx, manifest->rows[set->row_index[i]].file);
        ap_sha256_update(ctx, set->labels + i * label_count, label_count);
        ap_sha256_update(ctx, set->pixels + i * image_bytes, image_bytes);
    }
    ap_sha256_end(ctx, hex);
    return AP_OK;
}

/* Appends "file (reason)" for the first few problems to text. */
static void quote_problems(const ap_data_report *report, char *text, size_t size)
{
    size_t quoted = 0;
    for (size_t i = 0; i < report->bad_count && quoted < QUOTED_PROBLEMS; i++, quoted++) {
        size_t used = strlen(text);
        snprintf(text + used, size - used, "%s%s (%.120s)", quoted > 0 ? "; " : "",
                 report->bad_images[i].file, report->bad_images[i].reason);
    }
    for (size_t i = 0; i < report->missing_count && quoted < QUOTED_PROBLEMS; i++, quoted++) {
        size_t used = strlen(text);
        snprintf(text + used, size - used, "%s%s (file not found)", quoted > 0 ? "; " : "",
                 report->missing_files[i]);
    }
}

static ap_status check_problem_share(const ap_data_config *cfg, const ap_manifest *manifest,
                                     const ap_image_set *set, const ap_data_report *report,
                                     ap_error *err)
{
    size_t problems = report->bad_count + report->missing_count;
    double share = (double)problems / (double)manifest->row_count;
    if (set->count > 0 && share <= cfg->max_bad_fraction)
        return AP_OK;

    char quoted[640] = "";
    quote_problems(report, quoted, sizeof(quoted));
    if (set->count == 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "none of the %zu manifest rows in %s gave an image (%zu bad, %zu "
                            "missing); first problems: %s. Check data.root and the image files",
                            manifest->row_count, cfg->root, report->bad_count,
                            report->missing_count, quoted);
    return ap_error_set(err, AP_ERR_INVALID,
                        "%zu of %zu manifest rows in %s are unusable (%zu bad images, %zu "
                        "missing files), a fraction of %.4f above data.max_bad_fraction = %g; "
                        "first problems: %s. Fix or remove these rows, or raise "
                        "data.max_bad_fraction",
                        problems, manifest->row_count, cfg->root, report->bad_count,
                        report->missing_count, share, cfg->max_bad_fraction, quoted);
}

/* Locates every row's file, lists missing and unlisted files, and hashes
 * the cache key over the result. */
static ap_status survey_files(const ap_data_config *cfg, const ap_manifest *manifest,
                              ap_row_file *files, ap_data_report *report, char key[65],
                              ap_error *err)
{
    ap_status status = AP_OK;
    for (size_t i = 0; status == AP_OK && i < manifest->row_count; i++)
        status = locate_row_file(cfg->root, manifest->rows[i].file, &files[i], err);
    if (status == AP_OK)
        status = find_unlisted_files(cfg->root, files, manifest->row_count, report, err);
    if (status == AP_OK)
        status = ap_image_cache_key(cfg, manifest, files, key, err);
    return status;
}

/* Fills the report's missing files on a cache hit, from the survey. */
static ap_status record_missing(const ap_manifest *manifest, const ap_row_file *files,
                                ap_data_report *report, ap_error *err)
{
    report->missing_files = calloc(manifest->row_count, sizeof(char *));
    if (report->missing_files == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the data report");
    for (size_t i = 0; i < manifest->row_count; i++) {
        if (files[i].state != AP_ROW_FILE_MISSING)
            continue;
        char *file = strdup(manifest->rows[i].file);
        if (file == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the data report");
        report->missing_files[report->missing_count++] = file;
    }
    return AP_OK;
}

static ap_status load_set(const ap_data_config *cfg, const ap_manifest *manifest,
                          const char *cache_path, ap_image_set *out, ap_data_report *report,
                          ap_error *err)
{
    ap_row_file *files = calloc(manifest->row_count, sizeof(ap_row_file));
    if (files == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %zu manifest rows",
                            manifest->row_count);
    char key[65];
    bool hit = false;
    ap_status status = survey_files(cfg, manifest, files, report, key, err);
    if (status == AP_OK && cache_path != NULL)
        status = ap_image_cache_read(cache_path, key, manifest, cfg->width, cfg->height, out,
                                     report, &hit, err);
    if (status == AP_OK && hit)
        status = record_missing(manifest, files, report, err);
    if (status == AP_OK && !hit)
        status = decode_set(cfg, manifest, files, out, report, err);
    free_row_files(files, manifest->row_count);
    if (status == AP_OK)
        status = check_problem_share(cfg, manifest, out, report, err);
    if (status == AP_OK && cache_path != NULL && !hit)
        status = ap_image_cache_write(cache_path, key, manifest, out, report, err);
    return status;
}

ap_status ap_image_set_load(const ap_data_config *cfg, const ap_manifest *manifest,
                            const char *cache_path, ap_image_set *out, ap_data_report *report,
                            ap_error *err)
{
    memset(out, 0, sizeof(*out));
    memset(report, 0, sizeof(*report));
    ap_status status = check_inputs(cfg, manifest, err);
    if (status != AP_OK)
        return status;
    out->width = cfg->width;
    out->height = cfg->height;
    out->label_count = manifest->label_count;
    status = load_set(cfg, manifest, cache_path, out, report, err);
    if (status != AP_OK)
        ap_image_set_free(out);
    return status;
}

void ap_image_set_free(ap_image_set *set)
{
    if (set == NULL)
        return;
    free(set->pixels);
    free(set->labels);
    free(set->row_index);
    memset(set, 0, sizeof(*set));
}

void ap_data_report_free(ap_data_report *report)
{
    if (report == NULL)
        return;
    for (size_t i = 0; i < report->bad_count; i++)
        free(report->bad_images[i].file);
    free(report->bad_images);
    free_strings(report->missing_files, report->missing_count);
    free_strings(report->unlisted_files, report->unlisted_count);
    memset(report, 0, sizeof(*report));
}
