/* The local folder backend of the model registry.
 *
 * Layout under the root folder:
 *   MODEL/versions/N/     one complete version: model.safetensors, model_card.json,
 *                         optional report.json and attachments, and version.json
 *   MODEL/aliases.json    {"format_version": 1, "aliases": {...}, "history": [...]}
 *   MODEL/.lock           flock target that serializes alias changes and registrations
 *   MODEL/.register-*     a version being written; renamed to versions/N when complete
 *
 * A version folder appears only through rename(2) of a finished staging
 * folder, so readers never see a partial version. Writers pick N as one more
 * than the highest existing number and move on to N + 1 when a concurrent
 * writer took N first. Registering weights that a complete version already
 * holds (the same model.safetensors sha256) returns that version instead,
 * and the check and the rename happen under the lock, so two concurrent
 * registrations of one model get one version. Alias changes are
 * read-modify-write cycles of
 * aliases.json under an exclusive flock, and the file is replaced atomically,
 * so readers need no lock. */

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
#include "pipeline/registry/registry.h"

#define STAGING_PREFIX ".register-"
#define ALIASES_FILE   "aliases.json"
/* ap_write_atomic writes PATH.tmp.XXXXXX and renames it over PATH. */
#define ALIASES_TEMP_PREFIX ALIASES_FILE ".tmp."
#define LOCK_FILE           ".lock"
#define FORMAT_VERSION      1
#define JSON_FILE_MAX       (64u << 20)
#define FILE_NAME_MAX       128
#define TAG_KEY_MAX         128
#define TAG_VALUE_MAX       4096
#define PUBLISH_ATTEMPTS    1000
#define REMOVE_DEPTH_MAX    8

/* The root is at most ROOT_MAX bytes, so every path built below (root, model
 * name, "versions", a number and a file name) fits in PATH_SIZE. */
#define ROOT_MAX  3000
#define PATH_SIZE 4096

typedef struct {
    ap_registry base;
    char root[PATH_SIZE];
} local_registry;

/* A staging folder inside the model folder, locked while its writer lives. */
typedef struct {
    int model_fd;
    int fd;
    char name[64];
    char path[PATH_SIZE];
} staging;

static const ap_registry_ops local_ops;

/* ---- Paths, names and time ---- */

static ap_status model_dir_path(const local_registry *registry, const char *model, char *path,
                                size_t size, ap_error *err)
{
    ap_status status = ap_registry_check_model_name(model, err);
    if (status != AP_OK)
        return status;
    return ap_path_join(path, size, registry->root, model, err);
}

static ap_status version_dir_path(const local_registry *registry, const char *model, int version,
                                  char *path, size_t size, ap_error *err)
{
    char model_dir[PATH_SIZE];
    ap_status status = model_dir_path(registry, model, model_dir, sizeof(model_dir), err);
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

static ap_status require_model(const char *model_dir, ap_error *err)
{
    struct stat info;
    if (stat(model_dir, &info) == 0 && S_ISDIR(info.st_mode))
        return AP_OK;
    return ap_error_set(err, AP_ERR_NOT_FOUND,
                        "no such model folder %s; check the model name or register a version "
                        "first",
                        model_dir);
}

/* A file name inside a version: [A-Za-z0-9][A-Za-z0-9._-]*, so never a path. */
static ap_status check_file_name(const char *name, ap_error *err)
{
    size_t length = strlen(name);
    bool ok = length > 0 && length <= FILE_NAME_MAX && name[0] != '.' && name[0] != '-';
    for (size_t i = 0; ok && i < length; i++) {
        char c = name[i];
        ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '.' || c == '_' || c == '-';
    }
    if (!ok)
        return ap_error_set(err, AP_ERR_INVALID,
                            "invalid file name \"%.160s\": use up to %d letters, digits, '.', "
                            "'_' or '-', starting with a letter or digit",
                            name, FILE_NAME_MAX);
    return AP_OK;
}

static void format_utc_now(char text[32])
{
    struct timespec now;
    struct tm parts;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &parts);
    size_t length = strftime(text, 32, "%Y-%m-%dT%H:%M:%S", &parts);
    int milliseconds = (int)(now.tv_nsec / 1000000) % 1000;
    snprintf(text + length, 32 - length, ".%03dZ", milliseconds);
}

static ap_status check_move(const ap_registry_move *move, ap_error *err)
{
    if (move != NULL && move->forced && (move->reason == NULL || move->reason[0] == '\0'))
        return ap_error_set(err, AP_ERR_INVALID,
                            "a forced alias move needs a reason; give the operator's reason");
    return AP_OK;
}

/* ---- Locks and clean-up ---- */

#define LOCK_WAIT_SECONDS 120

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + 1e-9 * (double)(now.tv_nsec - start->tv_nsec);
}

/* Take an flock on MODEL/.lock, waiting at most LOCK_WAIT_SECONDS. */
static ap_status lock_model(const char *model_dir, int operation, int *lock_fd, ap_error *err)
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
static void unlock_model(int lock_fd)
{
    if (lock_fd >= 0)
        close(lock_fd);
}

static int remove_tree_at(int parent_fd, const char *name, int depth)
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
            failed |= remove_tree_at(dirfd(dir), entry->d_name, depth + 1);
    }
    closedir(dir);
    return unlinkat(parent_fd, name, AT_REMOVEDIR) == 0 && failed == 0 ? 0 : -1;
}

/* Remove what crashed writers left in the model folder: staging folders whose
 * flock is free (their writer is gone) and temporary copies of aliases.json.
 * The caller holds the model lock exclusively, so no writer is between
 * creating a staging folder and locking it. Failures leave the leftovers in
 * place, which is harmless because version numbering skips them. */
static void remove_leftovers(int model_fd)
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
            remove_tree_at(model_fd, name, 0);
        close(fd);
    }
    closedir(dir);
}

/* ---- Staging and publishing a version ---- */

static void staging_discard(staging *stage)
{
    if (stage->fd >= 0) {
        remove_tree_at(stage->model_fd, stage->name, 0);
        close(stage->fd);
    }
    if (stage->model_fd >= 0)
        close(stage->model_fd);
    stage->fd = -1;
    stage->model_fd = -1;
}

/* Create the staging folder and lock it for as long as this writer lives. */
static ap_status create_staging_folder(const char *model_dir, staging *stage, ap_error *err)
{
    ap_status status =
        ap_path_join(stage->path, sizeof(stage->path), model_dir, STAGING_PREFIX "XXXXXX", err);
    if (status != AP_OK)
        return status;
    if (mkdtemp(stage->path) == NULL)
        return ap_error_set(err, AP_ERR_IO, "cannot create a staging folder in %s: %s", model_dir,
                            strerror(errno));
    snprintf(stage->name, sizeof(stage->name), "%s", strrchr(stage->path, '/') + 1);
    stage->fd = open(stage->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (stage->fd < 0) {
        status = ap_error_set(err, AP_ERR_IO, "cannot open %s: %s", stage->path, strerror(errno));
        rmdir(stage->path);
        return status;
    }
    if (flock(stage->fd, LOCK_EX | LOCK_NB) != 0)
        return ap_error_set(err, AP_ERR_IO, "cannot lock %s: %s", stage->path, strerror(errno));
    /* mkdtemp creates mode 0700, but versions must be readable like other files. */
    if (fchmod(stage->fd, 0755) != 0)
        return ap_error_set(err, AP_ERR_IO, "cannot set the mode of %s: %s", stage->path,
                            strerror(errno));
    return AP_OK;
}

/* Create and lock a staging folder, clearing crash leftovers first. */
static ap_status staging_begin(const char *model_dir, staging *stage, ap_error *err)
{
    stage->fd = -1;
    stage->model_fd = open(model_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (stage->model_fd < 0)
        return ap_error_set(err, AP_ERR_IO, "cannot open %s: %s", model_dir, strerror(errno));
    int lock_fd = -1;
    ap_status status = lock_model(model_dir, LOCK_EX, &lock_fd, err);
    if (status == AP_OK) {
        remove_leftovers(stage->model_fd);
        status = create_staging_folder(model_dir, stage, err);
        unlock_model(lock_fd);
    }
    if (status != AP_OK)
        staging_discard(stage);
    return status;
}

/* Parse a version folder name: decimal digits without a leading zero. */
static bool parse_version_dir(const char *name, int *version)
{
    return name[0] != 'v' && ap_registry_parse_version(name, version);
}

static ap_status highest_version(const char *versions_dir, int *highest, ap_error *err)
{
    DIR *dir = opendir(versions_dir);
    if (dir == NULL)
        return ap_error_set(err, AP_ERR_IO, "cannot list %s: %s", versions_dir, strerror(errno));
    *highest = 0;
    struct dirent *entry;
    int number;
    while ((entry = readdir(dir)) != NULL) {
        if (parse_version_dir(entry->d_name, &number) && number > *highest)
            *highest = number;
    }
    closedir(dir);
    return AP_OK;
}

static void fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

static ap_status write_json(const char *path, const json_t *value, ap_error *err)
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

/* Write version.json with a candidate number N and rename the staging folder
 * to versions/N. When another writer took N first, try the next number. */
static ap_status staging_publish(staging *stage, const char *versions_dir, json_t *record,
                                 int *version, ap_error *err)
{
    char record_path[PATH_SIZE], target[PATH_SIZE];
    ap_status status =
        ap_path_join(record_path, sizeof(record_path), stage->path, AP_REGISTRY_VERSION_FILE, err);
    if (status != AP_OK)
        return status;
    int last_taken = 0;
    for (int attempt = 0; attempt < PUBLISH_ATTEMPTS; attempt++) {
        int highest = 0;
        status = highest_version(versions_dir, &highest, err);
        if (status != AP_OK)
            return status;
        int candidate = (highest > last_taken ? highest : last_taken) + 1;
        char created[32];
        format_utc_now(created);
        json_object_set_new(record, "version", json_integer(candidate));
        json_object_set_new(record, "created", json_string(created));
        status = write_json(record_path, record, err);
        if (status != AP_OK)
            return status;
        fsync(stage->fd);

        if (snprintf(target, sizeof(target), "%s/%d", versions_dir, candidate) >=
            (int)sizeof(target))
            return ap_error_set(err, AP_ERR_INVALID, "path too long: %s", versions_dir);
        if (rename(stage->path, target) == 0) {
            fsync_dir(versions_dir);
            close(stage->fd);
            stage->fd = -1;
            *version = candidate;
            return AP_OK;
        }
        if (errno != EEXIST && errno != ENOTEMPTY)
            return ap_error_set(err, AP_ERR_IO, "cannot rename %s to %s: %s", stage->path, target,
                                strerror(errno));
        last_taken = candidate;
    }
    return ap_error_set(err, AP_ERR_IO,
                        "no free version number in %s after %d attempts; other writers kept "
                        "taking them, so retry later",
                        versions_dir, PUBLISH_ATTEMPTS);
}

/* ---- Copying and hashing files ---- */

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
static ap_status hash_file(const char *path, char hex[65], long long *size, ap_error *err)
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
static ap_status copy_into_stage(const staging *stage, const char *source, const char *name,
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
        status = hash_file(target, copy_hex, &copy_size, err);
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

/* ---- Version records ---- */

/* Summarize the stored report.json as {"report", "verdict", "model_sha256_match"}. */
static ap_status summarize_report(const staging *stage, bool has_report, const char *model_sha,
                                  json_t **summary, ap_error *err)
{
    if (!has_report) {
        *summary = json_pack("{s:n, s:s, s:n}", "report", "verdict", "none", "model_sha256_match");
        return AP_OK;
    }
    char path[PATH_SIZE];
    ap_status status = ap_path_join(path, sizeof(path), stage->path, AP_REGISTRY_REPORT_FILE, err);
    if (status != AP_OK)
        return status;
    json_error_t parse_error;
    json_t *report = json_load_file(path, JSON_REJECT_DUPLICATES, &parse_error);
    if (report == NULL || !json_is_object(report)) {
        json_decref(report);
        return ap_error_set(err, AP_ERR_FORMAT,
                            "validation report is not a JSON object (%s at line %d); pass the "
                            "report.json written by validation",
                            report == NULL ? parse_error.text : "other JSON value",
                            report == NULL ? parse_error.line : 1);
    }
    json_t *passed = json_object_get(report, "passed");
    json_t *named_sha = json_object_get(report, "model_sha256");
    if (passed != NULL && !json_is_boolean(passed))
        status = ap_error_set(err, AP_ERR_FORMAT,
                              "validation report field \"passed\" must be true or false");
    else if (named_sha != NULL && !json_is_string(named_sha))
        status = ap_error_set(err, AP_ERR_FORMAT,
                              "validation report field \"model_sha256\" must be a string");
    if (status == AP_OK) {
        const char *verdict = passed == NULL ? "unknown" : json_is_true(passed) ? "pass" : "fail";
        json_t *match = named_sha == NULL
                            ? json_null()
                            : json_boolean(strcmp(json_string_value(named_sha), model_sha) == 0);
        *summary = json_pack("{s:s, s:s, s:o}", "report", AP_REGISTRY_REPORT_FILE, "verdict",
                             verdict, "model_sha256_match", match);
    }
    json_decref(report);
    return status;
}

static ap_status check_request(const ap_registry_new_version *request, ap_error *err)
{
    if (request->model_path == NULL || request->model_card_path == NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "a new version needs both a weights file and a model card");
    if (request->force && (request->force_reason == NULL || request->force_reason[0] == '\0'))
        return ap_error_set(err, AP_ERR_INVALID,
                            "a forced registration needs a reason; give the operator's reason");
    for (size_t i = 0; i < request->tag_count; i++) {
        const ap_registry_tag *tag = &request->tags[i];
        if (tag->key == NULL || tag->key[0] == '\0' || strlen(tag->key) > TAG_KEY_MAX ||
            tag->value == NULL || strlen(tag->value) > TAG_VALUE_MAX)
            return ap_error_set(err, AP_ERR_INVALID,
                                "tag %zu is invalid: keys need 1 to %d bytes and values up "
                                "to %d bytes",
                                i, TAG_KEY_MAX, TAG_VALUE_MAX);
    }
    return AP_OK;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash != NULL ? slash + 1 : path;
}

static bool is_reserved_name(const char *name)
{
    return strcmp(name, AP_REGISTRY_MODEL_FILE) == 0 || strcmp(name, AP_REGISTRY_CARD_FILE) == 0 ||
           strcmp(name, AP_REGISTRY_REPORT_FILE) == 0 ||
           strcmp(name, AP_REGISTRY_VERSION_FILE) == 0;
}

/* Copy the weights, card, report and attachments into the staging folder. */
static ap_status copy_version_files(const staging *stage, const ap_registry_new_version *request,
                                    json_t *files, ap_error *err)
{
    ap_status status =
        copy_into_stage(stage, request->model_path, AP_REGISTRY_MODEL_FILE, files, err);
    if (status == AP_OK)
        status =
            copy_into_stage(stage, request->model_card_path, AP_REGISTRY_CARD_FILE, files, err);
    if (status == AP_OK && request->report_path != NULL)
        status = copy_into_stage(stage, request->report_path, AP_REGISTRY_REPORT_FILE, files, err);
    for (size_t i = 0; status == AP_OK && i < request->attachment_count; i++) {
        const char *name = base_name(request->attachments[i]);
        status = check_file_name(name, err);
        if (status == AP_OK && (is_reserved_name(name) || json_object_get(files, name) != NULL))
            status = ap_error_set(err, AP_ERR_INVALID,
                                  "attachment %s would replace the version's file %s; rename it",
                                  request->attachments[i], name);
        if (status == AP_OK)
            status = copy_into_stage(stage, request->attachments[i], name, files, err);
    }
    return status;
}

static ap_status build_tags(const ap_registry_new_version *request, json_t **tags, ap_error *err)
{
    *tags = json_object();
    for (size_t i = 0; i < request->tag_count; i++) {
        const ap_registry_tag *tag = &request->tags[i];
        bool repeated = json_object_get(*tags, tag->key) != NULL;
        json_t *value = repeated ? NULL : json_string(tag->value);
        /* json_object_set_new takes the value's reference even when it fails. */
        if (value == NULL || json_object_set_new(*tags, tag->key, value) != 0) {
            json_decref(*tags);
            *tags = NULL;
            return ap_error_set(err, AP_ERR_INVALID,
                                "tag \"%.128s\" is repeated or not valid UTF-8; give each key "
                                "once, in UTF-8",
                                tag->key);
        }
    }
    return AP_OK;
}

/* Build version.json less its "version" and "created", which publishing sets. */
static ap_status build_record(const char *model, const ap_registry_new_version *request,
                              json_t *files, json_t *validation, json_t **record, ap_error *err)
{
    json_t *tags = NULL;
    ap_status status = build_tags(request, &tags, err);
    if (status != AP_OK)
        return status;
    json_t *source = request->source_run != NULL ? json_string(request->source_run) : json_null();
    if (source == NULL) {
        json_decref(tags);
        return ap_error_set(err, AP_ERR_INVALID, "source run folder is not valid UTF-8");
    }
    *record = json_pack("{s:i, s:s, s:i, s:n, s:o, s:O, s:O, s:o}", "format_version",
                        FORMAT_VERSION, "model", model, "version", 0, "created", "source_run",
                        source, "files", files, "validation", validation, "tags", tags);
    if (*record != NULL && request->force) {
        json_object_set_new(*record, "forced", json_true());
        json_object_set_new(*record, "force_reason", json_string(request->force_reason));
    }
    if (*record == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot build version.json");
    return AP_OK;
}

static ap_status check_report_weights(const ap_registry_new_version *request, json_t *validation,
                                      ap_error *err)
{
    if (request->force || !json_is_false(json_object_get(validation, "model_sha256_match")))
        return AP_OK;
    return ap_error_set(err, AP_ERR_INVALID,
                        "validation report %s names weights other than %s; register the report "
                        "made for these weights, or force with a reason",
                        request->report_path, request->model_path);
}

static ap_status stage_version(const staging *stage, const char *model,
                               const ap_registry_new_version *request, json_t **record,
                               ap_error *err)
{
    json_t *files = json_object(), *validation = NULL;
    ap_status status = copy_version_files(stage, request, files, err);
    if (status == AP_OK) {
        const char *model_sha = json_string_value(
            json_object_get(json_object_get(files, AP_REGISTRY_MODEL_FILE), "sha256"));
        status = summarize_report(stage, request->report_path != NULL, model_sha, &validation, err);
    }
    if (status == AP_OK)
        status = check_report_weights(request, validation, err);
    if (status == AP_OK)
        status = build_record(model, request, files, validation, record, err);
    json_decref(files);
    json_decref(validation);
    return status;
}

static ap_status scan_versions(const char *versions_dir, int **numbers, size_t *count,
                               ap_error *err);
static ap_status load_record(const local_registry *registry, const char *model, int version,
                             json_t **record, ap_error *err);

static const char *record_model_sha(const json_t *record)
{
    const json_t *files = json_object_get(record, "files");
    return json_string_value(
        json_object_get(json_object_get(files, AP_REGISTRY_MODEL_FILE), "sha256"));
}

/* The newest complete version whose weights have the given sha256, or 0.
 * Versions whose record does not load are skipped. */
static ap_status find_same_weights(const local_registry *registry, const char *model,
                                   const char *versions_dir, const char *sha256, int *found,
                                   ap_error *err)
{
    *found = 0;
    int *numbers = NULL;
    size_t count = 0;
    ap_status status = scan_versions(versions_dir, &numbers, &count, err);
    for (size_t i = count; status == AP_OK && sha256 != NULL && i > 0 && *found == 0; i--) {
        json_t *record = NULL;
        ap_error ignored;
        if (load_record(registry, model, numbers[i - 1], &record, &ignored) != AP_OK)
            continue;
        const char *hash = record_model_sha(record);
        if (hash != NULL && strcmp(hash, sha256) == 0)
            *found = numbers[i - 1];
        json_decref(record);
    }
    free(numbers);
    return status;
}

/* Publish the staged version unless a complete version holds the same
 * weights, holding the model lock across the check and the rename. */
static ap_status publish_unless_registered(const local_registry *registry, const char *model,
                                           const char *model_dir, const char *versions_dir,
                                           staging *stage, json_t *record, int *version,
                                           ap_error *err)
{
    int lock_fd = -1;
    ap_status status = lock_model(model_dir, LOCK_EX, &lock_fd, err);
    int existing = 0;
    if (status == AP_OK)
        status = find_same_weights(registry, model, versions_dir, record_model_sha(record),
                                   &existing, err);
    if (status == AP_OK && existing > 0)
        *version = existing;
    else if (status == AP_OK)
        status = staging_publish(stage, versions_dir, record, version, err);
    unlock_model(lock_fd);
    return status;
}

static ap_status register_version(ap_registry *base, const char *model,
                                  const ap_registry_new_version *request, int *version,
                                  ap_error *err)
{
    const local_registry *registry = (const local_registry *)base;
    char model_dir[PATH_SIZE], versions_dir[PATH_SIZE];
    ap_status status = model_dir_path(registry, model, model_dir, sizeof(model_dir), err);
    if (status == AP_OK)
        status = check_request(request, err);
    if (status == AP_OK)
        status = ap_path_join(versions_dir, sizeof(versions_dir), model_dir, "versions", err);
    if (status == AP_OK)
        status = ap_mkdirs(versions_dir, err);
    if (status != AP_OK)
        return status;

    staging stage;
    status = staging_begin(model_dir, &stage, err);
    if (status != AP_OK)
        return status;
    json_t *record = NULL;
    status = stage_version(&stage, model, request, &record, err);
    if (status == AP_OK)
        status = publish_unless_registered(registry, model, model_dir, versions_dir, &stage, record,
                                           version, err);
    json_decref(record);
    staging_discard(&stage);
    return status;
}

/* Read versions/N/version.json. The folder must exist, and the record must
 * carry its own number and a files object. */
static ap_status load_record(const local_registry *registry, const char *model, int version,
                             json_t **record, ap_error *err)
{
    char version_dir[PATH_SIZE], path[PATH_SIZE];
    *record = NULL;
    ap_status status =
        version_dir_path(registry, model, version, version_dir, sizeof(version_dir), err);
    if (status != AP_OK)
        return status;
    struct stat info;
    if (stat(version_dir, &info) != 0 || !S_ISDIR(info.st_mode))
        return ap_error_set(err, AP_ERR_NOT_FOUND,
                            "version %d not found; list the versions to see which exist", version);
    status = ap_path_join(path, sizeof(path), version_dir, AP_REGISTRY_VERSION_FILE, err);
    if (status != AP_OK)
        return status;
    json_error_t parse_error;
    json_t *value = json_load_file(path, JSON_REJECT_DUPLICATES, &parse_error);
    json_t *number = json_object_get(value, "version");
    if (value == NULL || !json_is_integer(number) || json_integer_value(number) != version ||
        !json_is_object(json_object_get(value, "files"))) {
        json_decref(value);
        return ap_error_set(err, AP_ERR_FORMAT,
                            "version %d is incomplete: %s is missing or damaged (%s); register "
                            "the model again as a new version",
                            version, path, value == NULL ? parse_error.text : "wrong fields");
    }
    *record = value;
    return AP_OK;
}

static ap_status check_record_file(const char *version_dir, int version, const char *name,
                                   json_t *entry, ap_error *err)
{
    ap_status status = check_file_name(name, err);
    if (status != AP_OK) {
        ap_error_prefix(err, "version %d lists an unsafe file name", version);
        return status;
    }
    const char *expected = json_string_value(json_object_get(entry, "sha256"));
    json_t *size_value = json_object_get(entry, "size");
    if (expected == NULL || !json_is_integer(size_value))
        return ap_error_set(err, AP_ERR_FORMAT,
                            "version %d: version.json lacks the sha256 or size of %s; register "
                            "the model again as a new version",
                            version, name);
    char path[PATH_SIZE], actual[65];
    long long size = 0;
    status = ap_path_join(path, sizeof(path), version_dir, name, err);
    if (status == AP_OK)
        status = hash_file(path, actual, &size, err);
    if (status != AP_OK) {
        ap_error_prefix(err, "version %d is incomplete", version);
        return status;
    }
    if (strcmp(actual, expected) != 0 || size != json_integer_value(size_value))
        return ap_error_set(err, AP_ERR_FORMAT,
                            "version %d: %s has sha256 %s (%lld bytes) but was registered with "
                            "%s (%lld bytes); the file changed after registration, so register "
                            "the model again as a new version",
                            version, name, actual, size, expected,
                            (long long)json_integer_value(size_value));
    return AP_OK;
}

/* Load a version's record and check every listed file against its sha256. */
static ap_status verify_record(const local_registry *registry, const char *model, int version,
                               json_t **record_out, ap_error *err)
{
    json_t *record = NULL;
    ap_status status = load_record(registry, model, version, &record, err);
    if (status != AP_OK)
        return status;
    char version_dir[PATH_SIZE];
    version_dir_path(registry, model, version, version_dir, sizeof(version_dir), err);
    json_t *files = json_object_get(record, "files");
    if (json_object_get(files, AP_REGISTRY_MODEL_FILE) == NULL ||
        json_object_get(files, AP_REGISTRY_CARD_FILE) == NULL)
        status = ap_error_set(err, AP_ERR_FORMAT,
                              "version %d lists no %s or %s; register the model again", version,
                              AP_REGISTRY_MODEL_FILE, AP_REGISTRY_CARD_FILE);
    const char *name;
    json_t *entry;
    json_object_foreach(files, name, entry)
    {
        if (status == AP_OK)
            status = check_record_file(version_dir, version, name, entry, err);
    }
    if (status == AP_OK && record_out != NULL)
        *record_out = record;
    else
        json_decref(record);
    return status;
}

/* "champion" needs a passing report that names the weights, unless forced. */
static ap_status check_alias_policy(const char *alias, int version, const json_t *record,
                                    const ap_registry_move *move, ap_error *err)
{
    if (strcmp(alias, AP_REGISTRY_CHAMPION) != 0 || (move != NULL && move->forced))
        return AP_OK;
    json_t *validation = json_object_get(record, "validation");
    const char *verdict = json_string_value(json_object_get(validation, "verdict"));
    bool matches = json_is_true(json_object_get(validation, "model_sha256_match"));
    if (verdict != NULL && strcmp(verdict, "pass") == 0 && matches)
        return AP_OK;
    return ap_error_set(err, AP_ERR_INVALID,
                        "version %d cannot become %s: its validation verdict is %s and its "
                        "report %s its weights; register a version with a passing report, or "
                        "force the move with a reason",
                        version, alias, verdict != NULL ? verdict : "missing",
                        matches ? "names" : "does not name");
}

/* ---- Aliases and history ---- */

static ap_status aliases_path(const char *model_dir, char *path, size_t size, ap_error *err)
{
    return ap_path_join(path, size, model_dir, ALIASES_FILE, err);
}

static ap_status check_aliases_doc(const json_t *doc, const char *path, ap_error *err)
{
    json_t *aliases = json_object_get(doc, "aliases");
    bool ok = json_is_object(aliases) && json_is_array(json_object_get(doc, "history"));
    const char *alias;
    json_t *version;
    json_object_foreach(aliases, alias, version)
    {
        ok = ok && json_is_integer(version) && json_integer_value(version) >= 1 &&
             ap_registry_check_alias_name(alias, NULL) == AP_OK;
    }
    if (!ok)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s does not hold an \"aliases\" object of version numbers and a "
                            "\"history\" array; restore it from a backup",
                            path);
    return AP_OK;
}

/* Load aliases.json. A model without one has no aliases and no history. */
static ap_status load_aliases(const char *model_dir, json_t **doc, ap_error *err)
{
    char path[PATH_SIZE];
    *doc = NULL;
    ap_status status = aliases_path(model_dir, path, sizeof(path), err);
    if (status != AP_OK)
        return status;
    uint8_t *text = NULL;
    size_t size = 0;
    ap_error read_error = {0};
    status = ap_read_file(path, JSON_FILE_MAX, &text, &size, &read_error);
    if (status == AP_ERR_NOT_FOUND) {
        *doc =
            json_pack("{s:i, s:{}, s:[]}", "format_version", FORMAT_VERSION, "aliases", "history");
        return *doc != NULL ? AP_OK : ap_error_set(err, AP_ERR_NOMEM, "cannot build %s", path);
    }
    if (status != AP_OK) {
        if (err != NULL)
            *err = read_error;
        return status;
    }
    json_error_t parse_error;
    json_t *value = json_loadb((const char *)text, size, JSON_REJECT_DUPLICATES, &parse_error);
    free(text);
    if (value == NULL)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s is not valid JSON (%s at line %d); restore "
                            "it from a backup",
                            path, parse_error.text, parse_error.line);
    status = check_aliases_doc(value, path, err);
    if (status != AP_OK) {
        json_decref(value);
        return status;
    }
    *doc = value;
    return AP_OK;
}

static int alias_target(const json_t *doc, const char *alias)
{
    json_t *version = json_object_get(json_object_get(doc, "aliases"), alias);
    return version != NULL ? (int)json_integer_value(version) : 0;
}

static json_t *version_or_null(int version)
{
    return version > 0 ? json_integer(version) : json_null();
}

/* Point alias at version in doc and append the move to its history. */
static ap_status record_move(json_t *doc, const char *alias, const char *action, int from, int to,
                             const ap_registry_move *move, ap_error *err)
{
    char now[32];
    format_utc_now(now);
    const char *reason = move != NULL ? move->reason : NULL;
    json_t *reason_value = reason != NULL ? json_string(reason) : json_null();
    if (reason_value == NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "the reason for moving alias %s is not valid "
                            "UTF-8; write it in UTF-8",
                            alias);
    json_t *entry = json_pack("{s:s, s:s, s:s, s:o, s:i, s:o, s:b}", "time", now, "alias", alias,
                              "action", action, "from", version_or_null(from), "to", to, "reason",
                              reason_value, "forced", move != NULL && move->forced);
    if (entry == NULL || json_array_append_new(json_object_get(doc, "history"), entry) != 0 ||
        json_object_set_new(json_object_get(doc, "aliases"), alias, json_integer(to)) != 0)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot record the move of alias %s", alias);
    return AP_OK;
}

/* Find where a rollback of alias leads: replay its history as a stack where
 * a move pushes the version it left and a rollback pops it. */
static int rollback_target(const json_t *doc, const char *alias, int current)
{
    json_t *history = json_object_get(doc, "history");
    size_t count = json_array_size(history), depth = 0;
    int *stack = malloc((count + 1) * sizeof(*stack));
    if (stack == NULL)
        return -1;
    for (size_t i = 0; i < count; i++) {
        json_t *entry = json_array_get(history, i);
        const char *entry_alias = json_string_value(json_object_get(entry, "alias"));
        const char *action = json_string_value(json_object_get(entry, "action"));
        json_t *from = json_object_get(entry, "from");
        if (entry_alias == NULL || strcmp(entry_alias, alias) != 0)
            continue;
        if (action != NULL && strcmp(action, "rollback") == 0) {
            if (depth > 0)
                depth--;
        } else if (json_is_integer(from) && json_integer_value(from) > 0) {
            stack[depth++] = (int)json_integer_value(from);
        }
    }
    while (depth > 0 && stack[depth - 1] == current)
        depth--;
    int target = depth > 0 ? stack[depth - 1] : 0;
    free(stack);
    return target;
}

static ap_status save_aliases(const char *model_dir, const json_t *doc, ap_error *err)
{
    char path[PATH_SIZE];
    ap_status status = aliases_path(model_dir, path, sizeof(path), err);
    if (status != AP_OK)
        return status;
    return write_json(path, doc, err);
}

static ap_status set_alias_locked(const char *model_dir, const char *alias, int version,
                                  const ap_registry_move *move, int *previous, ap_error *err)
{
    json_t *doc = NULL;
    ap_status status = load_aliases(model_dir, &doc, err);
    if (status != AP_OK)
        return status;
    int current = alias_target(doc, alias);
    if (previous != NULL)
        *previous = current;
    if (current != version)
        status = record_move(doc, alias, "set", current, version, move, err);
    if (current != version && status == AP_OK)
        status = save_aliases(model_dir, doc, err);
    json_decref(doc);
    return status;
}

static ap_status set_alias(ap_registry *base, const char *model, const char *alias, int version,
                           const ap_registry_move *move, int *previous, ap_error *err)
{
    const local_registry *registry = (const local_registry *)base;
    char model_dir[PATH_SIZE];
    ap_status status = model_dir_path(registry, model, model_dir, sizeof(model_dir), err);
    if (status == AP_OK)
        status = ap_registry_check_alias_name(alias, err);
    if (status == AP_OK)
        status = check_move(move, err);
    if (status == AP_OK)
        status = require_model(model_dir, err);
    if (status != AP_OK)
        return status;

    /* Versions never change after publishing, so they are checked before locking. */
    json_t *record = NULL;
    status = verify_record(registry, model, version, &record, err);
    if (status == AP_OK)
        status = check_alias_policy(alias, version, record, move, err);
    json_decref(record);
    if (status != AP_OK)
        return status;

    int lock_fd = -1;
    status = lock_model(model_dir, LOCK_EX, &lock_fd, err);
    if (status != AP_OK)
        return status;
    status = set_alias_locked(model_dir, alias, version, move, previous, err);
    unlock_model(lock_fd);
    return status;
}

static ap_status get_alias(ap_registry *base, const char *model, const char *alias, int *version,
                           ap_error *err)
{
    const local_registry *registry = (const local_registry *)base;
    char model_dir[PATH_SIZE];
    ap_status status = model_dir_path(registry, model, model_dir, sizeof(model_dir), err);
    if (status == AP_OK)
        status = ap_registry_check_alias_name(alias, err);
    if (status == AP_OK)
        status = require_model(model_dir, err);
    json_t *doc = NULL;
    if (status == AP_OK)
        status = load_aliases(model_dir, &doc, err);
    if (status != AP_OK)
        return status;
    int target = alias_target(doc, alias);
    json_decref(doc);
    if (target == 0)
        return ap_error_set(err, AP_ERR_NOT_FOUND,
                            "alias %s does not point at any version; set it first", alias);
    *version = target;
    return AP_OK;
}

static ap_status rollback_locked(const local_registry *registry, const char *model,
                                 const char *model_dir, const char *alias, int target,
                                 const ap_registry_move *move, int *version, ap_error *err)
{
    json_t *doc = NULL, *record = NULL;
    ap_status status = load_aliases(model_dir, &doc, err);
    if (status != AP_OK)
        return status;
    int current = alias_target(doc, alias);
    int destination = target > 0 ? target : rollback_target(doc, alias, current);
    if (current == 0)
        status = ap_error_set(err, AP_ERR_NOT_FOUND,
                              "alias %s does not point at any version, so there is nothing to "
                              "roll back",
                              alias);
    else if (destination < 0)
        status = ap_error_set(err, AP_ERR_NOMEM, "cannot replay the history of alias %s", alias);
    else if (destination == 0)
        status = ap_error_set(err, AP_ERR_NOT_FOUND,
                              "alias %s has no earlier version in its history; name the version "
                              "to roll back to",
                              alias);
    else if (destination == current)
        status = ap_error_set(err, AP_ERR_INVALID, "alias %s already points at version %d", alias,
                              current);
    if (status == AP_OK)
        status = verify_record(registry, model, destination, &record, err);
    if (status == AP_OK)
        status = check_alias_policy(alias, destination, record, move, err);
    if (status == AP_OK)
        status = record_move(doc, alias, target > 0 ? "rollback-to" : "rollback", current,
                             destination, move, err);
    if (status == AP_OK)
        status = save_aliases(model_dir, doc, err);
    if (status == AP_OK && version != NULL)
        *version = destination;
    json_decref(record);
    json_decref(doc);
    return status;
}

static ap_status rollback(ap_registry *base, const char *model, const char *alias, int target,
                          const ap_registry_move *move, int *version, ap_error *err)
{
    const local_registry *registry = (const local_registry *)base;
    char model_dir[PATH_SIZE];
    ap_status status = model_dir_path(registry, model, model_dir, sizeof(model_dir), err);
    if (status == AP_OK)
        status = ap_registry_check_alias_name(alias, err);
    if (status == AP_OK)
        status = check_move(move, err);
    if (status == AP_OK && target < 0)
        status = ap_error_set(err, AP_ERR_INVALID,
                              "rollback target %d is invalid; give a version number, or 0 for "
                              "the previous version",
                              target);
    if (status == AP_OK)
        status = require_model(model_dir, err);
    int lock_fd = -1;
    if (status == AP_OK)
        status = lock_model(model_dir, LOCK_EX, &lock_fd, err);
    if (status != AP_OK)
        return status;
    status = rollback_locked(registry, model, model_dir, alias, target, move, version, err);
    unlock_model(lock_fd);
    return status;
}

static ap_status history(ap_registry *base, const char *model, json_t **entries, ap_error *err)
{
    const local_registry *registry = (const local_registry *)base;
    char model_dir[PATH_SIZE];
    ap_status status = model_dir_path(registry, model, model_dir, sizeof(model_dir), err);
    if (status == AP_OK)
        status = require_model(model_dir, err);
    json_t *doc = NULL;
    if (status == AP_OK)
        status = load_aliases(model_dir, &doc, err);
    if (status != AP_OK)
        return status;
    *entries = json_incref(json_object_get(doc, "history"));
    json_decref(doc);
    return AP_OK;
}

/* ---- Listing and showing versions ---- */

static int compare_ints(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static ap_status scan_versions(const char *versions_dir, int **numbers, size_t *count,
                               ap_error *err)
{
    *numbers = NULL;
    *count = 0;
    DIR *dir = opendir(versions_dir);
    if (dir == NULL && errno == ENOENT)
        return AP_OK;
    if (dir == NULL)
        return ap_error_set(err, AP_ERR_IO, "cannot list %s: %s", versions_dir, strerror(errno));
    size_t capacity = 0;
    ap_status status = AP_OK;
    struct dirent *entry;
    int number;
    while (status == AP_OK && (entry = readdir(dir)) != NULL) {
        if (!parse_version_dir(entry->d_name, &number))
            continue;
        if (*count == capacity) {
            capacity = capacity > 0 ? 2 * capacity : 16;
            int *grown = realloc(*numbers, capacity * sizeof(**numbers));
            if (grown == NULL) {
                status = ap_error_set(err, AP_ERR_NOMEM, "cannot list %s", versions_dir);
                break;
            }
            *numbers = grown;
        }
        (*numbers)[(*count)++] = number;
    }
    closedir(dir);
    if (status != AP_OK) {
        free(*numbers);
        *numbers = NULL;
        *count = 0;
        return status;
    }
    /* A registry without versions has no array, and qsort must not get a null pointer. */
    if (*count > 1)
        qsort(*numbers, *count, sizeof(**numbers), compare_ints);
    return AP_OK;
}

static ap_status collect_aliases(const json_t *doc, ap_registry_version_info *info, ap_error *err)
{
    json_t *aliases = json_object_get(doc, "aliases");
    const char *alias;
    json_t *version;
    json_object_foreach(aliases, alias, version)
    {
        if (json_integer_value(version) != info->version)
            continue;
        char **grown = realloc(info->aliases, (info->alias_count + 1) * sizeof(*grown));
        char *copy = grown != NULL ? strdup(alias) : NULL;
        if (grown != NULL)
            info->aliases = grown;
        if (copy == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot list the aliases of version %d",
                                info->version);
        info->aliases[info->alias_count++] = copy;
    }
    return AP_OK;
}

static void describe_version(const local_registry *registry, const char *model,
                             ap_registry_version_info *info)
{
    json_t *record = NULL;
    info->complete = load_record(registry, model, info->version, &record, NULL) == AP_OK;
    const char *created = json_string_value(json_object_get(record, "created"));
    const char *verdict =
        json_string_value(json_object_get(json_object_get(record, "validation"), "verdict"));
    snprintf(info->created, sizeof(info->created), "%s", created != NULL ? created : "");
    snprintf(info->verdict, sizeof(info->verdict), "%s", verdict != NULL ? verdict : "none");
    json_decref(record);
}

static ap_status list_versions(ap_registry *base, const char *model,
                               ap_registry_version_info **versions, size_t *count, ap_error *err)
{
    const local_registry *registry = (const local_registry *)base;
    char model_dir[PATH_SIZE], versions_dir[PATH_SIZE];
    *versions = NULL;
    *count = 0;
    ap_status status = model_dir_path(registry, model, model_dir, sizeof(model_dir), err);
    if (status == AP_OK)
        status = require_model(model_dir, err);
    json_t *doc = NULL;
    if (status == AP_OK)
        status = load_aliases(model_dir, &doc, err);
    int *numbers = NULL;
    size_t found = 0;
    if (status == AP_OK)
        status = ap_path_join(versions_dir, sizeof(versions_dir), model_dir, "versions", err);
    if (status == AP_OK)
        status = scan_versions(versions_dir, &numbers, &found, err);
    ap_registry_version_info *list = NULL;
    if (status == AP_OK && found > 0) {
        list = calloc(found, sizeof(*list));
        if (list == NULL)
            status = ap_error_set(err, AP_ERR_NOMEM, "cannot list %s", versions_dir);
    }
    for (size_t i = 0; status == AP_OK && i < found; i++) {
        list[i].version = numbers[i];
        describe_version(registry, model, &list[i]);
        status = collect_aliases(doc, &list[i], err);
    }
    free(numbers);
    json_decref(doc);
    if (status != AP_OK) {
        ap_registry_free_versions(list, found);
        return status;
    }
    *versions = list;
    *count = found;
    return AP_OK;
}

static ap_status file_path(ap_registry *base, const char *model, int version, const char *file_name,
                           char *path, size_t path_size, ap_error *err)
{
    const local_registry *registry = (const local_registry *)base;
    char version_dir[PATH_SIZE];
    ap_status status =
        version_dir_path(registry, model, version, version_dir, sizeof(version_dir), err);
    if (status == AP_OK)
        status = check_file_name(file_name, err);
    if (status == AP_OK)
        status = ap_path_join(path, path_size, version_dir, file_name, err);
    if (status == AP_OK && !ap_path_exists(path))
        status = ap_error_set(err, AP_ERR_NOT_FOUND,
                              "version %d has no file %s; show the version to see its files",
                              version, file_name);
    return status;
}

/* ---- The backend table ---- */

static ap_status show_version(ap_registry *base, const char *model, int version, json_t **info,
                              ap_error *err)
{
    *info = NULL;
    return load_record((const local_registry *)base, model, version, info, err);
}

static ap_status verify_version(ap_registry *base, const char *model, int version, ap_error *err)
{
    return verify_record((const local_registry *)base, model, version, NULL, err);
}

static void local_close(ap_registry *base)
{
    free(base);
}

static const ap_registry_ops local_ops = {
    .register_version = register_version,
    .set_alias = set_alias,
    .get_alias = get_alias,
    .rollback = rollback,
    .list_versions = list_versions,
    .show_version = show_version,
    .verify_version = verify_version,
    .history = history,
    .file_path = file_path,
    .close = local_close,
};

ap_status ap_local_registry_open(const char *root, ap_registry **registry, ap_error *err)
{
    *registry = NULL;
    size_t length = root != NULL ? strlen(root) : 0;
    if (length == 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "registry folder is empty; set it to a folder path");
    while (length > 1 && root[length - 1] == '/')
        length--;
    if (length > ROOT_MAX)
        return ap_error_set(err, AP_ERR_INVALID,
                            "registry folder %.80s... is too long; use a path of at most %d "
                            "bytes",
                            root, ROOT_MAX);
    struct stat info;
    if (stat(root, &info) == 0 && !S_ISDIR(info.st_mode))
        return ap_error_set(err, AP_ERR_INVALID,
                            "registry %s is not a folder; point it at a folder", root);
    local_registry *local = calloc(1, sizeof(*local));
    if (local == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot open registry %s", root);
    local->base.ops = &local_ops;
    local->base.location = local->root;
    memcpy(local->root, root, length);
    local->root[length] = '\0';
    *registry = &local->base;
    return AP_OK;
}
