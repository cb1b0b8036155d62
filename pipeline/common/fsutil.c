#include "pipeline/common/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

ap_status ap_mkdirs(const char *path, ap_error *err)
{
    char buffer[4096];
    if (snprintf(buffer, sizeof(buffer), "%s", path) >= (int)sizeof(buffer))
        return ap_error_set(err, AP_ERR_INVALID, "path too long: %s", path);
    for (char *p = buffer + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buffer, 0755) != 0 && errno != EEXIST)
            return ap_error_set(err, AP_ERR_IO, "cannot create folder %s: %s", buffer,
                                strerror(errno));
        *p = '/';
    }
    if (mkdir(buffer, 0755) != 0 && errno != EEXIST)
        return ap_error_set(err, AP_ERR_IO, "cannot create folder %s: %s", buffer, strerror(errno));
    return AP_OK;
}

static void fsync_parent(const char *path)
{
    char copy[4096];
    snprintf(copy, sizeof(copy), "%s", path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

ap_status ap_atomic_open(ap_atomic_file *file, const char *path, ap_error *err)
{
    file->fd = -1;
    if (snprintf(file->final_path, sizeof(file->final_path), "%s", path) >=
            (int)sizeof(file->final_path) ||
        snprintf(file->temp_path, sizeof(file->temp_path), "%s.tmp.XXXXXX", path) >=
            (int)sizeof(file->temp_path))
        return ap_error_set(err, AP_ERR_INVALID, "path too long: %s", path);
    file->fd = mkstemp(file->temp_path);
    if (file->fd < 0)
        return ap_error_set(err, AP_ERR_IO, "cannot create %s: %s", file->temp_path,
                            strerror(errno));
    fchmod(file->fd, 0644);
    return AP_OK;
}

ap_status ap_atomic_write(ap_atomic_file *file, const void *data, size_t size, ap_error *err)
{
    const uint8_t *bytes = data;
    while (size > 0) {
        ssize_t written = write(file->fd, bytes, size);
        if (written < 0 && errno == EINTR)
            continue;
        if (written <= 0)
            return ap_error_set(err, AP_ERR_IO, "cannot write %s: %s", file->final_path,
                                written < 0 ? strerror(errno) : "no progress");
        bytes += written;
        size -= (size_t)written;
    }
    return AP_OK;
}

ap_status ap_atomic_commit(ap_atomic_file *file, ap_error *err)
{
    if (fsync(file->fd) != 0) {
        int saved = errno;
        ap_atomic_abort(file);
        return ap_error_set(err, AP_ERR_IO, "cannot flush %s: %s", file->final_path,
                            strerror(saved));
    }
    close(file->fd);
    file->fd = -1;
    if (rename(file->temp_path, file->final_path) != 0) {
        int saved = errno;
        unlink(file->temp_path);
        return ap_error_set(err, AP_ERR_IO, "cannot rename %s to %s: %s", file->temp_path,
                            file->final_path, strerror(saved));
    }
    fsync_parent(file->final_path);
    return AP_OK;
}

void ap_atomic_abort(ap_atomic_file *file)
{
    if (file->fd >= 0)
        close(file->fd);
    file->fd = -1;
    unlink(file->temp_path);
}

ap_status ap_write_atomic(const char *path, const void *data, size_t size, ap_error *err)
{
    ap_atomic_file file;
    ap_status status = ap_atomic_open(&file, path, err);
    if (status != AP_OK)
        return status;
    status = ap_atomic_write(&file, data, size, err);
    if (status != AP_OK) {
        ap_atomic_abort(&file);
        return status;
    }
    return ap_atomic_commit(&file, err);
}

ap_status ap_read_file(const char *path, size_t max_size, uint8_t **data, size_t *size,
                       ap_error *err)
{
    *data = NULL;
    *size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return ap_error_set(err, errno == ENOENT ? AP_ERR_NOT_FOUND : AP_ERR_IO,
                            "cannot open %s: %s", path, strerror(errno));
    struct stat info;
    if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
        close(fd);
        return ap_error_set(err, AP_ERR_IO, "%s is not a regular file", path);
    }
    if ((size_t)info.st_size > max_size) {
        close(fd);
        return ap_error_set(err, AP_ERR_LIMIT, "%s is %lld bytes, over the limit of %zu", path,
                            (long long)info.st_size, max_size);
    }
    uint8_t *buffer = malloc((size_t)info.st_size + 1);
    if (buffer == NULL) {
        close(fd);
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %lld bytes for %s",
                            (long long)info.st_size, path);
    }
    size_t done = 0;
    while (done < (size_t)info.st_size) {
        ssize_t got = read(fd, buffer + done, (size_t)info.st_size - done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            break;
        done += (size_t)got;
    }
    close(fd);
    if (done != (size_t)info.st_size) {
        free(buffer);
        return ap_error_set(err, AP_ERR_IO, "short read on %s", path);
    }
    buffer[done] = '\0';
    *data = buffer;
    *size = done;
    return AP_OK;
}

ap_status ap_path_join(char *out, size_t out_size, const char *dir, const char *name, ap_error *err)
{
    size_t dir_len = strlen(dir);
    const char *separator = (dir_len > 0 && dir[dir_len - 1] != '/') ? "/" : "";
    if (snprintf(out, out_size, "%s%s%s", dir, separator, name) >= (int)out_size)
        return ap_error_set(err, AP_ERR_INVALID, "path too long: %s%s%s", dir, separator, name);
    return AP_OK;
}

/* Remove name below parent_fd recursively. Returns 0, or -1 with errno set. */
static int remove_tree_at(int parent_fd, const char *name)
{
    if (unlinkat(parent_fd, name, 0) == 0 || errno == ENOENT)
        return 0;
    /* Linux fails with EISDIR on a folder, and POSIX allows EPERM. */
    if (errno != EISDIR && errno != EPERM)
        return -1;
    int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR *folder = fd >= 0 ? fdopendir(fd) : NULL;
    if (folder == NULL) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int result = 0;
    struct dirent *entry;
    while (result == 0 && (entry = readdir(folder)) != NULL)
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0)
            result = remove_tree_at(dirfd(folder), entry->d_name);
    int saved_errno = errno;
    closedir(folder);
    if (result != 0) {
        errno = saved_errno;
        return -1;
    }
    return unlinkat(parent_fd, name, AT_REMOVEDIR) == 0 || errno == ENOENT ? 0 : -1;
}

ap_status ap_remove_tree(const char *path, ap_error *err)
{
    if (remove_tree_at(AT_FDCWD, path) != 0)
        return ap_error_set(err, AP_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    return AP_OK;
}

int ap_path_exists(const char *path)
{
    struct stat info;
    return stat(path, &info) == 0;
}

static void digest_to_hex(const unsigned char *digest, char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[64] = '\0';
}

struct ap_sha256_ctx {
    EVP_MD_CTX *md;
};

ap_sha256_ctx *ap_sha256_begin(void)
{
    ap_sha256_ctx *ctx = malloc(sizeof(*ctx));
    if (ctx == NULL)
        return NULL;
    ctx->md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx->md, EVP_sha256(), NULL);
    return ctx;
}

void ap_sha256_update(ap_sha256_ctx *ctx, const void *data, size_t size)
{
    EVP_DigestUpdate(ctx->md, data, size);
}

void ap_sha256_end(ap_sha256_ctx *ctx, char hex[65])
{
    unsigned char digest[32];
    unsigned int length = 0;
    EVP_DigestFinal_ex(ctx->md, digest, &length);
    EVP_MD_CTX_free(ctx->md);
    free(ctx);
    digest_to_hex(digest, hex);
}

void ap_sha256_hex(const void *data, size_t size, char hex[65])
{
    ap_sha256_ctx *ctx = ap_sha256_begin();
    ap_sha256_update(ctx, data, size);
    ap_sha256_end(ctx, hex);
}

ap_status ap_sha256_file(const char *path, char hex[65], ap_error *err)
{
    FILE *file = fopen(path, "rb");
    if (file == NULL)
        return ap_error_set(err, AP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    ap_sha256_ctx *ctx = ap_sha256_begin();
    unsigned char buffer[1 << 16];
    size_t got;
    while ((got = fread(buffer, 1, sizeof(buffer), file)) > 0)
        ap_sha256_update(ctx, buffer, got);
    int failed = ferror(file);
    fclose(file);
    ap_sha256_end(ctx, hex);
    if (failed)
        return ap_error_set(err, AP_ERR_IO, "cannot read %s", path);
    return AP_OK;
}
