/* The BeeDataset layout: data.json maps each image name to the booleans
 * varroa, pollen, wasps and cooling, and the images sit in images_300/,
 * images_200/ and images_150/ (the same crops at three heights). Each of
 * those folders gets a labels.csv, which makes it a dataset folder that the
 * rest of apiary reads like any other. */

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/store/dataset_fetch.h"
#include "pipeline/store/store.h"
#include "pipeline/store/store_text.h"

#define BEE_JSON      "data.json"
#define BEE_JSON_MAX  ((size_t)64 << 20)
#define IMAGES_PREFIX "images_"

static const char *const bee_labels[] = {"varroa", "pollen", "wasps", "cooling"};
#define BEE_LABEL_COUNT 4

static bool is_folder(const char *path)
{
    struct stat info;
    return lstat(path, &info) == 0 && S_ISDIR(info.st_mode);
}

/* Find data.json in dir or in its only subfolder; the folder goes to out. */
static bool find_bee_folder(const char *dir, char *out, size_t size)
{
    char path[AP_PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/%s", dir, BEE_JSON);
    if (ap_path_exists(path)) {
        snprintf(out, size, "%s", dir);
        return true;
    }
    DIR *handle = opendir(dir);
    if (handle == NULL)
        return false;
    int folders = 0;
    char only[AP_PATH_MAX * 2] = "";
    struct dirent *entry;
    while ((entry = readdir(handle)) != NULL) {
        if (entry->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
        if (is_folder(path)) {
            folders++;
            snprintf(only, sizeof(only), "%s", path);
        }
    }
    closedir(handle);
    if (folders != 1 ||
        snprintf(path, sizeof(path), "%s/%s", only, BEE_JSON) >= (int)sizeof(path) ||
        !ap_path_exists(path))
        return false;
    snprintf(out, size, "%s", only);
    return true;
}

/* Append one CSV field, quoted when it contains a comma, quote or line break. */
static void append_field(store_text *text, const char *field)
{
    if (strpbrk(field, ",\"\r\n") == NULL) {
        store_text_append_string(text, field);
        return;
    }
    store_text_append_string(text, "\"");
    for (const char *p = field; *p != '\0'; p++) {
        if (*p == '"')
            store_text_append(text, "\"", 1);
        store_text_append(text, p, 1);
    }
    store_text_append_string(text, "\"");
}

static ap_status append_row(store_text *text, const char *name, json_t *entry, ap_error *err)
{
    if (!json_is_object(entry))
        return ap_error_set(err, AP_ERR_FORMAT, "%s: the entry of %.200s is not an object",
                            BEE_JSON, name);
    /* The manifest reader rejects a backslash in a file name, so reject it here too. */
    if (strpbrk(name, "/\\") != NULL || ap_store_check_key(name, err) != AP_OK)
        return ap_error_set(err, AP_ERR_FORMAT, "%s: image name %.200s is not a plain file name",
                            BEE_JSON, name);
    append_field(text, name);
    for (int i = 0; i < BEE_LABEL_COUNT; i++) {
        json_t *value = json_object_get(entry, bee_labels[i]);
        if (json_is_boolean(value))
            store_text_append_string(text, json_is_true(value) ? ",1" : ",0");
        else if (json_is_integer(value) && json_integer_value(value) >= 0 &&
                 json_integer_value(value) <= 1)
            store_text_appendf(text, ",%d", (int)json_integer_value(value));
        else if (value == NULL || json_is_null(value))
            store_text_append_string(text, ","); /* unknown */
        else
            return ap_error_set(err, AP_ERR_FORMAT,
                                "%s: %.200s has %s that is not true, false, 0 or 1", BEE_JSON, name,
                                bee_labels[i]);
    }
    store_text_append_string(text, "\n");
    return AP_OK;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The labels.csv text for every image of data.json, in name order. */
static ap_status build_manifest(json_t *root, char **out, ap_error *err)
{
    *out = NULL;
    if (!json_is_object(root))
        return ap_error_set(err, AP_ERR_FORMAT, "%s is not a JSON object of image names", BEE_JSON);
    if (json_object_size(root) == 0)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s lists no images; the archive is incomplete, so download it again",
                            BEE_JSON);
    const char **names = calloc(json_object_size(root) + 1, sizeof(*names));
    if (names == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot sort %zu image names",
                            json_object_size(root));
    size_t count = 0;
    const char *name;
    json_t *entry;
    json_object_foreach(root, name, entry) names[count++] = name;
    qsort(names, count, sizeof(*names), compare_names);

    store_text text = {0};
    store_text_append_string(&text, "file,varroa,pollen,wasps,cooling\n");
    ap_status status = AP_OK;
    for (size_t i = 0; status == AP_OK && i < count; i++)
        status = append_row(&text, names[i], json_object_get(root, names[i]), err);
    free(names);
    if (status == AP_OK && (*out = store_text_take(&text)) == NULL)
        status = ap_error_set(err, AP_ERR_NOMEM, "cannot build labels.csv");
    store_text_free(&text);
    return status;
}

ap_status ap_dataset_convert_bee(const char *dir, int *manifests, char data_root[AP_PATH_MAX],
                                 ap_error *err)
{
    *manifests = 0;
    char folder[AP_PATH_MAX * 2], path[AP_PATH_MAX * 3];
    if (!find_bee_folder(dir, folder, sizeof(folder)))
        return AP_OK;
    snprintf(path, sizeof(path), "%s/%s", folder, BEE_JSON);
    json_error_t parse_error;
    json_t *root = json_load_file(path, 0, &parse_error);
    if (root == NULL)
        return ap_error_set(err, AP_ERR_FORMAT, "%s:%d: %s", path, parse_error.line,
                            parse_error.text);
    char *manifest = NULL;
    ap_status status = build_manifest(root, &manifest, err);
    json_decref(root);

    /* Largest images first, so data_root names the full-size crops. */
    static const char *const sizes[] = {"300", "200", "150"};
    for (size_t i = 0; status == AP_OK && i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        char images[AP_PATH_MAX * 3];
        snprintf(images, sizeof(images), "%s/%s%s", folder, IMAGES_PREFIX, sizes[i]);
        if (!is_folder(images))
            continue;
        if (snprintf(path, sizeof(path), "%s/labels.csv", images) >= (int)sizeof(path) ||
            strlen(images) >= AP_PATH_MAX) {
            status = ap_error_set(err, AP_ERR_INVALID, "path %.200s... is too long", images);
            break;
        }
        status = ap_write_atomic(path, manifest, strlen(manifest), err);
        if (status == AP_OK && (*manifests)++ == 0)
            memcpy(data_root, images, strlen(images) + 1);
    }
    free(manifest);
    return status;
}
