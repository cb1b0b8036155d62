/* Syncing an S3 prefix into a local folder, with a record of what each
 * local copy came from, and uploading a local folder. */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/common/log.h"
#include "pipeline/store/store.h"
#include "pipeline/store/store_internal.h"

#define SYNC_RECORD STORE_SYNC_RECORD
#define SYNC_LOCK   STORE_SYNC_LOCK

/* ---- The sync record: key -> ETag and size of the local copy ---- */

/* True when the URI text source names the same bucket and prefix as uri,
 * so that "s3://b/p" and "s3://b/p/" share one cache folder's record. */
static bool same_source(const char *source, const ap_store_uri *uri)
{
    ap_store_uri parsed;
    ap_error ignored;
    return source != NULL && ap_store_uri_parse(source, &parsed, &ignored) == AP_OK &&
           parsed.kind == AP_STORE_S3 && strcmp(parsed.bucket, uri->bucket) == 0 &&
           strcmp(parsed.prefix, uri->prefix) == 0;
}

static json_t *read_record(const char *local_dir, const ap_store_uri *uri)
{
    char path[AP_PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", local_dir, SYNC_RECORD);
    json_t *record = json_load_file(path, 0, NULL);
    json_t *objects = json_object_get(record, "objects");
    const char *source = json_string_value(json_object_get(record, "source"));
    /* A record of another source, or a damaged one, counts as no record. */
    if (!json_is_object(objects) || !same_source(source, uri)) {
        json_decref(record);
        return json_object();
    }
    json_incref(objects);
    json_decref(record);
    return objects;
}

static ap_status write_record(const char *local_dir, const char *uri, json_t *objects,
                              ap_error *err)
{
    char path[AP_PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", local_dir, SYNC_RECORD);
    json_t *record = json_pack("{s:s, s:O}", "source", uri, "objects", objects);
    char *text = record ? json_dumps(record, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    json_decref(record);
    if (text == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot encode %s", path);
    ap_status status = ap_write_atomic(path, text, strlen(text), err);
    free(text);
    return status;
}

static bool copy_is_current(const char *path, json_t *entry, const ap_s3_object *object)
{
    const char *etag = json_string_value(json_object_get(entry, "etag"));
    json_int_t size = json_integer_value(json_object_get(entry, "size"));
    struct stat info;
    return etag != NULL && strcmp(etag, object->etag) == 0 && size == object->size &&
           lstat(path, &info) == 0 && S_ISREG(info.st_mode) && info.st_size == object->size;
}

static int lock_folder(const char *local_dir, ap_error *err)
{
    char path[AP_PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%s", local_dir, SYNC_LOCK);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        ap_error_set(err, AP_ERR_IO, "cannot lock %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* ---- Sync down ---- */

typedef struct {
    ap_s3_download *items;
    char **paths;
    char **names; /* key relative to the prefix */
    size_t count;
} download_plan;

static void free_plan(download_plan *plan)
{
    for (size_t i = 0; i < plan->count; i++) {
        free(plan->paths[i]);
        free(plan->names[i]);
    }
    free(plan->items);
    free(plan->paths);
    free(plan->names);
    memset(plan, 0, sizeof(*plan));
}

/* The objects a sync downloads: all, or those a filter selects. */
typedef struct {
    ap_store_select_fn select;
    void *context;
} object_filter;

/* Decide for each listed object whether its local copy is current. */
static ap_status plan_downloads(const ap_store_uri *uri, const ap_s3_listing *listing,
                                const object_filter *filter, const char *local_dir, json_t *record,
                                download_plan *plan, ap_store_sync_stats *stats, ap_error *err)
{
    plan->items = calloc(listing->count + 1, sizeof(*plan->items));
    plan->paths = calloc(listing->count + 1, sizeof(*plan->paths));
    plan->names = calloc(listing->count + 1, sizeof(*plan->names));
    if (plan->items == NULL || plan->paths == NULL || plan->names == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot plan %zu downloads", listing->count);
    size_t prefix_length = strlen(uri->prefix);
    for (size_t i = 0; i < listing->count; i++) {
        const ap_s3_object *object = &listing->objects[i];
        const char *name = object->key + prefix_length;
        size_t length = strlen(object->key);
        if (length == 0 || object->key[length - 1] == '/' || name[0] == '\0')
            continue;
        if (name[0] == '.' && (strcmp(name, SYNC_RECORD) == 0 || strcmp(name, SYNC_LOCK) == 0))
            continue;
        if (filter->select != NULL && !filter->select(name, filter->context))
            continue;
        stats->objects++;
        char path[AP_PATH_MAX * 2];
        ap_status status = ap_store_local_path(local_dir, name, path, sizeof(path), err);
        if (status != AP_OK)
            return ap_error_prefix(err, "s3://%s/%.300s", uri->bucket, object->key);
        if (copy_is_current(path, json_object_get(record, name), object)) {
            stats->reused++;
            continue;
        }
        size_t n = plan->count;
        plan->paths[n] = strdup(path);
        plan->names[n] = strdup(name);
        if (plan->paths[n] == NULL || plan->names[n] == NULL) {
            free(plan->paths[n]);
            free(plan->names[n]);
            return ap_error_set(err, AP_ERR_NOMEM, "cannot plan the download of %s", name);
        }
        plan->items[n] =
            (ap_s3_download){.key = object->key, .path = plan->paths[n], .first = -1, .last = -1};
        plan->count++;
    }
    return AP_OK;
}

/* Remove local copies, made by an earlier sync, of objects no longer listed. */
static void remove_stale_copies(const ap_s3_listing *listing, size_t prefix_length,
                                const char *local_dir, json_t *record, ap_store_sync_stats *stats)
{
    json_t *listed = json_object();
    for (size_t i = 0; i < listing->count; i++)
        json_object_set_new(listed, listing->objects[i].key + prefix_length, json_true());
    const char *name;
    json_t *entry;
    void *next;
    json_object_foreach_safe(record, next, name, entry)
    {
        if (json_object_get(listed, name) != NULL)
            continue;
        char path[AP_PATH_MAX * 2];
        ap_error ignored;
        if (ap_store_check_key(name, &ignored) == AP_OK &&
            ap_path_join(path, sizeof(path), local_dir, name, &ignored) == AP_OK &&
            unlink(path) == 0)
            stats->removed++;
        json_object_del(record, name);
    }
    json_decref(listed);
}

static void record_downloads(const download_plan *plan, json_t *record, ap_store_sync_stats *stats)
{
    for (size_t i = 0; i < plan->count; i++) {
        if (!plan->items[i].done)
            continue;
        json_object_set_new(record, plan->names[i],
                            json_pack("{s:s, s:I}", "etag", plan->items[i].etag, "size",
                                      (json_int_t)plan->items[i].size));
        stats->transferred++;
        stats->bytes += plan->items[i].size;
    }
}

static ap_status sync_listing(ap_s3_client *client, const ap_store_uri *uri, const char *text,
                              const object_filter *filter, const char *local_dir,
                              ap_store_sync_stats *stats, ap_error *err)
{
    ap_s3_listing listing;
    ap_status status = ap_s3_list(client, uri->bucket, uri->prefix, &listing, err);
    if (status != AP_OK)
        return status;
    json_t *record = read_record(local_dir, uri);
    download_plan plan = {0};
    status = plan_downloads(uri, &listing, filter, local_dir, record, &plan, stats, err);
    if (status == AP_OK) {
        remove_stale_copies(&listing, strlen(uri->prefix), local_dir, record, stats);
        status = ap_s3_get_files(client, uri->bucket, plan.items, plan.count, err);
        record_downloads(&plan, record, stats);
    }
    /* Keep what did arrive on record, so a rerun after a failure resumes. */
    ap_error record_error;
    ap_status recorded = write_record(local_dir, text, record, &record_error);
    if (status == AP_OK && recorded != AP_OK) {
        status = recorded;
        *err = record_error;
    }
    free_plan(&plan);
    json_decref(record);
    ap_s3_listing_free(&listing);
    return status;
}

static ap_status sync_filtered(const char *uri, const ap_config *cfg, const char *local_dir,
                               const object_filter *filter, ap_store_sync_stats *stats,
                               ap_error *err)
{
    memset(stats, 0, sizeof(*stats));
    ap_store_uri parsed;
    ap_status status = ap_store_uri_parse(uri, &parsed, err);
    if (status == AP_OK && parsed.kind != AP_STORE_S3)
        status = ap_error_set(err, AP_ERR_INVALID, "%.300s is not an s3:// URI", uri);
    if (status == AP_OK)
        status = ap_mkdirs(local_dir, err);
    if (status != AP_OK)
        return status;
    int lock = lock_folder(local_dir, err);
    if (lock < 0)
        return err ? err->code : AP_ERR_IO;
    ap_s3_options options;
    ap_store_s3_options(cfg, &options);
    ap_s3_client *client = NULL;
    status = ap_s3_open(&options, &client, err);
    if (status == AP_OK)
        status = sync_listing(client, &parsed, uri, filter, local_dir, stats, err);
    if (client != NULL)
        stats->requests = ap_s3_get_stats(client);
    ap_s3_close(client);
    close(lock);
    return status;
}

ap_status ap_store_sync_down(const char *uri, const ap_config *cfg, const char *local_dir,
                             ap_store_sync_stats *stats, ap_error *err)
{
    object_filter all = {0};
    return sync_filtered(uri, cfg, local_dir, &all, stats, err);
}

ap_status ap_store_sync_select(const char *uri, const ap_config *cfg, const char *local_dir,
                               ap_store_select_fn select, void *context, ap_store_sync_stats *stats,
                               ap_error *err)
{
    object_filter filter = {.select = select, .context = context};
    return sync_filtered(uri, cfg, local_dir, &filter, stats, err);
}

ap_status ap_store_materialize(const char *uri, const ap_config *cfg,
                               char local_dir_out[AP_PATH_MAX], ap_error *err)
{
    ap_store_uri parsed;
    ap_status status = ap_store_uri_parse(uri, &parsed, err);
    if (status != AP_OK)
        return status;
    if (parsed.kind == AP_STORE_FILE) {
        snprintf(local_dir_out, AP_PATH_MAX, "%s", parsed.path);
        return AP_OK;
    }
    status = store_cache_folder(cfg, "s3", &parsed, local_dir_out, err);
    if (status != AP_OK)
        return status;
    AP_INFO("syncing %s into %s", uri, local_dir_out);
    ap_store_sync_stats stats;
    status = ap_store_sync_down(uri, cfg, local_dir_out, &stats, err);
    if (status != AP_OK)
        return status;
    AP_INFO("synced %s: %zu objects, %zu downloaded (%lld bytes), %zu unchanged, %zu removed; "
            "%ld requests (%ld retried)",
            uri, stats.objects, stats.transferred, (long long)stats.bytes, stats.reused,
            stats.removed, stats.requests.requests, stats.requests.retries);
    if (stats.objects == 0)
        return ap_error_set(err, AP_ERR_NOT_FOUND,
                            "%.300s contains no objects; check the bucket and prefix, or push a "
                            "dataset there with apiary dataset push",
                            uri);
    return AP_OK;
}

ap_status store_cache_folder(const ap_config *cfg, const char *area, const ap_store_uri *uri,
                             char out[AP_PATH_MAX], ap_error *err)
{
    char prefix[AP_STORE_KEY_MAX];
    snprintf(prefix, sizeof(prefix), "%s", uri->prefix);
    size_t length = strlen(prefix);
    if (length > 0 && prefix[length - 1] == '/')
        prefix[length - 1] = '\0';
    int written = snprintf(out, AP_PATH_MAX, "%s/%s/%s%s%s", cfg->store.cache_dir, area,
                           uri->bucket, prefix[0] ? "/" : "", prefix);
    if (written < 0 || written >= AP_PATH_MAX)
        return ap_error_set(err, AP_ERR_INVALID,
                            "the cache folder for s3://%s/%.200s is longer than %d bytes; use "
                            "a shorter store.cache_dir",
                            uri->bucket, uri->prefix, AP_PATH_MAX - 1);
    return AP_OK;
}

ap_status ap_store_cache_path(const ap_config *cfg, const char *area, const char *uri,
                              char out[AP_PATH_MAX], ap_error *err)
{
    ap_store_uri parsed;
    ap_status status = ap_store_uri_parse(uri, &parsed, err);
    if (status == AP_OK && parsed.kind != AP_STORE_S3)
        status = ap_error_set(err, AP_ERR_INVALID, "%.300s is not an s3:// URI", uri);
    if (status == AP_OK)
        status = store_cache_folder(cfg, area, &parsed, out, err);
    return status;
}
