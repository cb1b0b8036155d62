/* Unpacking a dataset archive safely with libarchive. */

#include <stdio.h>
#include <string.h>

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
    if (status != AP_OK)
        return status;
    const void *block;
    size_t size;
    la_int64_t offset;
    int code;
    while (status == AP_OK &&
           (code = archive_read_data_block(archive, &block, &size, &offset)) == ARCHIVE_OK) {
        *total += (int64_t)size;
        if (*total > UNPACK_MAX_BYTES)
            status = ap_error_set(err, AP_ERR_LIMIT, "archive unpacks to more than %lld bytes",
                                  (long long)UNPACK_MAX_BYTES);
        else
            status = ap_atomic_write(&file, block, size, err);
    }
    if (status == AP_OK && code != ARCHIVE_EOF)
        status = ap_error_set(err, AP_ERR_FORMAT, "cannot unpack %s: %s", name,
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
                            "archive entry %.300s is a link or a special file; only files and "
                            "folders are unpacked",
                            name);
    ap_status status = ap_store_check_key(name, err);
    if (status != AP_OK)
        return ap_error_prefix(err, "archive entry rejected");
    if (type == AE_IFDIR) {
        char path[AP_PATH_MAX * 2], inner[AP_PATH_MAX + 8];
        snprintf(inner, sizeof(inner), "%s/x", name);
        return ap_store_local_path(dir, inner, path, sizeof(path), err);
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
    while (status == AP_OK && (code = archive_read_next_header(archive, &entry)) == ARCHIVE_OK)
        status = unpack_entry(archive, entry, dir, &total, files, err);
    if (status == AP_OK && code != ARCHIVE_EOF)
        status = ap_error_set(err, AP_ERR_FORMAT, "archive %s is damaged: %s", path,
                              archive_error_string(archive));
    archive_read_free(archive);
    return status;
}
