/* Store URIs, and the checks that keep object keys and archive entries
 * inside the local folder they are written to. */

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/common/uri.h"
#include "pipeline/store/store.h"

bool ap_store_is_s3(const char *text)
{
    return strncmp(text, "s3://", 5) == 0;
}

static ap_status check_bucket(const char *bucket, const char *uri, ap_error *err)
{
    size_t length = strlen(bucket);
    bool ok = length >= 3 && length <= 63;
    for (const char *p = bucket; ok && *p != '\0'; p++)
        ok = islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '.' || *p == '-';
    if (!ok)
        return ap_error_set(err, AP_ERR_INVALID,
                            "%.300s: bucket name \"%.80s\" is invalid; S3 bucket names have 3 to "
                            "63 characters of a-z, 0-9, '.' and '-'",
                            uri, bucket);
    return AP_OK;
}

ap_status ap_store_check_key(const char *name, ap_error *err)
{
    size_t length = strlen(name);
    if (length == 0)
        return ap_error_set(err, AP_ERR_INVALID, "an empty name cannot be stored locally");
    if (length > AP_STORE_KEY_MAX)
        return ap_error_set(err, AP_ERR_INVALID, "name %.80s... is longer than %d bytes", name,
                            AP_STORE_KEY_MAX);
    if (name[0] == '/')
        return ap_error_set(err, AP_ERR_INVALID,
                            "name %.300s is an absolute path; only relative names are stored",
                            name);
    for (const char *p = name; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return ap_error_set(err, AP_ERR_INVALID, "name %.300s contains a control character",
                                name);
    const char *segment = name;
    for (;;) {
        size_t size = strcspn(segment, "/");
        if (size == 0 || (size == 1 && segment[0] == '.') ||
            (size == 2 && segment[0] == '.' && segment[1] == '.'))
            return ap_error_set(err, AP_ERR_INVALID,
                                "name %.300s has an empty, \".\" or \"..\" path segment, which "
                                "could leave its folder",
                                name);
        if (segment[size] == '\0')
            break;
        segment += size + 1;
    }
    return AP_OK;
}

ap_status ap_store_uri_parse(const char *text, ap_store_uri *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    /* Messages show the URI with its userinfo masked, since that may be a secret. */
    char shown[AP_PATH_MAX];
    ap_uri_redact(text, shown, sizeof(shown));
    if (!ap_store_is_s3(text)) {
        const char *path = text;
        if (strncmp(text, "file://", 7) == 0) {
            path = text + 7;
            if (strncmp(path, "localhost/", 10) == 0)
                path += 9;
            if (path[0] != '/')
                return ap_error_set(err, AP_ERR_INVALID,
                                    "%.300s: a file:// URI needs an absolute path, as in "
                                    "file:///data/bees",
                                    shown);
        } else if (strstr(text, "://") != NULL) {
            return ap_error_set(err, AP_ERR_INVALID,
                                "%.300s: unsupported URI scheme; use a path, file:///PATH or "
                                "s3://BUCKET/PREFIX",
                                shown);
        }
        if (path[0] == '\0' ||
            snprintf(out->path, sizeof(out->path), "%s", path) >= (int)sizeof(out->path))
            return ap_error_set(err, AP_ERR_INVALID, "path %.80s... is empty or too long", shown);
        out->kind = AP_STORE_FILE;
        return AP_OK;
    }
    out->kind = AP_STORE_S3;
    const char *rest = text + 5;
    size_t bucket_length = strcspn(rest, "/");
    if (memchr(rest, '@', bucket_length) != NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "%.300s: an s3:// URI takes no user name or password; remove it and "
                            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                            shown);
    if (bucket_length >= sizeof(out->bucket))
        return ap_error_set(err, AP_ERR_INVALID, "%.300s: the bucket name is too long", shown);
    memcpy(out->bucket, rest, bucket_length);
    ap_status status = check_bucket(out->bucket, shown, err);
    if (status != AP_OK)
        return status;
    const char *prefix = rest + bucket_length;
    while (*prefix == '/')
        prefix++;
    size_t length = strlen(prefix);
    while (length > 0 && prefix[length - 1] == '/')
        length--;
    if (length == 0)
        return AP_OK;
    if (length + 2 > sizeof(out->prefix))
        return ap_error_set(err, AP_ERR_INVALID, "%.200s...: the prefix is too long", shown);
    snprintf(out->prefix, sizeof(out->prefix), "%.*s/", (int)length, prefix);
    out->prefix[length] = '\0';
    status = ap_store_check_key(out->prefix, err);
    out->prefix[length] = '/';
    if (status != AP_OK)
        return ap_error_prefix(err, "%.300s", shown);
    return AP_OK;
}

/* Create folder (one level) unless it exists, and reject a symbolic link. */
static ap_status make_folder(const char *folder, ap_error *err)
{
    if (mkdir(folder, 0755) != 0 && errno != EEXIST)
        return ap_error_set(err, AP_ERR_IO, "cannot create folder %s: %s", folder, strerror(errno));
    struct stat info;
    if (lstat(folder, &info) != 0)
        return ap_error_set(err, AP_ERR_IO, "cannot inspect %s: %s", folder, strerror(errno));
    if (S_ISLNK(info.st_mode) || !S_ISDIR(info.st_mode))
        return ap_error_set(err, AP_ERR_INVALID,
                            "%s is a symbolic link or not a folder; remove it, since files are "
                            "only written into real folders",
                            folder);
    return AP_OK;
}

/* Check that the resolved parent folder of path lies inside the resolved root. */
static ap_status check_inside(const char *root, const char *path, ap_error *err)
{
    char real_root[PATH_MAX], real_parent[PATH_MAX], parent[AP_PATH_MAX * 2];
    snprintf(parent, sizeof(parent), "%s", path);
    char *slash = strrchr(parent, '/');
    if (slash != NULL)
        *slash = '\0';
    if (realpath(root, real_root) == NULL || realpath(parent, real_parent) == NULL)
        return ap_error_set(err, AP_ERR_IO, "cannot resolve %s: %s", parent, strerror(errno));
    size_t length = strlen(real_root);
    bool inside =
        strncmp(real_parent, real_root, length) == 0 &&
        (real_parent[length] == '\0' || real_parent[length] == '/' || strcmp(real_root, "/") == 0);
    if (!inside)
        return ap_error_set(err, AP_ERR_INVALID, "%s resolves to %s, outside %s", path, real_parent,
                            real_root);
    return AP_OK;
}

ap_status ap_store_local_path(const char *root, const char *name, char *out, size_t out_size,
                              ap_error *err)
{
    ap_status status = ap_store_check_key(name, err);
    if (status == AP_OK)
        status = ap_path_join(out, out_size, root, name, err);
    if (status == AP_OK)
        status = ap_mkdirs(root, err);
    if (status != AP_OK)
        return status;
    /* Create each parent below root, refusing links planted in between. */
    size_t root_length = strlen(out) - strlen(name);
    for (char *p = out + root_length; status == AP_OK && *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        status = make_folder(out, err);
        *p = '/';
    }
    if (status == AP_OK) {
        struct stat info;
        if (lstat(out, &info) == 0 && S_ISLNK(info.st_mode))
            status = ap_error_set(err, AP_ERR_INVALID,
                                  "%s is a symbolic link; remove it, since files are only "
                                  "written into real folders",
                                  out);
    }
    if (status == AP_OK)
        status = check_inside(root, out, err);
    return status;
}

void ap_store_s3_options(const ap_config *cfg, ap_s3_options *out)
{
    ap_s3_options_default(out);
    const ap_store_config *store = &cfg->store;
    snprintf(out->endpoint, sizeof(out->endpoint), "%s", store->endpoint);
    snprintf(out->region, sizeof(out->region), "%s", store->region);
    snprintf(out->ca_bundle, sizeof(out->ca_bundle), "%s", store->ca_bundle);
    if (strcmp(store->path_style, "true") == 0)
        out->addressing = AP_S3_ADDRESSING_PATH;
    else if (strcmp(store->path_style, "false") == 0)
        out->addressing = AP_S3_ADDRESSING_VIRTUAL;
    else
        out->addressing = AP_S3_ADDRESSING_AUTO;
    out->concurrency = store->concurrency;
    out->retries = store->retries;
    out->stall_timeout_s = store->timeout;
}
