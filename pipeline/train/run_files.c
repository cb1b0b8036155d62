#include "pipeline/train/run_files.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/config/config.h"

/* A bound on the numbered logs to look through, far above any real count. */
#define MAX_SET_ASIDE_LOGS 100000

/* Larger than any complete.json or model card that apiary writes. */
#define MAX_RECORD_BYTES (16u << 20)

ap_status ap_run_set_aside_log(const char *run_dir, char *moved_to, size_t moved_to_size,
                               ap_error *err)
{
    moved_to[0] = '\0';
    char path[AP_PATH_MAX + 64];
    ap_status status = ap_path_join(path, sizeof(path), run_dir, AP_RUN_LOG_FILE, err);
    if (status != AP_OK)
        return status;
    struct stat info;
    if (stat(path, &info) != 0 || info.st_size == 0)
        return AP_OK;
    for (int number = 1; number <= MAX_SET_ASIDE_LOGS; number++) {
        char candidate[AP_PATH_MAX + 80];
        snprintf(candidate, sizeof(candidate), "%s.%d", path, number);
        if (ap_path_exists(candidate))
            continue;
        if (rename(path, candidate) != 0)
            return ap_error_set(
                err, AP_ERR_IO,
                "cannot rename %s to %s: %s; check the permissions of the run folder", path,
                candidate, strerror(errno));
        snprintf(moved_to, moved_to_size, "%s", candidate);
        return AP_OK;
    }
    return ap_error_set(err, AP_ERR_LIMIT,
                        "%s.1 to %s.%d all exist; move the old logs out of the run folder", path,
                        path, MAX_SET_ASIDE_LOGS);
}

ap_status ap_run_mark_complete(const char *run_dir, long epochs, long steps,
                               const char *weights_sha256, ap_error *err)
{
    char path[AP_PATH_MAX + 64], text[256];
    ap_status status = ap_path_join(path, sizeof(path), run_dir, AP_RUN_COMPLETE_FILE, err);
    if (status != AP_OK)
        return status;
    int length = snprintf(text, sizeof(text),
                          "{\"epochs\": %ld, \"steps\": %ld, \"weights_sha256\": \"%s\"}\n", epochs,
                          steps, weights_sha256);
    return ap_write_atomic(path, text, (size_t)length, err);
}

static bool is_sha256_hex(const char *text)
{
    return text != NULL && strlen(text) == 64 && strspn(text, "0123456789abcdef") == 64;
}

/* Read the JSON object in path. what describes the file in messages. */
static ap_status read_object(const char *run_dir, const char *path, const char *what, json_t **out,
                             ap_error *err)
{
    *out = NULL;
    if (!ap_path_exists(path))
        return ap_error_set(err, AP_ERR_IO,
                            "run %s is marked complete (%s), but its %s %s is missing", run_dir,
                            AP_RUN_COMPLETE_FILE, what, path);
    uint8_t *text = NULL;
    size_t size = 0;
    ap_status status = ap_read_file(path, MAX_RECORD_BYTES, &text, &size, err);
    if (status != AP_OK)
        return status;
    json_error_t parse_error;
    *out = json_loadb((const char *)text, size, 0, &parse_error);
    free(text);
    if (*out == NULL || !json_is_object(*out)) {
        json_decref(*out);
        *out = NULL;
        return ap_error_set(err, AP_ERR_FORMAT,
                            "run %s is marked complete (%s), but its %s %s is not a JSON object",
                            run_dir, AP_RUN_COMPLETE_FILE, what, path);
    }
    return AP_OK;
}

/* Check the weights file that card names, beside it, against expected_sha256. */
static ap_status check_weights(const char *run_dir, const json_t *card, const char *card_path,
                               const char *expected_sha256, ap_error *err)
{
    const json_t *weights = json_object_get(card, "weights");
    const char *file = json_string_value(json_object_get(weights, "file"));
    const char *recorded = json_string_value(json_object_get(weights, "sha256"));
    if (file == NULL || file[0] == '\0' || strchr(file, '/') != NULL || strcmp(file, "..") == 0 ||
        !is_sha256_hex(recorded))
        return ap_error_set(err, AP_ERR_FORMAT,
                            "run %s is marked complete (%s), but its model card %s names no "
                            "weights file beside it with a sha256",
                            run_dir, AP_RUN_COMPLETE_FILE, card_path);
    if (strcmp(recorded, expected_sha256) != 0)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "run %s is marked complete (%s) with weights sha256 %s, but its model "
                            "card %s records %s",
                            run_dir, AP_RUN_COMPLETE_FILE, expected_sha256, card_path, recorded);
    char path[AP_PATH_MAX + 64], actual[65];
    ap_status status = ap_path_join(path, sizeof(path), run_dir, file, err);
    if (status != AP_OK)
        return status;
    if (!ap_path_exists(path))
        return ap_error_set(err, AP_ERR_IO,
                            "run %s is marked complete (%s), but its weights file %s is missing",
                            run_dir, AP_RUN_COMPLETE_FILE, path);
    status = ap_sha256_file(path, actual, err);
    if (status == AP_OK && strcmp(actual, expected_sha256) != 0)
        status = ap_error_set(err, AP_ERR_FORMAT,
                              "run %s is marked complete (%s), but its weights file %s has sha256 "
                              "%s instead of the recorded %s",
                              run_dir, AP_RUN_COMPLETE_FILE, path, actual, expected_sha256);
    return status;
}

ap_status ap_run_check_complete(const char *run_dir, ap_error *err)
{
    char marker_path[AP_PATH_MAX + 64], card_path[AP_PATH_MAX + 64];
    ap_status status =
        ap_path_join(marker_path, sizeof(marker_path), run_dir, AP_RUN_COMPLETE_FILE, err);
    if (status == AP_OK)
        status = ap_path_join(card_path, sizeof(card_path), run_dir, AP_RUN_CARD_FILE, err);
    if (status != AP_OK)
        return status;

    json_t *marker = NULL, *card = NULL;
    status = read_object(run_dir, marker_path, "marker", &marker, err);
    const char *expected = json_string_value(json_object_get(marker, "weights_sha256"));
    if (status == AP_OK && !is_sha256_hex(expected))
        status = ap_error_set(err, AP_ERR_FORMAT,
                              "run %s is marked complete, but %s records no weights_sha256",
                              run_dir, marker_path);
    if (status == AP_OK)
        status = read_object(run_dir, card_path, "model card", &card, err);
    if (status == AP_OK)
        status = check_weights(run_dir, card, card_path, expected, err);
    json_decref(marker);
    json_decref(card);
    return status;
}
