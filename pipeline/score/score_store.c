/* Score inputs fetched from S3 and results uploaded to S3, through the
 * blob store's cached sync. */

#include "pipeline/score/score_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/data/dataset.h"
#include "pipeline/score/score_input.h"

#define JOURNAL_FILE "predictions.jsonl"

/* ---- Input ---- */

/* Keep image objects whose path has no segment starting with '.', as the
 * folder listing does. */
static bool select_image(const char *name, void *context)
{
    (void)context;
    for (const char *segment = name; segment != NULL;) {
        if (segment[0] == '.')
            return false;
        const char *slash = strchr(segment, '/');
        segment = slash != NULL ? slash + 1 : NULL;
    }
    return ap_score_is_image_name(name);
}

static bool select_name(const char *name, void *context)
{
    return strcmp(name, (const char *)context) == 0;
}

static int compare_name_to_path(const void *name, const void *path)
{
    return strcmp((const char *)name, *(char *const *)path);
}

typedef struct {
    const ap_score_inputs *inputs;
    bool manifest;
} listed_names;

static bool is_listed(const ap_score_inputs *inputs, const char *name)
{
    return inputs->count > 0 && bsearch(name, inputs->paths, inputs->count, sizeof(*inputs->paths),
                                        compare_name_to_path) != NULL;
}

/* A listed name, or for a manifest also a listed name inside images/, where
 * scoring looks for a manifest row's file when it is not beside the manifest. */
static bool select_listed(const char *name, void *context)
{
    const listed_names *listed = context;
    if (is_listed(listed->inputs, name))
        return true;
    size_t prefix = strlen(AP_MANIFEST_IMAGES_FOLDER);
    return listed->manifest && strncmp(name, AP_MANIFEST_IMAGES_FOLDER, prefix) == 0 &&
           name[prefix] == '/' && is_listed(listed->inputs, name + prefix + 1);
}

static void add_stats(ap_store_sync_stats *total, const ap_store_sync_stats *part)
{
    total->objects += part->objects;
    total->transferred += part->transferred;
    total->reused += part->reused;
    total->removed += part->removed;
    total->bytes += part->bytes;
    total->requests.requests += part->requests.requests;
    total->requests.retries += part->requests.retries;
    total->requests.gets += part->requests.gets;
    total->requests.lists += part->requests.lists;
    total->requests.bytes_received += part->requests.bytes_received;
}

/* The images below an S3 prefix: sync them into the cache and score that folder. */
static ap_status fetch_prefix(ap_config *cfg, const ap_store_uri *uri, ap_score_store *store,
                              ap_error *err)
{
    char canonical[AP_PATH_MAX + 80], local[AP_PATH_MAX];
    snprintf(canonical, sizeof(canonical), "s3://%s/%s", uri->bucket, uri->prefix);
    ap_status status = ap_store_cache_path(cfg, "s3", canonical, local, err);
    if (status == AP_OK)
        status =
            ap_store_sync_select(canonical, cfg, local, select_image, NULL, &store->fetched, err);
    if (status == AP_OK)
        snprintf(cfg->score.input, sizeof(cfg->score.input), "%s", local);
    return status;
}

/* A manifest or listing object: fetch it, then the images it names, from
 * the prefix that contains it. */
static ap_status fetch_list_object(ap_config *cfg, const ap_store_uri *uri, const char *name,
                                   ap_score_store *store, ap_error *err)
{
    size_t parent_length = (size_t)(name - uri->prefix);
    char parent[AP_PATH_MAX + 80], local[AP_PATH_MAX], list_path[AP_PATH_MAX * 2];
    snprintf(parent, sizeof(parent), "s3://%s/%.*s", uri->bucket, (int)parent_length, uri->prefix);
    char list_name[AP_STORE_KEY_MAX];
    snprintf(list_name, sizeof(list_name), "%s", name);
    list_name[strcspn(list_name, "/")] = '\0';

    ap_store_sync_stats stats;
    ap_status status = ap_store_cache_path(cfg, "s3", parent, local, err);
    if (status == AP_OK)
        status = ap_store_sync_select(parent, cfg, local, select_name, list_name, &stats, err);
    if (status == AP_OK)
        add_stats(&store->fetched, &stats);
    if (status == AP_OK && stats.objects == 0)
        return ap_error_set(err, AP_ERR_NOT_FOUND,
                            "%.300s not found; check score.input, or upload the manifest or "
                            "listing there",
                            store->input_uri);
    if (status == AP_OK)
        status = ap_path_join(list_path, sizeof(list_path), local, list_name, err);
    ap_score_inputs inputs = {0};
    listed_names listed = {.inputs = &inputs,
                           .manifest = ap_score_list_kind_of(list_name) == AP_SCORE_LIST_MANIFEST};
    if (status == AP_OK)
        status = ap_score_read_list_file(list_path, &inputs, err);
    if (status == AP_OK)
        status = ap_store_sync_select(parent, cfg, local, select_listed, &listed, &stats, err);
    if (status == AP_OK)
        add_stats(&store->fetched, &stats);
    ap_score_inputs_free(&inputs);
    if (status == AP_OK && strlen(list_path) >= sizeof(cfg->score.input))
        status = ap_error_set(err, AP_ERR_LIMIT,
                              "the cached copy %s of %s is longer than %zu bytes; use a shorter "
                              "store.cache_dir",
                              list_path, store->input_uri, sizeof(cfg->score.input) - 1);
    if (status == AP_OK)
        memcpy(cfg->score.input, list_path, strlen(list_path) + 1);
    return status;
}

ap_status ap_score_store_fetch_input(ap_config *cfg, ap_score_store *store, ap_error *err)
{
    store->remote_input = false;
    memset(&store->fetched, 0, sizeof(store->fetched));
    if (!ap_store_is_s3(cfg->score.input))
        return AP_OK;
    ap_store_uri uri;
    ap_status status = ap_store_uri_parse(cfg->score.input, &uri, err);
    if (status != AP_OK)
        return ap_error_prefix(err, "score.input");
    store->remote_input = true;
    snprintf(store->input_uri, sizeof(store->input_uri), "%s", cfg->score.input);

    /* The parser reads every prefix as a folder and turns "lists/a.csv" into
     * "lists/a.csv/", so the URI as written decides between file and folder. */
    size_t length = strlen(cfg->score.input);
    bool folder_syntax = cfg->score.input[length - 1] == '/';
    size_t prefix_length = strlen(uri.prefix);
    const char *name = NULL;
    if (prefix_length > 0) {
        uri.prefix[prefix_length - 1] = '\0';
        const char *slash = strrchr(uri.prefix, '/');
        name = slash != NULL ? slash + 1 : uri.prefix;
        uri.prefix[prefix_length - 1] = '/';
    }
    char last[AP_STORE_KEY_MAX] = "";
    if (name != NULL)
        snprintf(last, sizeof(last), "%.*s", (int)strcspn(name, "/"), name);
    if (!folder_syntax && ap_score_list_kind_of(last) != AP_SCORE_LIST_NONE)
        return fetch_list_object(cfg, &uri, name, store, err);
    return fetch_prefix(cfg, &uri, store, err);
}

/* ---- Output ---- */

ap_status ap_score_store_stage_output(ap_config *cfg, ap_score_store *store, ap_error *err)
{
    store->remote_output = false;
    if (!ap_store_is_s3(cfg->score.output))
        return AP_OK;
    char staging[AP_PATH_MAX];
    ap_status status = ap_store_cache_path(cfg, "scores", cfg->score.output, staging, err);
    if (status != AP_OK)
        return ap_error_prefix(err, "score.output");
    status = ap_mkdirs(staging, err);
    if (status != AP_OK)
        return status;
    store->remote_output = true;
    snprintf(store->output_uri, sizeof(store->output_uri), "%s", cfg->score.output);
    size_t length = strlen(store->output_uri);
    if (length > 0 && store->output_uri[length - 1] == '/')
        store->output_uri[length - 1] = '\0';
    snprintf(cfg->score.output, sizeof(cfg->score.output), "%s", staging);
    return AP_OK;
}

/* The local and remote folders of one version's results. */
static ap_status version_folders(const ap_score_store *store, const ap_config *cfg, int version,
                                 char *local, char *remote, size_t size, ap_error *err)
{
    int remote_length = snprintf(remote, size, "%s/v%d", store->output_uri, version);
    int local_length = snprintf(local, size, "%s/v%d", cfg->score.output, version);
    if (remote_length < 0 || (size_t)remote_length >= size || local_length < 0 ||
        (size_t)local_length >= size)
        return ap_error_set(err, AP_ERR_LIMIT,
                            "the output folder of %s is too long; use a "
                            "shorter score.output or store.cache_dir",
                            store->output_uri);
    return AP_OK;
}

ap_status ap_score_store_resume(const ap_score_store *store, const ap_config *cfg, int version,
                                ap_error *err)
{
    if (!store->remote_output)
        return AP_OK;
    char local[AP_PATH_MAX + 32], remote[AP_PATH_MAX + 32], journal[AP_PATH_MAX + 64];
    ap_status status = version_folders(store, cfg, version, local, remote, sizeof(local), err);
    if (status == AP_OK)
        status = ap_path_join(journal, sizeof(journal), local, JOURNAL_FILE, err);
    if (status != AP_OK || ap_path_exists(journal))
        return status;
    ap_store_sync_stats stats;
    return ap_store_sync_down(remote, cfg, local, &stats, err);
}

ap_status ap_score_store_upload(const ap_score_store *store, const ap_config *cfg, int version,
                                ap_store_sync_stats *stats, ap_error *err)
{
    memset(stats, 0, sizeof(*stats));
    if (!store->remote_output)
        return AP_OK;
    char local[AP_PATH_MAX + 32], remote[AP_PATH_MAX + 32];
    ap_status status = version_folders(store, cfg, version, local, remote, sizeof(local), err);
    if (status == AP_OK)
        status = ap_store_sync_up(local, remote, cfg, NULL, stats, err);
    if (status != AP_OK)
        ap_error_prefix(err,
                        "uploading the results to %s (they are kept in %s; a rerun "
                        "uploads them)",
                        remote, local);
    return status;
}
