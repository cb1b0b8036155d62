/* Aliases in the MLflow backend. A move is checked as in the local backend:
 * the version is READY, its files match their recorded sha256, and "champion"
 * needs a passing report unless forced. The move is then recorded as a
 * history tag on the registered model, and only then applied with
 * registered-models/alias.
 *
 * NOTE: MLflow has no transactions, so two processes moving aliases of one
 * model at the same moment are not serialized. Both history entries are kept,
 * and the alias ends where the later alias request put it. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "pipeline/registry/mlflow_internal.h"
#include "pipeline/registry/registry_internal.h"

#define HISTORY_TAG_PREFIX "apiary.history."
/* Keys write SEQ as %09ld, nine digits up to this value; at one move per
 * second, passing it would take 31 years. */
#define HISTORY_SEQUENCE_MAX 999999999L

typedef struct {
    const char *key;
    long sequence;
    json_t *entry;
} history_item;

/* ---- Reading the registered model ---- */

/* The version alias points at in a registered model, or 0. */
static int alias_target(const json_t *registered, const char *alias)
{
    size_t index;
    json_t *entry;
    json_array_foreach(json_object_get(registered, "aliases"), index, entry)
    {
        const char *name = json_string_value(json_object_get(entry, "alias"));
        const char *version = json_string_value(json_object_get(entry, "version"));
        int number = 0;
        if (name != NULL && strcmp(name, alias) == 0 && version != NULL &&
            ap_registry_parse_version(version, &number))
            return number;
    }
    return 0;
}

static int compare_items(const void *a, const void *b)
{
    const history_item *x = a, *y = b;
    if (x->sequence != y->sequence)
        return (x->sequence > y->sequence) - (x->sequence < y->sequence);
    return strcmp(x->key, y->key);
}

/* Parse the SEQ of "apiary.history.SEQ.MS.RANDOM". Returns -1 when it is
 * malformed or above HISTORY_SEQUENCE_MAX, which also keeps SEQ + 1 from
 * overflowing. */
static long history_sequence(const char *key)
{
    const char *digits = key + strlen(HISTORY_TAG_PREFIX);
    char *end = NULL;
    errno = 0;
    long sequence = strtol(digits, &end, 10);
    if (end == digits || *end != '.' || digits[0] < '0' || digits[0] > '9' || errno != 0 ||
        sequence < 0 || sequence > HISTORY_SEQUENCE_MAX)
        return -1;
    return sequence;
}

static ap_status collect_history(const json_t *tags, history_item *items, size_t *count,
                                 ap_error *err)
{
    size_t prefix = strlen(HISTORY_TAG_PREFIX);
    size_t index;
    json_t *tag;
    *count = 0;
    json_array_foreach(tags, index, tag)
    {
        const char *key = json_string_value(json_object_get(tag, "key"));
        const char *value = json_string_value(json_object_get(tag, "value"));
        if (key == NULL || strncmp(key, HISTORY_TAG_PREFIX, prefix) != 0)
            continue;
        history_item *item = &items[(*count)++];
        item->key = key;
        item->sequence = history_sequence(key);
        item->entry = value != NULL ? json_loads(value, 0, NULL) : NULL;
        if (item->sequence < 0 || !json_is_object(item->entry))
            return ap_error_set(err, AP_ERR_FORMAT,
                                "registered model tag %s is not an alias history entry; delete "
                                "the tag on the server",
                                key);
    }
    return AP_OK;
}

/* Read the alias history, oldest first, and the next free sequence number. */
static ap_status load_history(const json_t *registered, json_t **history, long *next_sequence,
                              ap_error *err)
{
    json_t *tags = json_object_get(registered, "tags");
    size_t capacity = json_array_size(tags), count = 0;
    history_item *items = calloc(capacity > 0 ? capacity : 1, sizeof(*items));
    *history = json_array();
    *next_sequence = 1;
    if (items == NULL || *history == NULL) {
        free(items);
        json_decref(*history);
        *history = NULL;
        return ap_error_set(err, AP_ERR_NOMEM, "cannot read the alias history");
    }
    ap_status status = collect_history(tags, items, &count, err);
    if (status == AP_OK)
        qsort(items, count, sizeof(*items), compare_items);
    for (size_t i = 0; i < count; i++) {
        if (status == AP_OK && json_array_append(*history, items[i].entry) != 0)
            status = ap_error_set(err, AP_ERR_NOMEM, "cannot read the alias history");
        if (items[i].sequence >= *next_sequence)
            *next_sequence = items[i].sequence + 1;
        json_decref(items[i].entry);
    }
    free(items);
    if (status != AP_OK) {
        json_decref(*history);
        *history = NULL;
    }
    return status;
}

/* ---- Checking a move ---- */

/* "champion" needs a passing report that names the weights, unless forced. */
static ap_status check_alias_policy(const char *alias, const mlflow_version *version,
                                    const ap_registry_move *move, ap_error *err)
{
    if (strcmp(alias, AP_REGISTRY_CHAMPION) != 0 || (move != NULL && move->forced))
        return AP_OK;
    const json_t *tags = version->tags;
    const char *verdict = json_string_value(json_object_get(tags, "apiary.verdict"));
    const char *match = json_string_value(json_object_get(tags, "apiary.model_sha256_match"));
    const char *model_sha = json_string_value(json_object_get(tags, "apiary.model_sha256"));
    const char *file_tag =
        json_string_value(json_object_get(tags, MLFLOW_FILE_TAG_PREFIX AP_REGISTRY_MODEL_FILE));
    bool matches = match != NULL && strcmp(match, "true") == 0 && model_sha != NULL &&
                   file_tag != NULL && strncmp(file_tag, model_sha, 64) == 0 &&
                   strlen(model_sha) == 64;
    if (verdict != NULL && strcmp(verdict, "pass") == 0 && matches)
        return AP_OK;
    return ap_error_set(err, AP_ERR_INVALID,
                        "version %d cannot become %s: its validation verdict is %s and its "
                        "report %s its weights; choose a version with a passing report, or "
                        "force the move with --force --reason TEXT",
                        version->number, alias, verdict != NULL ? verdict : "missing",
                        matches ? "names" : "does not name");
}

/* Load the destination version, check its files on the server and the policy. */
static ap_status check_destination(mlflow_registry *registry, const char *model, const char *alias,
                                   int version, const ap_registry_move *move, mlflow_version *out,
                                   ap_error *err)
{
    ap_status status = mlflow_get_version(registry, model, version, out, err);
    if (status == AP_OK)
        status = mlflow_verify_files(registry, out, err);
    if (status == AP_OK)
        status = check_alias_policy(alias, out, move, err);
    if (status != AP_OK)
        mlflow_version_free(out);
    return status;
}

/* ---- Moving an alias ---- */

static json_t *version_or_null(int version)
{
    return version > 0 ? json_integer(version) : json_null();
}

static ap_status build_entry(const char *alias, const char *action, int from, int to,
                             const ap_registry_move *move, char **text, ap_error *err)
{
    char now[32];
    mlflow_format_time(mlflow_now_ms(), now);
    const char *reason = move != NULL ? move->reason : NULL;
    json_t *reason_value = reason != NULL ? json_string(reason) : json_null();
    if (reason_value == NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "the reason for moving alias %s is not valid UTF-8; write it in UTF-8",
                            alias);
    json_t *entry = json_pack("{s:s, s:s, s:s, s:o, s:i, s:o, s:b}", "time", now, "alias", alias,
                              "action", action, "from", version_or_null(from), "to", to, "reason",
                              reason_value, "forced", move != NULL && move->forced);
    *text = entry != NULL ? json_dumps(entry, JSON_COMPACT) : NULL;
    json_decref(entry);
    if (*text == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot record the move of alias %s", alias);
    return AP_OK;
}

static ap_status post_model_tag(mlflow_registry *registry, const char *model, const char *key,
                                const char *value, ap_error *err)
{
    json_t *request = json_pack("{s:s, s:s, s:s}", "name", model, "key", key, "value", value);
    ap_status status = mlflow_call(&registry->client, "POST", "registered-models/set-tag", request,
                                   MLFLOW_IDEMPOTENT, NULL, NULL, err);
    json_decref(request);
    return status;
}

static void delete_model_tag(mlflow_registry *registry, const char *model, const char *key)
{
    json_t *request = json_pack("{s:s, s:s}", "name", model, "key", key);
    mlflow_call(&registry->client, "DELETE", "registered-models/delete-tag", request,
                MLFLOW_IDEMPOTENT, NULL, NULL, NULL);
    json_decref(request);
}

/* Set (value not NULL) or delete a tag of a model version. */
static ap_status write_version_tag(mlflow_registry *registry, const char *model, int version,
                                   const char *key, const char *value, ap_error *err)
{
    char number[16];
    snprintf(number, sizeof(number), "%d", version);
    json_t *request =
        value != NULL ? json_pack("{s:s, s:s, s:s, s:s}", "name", model, "version", number, "key",
                                  key, "value", value)
                      : json_pack("{s:s, s:s, s:s}", "name", model, "version", number, "key", key);
    ap_status status =
        mlflow_call(&registry->client, value != NULL ? "POST" : "DELETE",
                    value != NULL ? "model-versions/set-tag" : "model-versions/delete-tag", request,
                    MLFLOW_IDEMPOTENT, NULL, NULL, err);
    json_decref(request);
    return status;
}

static ap_status post_alias(mlflow_registry *registry, const char *model, const char *alias,
                            int version, ap_error *err)
{
    char number[16];
    snprintf(number, sizeof(number), "%d", version);
    json_t *request =
        json_pack("{s:s, s:s, s:s}", "name", model, "alias", alias, "version", number);
    ap_status status = mlflow_call(&registry->client, "POST", "registered-models/alias", request,
                                   MLFLOW_IDEMPOTENT, NULL, NULL, err);
    json_decref(request);
    return status;
}

/* Everything one alias move writes. */
typedef struct {
    const char *model;
    const char *alias;
    const char *action;
    int from;
    const mlflow_version *destination;
    const ap_registry_move *move;
    long sequence;
} alias_move;

static ap_status history_key(const alias_move *plan, char *key, size_t size, ap_error *err)
{
    unsigned char random[4];
    if (RAND_bytes(random, sizeof(random)) != 1)
        return ap_error_set(err, AP_ERR_BACKEND, "cannot draw a random history key");
    snprintf(key, size, "%s%09ld.%013lld.%02x%02x%02x%02x", HISTORY_TAG_PREFIX, plan->sequence,
             mlflow_now_ms(), random[0], random[1], random[2], random[3]);
    return AP_OK;
}

/* Write the history entry and, for a forced move, the reason on the version.
 * Then point the alias. When the alias request fails, both are undone as far
 * as the server allows. */
static ap_status apply_move(mlflow_registry *registry, const alias_move *plan, ap_error *err)
{
    int to = plan->destination->number;
    bool forced = plan->move != NULL && plan->move->forced;
    char key[128], forced_key[AP_REGISTRY_ALIAS_NAME_MAX + 32];
    snprintf(forced_key, sizeof(forced_key), "%s%s", MLFLOW_FORCED_TAG_PREFIX, plan->alias);
    const char *old_reason =
        json_string_value(json_object_get(plan->destination->tags, forced_key));
    char *entry = NULL;
    ap_status status =
        build_entry(plan->alias, plan->action, plan->from, to, plan->move, &entry, err);
    if (status == AP_OK)
        status = history_key(plan, key, sizeof(key), err);
    if (status == AP_OK)
        status = post_model_tag(registry, plan->model, key, entry, err);
    free(entry);
    if (status != AP_OK)
        return status;
    if (forced)
        status = write_version_tag(registry, plan->model, to, forced_key, plan->move->reason, err);
    if (status == AP_OK)
        status = post_alias(registry, plan->model, plan->alias, to, err);
    if (status == AP_OK)
        return AP_OK;
    if (forced)
        write_version_tag(registry, plan->model, to, forced_key, old_reason, NULL);
    delete_model_tag(registry, plan->model, key);
    return status;
}

/* ---- Operations ---- */

static ap_status check_names(const char *model, const char *alias, const ap_registry_move *move,
                             ap_error *err)
{
    ap_status status = ap_registry_check_model_name(model, err);
    if (status == AP_OK)
        status = ap_registry_check_alias_name(alias, err);
    if (status == AP_OK)
        status = mlflow_check_move(move, err);
    return status;
}

ap_status mlflow_set_alias(ap_registry *base, const char *model, const char *alias, int version,
                           const ap_registry_move *move, int *previous, ap_error *err)
{
    mlflow_registry *registry = (mlflow_registry *)base;
    ap_status status = check_names(model, alias, move, err);
    if (status != AP_OK)
        return status;
    mlflow_version destination;
    status = check_destination(registry, model, alias, version, move, &destination, err);
    if (status != AP_OK)
        return status;
    json_t *registered = NULL, *history = NULL;
    long sequence = 0;
    status = mlflow_get_model(registry, model, &registered, err);
    if (status == AP_OK)
        status = load_history(registered, &history, &sequence, err);
    int current = status == AP_OK ? alias_target(registered, alias) : 0;
    if (status == AP_OK && previous != NULL)
        *previous = current;
    if (status == AP_OK && current != version) {
        alias_move plan = {model, alias, "set", current, &destination, move, sequence};
        status = apply_move(registry, &plan, err);
    }
    json_decref(history);
    json_decref(registered);
    mlflow_version_free(&destination);
    return status;
}

static bool alias_listed(const json_t *registered, const char *alias)
{
    return alias_target(registered, alias) > 0;
}

ap_status mlflow_get_alias(ap_registry *base, const char *model, const char *alias, int *version,
                           ap_error *err)
{
    mlflow_registry *registry = (mlflow_registry *)base;
    ap_status status = check_names(model, alias, NULL, err);
    if (status != AP_OK)
        return status;
    json_t *request = json_pack("{s:s, s:s}", "name", model, "alias", alias);
    json_t *response = NULL;
    mlflow_failure failure;
    status = mlflow_call(&registry->client, "GET", "registered-models/alias", request,
                         MLFLOW_IDEMPOTENT, &response, &failure, err);
    json_decref(request);
    if (status == AP_OK) {
        const char *text = json_string_value(
            json_object_get(json_object_get(response, "model_version"), "version"));
        if (text == NULL || !ap_registry_parse_version(text, version))
            status =
                ap_error_set(err, AP_ERR_FORMAT,
                             "registered-models/alias returned no version for alias %s", alias);
        json_decref(response);
        return status;
    }
    /* MLflow 3.17 replies to a missing alias with 400 INVALID_PARAMETER_VALUE,
     * so the registered model's alias list decides whether the alias exists. */
    if (status != AP_ERR_NOT_FOUND && strcmp(failure.error_code, "INVALID_PARAMETER_VALUE") != 0)
        return status;
    json_t *registered = NULL;
    ap_status model_status = mlflow_get_model(registry, model, &registered, err);
    if (model_status != AP_OK)
        return model_status;
    if (!alias_listed(registered, alias))
        status = ap_error_set(err, AP_ERR_NOT_FOUND,
                              "alias %s does not point at any version; set it first", alias);
    json_decref(registered);
    return status;
}

ap_status mlflow_rollback(ap_registry *base, const char *model, const char *alias, int target,
                          const ap_registry_move *move, int *version, ap_error *err)
{
    mlflow_registry *registry = (mlflow_registry *)base;
    ap_status status = check_names(model, alias, move, err);
    if (status == AP_OK && target < 0)
        status = ap_error_set(err, AP_ERR_INVALID,
                              "rollback target %d is invalid; give a version number, or 0 for "
                              "the previous version",
                              target);
    json_t *registered = NULL, *history = NULL;
    long sequence = 0;
    if (status == AP_OK)
        status = mlflow_get_model(registry, model, &registered, err);
    if (status == AP_OK)
        status = load_history(registered, &history, &sequence, err);
    int current = status == AP_OK ? alias_target(registered, alias) : 0;
    int destination = 0;
    if (status == AP_OK)
        status = registry_choose_rollback(history, alias, current, target, &destination, err);
    mlflow_version found = {0};
    if (status == AP_OK)
        status = check_destination(registry, model, alias, destination, move, &found, err);
    if (status == AP_OK) {
        alias_move plan = {model, alias,   target > 0 ? "rollback-to" : "rollback", current, &found,
                           move,  sequence};
        status = apply_move(registry, &plan, err);
        mlflow_version_free(&found);
    }
    if (status == AP_OK && version != NULL)
        *version = destination;
    json_decref(history);
    json_decref(registered);
    return status;
}

ap_status mlflow_history(ap_registry *base, const char *model, json_t **history, ap_error *err)
{
    mlflow_registry *registry = (mlflow_registry *)base;
    json_t *registered = NULL;
    long sequence = 0;
    *history = NULL;
    ap_status status = ap_registry_check_model_name(model, err);
    if (status == AP_OK)
        status = mlflow_get_model(registry, model, &registered, err);
    if (status == AP_OK)
        status = load_history(registered, history, &sequence, err);
    json_decref(registered);
    return status;
}
