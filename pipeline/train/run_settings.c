#include "pipeline/train/run_settings.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/train/checkpoint.h"

/* One "key: value" line of ap_config_to_yaml output; sections are lines
 * without indentation that end in ':'. */
typedef struct {
    char key[256];
    const char *value;
    size_t value_length;
} yaml_line;

/* Read the line at *cursor into line, with section the name of the
 * enclosing section. Returns false at the end of text. */
static bool next_setting(const char **cursor, char *section, size_t section_size, yaml_line *line)
{
    while (**cursor != '\0') {
        const char *start = *cursor;
        const char *end = strchr(start, '\n');
        if (end == NULL)
            end = start + strlen(start);
        *cursor = *end == '\n' ? end + 1 : end;
        if (start[0] == '#' || start == end)
            continue;
        const char *colon = memchr(start, ':', (size_t)(end - start));
        if (colon == NULL)
            continue;
        bool indented = start[0] == ' ';
        const char *name = start;
        while (*name == ' ')
            name++;
        if (!indented && colon + 1 == end) {
            snprintf(section, section_size, "%.*s", (int)(colon - name), name);
            continue;
        }
        if (indented)
            snprintf(line->key, sizeof(line->key), "%s.%.*s", section, (int)(colon - name), name);
        else
            snprintf(line->key, sizeof(line->key), "%.*s", (int)(colon - name), name);
        line->value = colon + 1;
        line->value_length = (size_t)(end - line->value);
        return true;
    }
    return false;
}

/* Return the value of line without its leading spaces, and its length in *length. */
static const char *trimmed_value(const yaml_line *line, int *length)
{
    const char *value = line->value;
    size_t left = line->value_length;
    while (left > 0 && *value == ' ') {
        value++;
        left--;
    }
    *length = (int)left;
    return value;
}

/* Append "key (OLD in the run, NEW now)" to changed, unless it is full. */
static void append_change(char *changed, size_t size, const yaml_line *old_line,
                          const yaml_line *new_line)
{
    size_t used = strlen(changed);
    if (used + 2 >= size)
        return;
    int old_length, new_length;
    const char *old_value = trimmed_value(old_line, &old_length);
    const char *new_value = trimmed_value(new_line, &new_length);
    snprintf(changed + used, size - used, "%s%s (%.*s in the run, %.*s now)", used > 0 ? ", " : "",
             new_line->key, old_length, old_value, new_length, new_value);
}

/* Both texts come from ap_config_to_yaml, so their keys appear in the same order. */
static void diff_yaml(const char *old_text, const char *new_text, char *changed, size_t size)
{
    char old_section[128] = "", new_section[128] = "";
    yaml_line old_line, new_line;
    while (next_setting(&old_text, old_section, sizeof(old_section), &old_line) &&
           next_setting(&new_text, new_section, sizeof(new_section), &new_line)) {
        bool same = strcmp(old_line.key, new_line.key) == 0 &&
                    old_line.value_length == new_line.value_length &&
                    memcmp(old_line.value, new_line.value, old_line.value_length) == 0;
        if (!same)
            append_change(changed, size, &old_line, &new_line);
    }
}

ap_status ap_run_settings_changed(const ap_config *cfg, const char *run_dir, bool with_root,
                                  char *changed, size_t changed_size, ap_error *err)
{
    changed[0] = '\0';
    char path[AP_PATH_MAX + 64];
    ap_status status = ap_path_join(path, sizeof(path), run_dir, "config.yaml", err);
    if (status != AP_OK || !ap_path_exists(path))
        return status;
    ap_config *saved = malloc(sizeof(*saved));
    ap_config *old_settings = malloc(sizeof(*old_settings));
    ap_config *new_settings = malloc(sizeof(*new_settings));
    if (saved == NULL || old_settings == NULL || new_settings == NULL)
        status =
            ap_error_set(err, AP_ERR_NOMEM, "cannot allocate configs to compare with %s", path);
    if (status == AP_OK)
        status = ap_config_load_file(path, saved, err);
    char *old_text = NULL, *new_text = NULL;
    if (status == AP_OK) {
        ap_config_model_settings(saved, true, old_settings);
        ap_config_model_settings(cfg, true, new_settings);
        if (!with_root)
            memcpy(old_settings->data.root, new_settings->data.root,
                   sizeof(old_settings->data.root));
        old_text = ap_config_to_yaml(old_settings);
        new_text = ap_config_to_yaml(new_settings);
        if (old_text == NULL || new_text == NULL)
            status =
                ap_error_set(err, AP_ERR_NOMEM, "cannot encode configs to compare with %s", path);
    }
    if (status == AP_OK)
        diff_yaml(old_text, new_text, changed, changed_size);
    free(old_text);
    free(new_text);
    free(saved);
    free(old_settings);
    free(new_settings);
    return status;
}

void ap_run_settings_hash(const ap_config *cfg, char hex[65])
{
    ap_config settings, defaults;
    ap_config_model_settings(cfg, true, &settings);
    ap_config_defaults(&defaults);
    settings.train.epochs = 1;
    settings.train.collective_timeout = defaults.train.collective_timeout;
    char *yaml = ap_config_to_yaml(&settings);
    ap_sha256_hex(yaml ? yaml : "", yaml ? strlen(yaml) : 0, hex);
    free(yaml);
}

/* Compare the checkpoint's recorded settings hash and process count with
 * this job's, from its metadata alone. */
static ap_status check_checkpoint_metadata(const ap_config *cfg, const char *path, int world,
                                           ap_error *err)
{
    ap_st_file file = {0};
    ap_status status = ap_safetensors_read(path, &file, err);
    if (status != AP_OK)
        return status;
    char expected[65];
    ap_run_settings_hash(cfg, expected);
    const char *recorded = ap_st_meta_get(&file, "config_sha256");
    const char *world_text = ap_st_meta_get(&file, "world_size");
    long saved_world = 1;
    if (world_text != NULL) {
        char *end = NULL;
        saved_world = strtol(world_text, &end, 10);
        if (end == world_text || *end != '\0' || saved_world < 1)
            status = ap_error_set(err, AP_ERR_FORMAT,
                                  "%s: metadata world_size \"%.40s\" is not a process count; "
                                  "the checkpoint is damaged, so delete it to train the run again",
                                  path, world_text);
    }
    if (status == AP_OK && recorded != NULL && strcmp(recorded, expected) != 0)
        status = ap_error_set(err, AP_ERR_INVALID,
                              "%s was written with different settings than %s, and the run's "
                              "config.yaml did not show which (it was missing or edited); resume "
                              "with the config the run started with, or choose a new run_name "
                              "(--set run_name=NAME)",
                              path, cfg->source_path);
    if (status == AP_OK && saved_world != world)
        status = ap_error_set(err, AP_ERR_INVALID,
                              "%s was written by a job of %ld process%s, but this job has %d; "
                              "resume with %ld (mpirun -np %ld), or start a new run "
                              "(--set run_name=NAME)",
                              path, saved_world, saved_world == 1 ? "" : "es", world, saved_world,
                              saved_world);
    ap_st_file_free(&file);
    return status;
}

ap_status ap_run_check_state(const ap_config *cfg, const char *run_dir, bool resume, int world,
                             bool *complete, bool *has_checkpoint, ap_error *err)
{
    char path[AP_PATH_MAX + 64];
    *complete = ap_path_join(path, sizeof(path), run_dir, "complete.json", err) == AP_OK &&
                ap_path_exists(path);
    *has_checkpoint =
        ap_path_join(path, sizeof(path), run_dir, "checkpoint.safetensors", err) == AP_OK &&
        ap_path_exists(path);
    char changed[AP_ERROR_MESSAGE_MAX / 2];
    if (*complete) {
        ap_status status =
            ap_run_settings_changed(cfg, run_dir, false, changed, sizeof(changed), err);
        if (status == AP_OK && changed[0] != '\0')
            status = ap_error_set(err, AP_ERR_INVALID,
                                  "run %s finished with other settings: %s; choose a new "
                                  "run_name (--set run_name=NAME) to train with these",
                                  run_dir, changed);
        return status;
    }
    if (*has_checkpoint && !resume)
        return ap_error_set(err, AP_ERR_INVALID,
                            "run folder %s already holds a started run; pass --resume to "
                            "continue it, or choose another run_name (--set run_name=NAME)",
                            run_dir);
    if (!*has_checkpoint)
        return AP_OK;
    /* The checkpoint continues the learning-rate schedule, batches and data
     * of the settings it started with, so a resume must keep them. */
    ap_status status = ap_run_settings_changed(cfg, run_dir, true, changed, sizeof(changed), err);
    if (status == AP_OK && changed[0] != '\0')
        status = ap_error_set(err, AP_ERR_INVALID,
                              "run %s was started with other settings: %s; resume with the "
                              "settings it started with (in %s/config.yaml), or choose a new "
                              "run_name (--set run_name=NAME) to train with these",
                              run_dir, changed, run_dir);
    if (status == AP_OK &&
        ap_path_join(path, sizeof(path), run_dir, "checkpoint.safetensors", err) == AP_OK)
        status = check_checkpoint_metadata(cfg, path, world, err);
    return status;
}
