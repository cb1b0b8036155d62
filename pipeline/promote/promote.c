#include "pipeline/promote/promote.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/registry/registry.h"
#include "pipeline/train/trainer.h"

typedef struct {
    char run_dir[AP_PATH_MAX];
    char model[AP_PATH_MAX + 32];
    char card[AP_PATH_MAX + 32];
    char report[AP_PATH_MAX + 32];
    char report_markdown[AP_PATH_MAX + 32];
    char report_html[AP_PATH_MAX + 32];
    char model_sha256[65];
} run_files;

static ap_status locate_run(const ap_config *cfg, run_files *files, ap_error *err)
{
    ap_status status = ap_run_dir(cfg, files->run_dir, sizeof(files->run_dir), err);
    if (status != AP_OK)
        return status;
    snprintf(files->model, sizeof(files->model), "%s/model.safetensors", files->run_dir);
    snprintf(files->card, sizeof(files->card), "%s/model_card.json", files->run_dir);
    snprintf(files->report, sizeof(files->report), "%s/report.json", files->run_dir);
    snprintf(files->report_markdown, sizeof(files->report_markdown), "%s/report.md",
             files->run_dir);
    snprintf(files->report_html, sizeof(files->report_html), "%s/report.html", files->run_dir);
    if (!ap_path_exists(files->model) || !ap_path_exists(files->card))
        return ap_error_set(err, AP_ERR_NOT_FOUND,
                            "run %s has no trained model; run apiary train first", files->run_dir);
    if (!ap_path_exists(files->report))
        return ap_error_set(err, AP_ERR_NOT_FOUND,
                            "run %s has no validation report; run apiary validate first",
                            files->run_dir);
    return ap_sha256_file(files->model, files->model_sha256, err);
}

/* Read the verdict and check that the report names these exact weights. */
static ap_status read_verdict(const run_files *files, bool *passed, ap_error *err)
{
    json_error_t json_err;
    json_t *report = json_load_file(files->report, 0, &json_err);
    if (report == NULL)
        return ap_error_set(err, AP_ERR_FORMAT, "%s is not valid JSON (line %d: %s); rerun "
                            "apiary validate", files->report, json_err.line, json_err.text);
    const char *reported = json_string_value(json_object_get(report, "model_sha256"));
    json_t *verdict = json_object_get(report, "passed");
    ap_status status = AP_OK;
    if (!json_is_boolean(verdict))
        status = ap_error_set(err, AP_ERR_FORMAT, "%s has no boolean \"passed\" verdict",
                              files->report);
    else if (reported == NULL || strcmp(reported, files->model_sha256) != 0)
        status = ap_error_set(err, AP_ERR_INVALID,
                              "%s validated other weights (sha256 %.12s) than %s (sha256 %.12s); "
                              "rerun apiary validate for this model",
                              files->report, reported ? reported : "missing", files->model,
                              files->model_sha256);
    else
        *passed = json_is_true(verdict);
    json_decref(report);
    return status;
}

/* Find a version whose model file has the given SHA-256; 0 when none. */
static ap_status find_version_with_model(ap_registry *registry, const char *model,
                                         const char *sha256, int *found, ap_error *err)
{
    ap_registry_version_info *versions = NULL;
    size_t count = 0;
    *found = 0;
    ap_status status = ap_registry_list(registry, model, &versions, &count, err);
    if (status == AP_ERR_NOT_FOUND)
        return AP_OK;
    for (size_t i = 0; status == AP_OK && i < count && *found == 0; i++) {
        if (!versions[i].complete)
            continue;
        json_t *info = NULL;
        status = ap_registry_show(registry, model, versions[i].version, &info, err);
        json_t *files = json_object_get(info, "files");
        const char *hash = json_string_value(
            json_object_get(json_object_get(files, AP_REGISTRY_MODEL_FILE), "sha256"));
        if (status == AP_OK && hash != NULL && strcmp(hash, sha256) == 0)
            *found = versions[i].version;
        json_decref(info);
    }
    ap_registry_free_versions(versions, count);
    return status;
}

static ap_status register_run(ap_registry *registry, const ap_promote_request *request,
                              const run_files *files, int *version, ap_error *err)
{
    const char *attachments[2];
    size_t attachment_count = 0;
    if (ap_path_exists(files->report_markdown))
        attachments[attachment_count++] = files->report_markdown;
    if (ap_path_exists(files->report_html))
        attachments[attachment_count++] = files->report_html;
    const ap_registry_tag tags[] = {
        {"run_name", request->cfg->run_name},
        {"git_commit", APIARY_GIT_COMMIT},
    };
    ap_registry_new_version new_version = {
        .model_path = files->model,
        .model_card_path = files->card,
        .report_path = files->report,
        .attachments = attachments,
        .attachment_count = attachment_count,
        .source_run = files->run_dir,
        .tags = tags,
        .tag_count = sizeof(tags) / sizeof(tags[0]),
    };
    return ap_registry_register(registry, request->cfg->registry.model_name, &new_version,
                                version, err);
}

static ap_status write_promotion_record(const run_files *files, const ap_promote_request *request,
                                        const ap_promote_outcome *outcome, ap_error *err)
{
    char path[AP_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/promotion.json", files->run_dir);
    json_t *record = json_pack(
        "{s:s, s:s, s:s, s:b, s:b, s:b, s:i, s:i, s:b, s:b, s:s?}", "registry",
        request->cfg->registry.uri, "model", request->cfg->registry.model_name, "alias",
        request->alias ? request->alias : AP_REGISTRY_CHAMPION, "passed", outcome->passed,
        "blocked", outcome->blocked, "reused", outcome->reused, "version", outcome->version,
        "previous", outcome->previous, "alias_moved", outcome->alias_moved, "forced",
        request->force, "reason", request->reason);
    char *text = json_dumps(record, JSON_INDENT(2));
    json_decref(record);
    if (text == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot encode %s", path);
    ap_status status = ap_write_atomic(path, text, strlen(text), err);
    free(text);
    return status;
}

ap_status ap_promote(const ap_promote_request *request, ap_promote_outcome *outcome,
                     ap_error *err)
{
    memset(outcome, 0, sizeof(*outcome));
    const char *alias = request->alias ? request->alias : AP_REGISTRY_CHAMPION;
    if (request->force && (request->reason == NULL || request->reason[0] == '\0'))
        return ap_error_set(err, AP_ERR_INVALID,
                            "--force needs --reason TEXT saying why the gate is overridden");

    run_files files;
    ap_status status = locate_run(request->cfg, &files, err);
    if (status == AP_OK)
        status = read_verdict(&files, &outcome->passed, err);
    if (status != AP_OK)
        return status;
    if (!outcome->passed && !request->force) {
        outcome->blocked = true;
        return write_promotion_record(&files, request, outcome, err);
    }

    ap_registry *registry = NULL;
    const char *model = request->cfg->registry.model_name;
    status = ap_registry_open(request->cfg->registry.uri, &registry, err);
    if (status == AP_OK)
        status = find_version_with_model(registry, model, files.model_sha256, &outcome->version,
                                         err);
    outcome->reused = status == AP_OK && outcome->version > 0;
    if (status == AP_OK && !outcome->reused)
        status = register_run(registry, request, &files, &outcome->version, err);
    if (status == AP_OK) {
        ap_registry_move move = {
            .reason = request->force ? request->reason : "validation gate passed",
            .forced = request->force && !outcome->passed,
        };
        status = ap_registry_set_alias(registry, model, alias, outcome->version, &move,
                                       &outcome->previous, err);
        outcome->alias_moved = status == AP_OK && outcome->previous != outcome->version;
    }
    ap_registry_close(registry);
    if (status == AP_OK)
        status = write_promotion_record(&files, request, outcome, err);
    return status;
}
