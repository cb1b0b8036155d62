#include "pipeline/registry/registry.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline/common/fsutil.h"
#include "tests/unit/check.h"

#define MODEL "bees"

static char root[4096];
static char inputs[4096];

/* Paths of one candidate's files, written under the inputs folder. */
typedef struct {
    char model[4200];
    char card[4200];
    char report[4200];
    char sha256[65];
} candidate;

static void write_text(const char *path, const char *text)
{
    ap_error err = {0};
    if (ap_write_atomic(path, text, strlen(text), &err) != AP_OK) {
        fprintf(stderr, "cannot write test input: %s\n", err.message);
        exit(1);
    }
}

/* Write weights, a card and a report. The verdict is "pass", "fail" or NULL
 * for no verdict field. The report names other weights when wrong_sha is set. */
static void make_candidate(candidate *out, const char *name, const char *verdict, bool wrong_sha)
{
    char weights[256], text[512];
    snprintf(weights, sizeof(weights), "weights of %s", name);
    snprintf(out->model, sizeof(out->model), "%s/%s.safetensors", inputs, name);
    snprintf(out->card, sizeof(out->card), "%s/%s.card.json", inputs, name);
    snprintf(out->report, sizeof(out->report), "%s/%s.report.json", inputs, name);
    write_text(out->model, weights);
    write_text(out->card, "{\"name\": \"bees\"}\n");
    ap_sha256_hex(weights, strlen(weights), out->sha256);
    const char *named = wrong_sha
                            ? "0000000000000000000000000000000000000000000000000000000000000000"
                            : out->sha256;
    if (verdict == NULL)
        snprintf(text, sizeof(text), "{\"model_sha256\": \"%s\"}\n", named);
    else
        snprintf(text, sizeof(text), "{\"passed\": %s, \"model_sha256\": \"%s\"}\n",
                 strcmp(verdict, "pass") == 0 ? "true" : "false", named);
    write_text(out->report, text);
}

static ap_registry_new_version request_for(const candidate *c)
{
    ap_registry_new_version request = {
        .model_path = c->model,
        .model_card_path = c->card,
        .report_path = c->report,
    };
    return request;
}

static int register_candidate(ap_registry *registry, const candidate *c)
{
    ap_registry_new_version request = request_for(c);
    int version = 0;
    ap_error err = {0};
    ap_status status = ap_registry_register(registry, MODEL, &request, &version, &err);
    if (status != AP_OK)
        fprintf(stderr, "register %s: %s\n", c->model, err.message);
    CHECK_INT_EQ(status, AP_OK);
    return version;
}

static ap_status move_alias(ap_registry *registry, const char *alias, int version,
                            const char *reason, bool forced, ap_error *err)
{
    ap_registry_move move = {.reason = reason, .forced = forced};
    return ap_registry_set_alias(registry, MODEL, alias, version, &move, NULL, err);
}

static int alias_version(ap_registry *registry, const char *alias)
{
    int version = -1;
    ap_error err = {0};
    if (ap_registry_get_alias(registry, MODEL, alias, &version, &err) != AP_OK)
        return 0;
    return version;
}

static void test_names_rejected(ap_registry *registry)
{
    static const char *bad_models[] = {"",      "Bees",    "../bees", "a/b",
                                       "1bees", ".hidden", "bees!",   "b\xc3\xa9"};
    candidate c;
    make_candidate(&c, "names", "pass", false);
    ap_registry_new_version request = request_for(&c);
    for (size_t i = 0; i < sizeof(bad_models) / sizeof(bad_models[0]); i++) {
        ap_error err = {0};
        int version = 0;
        CHECK_INT_EQ(ap_registry_register(registry, bad_models[i], &request, &version, &err),
                     AP_ERR_INVALID);
        CHECK_STR_CONTAINS(err.message, "model name");
    }
    char long_model[80];
    memset(long_model, 'a', 65);
    long_model[65] = '\0';
    ap_error err = {0};
    CHECK_INT_EQ(ap_registry_check_model_name(long_model, &err), AP_ERR_INVALID);
    long_model[64] = '\0';
    CHECK_INT_EQ(ap_registry_check_model_name(long_model, &err), AP_OK);

    static const char *bad_aliases[] = {
        "",    "Champion", "..", "a/b", "v3",
        "v12", "v007",     "3",  "-x",  "abcdefghijklmnopqrstuvwxyz0123456"};
    for (size_t i = 0; i < sizeof(bad_aliases) / sizeof(bad_aliases[0]); i++) {
        err = (ap_error){0};
        CHECK_INT_EQ(ap_registry_check_alias_name(bad_aliases[i], &err), AP_ERR_INVALID);
        CHECK(err.message[0] != '\0');
    }
    static const char *good_aliases[] = {"champion",
                                         "challenger",
                                         "shadow-2",
                                         "a_b",
                                         "v",
                                         "va3",
                                         "abcdefghijklmnopqrstuvwxyz012345"};
    for (size_t i = 0; i < sizeof(good_aliases) / sizeof(good_aliases[0]); i++)
        CHECK_INT_EQ(ap_registry_check_alias_name(good_aliases[i], NULL), AP_OK);
    char escaped[4200];
    snprintf(escaped, sizeof(escaped), "%s/../bees", root);
    CHECK(!ap_path_exists(escaped));
}

static void test_register_and_show(ap_registry *registry)
{
    candidate first, second;
    make_candidate(&first, "first", "pass", false);
    make_candidate(&second, "second", "pass", false);
    ap_registry_tag tags[] = {{"git_commit", "abc123"}, {"config", "nightly.yaml"}};
    ap_registry_new_version request = request_for(&first);
    request.source_run = "/runs/2024-05-01";
    request.tags = tags;
    request.tag_count = 2;
    int version = 0;
    ap_error err = {0};
    CHECK_INT_EQ(ap_registry_register(registry, MODEL, &request, &version, &err), AP_OK);
    CHECK_INT_EQ(version, 1);
    CHECK_INT_EQ(register_candidate(registry, &second), 2);

    /* Files are copied, not moved. */
    CHECK(ap_path_exists(first.model));
    CHECK(ap_path_exists(first.report));

    json_t *info = NULL;
    CHECK_INT_EQ(ap_registry_show(registry, MODEL, 1, &info, &err), AP_OK);
    CHECK_INT_EQ(json_integer_value(json_object_get(info, "version")), 1);
    json_t *files = json_object_get(info, "files");
    const char *model_sha = json_string_value(
        json_object_get(json_object_get(files, AP_REGISTRY_MODEL_FILE), "sha256"));
    CHECK_STR_CONTAINS(model_sha, first.sha256);
    CHECK(json_object_get(files, AP_REGISTRY_CARD_FILE) != NULL);
    CHECK(json_object_get(files, AP_REGISTRY_REPORT_FILE) != NULL);
    CHECK_STR_CONTAINS(json_string_value(json_object_get(info, "source_run")), "/runs/2024-05-01");
    json_t *stored_tags = json_object_get(info, "tags");
    CHECK_STR_CONTAINS(json_string_value(json_object_get(stored_tags, "git_commit")), "abc123");
    json_t *validation = json_object_get(info, "validation");
    CHECK_STR_CONTAINS(json_string_value(json_object_get(validation, "verdict")), "pass");
    CHECK(json_is_true(json_object_get(validation, "model_sha256_match")));
    CHECK(json_object_get(info, "forced") == NULL);
    CHECK(json_string_value(json_object_get(info, "created")) != NULL);
    json_decref(info);

    char path[4096];
    CHECK_INT_EQ(
        ap_registry_file_path(registry, MODEL, 2, AP_REGISTRY_MODEL_FILE, path, sizeof(path), &err),
        AP_OK);
    char sha[65];
    CHECK_INT_EQ(ap_sha256_file(path, sha, &err), AP_OK);
    CHECK(strcmp(sha, second.sha256) == 0);
    CHECK_INT_EQ(ap_registry_file_path(registry, MODEL, 2, "../1/model.safetensors", path,
                                       sizeof(path), &err),
                 AP_ERR_INVALID);
    CHECK_INT_EQ(ap_registry_verify(registry, MODEL, 2, &err), AP_OK);

    err = (ap_error){0};
    CHECK_INT_EQ(ap_registry_show(registry, MODEL, 9, &info, &err), AP_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(err.message, root);
    CHECK_STR_CONTAINS(err.message, "version 9 not found");
}

static void test_aliases_and_resolve(ap_registry *registry)
{
    ap_error err = {0};
    CHECK_INT_EQ(move_alias(registry, "champion", 1, "first nightly", false, &err), AP_OK);
    CHECK_INT_EQ(alias_version(registry, "champion"), 1);
    int previous = -1;
    ap_registry_move move = {.reason = "better recall"};
    CHECK_INT_EQ(ap_registry_set_alias(registry, MODEL, "champion", 2, &move, &previous, &err),
                 AP_OK);
    CHECK_INT_EQ(previous, 1);
    CHECK_INT_EQ(alias_version(registry, "champion"), 2);
    CHECK_INT_EQ(move_alias(registry, "challenger", 1, NULL, false, &err), AP_OK);

    /* Setting an alias to where it already points records nothing. */
    json_t *history = NULL;
    CHECK_INT_EQ(ap_registry_history(registry, MODEL, &history, &err), AP_OK);
    size_t moves = json_array_size(history);
    json_decref(history);
    CHECK_INT_EQ(move_alias(registry, "champion", 2, NULL, false, &err), AP_OK);
    CHECK_INT_EQ(ap_registry_history(registry, MODEL, &history, &err), AP_OK);
    CHECK_INT_EQ(json_array_size(history), moves);
    json_decref(history);

    int version = 0;
    CHECK_INT_EQ(ap_registry_resolve(registry, MODEL, "champion", &version, &err), AP_OK);
    CHECK_INT_EQ(version, 2);
    CHECK_INT_EQ(ap_registry_resolve(registry, MODEL, "challenger", &version, &err), AP_OK);
    CHECK_INT_EQ(version, 1);
    CHECK_INT_EQ(ap_registry_resolve(registry, MODEL, "v2", &version, &err), AP_OK);
    CHECK_INT_EQ(version, 2);
    CHECK_INT_EQ(ap_registry_resolve(registry, MODEL, "1", &version, &err), AP_OK);
    CHECK_INT_EQ(version, 1);
    CHECK_INT_EQ(ap_registry_resolve(registry, MODEL, "v9", &version, &err), AP_ERR_NOT_FOUND);
    CHECK_INT_EQ(ap_registry_resolve(registry, MODEL, "shadow", &version, &err), AP_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(err.message, "alias shadow");
    CHECK_INT_EQ(ap_registry_resolve(registry, MODEL, "v02", &version, &err), AP_ERR_INVALID);
    CHECK_INT_EQ(ap_registry_resolve(registry, MODEL, "../1", &version, &err), AP_ERR_INVALID);
    CHECK_INT_EQ(ap_registry_resolve(registry, "nosuch", "champion", &version, &err),
                 AP_ERR_NOT_FOUND);

    /* A missing version and an invalid alias are rejected before anything changes. */
    err = (ap_error){0};
    CHECK_INT_EQ(move_alias(registry, "champion", 7, NULL, false, &err), AP_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(err.message, "version 7");
    CHECK_INT_EQ(move_alias(registry, "Champion", 1, NULL, false, &err), AP_ERR_INVALID);
    CHECK_INT_EQ(move_alias(registry, "v1", 1, NULL, false, &err), AP_ERR_INVALID);
    CHECK_INT_EQ(alias_version(registry, "champion"), 2);
}

static void test_list_versions(ap_registry *registry)
{
    ap_registry_version_info *versions = NULL;
    size_t count = 0;
    ap_error err = {0};
    CHECK_INT_EQ(ap_registry_list(registry, MODEL, &versions, &count, &err), AP_OK);
    CHECK_INT_EQ(count, 2);
    if (count == 2) {
        CHECK_INT_EQ(versions[0].version, 1);
        CHECK_INT_EQ(versions[1].version, 2);
        CHECK(versions[0].complete);
        CHECK_STR_CONTAINS(versions[0].verdict, "pass");
        CHECK_INT_EQ(versions[0].alias_count, 1);
        CHECK_INT_EQ(versions[1].alias_count, 1);
        if (versions[0].alias_count == 1)
            CHECK_STR_CONTAINS(versions[0].aliases[0], "challenger");
        if (versions[1].alias_count == 1)
            CHECK_STR_CONTAINS(versions[1].aliases[0], "champion");
    }
    ap_registry_free_versions(versions, count);

    CHECK_INT_EQ(ap_registry_list(registry, "nosuch", &versions, &count, &err), AP_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(err.message, "nosuch");
}

static void test_champion_policy(ap_registry *registry)
{
    candidate failing, unjudged;
    make_candidate(&failing, "failing", "fail", false);
    make_candidate(&unjudged, "unjudged", NULL, false);
    int failing_version = register_candidate(registry, &failing);
    int unjudged_version = register_candidate(registry, &unjudged);
    CHECK_INT_EQ(failing_version, 3);
    CHECK_INT_EQ(unjudged_version, 4);

    candidate bare;
    make_candidate(&bare, "bare", "pass", false);
    ap_registry_new_version request = request_for(&bare);
    request.report_path = NULL;
    int bare_version = 0;
    ap_error err = {0};
    CHECK_INT_EQ(ap_registry_register(registry, MODEL, &request, &bare_version, &err), AP_OK);
    CHECK_INT_EQ(bare_version, 5);

    CHECK_INT_EQ(move_alias(registry, "champion", failing_version, NULL, false, &err),
                 AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "verdict is fail");
    CHECK_INT_EQ(move_alias(registry, "champion", unjudged_version, NULL, false, &err),
                 AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "verdict is unknown");
    CHECK_INT_EQ(move_alias(registry, "champion", bare_version, NULL, false, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "verdict is none");
    CHECK_INT_EQ(alias_version(registry, "champion"), 2);

    /* Other aliases need only a complete version; a forced move needs a reason. */
    CHECK_INT_EQ(move_alias(registry, "challenger", failing_version, NULL, false, &err), AP_OK);
    CHECK_INT_EQ(move_alias(registry, "champion", bare_version, "", true, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "reason");
    CHECK_INT_EQ(move_alias(registry, "champion", bare_version, "hotfix", true, &err), AP_OK);
    CHECK_INT_EQ(alias_version(registry, "champion"), bare_version);
}

/* History so far for champion: 1, 2, then 5 by force. */
static void test_rollback_history(ap_registry *registry)
{
    ap_error err = {0};
    int version = 0;
    ap_registry_move move = {.reason = "version 5 misreads wasps"};
    CHECK_INT_EQ(ap_registry_rollback(registry, MODEL, "champion", 0, &move, &version, &err),
                 AP_OK);
    CHECK_INT_EQ(version, 2);
    CHECK_INT_EQ(ap_registry_rollback(registry, MODEL, "champion", 0, &move, &version, &err),
                 AP_OK);
    CHECK_INT_EQ(version, 1);
    CHECK_INT_EQ(ap_registry_rollback(registry, MODEL, "champion", 0, &move, &version, &err),
                 AP_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(err.message, "no earlier version");
    CHECK_INT_EQ(alias_version(registry, "champion"), 1);

    /* An explicit target obeys the champion policy like any move. */
    CHECK_INT_EQ(ap_registry_rollback(registry, MODEL, "champion", 3, &move, &version, &err),
                 AP_ERR_INVALID);
    CHECK_INT_EQ(ap_registry_rollback(registry, MODEL, "champion", 2, &move, &version, &err),
                 AP_OK);
    CHECK_INT_EQ(version, 2);
    CHECK_INT_EQ(ap_registry_rollback(registry, MODEL, "champion", 2, &move, &version, &err),
                 AP_ERR_INVALID);
    CHECK_INT_EQ(ap_registry_rollback(registry, MODEL, "shadow", 0, &move, &version, &err),
                 AP_ERR_NOT_FOUND);

    json_t *history = NULL;
    CHECK_INT_EQ(ap_registry_history(registry, MODEL, &history, &err), AP_OK);
    static const struct {
        const char *alias, *action;
        int from, to;
        bool forced;
    } expected[] = {
        {"champion", "set", 0, 1, false},      {"champion", "set", 1, 2, false},
        {"challenger", "set", 0, 1, false},    {"challenger", "set", 1, 3, false},
        {"champion", "set", 2, 5, true},       {"champion", "rollback", 5, 2, false},
        {"champion", "rollback", 2, 1, false}, {"champion", "rollback-to", 1, 2, false},
    };
    size_t count = sizeof(expected) / sizeof(expected[0]);
    CHECK_INT_EQ(json_array_size(history), count);
    for (size_t i = 0; i < count && i < json_array_size(history); i++) {
        json_t *entry = json_array_get(history, i);
        CHECK_STR_CONTAINS(json_string_value(json_object_get(entry, "alias")), expected[i].alias);
        CHECK_STR_CONTAINS(json_string_value(json_object_get(entry, "action")), expected[i].action);
        CHECK_INT_EQ(json_integer_value(json_object_get(entry, "from")), expected[i].from);
        CHECK_INT_EQ(json_integer_value(json_object_get(entry, "to")), expected[i].to);
        CHECK_INT_EQ(json_is_true(json_object_get(entry, "forced")), expected[i].forced);
        CHECK(json_string_value(json_object_get(entry, "time")) != NULL);
    }
    json_t *forced = json_array_get(history, 4);
    CHECK_STR_CONTAINS(json_string_value(json_object_get(forced, "reason")), "hotfix");
    CHECK(json_is_null(json_object_get(json_array_get(history, 0), "from")));
    json_decref(history);
}

static void test_tampered_version(ap_registry *registry)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s/versions/1/%s", root, MODEL, AP_REGISTRY_MODEL_FILE);
    write_text(path, "weights swapped after registration");
    ap_error err = {0};
    CHECK_INT_EQ(ap_registry_verify(registry, MODEL, 1, &err), AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, "sha256");
    CHECK_STR_CONTAINS(err.message, "version 1");
    CHECK_INT_EQ(move_alias(registry, "champion", 1, NULL, false, &err), AP_ERR_FORMAT);
    CHECK_INT_EQ(move_alias(registry, "staging", 1, "forced anyway", true, &err), AP_ERR_FORMAT);
    int version = 0;
    CHECK_INT_EQ(ap_registry_rollback(registry, MODEL, "champion", 1, NULL, &version, &err),
                 AP_ERR_FORMAT);
    CHECK_INT_EQ(alias_version(registry, "champion"), 2);
    CHECK_INT_EQ(alias_version(registry, "staging"), 0);

    /* A removed file and a record naming a path outside the version are rejected too. */
    snprintf(path, sizeof(path), "%s/%s/versions/3/%s", root, MODEL, AP_REGISTRY_CARD_FILE);
    CHECK_INT_EQ(unlink(path), 0);
    CHECK_INT_EQ(ap_registry_verify(registry, MODEL, 3, &err), AP_ERR_IO);
    CHECK_STR_CONTAINS(err.message, "incomplete");
    /* A listed file that is gone is a damaged folder; an unlisted one is not found. */
    char found[4096];
    err = (ap_error){0};
    CHECK_INT_EQ(ap_registry_file_path(registry, MODEL, 3, AP_REGISTRY_CARD_FILE, found,
                                       sizeof(found), &err),
                 AP_ERR_IO);
    CHECK_STR_CONTAINS(err.message, "version 3 lists model_card.json, but");
    CHECK_INT_EQ(ap_registry_file_path(registry, MODEL, 3, "notes.txt", found, sizeof(found), &err),
                 AP_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(err.message, "version 3 has no file notes.txt");
    CHECK_INT_EQ(ap_registry_file_path(registry, MODEL, 42, AP_REGISTRY_MODEL_FILE, found,
                                       sizeof(found), &err),
                 AP_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(err.message, "version 42 not found");

    snprintf(path, sizeof(path), "%s/%s/versions/4/%s", root, MODEL, AP_REGISTRY_VERSION_FILE);
    json_error_t parse_error;
    json_t *record = json_load_file(path, 0, &parse_error);
    json_object_set_new(json_object_get(record, "files"), "../../aliases.json",
                        json_pack("{s:s, s:i}", "sha256", "00", "size", 1));
    CHECK_INT_EQ(json_dump_file(record, path, 0), 0);
    json_decref(record);
    CHECK_INT_EQ(move_alias(registry, "challenger", 4, NULL, false, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "unsafe file name");
}

static void test_report_other_weights(ap_registry *registry)
{
    candidate c;
    make_candidate(&c, "mismatch", "pass", true);
    ap_registry_new_version request = request_for(&c);
    int version = 0;
    ap_error err = {0};
    CHECK_INT_EQ(ap_registry_register(registry, MODEL, &request, &version, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "names weights other than");
    request.force = true;
    CHECK_INT_EQ(ap_registry_register(registry, MODEL, &request, &version, &err), AP_ERR_INVALID);
    request.force_reason = "report regenerated later";
    CHECK_INT_EQ(ap_registry_register(registry, MODEL, &request, &version, &err), AP_OK);
    CHECK_INT_EQ(version, 6);

    json_t *info = NULL;
    CHECK_INT_EQ(ap_registry_show(registry, MODEL, version, &info, &err), AP_OK);
    CHECK(json_is_true(json_object_get(info, "forced")));
    CHECK_STR_CONTAINS(json_string_value(json_object_get(info, "force_reason")), "regenerated");
    CHECK(
        json_is_false(json_object_get(json_object_get(info, "validation"), "model_sha256_match")));
    json_decref(info);
    CHECK_INT_EQ(move_alias(registry, "champion", version, NULL, false, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "does not name");

    /* A report that is not a JSON object is rejected. */
    write_text(c.report, "[1, 2]");
    request.force = false;
    CHECK_INT_EQ(ap_registry_register(registry, MODEL, &request, &version, &err), AP_ERR_FORMAT);
    write_text(c.report, "{\"passed\": \"yes\"}");
    CHECK_INT_EQ(ap_registry_register(registry, MODEL, &request, &version, &err), AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, "passed");
}

static void test_attachments(ap_registry *registry)
{
    candidate c;
    make_candidate(&c, "attached", "pass", false);
    char metrics[4200], clash[4200];
    snprintf(metrics, sizeof(metrics), "%s/metrics.csv", inputs);
    snprintf(clash, sizeof(clash), "%s/version.json", inputs);
    write_text(metrics, "label,recall\nwasps,0.9\n");
    write_text(clash, "{}");

    const char *attachments[] = {metrics};
    ap_registry_new_version request = request_for(&c);
    request.attachments = attachments;
    request.attachment_count = 1;
    int version = 0;
    ap_error err = {0};
    CHECK_INT_EQ(ap_registry_register(registry, MODEL, &request, &version, &err), AP_OK);
    CHECK_INT_EQ(version, 7);
    char path[4096];
    CHECK_INT_EQ(
        ap_registry_file_path(registry, MODEL, version, "metrics.csv", path, sizeof(path), &err),
        AP_OK);
    CHECK_INT_EQ(ap_registry_verify(registry, MODEL, version, &err), AP_OK);

    attachments[0] = clash;
    CHECK_INT_EQ(ap_registry_register(registry, MODEL, &request, &version, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "version.json");
    char missing[4200];
    snprintf(missing, sizeof(missing), "%s/nothing-here.bin", inputs);
    attachments[0] = missing;
    CHECK_INT_EQ(ap_registry_register(registry, MODEL, &request, &version, &err), AP_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(err.message, "nothing-here.bin");

    ap_registry_tag tags[] = {{"same", "a"}, {"same", "b"}};
    request = request_for(&c);
    request.tags = tags;
    request.tag_count = 2;
    CHECK_INT_EQ(ap_registry_register(registry, MODEL, &request, &version, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "same");
}

static int count_leftovers(void)
{
    char model_dir[4200];
    snprintf(model_dir, sizeof(model_dir), "%s/%s", root, MODEL);
    DIR *dir = opendir(model_dir);
    int leftovers = 0;
    struct dirent *entry;
    while (dir != NULL && (entry = readdir(dir)) != NULL) {
        const char *name = entry->d_name;
        if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0 && strcmp(name, ".lock") != 0 &&
            strcmp(name, "versions") != 0 && strcmp(name, "aliases.json") != 0)
            leftovers++;
    }
    if (dir != NULL)
        closedir(dir);
    return leftovers;
}

/* A writer that died mid-registration leaves a staging folder and perhaps a
 * temporary aliases file. The next registration removes both. It keeps a
 * staging folder whose writer still holds its lock. */
static void test_crash_leftovers(ap_registry *registry)
{
    char dead[4200], live[4200], temp_aliases[4200], file[4300];
    snprintf(dead, sizeof(dead), "%s/%s/.register-dead01", root, MODEL);
    snprintf(live, sizeof(live), "%s/%s/.register-live01", root, MODEL);
    snprintf(temp_aliases, sizeof(temp_aliases), "%s/%s/aliases.json.tmp.abc123", root, MODEL);
    CHECK_INT_EQ(mkdir(dead, 0755), 0);
    CHECK_INT_EQ(mkdir(live, 0755), 0);
    snprintf(file, sizeof(file), "%s/model.safetensors", dead);
    write_text(file, "half a model");
    snprintf(file, sizeof(file), "%s/version.json", dead);
    write_text(file, "{\"version\": 8}");
    write_text(temp_aliases, "{\"aliases\": {");
    int live_fd = open(live, O_RDONLY | O_DIRECTORY);
    CHECK(live_fd >= 0);
    CHECK_INT_EQ(flock(live_fd, LOCK_EX | LOCK_NB), 0);

    candidate c;
    make_candidate(&c, "after-crash", "pass", false);
    int version = register_candidate(registry, &c);
    CHECK_INT_EQ(version, 8);
    CHECK(!ap_path_exists(dead));
    CHECK(!ap_path_exists(temp_aliases));
    CHECK(ap_path_exists(live));
    CHECK_INT_EQ(count_leftovers(), 1);

    close(live_fd);
    make_candidate(&c, "after-release", "pass", false);
    CHECK_INT_EQ(register_candidate(registry, &c), 9);
    CHECK(!ap_path_exists(live));
    CHECK_INT_EQ(count_leftovers(), 0);

    /* Aliases still work after the clean-up. */
    ap_error err = {0};
    CHECK_INT_EQ(move_alias(registry, "champion", 9, NULL, false, &err), AP_OK);
    CHECK_INT_EQ(alias_version(registry, "champion"), 9);
}

/* A reference that names nothing gets the versions and aliases listed. */
static void test_append_contents(ap_registry *registry)
{
    ap_error err = {0};
    int version = 0;
    CHECK_INT_EQ(ap_registry_resolve(registry, MODEL, "v99", &version, &err), AP_ERR_NOT_FOUND);
    ap_registry_append_contents(registry, MODEL, &err);
    CHECK_INT_EQ(err.code, AP_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(err.message, "version 99 not found");
    CHECK_STR_CONTAINS(err.message,
                       "; model bees has versions 1, 2, 3, 4, 5, 6, 7, 8, 9, aliases ");
    CHECK_STR_CONTAINS(err.message, "champion (version 9)");
    CHECK_STR_CONTAINS(err.message, "challenger (version 3)");

    /* An unknown model has nothing to list, and the message stays as it was. */
    err = (ap_error){0};
    CHECK_INT_EQ(ap_registry_resolve(registry, "wasps", "champion", &version, &err),
                 AP_ERR_NOT_FOUND);
    char before[AP_ERROR_MESSAGE_MAX];
    snprintf(before, sizeof(before), "%s", err.message);
    ap_registry_append_contents(registry, "wasps", &err);
    CHECK(strcmp(err.message, before) == 0);
}

/* An alias whose version folder was removed by hand is listed with its
 * version, and looking it up fails. */
static void test_dangling_alias(ap_registry *registry)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s/aliases.json", root, MODEL);
    json_error_t parse_error;
    json_t *doc = json_load_file(path, 0, &parse_error);
    CHECK(doc != NULL);
    json_object_set_new(json_object_get(doc, "aliases"), "shadow", json_integer(77));
    CHECK_INT_EQ(json_dump_file(doc, path, 0), 0);
    json_decref(doc);

    ap_registry_alias *aliases = NULL;
    size_t count = 0;
    ap_error err = {0};
    CHECK_INT_EQ(ap_registry_list_aliases(registry, MODEL, &aliases, &count, &err), AP_OK);
    int shadow = 0, champion = 0;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(aliases[i].name, "shadow") == 0)
            shadow = aliases[i].version;
        if (strcmp(aliases[i].name, "champion") == 0)
            champion = aliases[i].version;
    }
    free(aliases);
    CHECK_INT_EQ(shadow, 77);
    CHECK_INT_EQ(champion, 9);

    int version = 0;
    CHECK_INT_EQ(ap_registry_get_alias(registry, MODEL, "shadow", &version, &err), AP_ERR_IO);
    CHECK_STR_CONTAINS(err.message, "alias shadow points at version 77, but");
    CHECK_STR_CONTAINS(err.message, "--alias shadow --to VERSION");
    CHECK_INT_EQ(ap_registry_resolve(registry, MODEL, "shadow", &version, &err), AP_ERR_IO);
    CHECK_INT_EQ(ap_registry_list_aliases(registry, "nosuch", &aliases, &count, &err),
                 AP_ERR_NOT_FOUND);

    /* A rollback to a version that exists repairs it. */
    ap_registry_move move = {.reason = "version 77 was deleted"};
    CHECK_INT_EQ(ap_registry_rollback(registry, MODEL, "shadow", 2, &move, &version, &err), AP_OK);
    CHECK_INT_EQ(alias_version(registry, "shadow"), 2);
}

static void test_open_errors(void)
{
    ap_registry *registry = NULL;
    ap_error err = {0};
    CHECK_INT_EQ(ap_registry_open("", &registry, &err), AP_ERR_INVALID);
    CHECK_INT_EQ(ap_registry_open("s3://bucket/registry", &registry, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "unsupported scheme");
    char file[4200];
    snprintf(file, sizeof(file), "%s/plain-file", inputs);
    write_text(file, "x");
    CHECK_INT_EQ(ap_registry_open(file, &registry, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "not a folder");

    /* A command that reads the registry needs its folder; a registration creates it. */
    char missing[4200];
    snprintf(missing, sizeof(missing), "%s/no-registry", inputs);
    CHECK_INT_EQ(ap_registry_open(missing, &registry, &err), AP_OK);
    ap_registry_close(registry);
    err = (ap_error){0};
    CHECK_INT_EQ(ap_registry_open_existing(missing, &registry, &err), AP_ERR_IO);
    CHECK(registry == NULL);
    CHECK_STR_CONTAINS(err.message, "registry folder");
    CHECK_STR_CONTAINS(err.message, "no-registry cannot be read");

    char uri[4200];
    snprintf(uri, sizeof(uri), "file://%s/", root);
    CHECK_INT_EQ(ap_registry_open_existing(uri, &registry, &err), AP_OK);
    ap_registry_close(registry);
    CHECK_INT_EQ(ap_registry_open(uri, &registry, &err), AP_OK);
    int version = 0;
    CHECK_INT_EQ(ap_registry_get_alias(registry, MODEL, "champion", &version, &err), AP_OK);
    CHECK_INT_EQ(version, 9);
    ap_registry_close(registry);
}

int main(void)
{
    const char *dir = check_temp_dir("registry");
    if (dir == NULL) {
        fprintf(stderr, "cannot create a temporary folder\n");
        return 1;
    }
    snprintf(root, sizeof(root), "%s/registry", dir);
    snprintf(inputs, sizeof(inputs), "%s/inputs", dir);
    ap_error err = {0};
    if (ap_mkdirs(inputs, &err) != AP_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    ap_registry *registry = NULL;
    if (ap_registry_open(root, &registry, &err) != AP_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    test_names_rejected(registry);
    test_register_and_show(registry);
    test_aliases_and_resolve(registry);
    test_list_versions(registry);
    test_champion_policy(registry);
    test_rollback_history(registry);
    test_tampered_version(registry);
    test_report_other_weights(registry);
    test_attachments(registry);
    test_crash_leftovers(registry);
    test_append_contents(registry);
    test_dangling_alias(registry);
    test_open_errors();
    ap_registry_close(registry);
    return check_finish();
}
