#include "pipeline/promote/promote.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/common/log.h"
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
    /* A missing model file is a file system failure, as in validation. */
    if (!ap_path_exists(files->model) || !ap_path_exists(files->card))
        return ap_error_set(
            err, AP_ERR_IO, "run %s has no trained model: %s is missing; run apiary train first",
            files->run_dir, ap_path_exists(files->model) ? files->card : files->model);
    if (!ap_path_exists(files->report))
        return ap_error_set(err, AP_ERR_NOT_FOUND,
                            "run %s has no validation report; run apiary validate first",
                            files->run_dir);
    return ap_sha256_file(files->model, files->model_sha256, err);
}

/* Check one rule of the config against its entry in the report: the report
 * must have evaluated exactly this rule, and its recorded value must meet it. */
static bool rule_holds(const json_t *report, const char *rule_text, char *why, size_t why_size)
{
    const json_t *entry;
    size_t index;
    json_array_foreach(json_object_get(report, "rules"), index, entry)
    {
        const char *text = json_string_value(json_object_get(entry, "rule"));
        if (text == NULL || strcmp(text, rule_text) != 0)
            continue;
        const json_t *actual = json_object_get(entry, "actual");
        const json_t *limit = json_object_get(entry, "limit");
        const char *op = json_string_value(json_object_get(entry, "op"));
        if (!json_is_number(actual) || !json_is_number(limit) || op == NULL) {
            snprintf(why, why_size, "rule \"%s\" has no recorded value", rule_text);
            return false;
        }
        double value = json_number_value(actual), bound = json_number_value(limit);
        bool holds = strcmp(op, ">=") == 0 ? value >= bound : value <= bound;
        if (!holds)
            snprintf(why, why_size, "rule \"%s\" fails with %.4f", rule_text, value);
        return holds;
    }
    snprintf(why, why_size, "rule \"%s\" of the config is not in the report", rule_text);
    return false;
}

/* True when every entry of an array (data checks) or object (comparison
 * labels) has "passed": true. */
static bool all_passed(const json_t *entries, const char *what, char *why, size_t why_size)
{
    const char *key;
    json_t *entry;
    size_t index;
    if (json_is_array(entries)) {
        json_array_foreach(entries, index, entry)
        {
            if (!json_is_true(json_object_get(entry, "passed"))) {
                const char *name = json_string_value(json_object_get(entry, "name"));
                snprintf(why, why_size, "%s %s failed", what, name ? name : "(unnamed)");
                return false;
            }
        }
    } else if (json_is_object(entries)) {
        json_object_foreach((json_t *)entries, key, entry)
        {
            if (!json_is_true(json_object_get(entry, "passed"))) {
                snprintf(why, why_size, "%s of %s failed", what, key);
                return false;
            }
        }
    }
    return true;
}

/* The champion comparison fails when this model lacks a champion label. A
 * report without the label check compared only the shared labels, so it
 * does not pass either. */
static bool labels_kept(const json_t *comparison, char *why, size_t why_size)
{
    const json_t *check = json_object_get(comparison, "label_check");
    if (check == NULL) {
        snprintf(why, why_size,
                 "the champion comparison has no label check; run apiary validate again");
        return false;
    }
    if (json_is_true(json_object_get(check, "passed")))
        return true;
    const char *detail = json_string_value(json_object_get(check, "detail"));
    snprintf(why, why_size, "the champion comparison failed: %s",
             detail != NULL ? detail : "this model lacks labels of the champion");
    return false;
}

/* The report passes under the config's gate: every configured rule
 * recomputed from the recorded values, every data check, every champion
 * comparison including the check that no champion label is lost, and its
 * verdict. A report made under other rules, or edited to say passed, does
 * not. why names the first failure, checking the verdict last so that a
 * failed report names its cause. */
static bool report_passes(const json_t *report, const ap_config *cfg, char *why, size_t why_size)
{
    for (int i = 0; i < cfg->gate.rule_count; i++)
        if (!rule_holds(report, cfg->gate.rules[i], why, why_size))
            return false;
    if (!all_passed(json_object_get(report, "data_checks"), "data check", why, why_size))
        return false;
    const json_t *comparison = json_object_get(report, "comparison");
    if (!json_is_true(json_object_get(comparison, "skipped")) &&
        !(labels_kept(comparison, why, why_size) &&
          all_passed(json_object_get(comparison, "labels"), "the champion comparison", why,
                     why_size)))
        return false;
    if (!json_is_true(json_object_get(report, "passed"))) {
        snprintf(why, why_size, "the report's verdict is failed");
        return false;
    }
    return true;
}

/* Read the report, check that it names these exact weights, and decide
 * whether it passes under the config's gate. */
static ap_status read_verdict(const run_files *files, const ap_config *cfg, bool *passed,
                              int *compared_champion, ap_error *err)
{
    json_error_t json_err;
    json_t *report = json_load_file(files->report, 0, &json_err);
    if (report == NULL)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s is not valid JSON (line %d: %s); rerun apiary validate",
                            files->report, json_err.line, json_err.text);
    const char *reported = json_string_value(json_object_get(report, "model_sha256"));
    ap_status status = AP_OK;
    if (!json_is_boolean(json_object_get(report, "passed")))
        status = ap_error_set(err, AP_ERR_FORMAT, "%s has no boolean \"passed\" verdict",
                              files->report);
    else if (reported == NULL || strcmp(reported, files->model_sha256) != 0)
        status = ap_error_set(err, AP_ERR_INVALID,
                              "%s validated other weights (sha256 %.12s) than %s (sha256 %.12s); "
                              "retrain the run or validate it again",
                              files->report, reported ? reported : "missing", files->model,
                              files->model_sha256);
    if (status == AP_OK) {
        char why[2048] = "";
        *passed = report_passes(report, cfg, why, sizeof(why));
        if (!*passed)
            AP_WARN("%s does not pass the configured gate: %s", files->report, why);
        json_t *version = json_object_get(json_object_get(report, "comparison"),
                                          "champion_version");
        *compared_champion = json_is_integer(version) ? (int)json_integer_value(version) : 0;
    }
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

/* The comparison in the report is only meaningful against the champion it
 * was made with: a champion promoted since then needs a new validation. */
static ap_status check_champion_unchanged(ap_registry *registry, const char *model,
                                          const char *alias, int compared, const run_files *files,
                                          ap_error *err)
{
    if (strcmp(alias, AP_REGISTRY_CHAMPION) != 0)
        return AP_OK;
    int current = 0;
    ap_error lookup_err = {0};
    ap_status status = ap_registry_get_alias(registry, model, alias, &current, &lookup_err);
    if (status == AP_ERR_NOT_FOUND) {
        current = 0;
    } else if (status != AP_OK) {
        *err = lookup_err;
        return status;
    }
    if (current == compared)
        return AP_OK;
    /* Promoting the weights that already are the champion changes nothing. */
    int same = 0;
    status = find_version_with_model(registry, model, files->model_sha256, &same, err);
    if (status != AP_OK || (same != 0 && same == current))
        return status;
    char before[32] = "no champion";
    if (compared > 0)
        snprintf(before, sizeof(before), "version %d", compared);
    return ap_error_set(err, AP_ERR_INVALID,
                        "champion is version %d now, but %s was compared with %s; run apiary "
                        "validate again so the model is compared with the current champion",
                        current, files->report, before);
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
    int compared_champion = 0;
    ap_status status = locate_run(request->cfg, &files, err);
    if (status == AP_OK)
        snprintf(outcome->report_path, sizeof(outcome->report_path), "%s",
                 ap_path_exists(files.report_markdown) ? files.report_markdown : files.report);
    if (status == AP_OK)
        status = read_verdict(&files, request->cfg, &outcome->passed, &compared_champion, err);
    if (status != AP_OK)
        return status;
    if (!outcome->passed && !request->force) {
        outcome->blocked = true;
        return write_promotion_record(&files, request, outcome, err);
    }

    ap_registry *registry = NULL;
    const char *model = request->cfg->registry.model_name;
    status = ap_registry_open(request->cfg->registry.uri, &registry, err);
    if (status == AP_OK && !request->force)
        status = check_champion_unchanged(registry, model, alias, compared_champion, &files, err);
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
