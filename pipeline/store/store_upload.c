/* Uploading a local folder to an S3 prefix or another local folder, and the
 * run folders that live in S3. */

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/common/log.h"
#include "pipeline/store/store_internal.h"

#define SCAN_DEPTH_MAX 32
#define COPY_BUFFER    (1 << 16)

typedef struct {
    char **names; /* relative to the folder */
    size_t count;
    size_t capacity;
} name_list;

static void free_names(name_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->names[i]);
    free(list->names);
    memset(list, 0, sizeof(*list));
}

static ap_status add_name(name_list *list, const char *name, ap_error *err)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? 2 * list->capacity : 256;
        char **grown = realloc(list->names, capacity * sizeof(*grown));
        if (grown == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot list %zu files", capacity);
        list->names = grown;
        list->capacity = capacity;
    }
    if ((list->names[list->count] = strdup(name)) == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot list %s", name);
    list->count++;
    return AP_OK;
}

static bool skipped(const char *relative, const char *const *skip)
{
    if (strcmp(relative, STORE_SYNC_RECORD) == 0 || strcmp(relative, STORE_SYNC_LOCK) == 0)
        return true;
    for (size_t i = 0; skip != NULL && skip[i] != NULL; i++)
        if (strcmp(relative, skip[i]) == 0)
            return true;
    return strstr(relative, ".tmp.") != NULL; /* atomic writes in progress */
}

/* List regular files below root/relative. Symbolic links are not followed. */
static ap_status scan(const char *root, const char *relative, int depth, const char *const *skip,
                      name_list *out, ap_error *err)
{
    char folder[AP_PATH_MAX * 2];
    ap_status status = ap_path_join(folder, sizeof(folder), root, relative, err);
    DIR *dir = status == AP_OK ? opendir(folder) : NULL;
    if (status == AP_OK && dir == NULL)
        return ap_error_set(err, AP_ERR_IO, "cannot list folder %s: %s", folder, strerror(errno));
    struct dirent *entry;
    while (status == AP_OK && (entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        char child[AP_PATH_MAX * 2], path[AP_PATH_MAX * 4];
        if (snprintf(child, sizeof(child), "%s%s%s", relative, relative[0] ? "/" : "",
                     entry->d_name) >= (int)sizeof(child))
            continue;
        if ((depth == 0 && skipped(child, skip)) || strstr(entry->d_name, ".tmp.") != NULL)
            continue;
        snprintf(path, sizeof(path), "%s/%s", root, child);
        struct stat info;
        if (lstat(path, &info) != 0)
            continue;
        if (S_ISDIR(info.st_mode) && depth < SCAN_DEPTH_MAX)
            status = scan(root, child, depth + 1, skip, out, err);
        else if (S_ISREG(info.st_mode))
            status = add_name(out, child, err);
    }
    if (dir != NULL)
        closedir(dir);
    return status;
}

static void hex(const unsigned char *bytes, size_t size, char *out)
{
    for (size_t i = 0; i < size; i++)
        snprintf(out + 2 * i, 3, "%02x", bytes[i]);
}

/* The ETag S3 would give path when it is uploaded with these options: the
 * MD5 of the content, or for a multipart upload the MD5 of the part MD5s
 * followed by "-PARTS". */
static ap_status expected_etag(const char *path, int64_t size, const ap_s3_options *options,
                               char out[AP_S3_ETAG_MAX], ap_error *err)
{
    FILE *file = fopen(path, "rb");
    unsigned char *buffer = malloc(COPY_BUFFER);
    EVP_MD_CTX *whole = EVP_MD_CTX_new(), *part = EVP_MD_CTX_new();
    ap_status status = AP_OK;
    if (file == NULL || buffer == NULL || whole == NULL || part == NULL)
        status = ap_error_set(err, AP_ERR_IO, "cannot read %s", path);
    bool multipart = size >= options->multipart_threshold;
    int parts = 0;
    int64_t in_part = 0;
    unsigned char digest[16];
    unsigned int length;
    if (status == AP_OK) {
        EVP_DigestInit_ex(whole, EVP_md5(), NULL);
        EVP_DigestInit_ex(part, EVP_md5(), NULL);
    }
    size_t got;
    while (status == AP_OK && (got = fread(buffer, 1, COPY_BUFFER, file)) > 0) {
        size_t offset = 0;
        while (offset < got) {
            size_t take = got - offset;
            if (multipart && (int64_t)take > options->part_size - in_part)
                take = (size_t)(options->part_size - in_part);
            EVP_DigestUpdate(multipart ? part : whole, buffer + offset, take);
            in_part += (int64_t)take;
            offset += take;
            if (multipart && in_part == options->part_size) {
                EVP_DigestFinal_ex(part, digest, &length);
                EVP_DigestUpdate(whole, digest, 16);
                EVP_DigestInit_ex(part, EVP_md5(), NULL);
                parts++;
                in_part = 0;
            }
        }
    }
    if (status == AP_OK && multipart && in_part > 0) {
        EVP_DigestFinal_ex(part, digest, &length);
        EVP_DigestUpdate(whole, digest, 16);
        parts++;
    }
    if (status == AP_OK) {
        EVP_DigestFinal_ex(whole, digest, &length);
        hex(digest, 16, out);
        if (multipart)
            snprintf(out + 32, AP_S3_ETAG_MAX - 32, "-%d", parts);
    }
    if (file != NULL)
        fclose(file);
    free(buffer);
    EVP_MD_CTX_free(whole);
    EVP_MD_CTX_free(part);
    return status;
}

static const ap_s3_object *find_object(const ap_s3_listing *listing, const char *key)
{
    size_t low = 0, high = listing->count;
    while (low < high) {
        size_t middle = (low + high) / 2;
        int order = strcmp(listing->objects[middle].key, key);
        if (order == 0)
            return &listing->objects[middle];
        if (order < 0)
            low = middle + 1;
        else
            high = middle;
    }
    return NULL;
}

static int compare_objects(const void *a, const void *b)
{
    return strcmp(((const ap_s3_object *)a)->key, ((const ap_s3_object *)b)->key);
}

/* Upload the files whose remote copy is missing or different. */
static ap_status upload_changed(ap_s3_client *client, const ap_s3_options *options,
                                const ap_store_uri *uri, const char *local_dir,
                                const name_list *files, const ap_s3_listing *listing,
                                ap_store_sync_stats *stats, ap_error *err)
{
    ap_s3_upload *uploads = calloc(files->count + 1, sizeof(*uploads));
    char **keys = calloc(files->count + 1, sizeof(*keys));
    char **paths = calloc(files->count + 1, sizeof(*paths));
    size_t count = 0;
    ap_status status =
        uploads && keys && paths
            ? AP_OK
            : ap_error_set(err, AP_ERR_NOMEM, "cannot plan %zu uploads", files->count);
    for (size_t i = 0; status == AP_OK && i < files->count; i++) {
        char key[AP_STORE_KEY_MAX * 2], path[AP_PATH_MAX * 4], etag[AP_S3_ETAG_MAX];
        snprintf(key, sizeof(key), "%s%s", uri->prefix, files->names[i]);
        snprintf(path, sizeof(path), "%s/%s", local_dir, files->names[i]);
        struct stat info;
        if (stat(path, &info) != 0)
            continue;
        const ap_s3_object *remote = find_object(listing, key);
        if (remote != NULL && remote->size == info.st_size) {
            status = expected_etag(path, info.st_size, options, etag, err);
            if (status == AP_OK && strcasecmp(etag, remote->etag) == 0) {
                stats->reused++;
                continue;
            }
        }
        keys[count] = strdup(key);
        paths[count] = strdup(path);
        if (keys[count] == NULL || paths[count] == NULL)
            status = ap_error_set(err, AP_ERR_NOMEM, "cannot plan the upload of %s", path);
        uploads[count] = (ap_s3_upload){.path = paths[count], .key = keys[count]};
        count++;
        stats->bytes += info.st_size;
    }
    if (status == AP_OK)
        status = ap_s3_put_files(client, uri->bucket, uploads, count, err);
    for (size_t i = 0; i < count; i++) {
        stats->transferred += uploads[i].done;
        free(keys[i]);
        free(paths[i]);
    }
    free(uploads);
    free(keys);
    free(paths);
    return status;
}

static ap_status upload_to_s3(const char *local_dir, const ap_store_uri *uri, const ap_config *cfg,
                              const name_list *files, ap_store_sync_stats *stats, ap_error *err)
{
    ap_s3_options options;
    ap_store_s3_options(cfg, &options);
    ap_s3_client *client = NULL;
    ap_status status = ap_s3_open(&options, &client, err);
    ap_s3_listing listing = {0};
    if (status == AP_OK)
        status = ap_s3_list(client, uri->bucket, uri->prefix, &listing, err);
    if (status == AP_OK) {
        /* ListObjectsV2 sorts keys by UTF-8 bytes; sorting again guards the binary search.
         * An empty listing has no array, and qsort must not get a null pointer. */
        if (listing.count > 1)
            qsort(listing.objects, listing.count, sizeof(*listing.objects), compare_objects);
        status = upload_changed(client, &options, uri, local_dir, files, &listing, stats, err);
    }
    if (client != NULL)
        stats->requests = ap_s3_get_stats(client);
    ap_s3_listing_free(&listing);
    ap_s3_close(client);
    return status;
}

static ap_status copy_file(const char *from, const char *to, ap_error *err)
{
    FILE *in = fopen(from, "rb");
    if (in == NULL)
        return ap_error_set(err, AP_ERR_IO, "cannot read %s: %s", from, strerror(errno));
    ap_atomic_file out;
    ap_status status = ap_atomic_open(&out, to, err);
    char *buffer = malloc(COPY_BUFFER);
    if (status == AP_OK && buffer == NULL)
        status = ap_error_set(err, AP_ERR_NOMEM, "cannot allocate a copy buffer");
    size_t got;
    while (status == AP_OK && (got = fread(buffer, 1, COPY_BUFFER, in)) > 0)
        status = ap_atomic_write(&out, buffer, got, err);
    if (status == AP_OK && ferror(in))
        status = ap_error_set(err, AP_ERR_IO, "cannot read %s", from);
    if (status == AP_OK)
        status = ap_atomic_commit(&out, err);
    else if (out.fd >= 0)
        ap_atomic_abort(&out);
    free(buffer);
    fclose(in);
    return status;
}

static ap_status copy_to_folder(const char *local_dir, const char *target, const name_list *files,
                                ap_store_sync_stats *stats, ap_error *err)
{
    ap_status status = AP_OK;
    for (size_t i = 0; status == AP_OK && i < files->count; i++) {
        char from[AP_PATH_MAX * 4], to[AP_PATH_MAX * 4];
        snprintf(from, sizeof(from), "%s/%s", local_dir, files->names[i]);
        status = ap_store_local_path(target, files->names[i], to, sizeof(to), err);
        if (status == AP_OK)
            status = copy_file(from, to, err);
        if (status == AP_OK)
            stats->transferred++;
    }
    return status;
}

ap_status ap_store_sync_up(const char *local_dir, const char *uri, const ap_config *cfg,
                           const char *const *skip, ap_store_sync_stats *stats, ap_error *err)
{
    memset(stats, 0, sizeof(*stats));
    ap_store_uri parsed;
    ap_status status = ap_store_uri_parse(uri, &parsed, err);
    name_list files = {0};
    if (status == AP_OK)
        status = scan(local_dir, "", 0, skip, &files, err);
    stats->objects = files.count;
    if (status == AP_OK && parsed.kind == AP_STORE_S3)
        status = upload_to_s3(local_dir, &parsed, cfg, &files, stats, err);
    else if (status == AP_OK)
        status = copy_to_folder(local_dir, parsed.path, &files, stats, err);
    free_names(&files);
    return status;
}

/* ---- Run folders in S3 ---- */

static ap_status run_uri(const ap_store_outputs *outputs, const ap_config *cfg, char *out,
                         size_t size, ap_error *err)
{
    size_t length = strlen(outputs->uri);
    const char *slash = length > 0 && outputs->uri[length - 1] == '/' ? "" : "/";
    if (snprintf(out, size, "%s%s%s", outputs->uri, slash, cfg->run_name) >= (int)size)
        return ap_error_set(err, AP_ERR_INVALID, "the run URI %s%s%s is too long", outputs->uri,
                            slash, cfg->run_name);
    return AP_OK;
}

ap_status ap_store_outputs_begin(ap_config *cfg, ap_store_outputs *outputs, ap_error *err)
{
    memset(outputs, 0, sizeof(*outputs));
    /* TODO: a registry in S3 needs a lock or conditional writes so that two
     * runs cannot promote at once; until then it is rejected. */
    if (ap_store_is_s3(cfg->registry.uri))
        return ap_error_set(err, AP_ERR_INVALID,
                            "registry.uri %.300s: a registry in S3 is not supported; use a "
                            "folder or an MLflow tracking server URL",
                            cfg->registry.uri);
    if (!ap_store_is_s3(cfg->output_dir))
        return AP_OK;
    ap_store_uri parsed;
    ap_status status = ap_store_uri_parse(cfg->output_dir, &parsed, err);
    if (status == AP_OK)
        status = store_cache_folder(cfg, "runs", &parsed, outputs->staging, err);
    if (status != AP_OK)
        return status;
    outputs->remote = true;
    snprintf(outputs->uri, sizeof(outputs->uri), "%s", cfg->output_dir);
    snprintf(cfg->output_dir, sizeof(cfg->output_dir), "%s", outputs->staging);

    char local_run[AP_PATH_MAX * 2], remote_run[AP_PATH_MAX];
    snprintf(local_run, sizeof(local_run), "%s/%s", outputs->staging, cfg->run_name);
    status = run_uri(outputs, cfg, remote_run, sizeof(remote_run), err);
    /* A staging folder left by an earlier run here is at least as new as its
     * upload, so only a machine without one fetches the run from S3. */
    if (status != AP_OK || ap_path_exists(local_run))
        return status;
    ap_store_sync_stats stats;
    status = ap_store_sync_down(remote_run, cfg, local_run, &stats, err);
    if (status == AP_OK && stats.transferred > 0)
        AP_INFO("fetched run folder %s: %zu files", remote_run, stats.transferred);
    return status;
}

ap_status ap_store_outputs_upload(const ap_store_outputs *outputs, const ap_config *cfg,
                                  ap_error *err)
{
    if (!outputs->remote)
        return AP_OK;
    /* The decoded-image cache is rebuilt from the data, and train.lock is
     * the local lock of a training in progress. */
    static const char *const skip[] = {"cache", "train.lock", NULL};
    char local_run[AP_PATH_MAX * 2], remote_run[AP_PATH_MAX];
    snprintf(local_run, sizeof(local_run), "%s/%s", outputs->staging, cfg->run_name);
    ap_status status = run_uri(outputs, cfg, remote_run, sizeof(remote_run), err);
    if (status != AP_OK || !ap_path_exists(local_run))
        return status;
    ap_store_sync_stats stats;
    status = ap_store_sync_up(local_run, remote_run, cfg, skip, &stats, err);
    if (status == AP_OK)
        AP_INFO("uploaded run folder to %s: %zu files sent, %zu unchanged", remote_run,
                stats.transferred, stats.reused);
    return status;
}
