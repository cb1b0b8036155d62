#include "pipeline/score/score_input.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline/data/dataset.h"

#define LIST_PATH_MAX  4096
#define LIST_MAX_DEPTH 64

/* ---- Names ---- */

bool ap_score_is_image_name(const char *name)
{
    static const char *const extensions[] = {".jpg", ".jpeg", ".png"};
    size_t length = strlen(name);
    for (size_t i = 0; i < sizeof(extensions) / sizeof(extensions[0]); i++) {
        size_t extension_length = strlen(extensions[i]);
        if (length > extension_length &&
            strcasecmp(name + length - extension_length, extensions[i]) == 0)
            return true;
    }
    return false;
}

size_t ap_score_utf8_length(const unsigned char *text)
{
    unsigned char first = text[0];
    if (first < 0x80)
        return 1;
    size_t length;
    unsigned long code;
    if (first >= 0xc2 && first <= 0xdf) {
        length = 2;
        code = first & 0x1f;
    } else if (first >= 0xe0 && first <= 0xef) {
        length = 3;
        code = first & 0x0f;
    } else if (first >= 0xf0 && first <= 0xf4) {
        length = 4;
        code = first & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < length; i++) {
        if ((text[i] & 0xc0) != 0x80)
            return 0;
        code = (code << 6) | (text[i] & 0x3f);
    }
    static const unsigned long smallest[] = {0, 0, 0x80, 0x800, 0x10000};
    if (code < smallest[length] || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff))
        return 0;
    return length;
}

bool ap_score_is_utf8(const char *text)
{
    const unsigned char *at = (const unsigned char *)text;
    while (*at != '\0') {
        size_t length = ap_score_utf8_length(at);
        if (length == 0)
            return false;
        at += length;
    }
    return true;
}

/* ---- Listing a folder ---- */

typedef struct {
    ap_score_inputs *out;
    size_t capacity;
    dev_t devices[LIST_MAX_DEPTH]; /* the folders being listed, outermost first */
    ino_t inodes[LIST_MAX_DEPTH];
    int depth;
} listing;

static ap_status add_path(listing *list, const char *relative, ap_error *err)
{
    ap_score_inputs *out = list->out;
    if (!ap_score_is_utf8(relative)) {
        out->rejected++;
        return AP_OK;
    }
    if (out->count == list->capacity) {
        size_t capacity = list->capacity > 0 ? 2 * list->capacity : 256;
        char **paths = realloc(out->paths, capacity * sizeof(*paths));
        if (paths == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate a list of %zu images",
                                capacity);
        out->paths = paths;
        list->capacity = capacity;
    }
    out->paths[out->count] = strdup(relative);
    if (out->paths[out->count] == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate image path %s", relative);
    out->count++;
    return AP_OK;
}

static ap_status enter_folder(listing *list, const char *folder, ap_error *err)
{
    struct stat info;
    if (stat(folder, &info) != 0)
        return ap_error_set(err, AP_ERR_IO, "cannot read folder %s: %s", folder, strerror(errno));
    for (int i = 0; i < list->depth; i++)
        if (list->devices[i] == info.st_dev && list->inodes[i] == info.st_ino)
            return ap_error_set(err, AP_ERR_INVALID,
                                "folder %s links back to one of its parents; remove the "
                                "symbolic link or point the input below it",
                                folder);
    if (list->depth == LIST_MAX_DEPTH)
        return ap_error_set(err, AP_ERR_LIMIT,
                            "folder %s is nested more than %d levels below the input", folder,
                            LIST_MAX_DEPTH);
    list->devices[list->depth] = info.st_dev;
    list->inodes[list->depth] = info.st_ino;
    list->depth++;
    return AP_OK;
}

static ap_status list_folder(listing *list, const char *folder, const char *relative,
                             ap_error *err);

/* Add one folder entry: recurse into folders, keep image files. An image
 * name whose target is missing (a dangling link) is kept, so that its row
 * records the read error. */
static ap_status list_entry(listing *list, const char *folder, const char *relative,
                            const char *name, ap_error *err)
{
    char path[LIST_PATH_MAX], child[LIST_PATH_MAX];
    int path_length = snprintf(path, sizeof(path), "%s/%s", folder, name);
    int child_length = relative[0] != '\0' ? snprintf(child, sizeof(child), "%s/%s", relative, name)
                                           : snprintf(child, sizeof(child), "%s", name);
    if (path_length >= (int)sizeof(path) || child_length >= (int)sizeof(child))
        return ap_error_set(err, AP_ERR_LIMIT,
                            "path %s/%s is longer than %d bytes; shorten the folder names", folder,
                            name, LIST_PATH_MAX - 1);
    struct stat info;
    if (stat(path, &info) != 0)
        return ap_score_is_image_name(name) ? add_path(list, child, err) : AP_OK;
    if (S_ISDIR(info.st_mode))
        return list_folder(list, path, child, err);
    if (S_ISREG(info.st_mode) && ap_score_is_image_name(name))
        return add_path(list, child, err);
    return AP_OK;
}

static ap_status list_folder(listing *list, const char *folder, const char *relative, ap_error *err)
{
    ap_status status = enter_folder(list, folder, err);
    if (status != AP_OK)
        return status;
    DIR *dir = opendir(folder);
    if (dir == NULL)
        return ap_error_set(err, AP_ERR_IO, "cannot list folder %s: %s", folder, strerror(errno));
    for (;;) {
        errno = 0;
        struct dirent *entry = readdir(dir);
        if (entry == NULL) {
            if (errno != 0)
                status = ap_error_set(err, AP_ERR_IO, "cannot list folder %s: %s", folder,
                                      strerror(errno));
            break;
        }
        if (entry->d_name[0] == '.')
            continue;
        status = list_entry(list, folder, relative, entry->d_name, err);
        if (status != AP_OK)
            break;
    }
    closedir(dir);
    list->depth--;
    return status;
}

static int compare_paths(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The local path of input, or NULL for an input this build cannot read
 * (a URI other than file://). */
static const char *input_path(const char *input)
{
    if (strncmp(input, "file://", 7) == 0)
        return input + 7;
    if (strstr(input, "://") != NULL)
        return NULL;
    return input;
}

/* The folder that image paths are relative to: the input itself, or the
 * folder of a manifest or listing file. */
static ap_status input_folder(const char *input, char *out, size_t out_size, bool *manifest,
                              ap_error *err)
{
    const char *path = input_path(input);
    if (path == NULL)
        return ap_error_set(err, AP_ERR_INVALID, "cannot read images from input %s", input);
    struct stat info;
    ap_score_list_kind kind = ap_score_list_kind_of(path);
    bool list_file = kind != AP_SCORE_LIST_NONE && stat(path, &info) == 0 && S_ISREG(info.st_mode);
    *manifest = list_file && kind == AP_SCORE_LIST_MANIFEST;
    const char *slash = list_file ? strrchr(path, '/') : NULL;
    int length;
    if (!list_file)
        length = snprintf(out, out_size, "%s", path);
    else if (slash == NULL)
        length = snprintf(out, out_size, ".");
    else if (slash == path)
        length = snprintf(out, out_size, "/");
    else
        length = snprintf(out, out_size, "%.*s", (int)(slash - path), path);
    if (length < 0 || (size_t)length >= out_size)
        return ap_error_set(err, AP_ERR_LIMIT, "input path %s is longer than %zu bytes", path,
                            out_size - 1);
    return AP_OK;
}

ap_status ap_score_list_inputs(const char *input, ap_score_inputs *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    const char *folder = input_path(input);
    if (folder == NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "input %s: only local folders, manifest or listing files and "
                            "file:// URIs are read here; fetch other URIs through the blob "
                            "store first",
                            input);
    if (folder[0] == '\0')
        return ap_error_set(err, AP_ERR_INVALID,
                            "no input folder; set score.input or pass --input DIR");
    struct stat info;
    if (stat(folder, &info) != 0)
        return ap_error_set(err, errno == ENOENT ? AP_ERR_NOT_FOUND : AP_ERR_IO,
                            "cannot open input %s: %s; set score.input or --input to a "
                            "folder of images, a manifest or a listing",
                            folder, strerror(errno));
    if (S_ISREG(info.st_mode))
        return ap_score_read_list_file(folder, out, err);
    if (!S_ISDIR(info.st_mode))
        return ap_error_set(err, AP_ERR_INVALID,
                            "input %s is not a folder or a file; pass a folder of images", folder);

    listing list = {.out = out};
    ap_status status = list_folder(&list, folder, "", err);
    if (status != AP_OK) {
        ap_score_inputs_free(out);
        return status;
    }
    if (out->count > 1)
        qsort(out->paths, out->count, sizeof(*out->paths), compare_paths);
    return AP_OK;
}

void ap_score_inputs_free(ap_score_inputs *inputs)
{
    for (size_t i = 0; inputs->paths != NULL && i < inputs->count; i++)
        free(inputs->paths[i]);
    free(inputs->paths);
    memset(inputs, 0, sizeof(*inputs));
}

/* ---- Reading one image ---- */

static ap_status read_all(int fd, const char *path, uint8_t *data, size_t size, ap_error *err)
{
    size_t done = 0;
    while (done < size) {
        ssize_t got = read(fd, data + done, size - done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return ap_error_set(err, AP_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        if (got == 0)
            return ap_error_set(err, AP_ERR_IO, "cannot read %s: the file shrank while reading",
                                path);
        done += (size_t)got;
    }
    return AP_OK;
}

static ap_status reserve(ap_score_buffer *buffer, size_t size, const char *path, ap_error *err)
{
    if (size <= buffer->capacity)
        return AP_OK;
    size_t capacity = buffer->capacity > 0 ? buffer->capacity : 1 << 16;
    while (capacity < size)
        capacity *= 2;
    uint8_t *data = realloc(buffer->data, capacity);
    if (data == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %zu bytes to read %s", capacity,
                            path);
    buffer->data = data;
    buffer->capacity = capacity;
    return AP_OK;
}

ap_status ap_score_read_input(const char *input, const char *relative, size_t max_bytes,
                              ap_score_buffer *buffer, size_t *size, ap_error *err)
{
    *size = 0;
    char folder[LIST_PATH_MAX], path[LIST_PATH_MAX];
    bool manifest = false;
    ap_status found = input_folder(input, folder, sizeof(folder), &manifest, err);
    if (found != AP_OK)
        return found;
    if (snprintf(path, sizeof(path), "%s/%s", folder, relative) >= (int)sizeof(path))
        return ap_error_set(err, AP_ERR_LIMIT, "path %s/%s is longer than %d bytes", folder,
                            relative, LIST_PATH_MAX - 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && manifest) {
        /* As in training, a manifest's rows may name files in images/. */
        char beside[LIST_PATH_MAX];
        if (snprintf(beside, sizeof(beside), "%s/%s/%s", folder, AP_MANIFEST_IMAGES_FOLDER,
                     relative) >= (int)sizeof(beside))
            return ap_error_set(err, AP_ERR_LIMIT, "path %s/%s/%s is longer than %d bytes", folder,
                                AP_MANIFEST_IMAGES_FOLDER, relative, LIST_PATH_MAX - 1);
        fd = open(beside, O_RDONLY | O_CLOEXEC);
        if (fd < 0 && errno == ENOENT)
            return ap_error_set(err, AP_ERR_IO, "cannot open %s or %s: no such file", path, beside);
        memcpy(path, beside, sizeof(path));
    }
    if (fd < 0)
        return ap_error_set(err, AP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    struct stat info;
    ap_status status = AP_OK;
    if (fstat(fd, &info) != 0)
        status = ap_error_set(err, AP_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    else if ((uint64_t)info.st_size > max_bytes)
        status = ap_error_set(err, AP_ERR_LIMIT,
                              "%s is %lld bytes, over the limit of %zu bytes "
                              "(data.max_image_bytes)",
                              path, (long long)info.st_size, max_bytes);
    if (status == AP_OK)
        status = reserve(buffer, (size_t)info.st_size + 1, path, err);
    if (status == AP_OK)
        status = read_all(fd, path, buffer->data, (size_t)info.st_size, err);
    close(fd);
    if (status == AP_OK)
        *size = (size_t)info.st_size;
    return status;
}

void ap_score_buffer_free(ap_score_buffer *buffer)
{
    free(buffer->data);
    buffer->data = NULL;
    buffer->capacity = 0;
}
