/* Unpacking a dataset archive safely with libarchive, and moving the
 * unpacked files from their staging folder into place. */

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <archive.h>
#include <archive_entry.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/store/dataset_fetch.h"
#include "pipeline/store/store.h"

/* Unpacking stops past this many bytes, so a zip bomb cannot fill the disk. */
#define UNPACK_MAX_BYTES ((int64_t)64 << 30)
#define UNPACK_MAX_FILES 10000000L

/* The entry name without a leading "./" or trailing '/'. */
static void clean_name(const char *raw, char *out, size_t size)
{
    while (strncmp(raw, "./", 2) == 0)
        raw += 2;
    snprintf(out, size, "%s", raw);
    size_t length = strlen(out);
    while (length > 0 && out[length - 1] == '/')
        out[--length] = '\0';
}

static ap_status write_entry(struct archive *archive, const char *dir, const char *name,
                             int64_t *total, ap_error *err)
{
    char path[AP_PATH_MAX * 2];
    ap_status status = ap_store_local_path(dir, name, path, sizeof(path), err);
    ap_atomic_file file;
    if (status == AP_OK)
        status = ap_atomic_open(&file, path, err);
    if (status != AP_OK) {
        ap_error_prefix(err, "entry %.300s", name);
        return status;
    }
    const void *block;
    size_t size;
    la_int64_t offset;
    int code;
    while (status == AP_OK &&
           (code = archive_read_data_block(archive, &block, &size, &offset)) == ARCHIVE_OK) {
        *total += (int64_t)size;
        if (*total > UNPACK_MAX_BYTES)
            status = ap_error_set(err, AP_ERR_LIMIT,
                                  "entry %.300s: the archive unpacks to more than %lld bytes", name,
                                  (long long)UNPACK_MAX_BYTES);
        else
            status = ap_atomic_write(&file, block, size, err);
    }
    if (status == AP_OK && code != ARCHIVE_EOF)
        status = ap_error_set(err, AP_ERR_FORMAT, "cannot unpack entry %.300s: %s", name,
                              archive_error_string(archive));
    if (status == AP_OK)
        return ap_atomic_commit(&file, err);
    ap_atomic_abort(&file);
    return status;
}

static ap_status unpack_entry(struct archive *archive, struct archive_entry *entry, const char *dir,
                              int64_t *total, long *files, ap_error *err)
{
    const char *raw = archive_entry_pathname_utf8(entry);
    if (raw == NULL)
        raw = archive_entry_pathname(entry);
    char name[AP_PATH_MAX];
    clean_name(raw ? raw : "", name, sizeof(name));
    mode_t type = archive_entry_filetype(entry);
    if (archive_entry_symlink(entry) != NULL || archive_entry_hardlink(entry) != NULL ||
        (type != AE_IFREG && type != AE_IFDIR))
        return ap_error_set(err, AP_ERR_FORMAT,
                            "entry %.300s is a link or a special file; only files and "
                            "folders are unpacked",
                            name);
    ap_status status = ap_store_check_key(name, err);
    if (status != AP_OK)
        return ap_error_prefix(err, "entry rejected");
    if (type == AE_IFDIR) {
        char path[AP_PATH_MAX * 2], inner[AP_PATH_MAX + 8];
        snprintf(inner, sizeof(inner), "%s/x", name);
        status = ap_store_local_path(dir, inner, path, sizeof(path), err);
        if (status != AP_OK)
            ap_error_prefix(err, "entry %.300s", name);
        return status;
    }
    if (++*files > UNPACK_MAX_FILES)
        return ap_error_set(err, AP_ERR_LIMIT, "archive has more than %ld files", UNPACK_MAX_FILES);
    return write_entry(archive, dir, name, total, err);
}

ap_status ap_dataset_unpack(const char *path, const char *dir, long *files, ap_error *err)
{
    *files = 0;
    struct archive *archive = archive_read_new();
    if (archive == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot create an archive reader");
    archive_read_support_format_zip(archive);
    archive_read_support_format_tar(archive);
    archive_read_support_filter_all(archive);
    ap_status status = ap_mkdirs(dir, err);
    if (status == AP_OK && archive_read_open_filename(archive, path, 1 << 16) != ARCHIVE_OK)
        status = ap_error_set(err, AP_ERR_FORMAT, "cannot open archive %s: %s", path,
                              archive_error_string(archive));
    int64_t total = 0;
    struct archive_entry *entry;
    int code = ARCHIVE_OK;
    while (status == AP_OK && (code = archive_read_next_header(archive, &entry)) == ARCHIVE_OK) {
        status = unpack_entry(archive, entry, dir, &total, files, err);
        if (status != AP_OK)
            ap_error_prefix(err, "archive %s", path);
    }
    if (status == AP_OK && code != ARCHIVE_EOF)
        status = ap_error_set(err, AP_ERR_FORMAT, "archive %s is damaged: %s", path,
                              archive_error_string(archive));
    archive_read_free(archive);
    return status;
}

/* ---- Moving the unpacked files into place ---- */

/* A walk of a staging folder against the folder it merges into. The check
 * pass only looks for conflicts, and the move pass renames. */
typedef struct {
    char source[AP_PATH_MAX * 3];
    char target[AP_PATH_MAX * 3];
    size_t source_root_length; /* the staging folder's part of source */
    bool move;
} merge_walk;

static ap_status merge_folder(merge_walk *walk, ap_error *err);

/* Merge walk->source into walk->target. An entry that target lacks is
 * renamed as a whole, a file replaces target's file, and a folder joins
 * target's folder. Anything else, including a symbolic link in target, is
 * a conflict, so nothing is ever written through a link. */
static ap_status merge_entry(merge_walk *walk, ap_error *err)
{
    struct stat source_info, target_info;
    if (lstat(walk->source, &source_info) != 0)
        return ap_error_set(err, AP_ERR_IO, "cannot inspect %s: %s", walk->source, strerror(errno));
    if (lstat(walk->target, &target_info) != 0) {
        if (errno != ENOENT)
            return ap_error_set(err, AP_ERR_IO, "cannot inspect %s: %s", walk->target,
                                strerror(errno));
        if (walk->move && rename(walk->source, walk->target) != 0)
            return ap_error_set(err, AP_ERR_IO, "cannot move %s to %s: %s", walk->source,
                                walk->target, strerror(errno));
        return AP_OK;
    }
    bool source_folder = S_ISDIR(source_info.st_mode);
    if (source_folder && S_ISDIR(target_info.st_mode))
        return merge_folder(walk, err);
    if (!source_folder && S_ISREG(target_info.st_mode)) {
        if (walk->move && rename(walk->source, walk->target) != 0)
            return ap_error_set(err, AP_ERR_IO, "cannot move %s to %s: %s", walk->source,
                                walk->target, strerror(errno));
        return AP_OK;
    }
    const char *found = S_ISLNK(target_info.st_mode)   ? "a symbolic link"
                        : S_ISDIR(target_info.st_mode) ? "a folder"
                        : S_ISREG(target_info.st_mode) ? "a file"
                                                       : "a special file";
    return ap_error_set(err, AP_ERR_INVALID,
                        "the archive has the %s %s, but %s is %s; move that away or unpack "
                        "into another folder",
                        source_folder ? "folder" : "file",
                        walk->source + walk->source_root_length + 1, walk->target, found);
}

static ap_status merge_folder(merge_walk *walk, ap_error *err)
{
    DIR *folder = opendir(walk->source);
    if (folder == NULL)
        return ap_error_set(err, AP_ERR_IO, "cannot read folder %s: %s", walk->source,
                            strerror(errno));
    size_t source_length = strlen(walk->source), target_length = strlen(walk->target);
    ap_status status = AP_OK;
    struct dirent *entry;
    while (status == AP_OK && (entry = readdir(folder)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        size_t source_room = sizeof(walk->source) - source_length;
        size_t target_room = sizeof(walk->target) - target_length;
        if (snprintf(walk->source + source_length, source_room, "/%s", entry->d_name) >=
                (int)source_room ||
            snprintf(walk->target + target_length, target_room, "/%s", entry->d_name) >=
                (int)target_room)
            status = ap_error_set(err, AP_ERR_INVALID, "path %.300s/%.80s... is too long",
                                  walk->target, entry->d_name);
        else
            status = merge_entry(walk, err);
        walk->source[source_length] = '\0';
        walk->target[target_length] = '\0';
    }
    closedir(folder);
    return status;
}

ap_status ap_dataset_merge(const char *staging, const char *dir, ap_error *err)
{
    merge_walk walk;
    if (snprintf(walk.source, sizeof(walk.source), "%s", staging) >= (int)sizeof(walk.source) ||
        snprintf(walk.target, sizeof(walk.target), "%s", dir) >= (int)sizeof(walk.target))
        return ap_error_set(err, AP_ERR_INVALID, "path %.300s or %.300s is too long", staging, dir);
    walk.source_root_length = strlen(staging);
    walk.move = false;
    ap_status status = merge_folder(&walk, err);
    if (status != AP_OK)
        return status;
    walk.move = true;
    status = merge_folder(&walk, err);
    if (status != AP_OK && err != NULL) {
        char reason[AP_ERROR_MESSAGE_MAX];
        snprintf(reason, sizeof(reason), "%s", err->message);
        return ap_error_set(err, status,
                            "%.600s; %.300s now contains part of the archive, so run the "
                            "command again to finish",
                            reason, dir);
    }
    return status;
}
