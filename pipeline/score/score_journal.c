#include "pipeline/score/score_journal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

static ap_status remember_image(ap_score_journal *journal, const char *image, ap_error *err)
{
    if (journal->image_count == journal->capacity) {
        size_t capacity = journal->capacity > 0 ? 2 * journal->capacity : 256;
        char **images = realloc(journal->images, capacity * sizeof(*images));
        if (images == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate a list of %zu scored images",
                                capacity);
        journal->images = images;
        journal->capacity = capacity;
    }
    journal->images[journal->image_count] = strdup(image);
    if (journal->images[journal->image_count] == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate image path %s", image);
    journal->image_count++;
    return AP_OK;
}

/* Parse one line and remember its image. AP_ERR_FORMAT means a damaged line. */
static ap_status read_line(ap_score_journal *journal, const char *line, size_t length,
                           const ap_score_model_info *model, ap_error *err)
{
    if (length == 0 || line[length - 1] != '\n')
        return ap_error_set(err, AP_ERR_FORMAT, "the line is cut off (no newline at its end)");
    ap_score_row row;
    json_t *json = NULL;
    ap_status status = ap_score_parse_row(line, length, model, &row, &json, err);
    if (status == AP_OK)
        status = remember_image(journal, row.image, err);
    json_decref(json);
    return status;
}

/* Read every line; *good_end receives the offset after the last good line.
 * Only the last line may be damaged. */
static ap_status read_lines(ap_score_journal *journal, FILE *file, const ap_score_model_info *model,
                            off_t *good_end, ap_error *err)
{
    char *line = NULL;
    size_t capacity = 0, line_number = 0, damaged_line = 0;
    ssize_t length;
    ap_error damage = {0};
    ap_status status = AP_OK;
    *good_end = 0;
    while (status == AP_OK && (length = getline(&line, &capacity, file)) > 0) {
        line_number++;
        if (damaged_line > 0) {
            status = ap_error_set(err, AP_ERR_FORMAT,
                                  "%s line %zu is damaged (%s) but is not the last line, so "
                                  "this is not a journal cut off by a crash; repair the file or "
                                  "score into another output folder",
                                  journal->path, damaged_line, damage.message);
            break;
        }
        status = read_line(journal, line, (size_t)length, model, &damage);
        if (status == AP_ERR_FORMAT) {
            damaged_line = line_number;
            status = AP_OK;
        } else if (status == AP_OK) {
            *good_end += (off_t)length;
        } else {
            *err = damage;
            ap_error_prefix(err, "%s line %zu", journal->path, line_number);
        }
    }
    if (status == AP_OK && ferror(file))
        status = ap_error_set(err, AP_ERR_IO, "cannot read %s: %s", journal->path, strerror(errno));
    free(line);
    return status;
}

static ap_status cut_damaged_tail(ap_score_journal *journal, off_t good_end, ap_error *err)
{
    struct stat info;
    if (fstat(journal->fd, &info) != 0)
        return ap_error_set(err, AP_ERR_IO, "cannot read %s: %s", journal->path, strerror(errno));
    if (info.st_size <= good_end)
        return AP_OK;
    if (ftruncate(journal->fd, good_end) != 0 || fsync(journal->fd) != 0)
        return ap_error_set(err, AP_ERR_IO, "cannot cut the damaged last line off %s: %s",
                            journal->path, strerror(errno));
    journal->dropped_bytes = (size_t)(info.st_size - good_end);
    return AP_OK;
}

static ap_status read_journal(ap_score_journal *journal, const ap_score_model_info *model,
                              ap_error *err)
{
    int reader = dup(journal->fd);
    FILE *file = reader >= 0 ? fdopen(reader, "r") : NULL;
    if (file == NULL) {
        if (reader >= 0)
            close(reader);
        return ap_error_set(err, AP_ERR_IO, "cannot read %s: %s", journal->path, strerror(errno));
    }
    off_t good_end = 0;
    ap_status status = read_lines(journal, file, model, &good_end, err);
    fclose(file);
    if (status == AP_OK)
        status = cut_damaged_tail(journal, good_end, err);
    return status;
}

static int compare_images(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Make a new journal's directory entry durable. */
static void sync_folder_of(const char *path)
{
    char copy[AP_PATH_MAX + 128];
    snprintf(copy, sizeof(copy), "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

ap_status ap_score_journal_open(const char *path, const ap_score_model_info *model,
                                ap_score_journal *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    out->fd = -1;
    size_t length = strlen(path);
    if (length >= sizeof(out->path))
        return ap_error_set(err, AP_ERR_INVALID, "journal path %.80s... is too long", path);
    memcpy(out->path, path, length + 1);
    out->fd = open(path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (out->fd < 0)
        return ap_error_set(err, AP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    sync_folder_of(path);
    if (flock(out->fd, LOCK_EX | LOCK_NB) != 0)
        return ap_error_set(err, errno == EWOULDBLOCK ? AP_ERR_INVALID : AP_ERR_IO,
                            "cannot lock %s: %s; another apiary score may be writing to the "
                            "same output folder, so wait for it or choose another folder",
                            path, strerror(errno));
    ap_status status = read_journal(out, model, err);
    if (status == AP_OK && out->image_count > 1)
        qsort(out->images, out->image_count, sizeof(*out->images), compare_images);
    return status;
}

bool ap_score_journal_contains(const ap_score_journal *journal, const char *image)
{
    if (journal->image_count == 0)
        return false;
    return bsearch(&image, journal->images, journal->image_count, sizeof(*journal->images),
                   compare_images) != NULL;
}

ap_status ap_score_journal_append(ap_score_journal *journal, const void *data, size_t size,
                                  ap_error *err)
{
    const char *bytes = data;
    while (size > 0) {
        ssize_t written = write(journal->fd, bytes, size);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return ap_error_set(err, AP_ERR_IO, "cannot write %s: %s", journal->path,
                                written < 0 ? strerror(errno) : "no progress");
        bytes += written;
        size -= (size_t)written;
    }
    if (fsync(journal->fd) != 0)
        return ap_error_set(err, AP_ERR_IO, "cannot flush %s: %s", journal->path, strerror(errno));
    return AP_OK;
}

void ap_score_journal_close(ap_score_journal *journal)
{
    if (journal->fd >= 0)
        close(journal->fd);
    journal->fd = -1;
    for (size_t i = 0; journal->images != NULL && i < journal->image_count; i++)
        free(journal->images[i]);
    free(journal->images);
    journal->images = NULL;
    journal->image_count = 0;
    journal->capacity = 0;
}
