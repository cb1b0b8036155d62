/* Files of the local folder registry: paths and names, the model lock, the
 * removal of what crashed writers left, and writing, copying and hashing
 * files. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/registry/local_registry_internal.h"

#define LOCK_FILE         ".lock"
#define LOCK_WAIT_SECONDS 120
#define REMOVE_DEPTH_MAX  8

/* ---- Paths, names and time ---- */

ap_status local_model_dir_path(const local_registry *registry, const char *model, char *path,
                               size_t size, ap_error *err)
{
    ap_status status = ap_registry_check_model_name(model, err);
    if (status != AP_OK)
        return status;
    return ap_path_join(path, size, registry->root, model, err);
}

ap_status local_version_dir_path(const local_registry *registry, const char *model, int version,
                                 char *path, size_t size, ap_error *err)
{
    char model_dir[PATH_SIZE];
    ap_status status = local_model_dir_path(registry, model, model_dir, sizeof(model_dir), err);
    if (status != AP_OK)
        return status;
    if (version < 1)
        return ap_error_set(err, AP_ERR_INVALID, "version %d is invalid; versions start at 1",
                            version);
    if (snprintf(path, size, "%s/versions/%d", model_dir, version) >= (int)size)
        return ap_error_set(err, AP_ERR_INVALID, "path too long: %s/versions/%d", model_dir,
                            version);
    return AP_OK;
}

ap_status local_require_model(const char *model_dir, ap_error *err)
{
    struct stat info;
    if (stat(model_dir, &info) == 0 && S_ISDIR(info.st_mode))
        return AP_OK;
    return ap_error_set(err, AP_ERR_NOT_FOUND,
                        "no such model folder %s; check the model name or register a version "
                        "first",
                        model_dir);
}

void local_format_utc_now(char text[32])
{
    struct timespec now;
    struct tm parts;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &parts);
    size_t length = strftime(text, 32, "%Y-%m-%dT%H:%M:%S", &parts);
    int milliseconds = (int)(now.tv_nsec / 1000000) % 1000;
    snprintf(text + length, 32 - length, ".%03dZ", milliseconds);
}

/* ---- Locks and clean-up ---- */

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + 1e-9 * (double)(now.tv_nsec - start->tv_nsec);
}

/* Take an flock on MODEL/.lock, waiting at most LOCK_WAIT_SECONDS. */
ap_status local_lock_model(const char *model_dir, int operation, int *lock_fd, ap_error *err)
{
    char path[PATH_SIZE];
    ap_status status = ap_path_join(path, sizeof(path), model_dir, LOCK_FILE, err);
    if (status != AP_OK)
        return status;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return ap_error_set(err, errno == ENOENT ? AP_ERR_NOT_FOUND : AP_ERR_IO,
                            "cannot open lock file %s: %s", path, strerror(errno));
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long delay_us = 1000;
    while (flock(fd, operation | LOCK_NB) != 0) {
        int saved = errno;
        if (saved != EWOULDBLOCK && saved != EINTR) {
            close(fd);
            return ap_error_set(err, AP_ERR_IO, "cannot lock %s: %s", path, strerror(saved));
        }
        if (seconds_since(&start) > LOCK_WAIT_SECONDS) {
            close(fd);
            return ap_error_set(err, AP_ERR_IO,
                                "timed out after %d s waiting for the lock on %s; another "
                                "process holds it, so let it finish and retry",
                                LOCK_WAIT_SECONDS, path);
        }
        struct timespec pause = {0, delay_us * 1000};
        nanosleep(&pause, NULL);
        delay_us = delay_us < 50000 ? delay_us * 2 : delay_us;
    }
    *lock_fd = fd;
    return AP_OK;
}

/* Closing the descriptor releases the flock. */
void local_unlock_model(int lock_fd)
{
    if (lock_fd >= 0)
        close(lock_fd);
}

int local_remove_tree_at(int parent_fd, const char *name, int depth)
{
    if (unlinkat(parent_fd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if ((errno != EISDIR && errno != EPERM) || depth > REMOVE_DEPTH_MAX)
        return -1;
    int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (dir == NULL) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int failed = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0)
            failed |= local_remove_tree_at(dirfd(dir), entry->d_name, depth + 1);
    }
    closedir(dir);
    return unlinkat(parent_fd, name, AT_REMOVEDIR) == 0 && failed == 0 ? 0 : -1;
}

/* Remove what crashed writers left in the model folder: staging folders whose
 * flock is free (their writer is gone) and temporary copies of aliases.json.
 * The caller holds the model lock exclusively, so no writer is between
 * creating a staging folder and locking it. Failures leave the leftovers in
 * place, which is harmless because version numbering skips them. */
void local_remove_leftovers(int model_fd)
{
    int scan_fd = openat(model_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *dir = scan_fd >= 0 ? fdopendir(scan_fd) : NULL;
    if (dir == NULL) {
        if (scan_fd >= 0)
            close(scan_fd);
        return;
    }
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        const char *name = entry->d_name;
        if (strncmp(name, ALIASES_TEMP_PREFIX, strlen(ALIASES_TEMP_PREFIX)) == 0) {
            unlinkat(model_fd, name, 0);
            continue;
        }
        if (strncmp(name, STAGING_PREFIX, strlen(STAGING_PREFIX)) != 0)
            continue;
        int fd = openat(model_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
            continue;
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            local_remove_tree_at(model_fd, name, 0);
        close(fd);
    }
    closedir(dir);
}

/* ---- Writing, copying and hashing files ---- */

ap_status local_write_json(const char *path, const json_t *value, ap_error *err)
{
    char *text = json_dumps(value, JSON_INDENT(2));
    if (text == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot format %s", path);
    size_t length = strlen(text);
    char *with_newline = realloc(text, length + 2);
    if (with_newline == NULL) {
        free(text);
        return ap_error_set(err, AP_ERR_NOMEM, "cannot format %s", path);
    }
    with_newline[length] = '\n';
    ap_status status = ap_write_atomic(path, with_newline, length + 1, err);
    free(with_newline);
    return status;
}

static ap_status write_all(int fd, const unsigned char *data, size_t size, const char *path,
                           ap_error *err)
{
    while (size > 0) {
        ssize_t written = write(fd, data, size);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return ap_error_set(err, AP_ERR_IO, "cannot write %s: %s", path,
                                written < 0 ? strerror(errno) : "no progress");
        data += written;
        size -= (size_t)written;
    }
    return AP_OK;
}

/* Hash what can be read from in_fd; when out_fd >= 0 also copy it there. */
static ap_status stream_file(int in_fd, const char *in_path, int out_fd, const char *out_path,
                             char hex[65], long long *size, ap_error *err)
{
    enum { CHUNK = 1 << 20 };
    unsigned char *buffer = malloc(CHUNK);
    ap_sha256_ctx *ctx = ap_sha256_begin();
    if (buffer == NULL || ctx == NULL) {
        free(buffer);
        if (ctx != NULL)
            ap_sha256_end(ctx, hex);
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate a buffer to read %s", in_path);
    }
    ap_status status = AP_OK;
    *size = 0;
    for (;;) {
        ssize_t got = read(in_fd, buffer, CHUNK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            status = ap_error_set(err, AP_ERR_IO, "cannot read %s: %s", in_path, strerror(errno));
        if (got <= 0)
            break;
        ap_sha256_update(ctx, buffer, (size_t)got);
        *size += got;
        if (out_fd >= 0) {
            status = write_all(out_fd, buffer, (size_t)got, out_path, err);
            if (status != AP_OK)
                break;
        }
    }
    ap_sha256_end(ctx, hex);
    free(buffer);
    return status;
}

/* Hash a file without following a symbolic link in its last component. */
ap_status local_hash_file(const char *path, char hex[65], long long *size, ap_error *err)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return ap_error_set(err, errno == ENOENT ? AP_ERR_NOT_FOUND : AP_ERR_IO,
                            "cannot open %s: %s", path, strerror(errno));
    ap_status status = stream_file(fd, path, -1, NULL, hex, size, err);
    close(fd);
    return status;
}

static ap_status open_regular_source(const char *source, int *fd, ap_error *err)
{
    *fd = open(source, O_RDONLY | O_CLOEXEC);
    if (*fd < 0)
        return ap_error_set(err, errno == ENOENT ? AP_ERR_NOT_FOUND : AP_ERR_IO,
                            "cannot open %s: %s", source, strerror(errno));
    struct stat info;
    if (fstat(*fd, &info) != 0 || !S_ISREG(info.st_mode)) {
        close(*fd);
        *fd = -1;
        return ap_error_set(err, AP_ERR_INVALID, "%s is not a regular file", source);
    }
    return AP_OK;
}

/* Copy source into the staging folder as name, flush it, read the copy back
 * and compare sha256 values, then record {"sha256", "size"} in files. */
ap_status local_copy_into_stage(const staging *stage, const char *source, const char *name,
                                json_t *files, ap_error *err)
{
    char target[PATH_SIZE], source_hex[65], copy_hex[65];
    long long source_size = 0, copy_size = 0;
    int in_fd = -1;
    ap_status status = ap_path_join(target, sizeof(target), stage->path, name, err);
    if (status == AP_OK)
        status = open_regular_source(source, &in_fd, err);
    if (status != AP_OK)
        return status;
    int out_fd = openat(stage->fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out_fd < 0) {
        status = ap_error_set(err, AP_ERR_IO, "cannot create %s: %s", target, strerror(errno));
        close(in_fd);
        return status;
    }
    status = stream_file(in_fd, source, out_fd, target, source_hex, &source_size, err);
    if (status == AP_OK && fsync(out_fd) != 0)
        status = ap_error_set(err, AP_ERR_IO, "cannot flush %s: %s", target, strerror(errno));
    close(out_fd);
    close(in_fd);
    if (status == AP_OK)
        status = local_hash_file(target, copy_hex, &copy_size, err);
    if (status != AP_OK)
        return status;
    if (strcmp(source_hex, copy_hex) != 0 || source_size != copy_size)
        return ap_error_set(err, AP_ERR_IO,
                            "copy %s of %s has sha256 %s (%lld bytes), expected %s (%lld "
                            "bytes); check the disk and retry",
                            target, source, copy_hex, copy_size, source_hex, source_size);
    json_object_set_new(
        files, name,
        json_pack("{s:s, s:I}", "sha256", source_hex, "size", (json_int_t)source_size));
    return AP_OK;
}
