/* The MLflow registry backend against a real MLflow server on 127.0.0.1,
 * started once for the whole test by tests/tools/mlflow_server.sh, with a
 * fault-injecting proxy (tests/tools/fault_proxy.py) in front of it for the
 * retry and failure cases. Skips when MLflow is not installed in the test
 * virtual environment (scripts/install-test-tools). */

#include "pipeline/registry/mlflow_registry.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/common/fsutil.h"
#include "tests/unit/check.h"

#define MODEL       "bees"
#define SOURCE_FILE "tests/unit/test_mlflow_registry.c"

static char source_dir[4096];
static char venv_dir[4200];
static char work_dir[4096];
static char server_dir[4200];
static char server_url[128];
static char inputs[4200];
static bool server_running;

/* ---- Tools: the server and the proxy ---- */

static bool find_tools(void)
{
    const char *source = getenv("APIARY_SOURCE_DIR");
    if (source != NULL && source[0] != '\0') {
        snprintf(source_dir, sizeof(source_dir), "%s", source);
    } else {
        /* CMake compiles with absolute paths, so __FILE__ locates the checkout. */
        size_t length = strlen(__FILE__), suffix = strlen(SOURCE_FILE);
        if (length <= suffix || __FILE__[0] != '/')
            return false;
        snprintf(source_dir, sizeof(source_dir), "%.*s", (int)(length - suffix - 1), __FILE__);
    }
    const char *venv = getenv("APIARY_TEST_VENV");
    if (venv != NULL && venv[0] != '\0')
        snprintf(venv_dir, sizeof(venv_dir), "%s", venv);
    else
        snprintf(venv_dir, sizeof(venv_dir), "%s/.venv-test", source_dir);
    char mlflow[4300];
    snprintf(mlflow, sizeof(mlflow), "%s/bin/mlflow", venv_dir);
    return access(mlflow, X_OK) == 0;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = 0};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t size = sizeof(address);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&address, sizeof(address)) == 0 &&
        getsockname(fd, (struct sockaddr *)&address, &size) == 0)
        port = ntohs(address.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

static void stop_server(void)
{
    if (!server_running)
        return;
    char command[16384];
    snprintf(command, sizeof(command), "bash '%s/tests/tools/mlflow_server.sh' stop '%s'",
             source_dir, server_dir);
    if (system(command) != 0)
        fprintf(stderr, "stopping the MLflow server in %s failed\n", server_dir);
    server_running = false;
}

static bool start_server(void)
{
    int port = free_port();
    if (port < 0)
        return false;
    snprintf(server_dir, sizeof(server_dir), "%s/server", work_dir);
    snprintf(server_url, sizeof(server_url), "http://127.0.0.1:%d", port);
    char command[16384];
    snprintf(command, sizeof(command),
             "APIARY_TEST_VENV='%s' bash '%s/tests/tools/mlflow_server.sh' start '%s' %d %d "
             ">/dev/null",
             venv_dir, source_dir, server_dir, port, (int)getpid());
    server_running = true;
    atexit(stop_server);
    return system(command) == 0;
}

typedef struct {
    pid_t pid;
    char url[64];
    char log[4300];
} proxy;

static int proxy_count;

/* Start the fault proxy in front of the server, with args as extra options. */
static bool start_proxy(proxy *out, const char *const *args, size_t arg_count)
{
    char python[4300], script[4200], lifetime[] = "120";
    snprintf(python, sizeof(python), "%s/bin/python", venv_dir);
    snprintf(script, sizeof(script), "%s/tests/tools/fault_proxy.py", source_dir);
    snprintf(out->log, sizeof(out->log), "%s/proxy-%d.log", work_dir, ++proxy_count);
    const char *argv[32] = {python,  script,   "--upstream", server_url,
                            "--log", out->log, "--lifetime", lifetime};
    size_t argc = 8;
    for (size_t i = 0; i < arg_count && argc < 31; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    int channel[2];
    if (pipe(channel) != 0)
        return false;
    out->pid = fork();
    if (out->pid == 0) {
        dup2(channel[1], STDOUT_FILENO);
        close(channel[0]);
        close(channel[1]);
        execv(python, (char *const *)argv);
        _exit(127);
    }
    close(channel[1]);
    FILE *reader = fdopen(channel[0], "r");
    char line[64] = "";
    bool ok = out->pid > 0 && reader != NULL && fgets(line, sizeof(line), reader) != NULL;
    if (reader != NULL)
        fclose(reader);
    char *end = NULL;
    long port = ok ? strtol(line, &end, 10) : 0;
    ok = ok && port > 0 && port < 65536 && (*end == '\n' || *end == '\0');
    snprintf(out->url, sizeof(out->url), "http://127.0.0.1:%ld", port);
    if (!ok)
        fprintf(stderr, "fault proxy did not start\n");
    return ok;
}

static void stop_proxy(proxy *running)
{
    if (running->pid > 0) {
        kill(running->pid, SIGTERM);
        waitpid(running->pid, NULL, 0);
    }
    running->pid = 0;
}

/* Count the proxy log lines that contain every one of the given texts. */
static int count_requests(const proxy *running, const char *first, const char *second)
{
    FILE *log = fopen(running->log, "r");
    char line[2048];
    int count = 0;
    while (log != NULL && fgets(line, sizeof(line), log) != NULL) {
        if (strstr(line, first) != NULL && (second == NULL || strstr(line, second) != NULL))
            count++;
    }
    if (log != NULL)
        fclose(log);
    return count;
}

/* ---- Candidates ---- */

typedef struct {
    char model[4400];
    char card[4400];
    char report[4400];
    char attachment[4400];
    char sha256[65];
} candidate;

static void write_bytes(const char *path, const void *data, size_t size)
{
    ap_error err = {0};
    if (ap_write_atomic(path, data, size, &err) != AP_OK) {
        fprintf(stderr, "cannot write test input: %s\n", err.message);
        exit(1);
    }
}

static void write_text(const char *path, const char *text)
{
    write_bytes(path, text, strlen(text));
}

/* Write weights (300 KB derived from name), a card, a report and an
 * attachment. verdict is "pass" or "fail", and wrong_sha makes the report
 * name other weights. */
static void make_candidate(candidate *out, const char *name, const char *verdict, bool wrong_sha)
{
    enum { WEIGHTS_SIZE = 300 * 1024 };
    unsigned char *weights = malloc(WEIGHTS_SIZE);
    unsigned int seed = (unsigned int)strlen(name) * 2654435761u;
    for (const char *p = name; *p != '\0'; p++)
        seed = seed * 31u + (unsigned char)*p;
    for (size_t i = 0; weights != NULL && i < WEIGHTS_SIZE; i++) {
        seed = seed * 1103515245u + 12345u;
        weights[i] = (unsigned char)(seed >> 16);
    }
    if (weights == NULL)
        exit(1);
    snprintf(out->model, sizeof(out->model), "%s/%s.safetensors", inputs, name);
    snprintf(out->card, sizeof(out->card), "%s/%s.card.json", inputs, name);
    snprintf(out->report, sizeof(out->report), "%s/%s.report.json", inputs, name);
    snprintf(out->attachment, sizeof(out->attachment), "%s/thresholds.json", inputs);
    write_bytes(out->model, weights, WEIGHTS_SIZE);
    ap_sha256_hex(weights, WEIGHTS_SIZE, out->sha256);
    free(weights);
    write_text(out->card, "{\"name\": \"apiary-resnet\", \"training\": {\"epochs\": 3, "
                          "\"learning_rate\": 0.001, \"augment\": true}}\n");
    write_text(out->attachment, "{\"wasps\": 0.4}\n");
    bool passed = strcmp(verdict, "pass") == 0;
    char text[2048];
    snprintf(text, sizeof(text),
             "{\"passed\": %s, \"model_sha256\": \"%s\", \"failed_rules\": %s, "
             "\"test\": {\"labels\": {\"wasps\": {\"metrics\": {\"recall\": {\"value\": "
             "0.91}, \"precision\": {\"value\": 0.8}}}, \"pollen\": {\"metrics\": "
             "{\"recall\": {\"value\": 0.97}}}}, \"macro\": {\"recall\": {\"value\": "
             "0.94}}}}\n",
             passed ? "true" : "false",
             wrong_sha ? "0000000000000000000000000000000000000000000000000000000000000000"
                       : out->sha256,
             passed ? "[]" : "[\"wasps recall >= 0.95\"]");
    write_text(out->report, text);
}

static ap_registry_new_version request_for(const candidate *c)
{
    static const char *attachments[1];
    attachments[0] = c->attachment;
    ap_registry_new_version request = {
        .model_path = c->model,
        .model_card_path = c->card,
        .report_path = c->report,
        .attachments = attachments,
        .attachment_count = 1,
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

static size_t version_count(ap_registry *registry)
{
    ap_registry_version_info *versions = NULL;
    size_t count = 0;
    ap_error err = {0};
    if (ap_registry_list(registry, MODEL, &versions, &count, &err) != AP_OK)
        fprintf(stderr, "list: %s\n", err.message);
    ap_registry_free_versions(versions, count);
    return count;
}

static ap_registry *open_registry(const char *url, int attempts)
{
    ap_mlflow_options options;
    ap_mlflow_options_default(&options);
    char cache[4300];
    snprintf(cache, sizeof(cache), "%s/cache", work_dir);
    options.cache_dir = cache;
    options.connect_timeout_ms = 2000;
    options.request_timeout_ms = 20000;
    options.max_attempts = attempts;
    options.backoff_initial_ms = 20;
    options.backoff_max_ms = 200;
    ap_registry *registry = NULL;
    ap_error err = {0};
    if (ap_mlflow_registry_open_with(url, &options, &registry, &err) != AP_OK) {
        fprintf(stderr, "open %s: %s\n", url, err.message);
        exit(1);
    }
    return registry;
}

static const char *version_tag(const json_t *info, const char *key)
{
    return json_string_value(
        json_object_get(json_object_get(json_object_get((json_t *)info, "mlflow"), "tags"), key));
}

/* ---- Cases ---- */

static void test_open_and_dispatch(void)
{
    ap_registry *registry = NULL;
    ap_error err = {0};
    char url[160];
    snprintf(url, sizeof(url), "mlflow://%s/", server_url + strlen("http://"));
    CHECK_INT_EQ(ap_registry_open(url, &registry, &err), AP_OK);
    if (registry != NULL)
        CHECK_STR_CONTAINS(registry->location, server_url);
    ap_registry_close(registry);

    err = (ap_error){0};
    CHECK_INT_EQ(ap_registry_open("http://bee:hive-secret@127.0.0.1:1", &registry, &err),
                 AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "credentials");
    CHECK(strstr(err.message, "hive-secret") == NULL);
    CHECK_INT_EQ(ap_registry_open("http://127.0.0.1:1/?x=1", &registry, &err), AP_ERR_INVALID);

    setenv("MLFLOW_TRACKING_USERNAME", "bee", 1);
    err = (ap_error){0};
    CHECK_INT_EQ(ap_registry_open(server_url, &registry, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "MLFLOW_TRACKING_PASSWORD");
    unsetenv("MLFLOW_TRACKING_USERNAME");
}

static void check_first_version(ap_registry *registry, const candidate *c, int version)
{
    json_t *info = NULL;
    ap_error err = {0};
    CHECK_INT_EQ(ap_registry_show(registry, MODEL, version, &info, &err), AP_OK);
    json_t *files = json_object_get(info, "files");
    const char *model_sha = json_string_value(
        json_object_get(json_object_get(files, AP_REGISTRY_MODEL_FILE), "sha256"));
    CHECK_STR_CONTAINS(model_sha, c->sha256);
    CHECK(json_object_get(files, AP_REGISTRY_CARD_FILE) != NULL);
    CHECK(json_object_get(files, AP_REGISTRY_REPORT_FILE) != NULL);
    CHECK(json_object_get(files, "thresholds.json") != NULL);
    json_t *validation = json_object_get(info, "validation");
    CHECK_STR_CONTAINS(json_string_value(json_object_get(validation, "verdict")), "pass");
    CHECK(json_is_true(json_object_get(validation, "model_sha256_match")));
    CHECK_STR_CONTAINS(json_string_value(json_object_get(info, "source_run")), "/runs/night-1");
    CHECK_STR_CONTAINS(
        json_string_value(json_object_get(json_object_get(info, "tags"), "git_commit")), "abc123");
    CHECK_STR_CONTAINS(version_tag(info, "apiary.model_sha256"), c->sha256);
    CHECK_STR_CONTAINS(version_tag(info, "apiary.passed"), "true");
    CHECK(json_string_value(json_object_get(json_object_get(info, "mlflow"), "run_id")) != NULL);
    CHECK_INT_EQ(json_integer_value(json_object_get(info, "version")), version);
    json_decref(info);
}

static void test_register_and_champion(ap_registry *registry)
{
    candidate first, failing, wrong, third;
    make_candidate(&first, "first", "pass", false);
    make_candidate(&failing, "failing", "fail", false);
    make_candidate(&wrong, "wrong", "pass", true);
    make_candidate(&third, "third", "pass", false);

    ap_registry_tag tags[] = {{"git_commit", "abc123"}, {"config", "nightly.yaml"}};
    ap_registry_new_version request = request_for(&first);
    request.source_run = "/runs/night-1";
    request.tags = tags;
    request.tag_count = 2;
    int version = 0;
    ap_error err = {0};
    CHECK_INT_EQ(ap_registry_register(registry, MODEL, &request, &version, &err), AP_OK);
    CHECK_INT_EQ(version, 1);
    check_first_version(registry, &first, 1);

    /* Registering moves no alias, and a passing version can become champion. */
    CHECK_INT_EQ(alias_version(registry, AP_REGISTRY_CHAMPION), 0);
    int previous = -1;
    ap_registry_move plain = {.reason = "first nightly"};
    CHECK_INT_EQ(
        ap_registry_set_alias(registry, MODEL, AP_REGISTRY_CHAMPION, 1, &plain, &previous, &err),
        AP_OK);
    CHECK_INT_EQ(previous, 0);
    CHECK_INT_EQ(alias_version(registry, AP_REGISTRY_CHAMPION), 1);

    /* A failing report registers but cannot become champion unless forced. */
    CHECK_INT_EQ(register_candidate(registry, &failing), 2);
    json_t *info = NULL;
    CHECK_INT_EQ(ap_registry_show(registry, MODEL, 2, &info, &err), AP_OK);
    json_t *validation = json_object_get(info, "validation");
    CHECK_STR_CONTAINS(json_string_value(json_object_get(validation, "verdict")), "fail");
    CHECK_STR_CONTAINS(
        json_string_value(json_array_get(json_object_get(validation, "failed_rules"), 0)),
        "wasps recall");
    json_decref(info);
    err = (ap_error){0};
    CHECK_INT_EQ(move_alias(registry, AP_REGISTRY_CHAMPION, 2, NULL, false, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "verdict is fail");
    CHECK_STR_CONTAINS(err.message, server_url);
    CHECK_INT_EQ(alias_version(registry, AP_REGISTRY_CHAMPION), 1);
    CHECK_INT_EQ(move_alias(registry, AP_REGISTRY_CHAMPION, 2, NULL, true, &err), AP_ERR_INVALID);
    CHECK_INT_EQ(alias_version(registry, AP_REGISTRY_CHAMPION), 1);
    CHECK_INT_EQ(move_alias(registry, AP_REGISTRY_CHAMPION, 2, "hotfix for hive 7", true, &err),
                 AP_OK);
    CHECK_INT_EQ(alias_version(registry, AP_REGISTRY_CHAMPION), 2);
    CHECK_INT_EQ(ap_registry_show(registry, MODEL, 2, &info, &err), AP_OK);
    CHECK_STR_CONTAINS(version_tag(info, "apiary.forced_alias.champion"), "hotfix for hive 7");
    json_decref(info);

    /* A report that names other weights is rejected before anything is uploaded. */
    err = (ap_error){0};
    request = request_for(&wrong);
    CHECK_INT_EQ(ap_registry_register(registry, MODEL, &request, &version, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "names weights other than");
    CHECK_INT_EQ(version_count(registry), 2);

    CHECK_INT_EQ(register_candidate(registry, &third), 3);
    CHECK_INT_EQ(move_alias(registry, AP_REGISTRY_CHAMPION, 3, NULL, false, &err), AP_OK);
    CHECK_INT_EQ(alias_version(registry, AP_REGISTRY_CHAMPION), 3);
}

static void test_rollback(ap_registry *registry)
{
    ap_error err = {0};
    int version = 0;
    ap_registry_move plain = {0};
    /* The previous champion, version 2, failed its gate: rolling back to it needs force. */
    CHECK_INT_EQ(
        ap_registry_rollback(registry, MODEL, AP_REGISTRY_CHAMPION, 0, &plain, &version, &err),
        AP_ERR_INVALID);
    CHECK_INT_EQ(alias_version(registry, AP_REGISTRY_CHAMPION), 3);
    ap_registry_move forced = {.reason = "version 3 misses wasps", .forced = true};
    CHECK_INT_EQ(
        ap_registry_rollback(registry, MODEL, AP_REGISTRY_CHAMPION, 0, &forced, &version, &err),
        AP_OK);
    CHECK_INT_EQ(version, 2);
    CHECK_INT_EQ(
        ap_registry_rollback(registry, MODEL, AP_REGISTRY_CHAMPION, 0, &plain, &version, &err),
        AP_OK);
    CHECK_INT_EQ(version, 1);
    CHECK_INT_EQ(alias_version(registry, AP_REGISTRY_CHAMPION), 1);
    CHECK_INT_EQ(
        ap_registry_rollback(registry, MODEL, AP_REGISTRY_CHAMPION, 3, &plain, &version, &err),
        AP_OK);
    CHECK_INT_EQ(alias_version(registry, AP_REGISTRY_CHAMPION), 3);

    /* Setting the alias it already has records nothing. */
    json_t *history = NULL;
    CHECK_INT_EQ(ap_registry_history(registry, MODEL, &history, &err), AP_OK);
    size_t moves = json_array_size(history);
    json_decref(history);
    CHECK_INT_EQ(moves, 6);
    CHECK_INT_EQ(move_alias(registry, AP_REGISTRY_CHAMPION, 3, NULL, false, &err), AP_OK);
    CHECK_INT_EQ(ap_registry_history(registry, MODEL, &history, &err), AP_OK);
    CHECK_INT_EQ(json_array_size(history), moves);
    json_t *last = json_array_get(history, json_array_size(history) - 1);
    CHECK_STR_CONTAINS(json_string_value(json_object_get(last, "action")), "rollback-to");
    CHECK_INT_EQ(json_integer_value(json_object_get(last, "from")), 1);
    CHECK_INT_EQ(json_integer_value(json_object_get(last, "to")), 3);
    json_t *forced_entry = json_array_get(history, 1);
    CHECK(json_is_true(json_object_get(forced_entry, "forced")));
    CHECK_STR_CONTAINS(json_string_value(json_object_get(forced_entry, "reason")),
                       "hotfix for hive 7");
    json_decref(history);
}

static void test_list_and_resolve(ap_registry *registry)
{
    ap_registry_version_info *versions = NULL;
    size_t count = 0;
    ap_error err = {0};
    CHECK_INT_EQ(ap_registry_list(registry, MODEL, &versions, &count, &err), AP_OK);
    CHECK_INT_EQ(count, 3);
    for (size_t i = 0; i < count && i < 3; i++) {
        CHECK_INT_EQ(versions[i].version, (int)i + 1);
        CHECK(versions[i].complete);
        CHECK(versions[i].created[0] == '2');
    }
    if (count == 3) {
        CHECK_STR_CONTAINS(versions[1].verdict, "fail");
        CHECK_STR_CONTAINS(versions[2].verdict, "pass");
        CHECK_INT_EQ(versions[2].alias_count, 1);
        if (versions[2].alias_count == 1)
            CHECK_STR_CONTAINS(versions[2].aliases[0], AP_REGISTRY_CHAMPION);
        CHECK_INT_EQ(versions[0].alias_count, 0);
    }
    ap_registry_free_versions(versions, count);

    int version = 0;
    CHECK_INT_EQ(ap_registry_resolve(registry, MODEL, "champion", &version, &err), AP_OK);
    CHECK_INT_EQ(version, 3);
    CHECK_INT_EQ(ap_registry_resolve(registry, MODEL, "v1", &version, &err), AP_OK);
    CHECK_INT_EQ(version, 1);
    CHECK_INT_EQ(ap_registry_resolve(registry, MODEL, "2", &version, &err), AP_OK);
    CHECK_INT_EQ(version, 2);
    CHECK_INT_EQ(ap_registry_resolve(registry, MODEL, "v99", &version, &err), AP_ERR_NOT_FOUND);
    err = (ap_error){0};
    CHECK_INT_EQ(ap_registry_resolve(registry, MODEL, AP_REGISTRY_CHALLENGER, &version, &err),
                 AP_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(err.message, "does not point at any version");
    CHECK_INT_EQ(move_alias(registry, AP_REGISTRY_CHALLENGER, 2, NULL, false, &err), AP_OK);
    CHECK_INT_EQ(ap_registry_resolve(registry, MODEL, AP_REGISTRY_CHALLENGER, &version, &err),
                 AP_OK);
    CHECK_INT_EQ(version, 2);
    ap_registry_alias *aliases = NULL;
    size_t alias_count = 0;
    CHECK_INT_EQ(ap_registry_list_aliases(registry, MODEL, &aliases, &alias_count, &err), AP_OK);
    CHECK_INT_EQ(alias_count, 2);
    for (size_t i = 0; i < alias_count; i++) {
        bool is_champion = strcmp(aliases[i].name, AP_REGISTRY_CHAMPION) == 0;
        CHECK_INT_EQ(aliases[i].version, is_champion ? 3 : 2);
    }
    free(aliases);
    err = (ap_error){0};
    CHECK_INT_EQ(ap_registry_get_alias(registry, "no-such-model", "champion", &version, &err),
                 AP_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(err.message, "not registered");
    CHECK_INT_EQ(ap_registry_list(registry, "no-such-model", &versions, &count, &err),
                 AP_ERR_NOT_FOUND);
}

static bool file_has_sha(const char *path, const char *expected)
{
    char sha[65];
    ap_error err = {0};
    return ap_sha256_file(path, sha, &err) == AP_OK && strcmp(sha, expected) == 0;
}

static void test_download(ap_registry *registry)
{
    candidate first, third;
    make_candidate(&first, "first", "pass", false);
    make_candidate(&third, "third", "pass", false);
    char path[4096];
    ap_error err = {0};
    CHECK_INT_EQ(
        ap_registry_file_path(registry, MODEL, 3, AP_REGISTRY_MODEL_FILE, path, sizeof(path), &err),
        AP_OK);
    CHECK(file_has_sha(path, third.sha256));
    /* The second call finds the cached copy and checks it. */
    CHECK_INT_EQ(
        ap_registry_file_path(registry, MODEL, 3, AP_REGISTRY_MODEL_FILE, path, sizeof(path), &err),
        AP_OK);
    CHECK(file_has_sha(path, third.sha256));
    CHECK_INT_EQ(ap_registry_file_path(registry, MODEL, 3, "missing.bin", path, sizeof(path), &err),
                 AP_ERR_NOT_FOUND);
    CHECK_INT_EQ(ap_registry_file_path(registry, MODEL, 3, "../1/model.safetensors", path,
                                       sizeof(path), &err),
                 AP_ERR_INVALID);

    char folder[4300], file[4400];
    snprintf(folder, sizeof(folder), "%s/pulled-v1", work_dir);
    CHECK_INT_EQ(ap_mlflow_registry_download(registry, MODEL, 1, folder, &err), AP_OK);
    snprintf(file, sizeof(file), "%s/%s", folder, AP_REGISTRY_MODEL_FILE);
    CHECK(file_has_sha(file, first.sha256));
    char expected[65];
    CHECK_INT_EQ(ap_sha256_file(first.card, expected, &err), AP_OK);
    snprintf(file, sizeof(file), "%s/%s", folder, AP_REGISTRY_CARD_FILE);
    CHECK(file_has_sha(file, expected));
    CHECK_INT_EQ(ap_sha256_file(first.report, expected, &err), AP_OK);
    snprintf(file, sizeof(file), "%s/%s", folder, AP_REGISTRY_REPORT_FILE);
    CHECK(file_has_sha(file, expected));
    snprintf(file, sizeof(file), "%s/thresholds.json", folder);
    CHECK(ap_path_exists(file));
    snprintf(file, sizeof(file), "%s/%s", folder, AP_REGISTRY_VERSION_FILE);
    CHECK(ap_path_exists(file));
    CHECK_INT_EQ(ap_registry_verify(registry, MODEL, 3, &err), AP_OK);
}

/* Change a version's weights behind the registry's back, on the server's disk. */
static void tamper_with_weights(ap_registry *registry, int version)
{
    json_t *info = NULL;
    ap_error err = {0};
    CHECK_INT_EQ(ap_registry_show(registry, MODEL, version, &info, &err), AP_OK);
    const char *source =
        json_string_value(json_object_get(json_object_get(info, "mlflow"), "source"));
    const char *relative = source != NULL ? strchr(source, ':') : NULL;
    char path[8192];
    if (relative != NULL) {
        snprintf(path, sizeof(path), "%s/artifacts/%s/%s", server_dir, relative + 2,
                 AP_REGISTRY_MODEL_FILE);
        CHECK(ap_path_exists(path));
        write_text(path, "tampered weights");
    }
    CHECK(relative != NULL);
    json_decref(info);
}

static void test_tampered_artifact(ap_registry *registry)
{
    candidate fourth;
    make_candidate(&fourth, "fourth", "pass", false);
    int version = register_candidate(registry, &fourth);
    CHECK_INT_EQ(version, 4);
    int champion = alias_version(registry, AP_REGISTRY_CHAMPION);
    tamper_with_weights(registry, version);
    ap_error err = {0};
    CHECK_INT_EQ(ap_registry_verify(registry, MODEL, version, &err), AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, "changed after registration");
    /* Forced or not, no alias moves to damaged files. */
    CHECK_INT_EQ(move_alias(registry, AP_REGISTRY_CHAMPION, version, "urgent", true, &err),
                 AP_ERR_FORMAT);
    CHECK_INT_EQ(alias_version(registry, AP_REGISTRY_CHAMPION), champion);
    char path[4096];
    CHECK_INT_EQ(ap_registry_file_path(registry, MODEL, version, AP_REGISTRY_MODEL_FILE, path,
                                       sizeof(path), &err),
                 AP_ERR_FORMAT);
}

static double now_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

static void test_unreachable_server(void)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", free_port());
    ap_registry *registry = open_registry(url, 3);
    ap_error err = {0};
    int version = 0;
    double start = now_seconds();
    CHECK_INT_EQ(ap_registry_get_alias(registry, MODEL, "champion", &version, &err), AP_ERR_IO);
    double elapsed = now_seconds() - start;
    CHECK(elapsed < 5.0);
    CHECK_STR_CONTAINS(err.message, url);
    CHECK_STR_CONTAINS(err.message, "GET /api/2.0/mlflow/registered-models/alias");
    CHECK_STR_CONTAINS(err.message, "after 3 tries");
    CHECK_STR_CONTAINS(err.message, "connect");
    ap_registry_close(registry);
}

static void test_transient_errors_retried(ap_registry *direct)
{
    static const char *const rules[] = {"--rule", "GET:model-versions/search:throttle:1", "--rule",
                                        "*:/api/2.0/mlflow/:fail:3"};
    proxy running;
    if (!start_proxy(&running, rules, 4)) {
        CHECK(false);
        return;
    }
    ap_registry *registry = open_registry(running.url, 5);
    size_t expected = version_count(direct);
    CHECK_INT_EQ(version_count(registry), expected);
    CHECK_INT_EQ(count_requests(&running, "-> 500 fail", NULL), 3);
    CHECK_INT_EQ(count_requests(&running, "-> 429 throttle", NULL), 1);

    /* 4xx replies are final: one request each. */
    ap_error err = {0};
    int version = 0;
    CHECK_INT_EQ(ap_registry_get_alias(registry, "no-such-model", "champion", &version, &err),
                 AP_ERR_NOT_FOUND);
    CHECK_INT_EQ(count_requests(&running, "registered-models/alias?name=no-such-model", NULL), 1);
    CHECK_INT_EQ(count_requests(&running, "registered-models/get?name=no-such-model", NULL), 1);
    ap_registry_close(registry);
    stop_proxy(&running);
}

static void test_lost_replies_create_once(ap_registry *direct)
{
    static const char *const rules[] = {"--rule", "POST:runs/create:lose:1", "--rule",
                                        "POST:model-versions/create:lose:1"};
    proxy running;
    if (!start_proxy(&running, rules, 4)) {
        CHECK(false);
        return;
    }
    ap_registry *registry = open_registry(running.url, 4);
    size_t before = version_count(direct);
    candidate fifth;
    make_candidate(&fifth, "fifth", "pass", false);
    int version = register_candidate(registry, &fifth);
    CHECK_INT_EQ(version, (int)before + 1);
    CHECK_INT_EQ(version_count(direct), before + 1);
    CHECK_INT_EQ(count_requests(&running, "POST /api/2.0/mlflow/runs/create", NULL), 1);
    CHECK_INT_EQ(count_requests(&running, "POST /api/2.0/mlflow/model-versions/create", NULL), 1);
    CHECK_INT_EQ(count_requests(&running, "POST /api/2.0/mlflow/runs/search", NULL), 1);
    ap_registry_close(registry);
    stop_proxy(&running);
}

/* Register through a proxy with rules; the registration must fail and leave
 * the champion and the version list as they were. */
static void check_failed_registration(ap_registry *direct, const char *rule, const char *name,
                                      const char *expected_message)
{
    const char *const rules[] = {"--rule", rule};
    proxy running;
    if (!start_proxy(&running, rules, 2)) {
        CHECK(false);
        return;
    }
    ap_registry *registry = open_registry(running.url, 3);
    int champion = alias_version(direct, AP_REGISTRY_CHAMPION);
    size_t before = version_count(direct);
    candidate c;
    make_candidate(&c, name, "pass", false);
    ap_registry_new_version request = request_for(&c);
    int version = 0;
    ap_error err = {0};
    CHECK(ap_registry_register(registry, MODEL, &request, &version, &err) != AP_OK);
    CHECK_STR_CONTAINS(err.message, expected_message);
    CHECK_STR_CONTAINS(err.message, running.url);
    CHECK_INT_EQ(alias_version(direct, AP_REGISTRY_CHAMPION), champion);
    CHECK_INT_EQ(version_count(direct), before);
    ap_registry_close(registry);
    stop_proxy(&running);
}

static void test_failed_uploads_keep_champion(ap_registry *direct)
{
    /* The first file uploads, and every later upload fails. */
    check_failed_registration(direct, "PUT:mlflow-artifacts:fail:1000:1", "sixth",
                              "PUT /api/2.0/mlflow-artifacts/artifacts/");
    check_failed_registration(direct, "PUT:mlflow-artifacts:fail:1000:1", "sixth",
                              "HTTP 500 after 3 tries");
    /* The server stores damaged weights and replies 200, so only the read-back catches it. */
    check_failed_registration(direct, "PUT:model.safetensors:corrupt:1", "seventh",
                              "reads back with sha256");
    check_failed_registration(direct, "POST:model-versions/create:fail:1000", "eighth",
                              "model-versions/create returned HTTP 500");
}

static void test_credentials(void)
{
    static const char *const bearer[] = {"--expect-auth", "Bearer hive-token-1"};
    proxy running;
    if (!start_proxy(&running, bearer, 2)) {
        CHECK(false);
        return;
    }
    setenv("MLFLOW_TRACKING_TOKEN", "hive-token-1", 1);
    ap_registry *registry = open_registry(running.url, 2);
    CHECK_INT_EQ(version_count(registry), 5);
    ap_registry_close(registry);

    setenv("MLFLOW_TRACKING_TOKEN", "wrong-token-2", 1);
    registry = open_registry(running.url, 2);
    ap_error err = {0};
    int version = 0;
    CHECK_INT_EQ(ap_registry_get_alias(registry, MODEL, "champion", &version, &err),
                 AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "HTTP 401");
    CHECK_STR_CONTAINS(err.message, "MLFLOW_TRACKING_TOKEN");
    CHECK(strstr(err.message, "wrong-token-2") == NULL);
    ap_registry_close(registry);
    unsetenv("MLFLOW_TRACKING_TOKEN");
    stop_proxy(&running);

    /* "bee:hive-pass" in base64. */
    static const char *const basic[] = {"--expect-auth", "Basic YmVlOmhpdmUtcGFzcw=="};
    if (!start_proxy(&running, basic, 2)) {
        CHECK(false);
        return;
    }
    setenv("MLFLOW_TRACKING_USERNAME", "bee", 1);
    setenv("MLFLOW_TRACKING_PASSWORD", "hive-pass", 1);
    registry = open_registry(running.url, 2);
    CHECK_INT_EQ(ap_registry_get_alias(registry, MODEL, "champion", &version, &err), AP_OK);
    ap_registry_close(registry);
    unsetenv("MLFLOW_TRACKING_USERNAME");
    unsetenv("MLFLOW_TRACKING_PASSWORD");
    stop_proxy(&running);
}

int main(void)
{
    if (!find_tools()) {
        fprintf(stderr, "skip: MLflow is not installed in %s; run scripts/install-test-tools\n",
                venv_dir[0] != '\0' ? venv_dir : ".venv-test");
        return 77;
    }
    const char *dir = check_temp_dir("mlflow-registry");
    if (dir == NULL) {
        fprintf(stderr, "cannot create a temporary folder\n");
        return 1;
    }
    snprintf(work_dir, sizeof(work_dir), "%s", dir);
    snprintf(inputs, sizeof(inputs), "%s/inputs", work_dir);
    ap_error err = {0};
    if (ap_mkdirs(inputs, &err) != AP_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    unsetenv("MLFLOW_TRACKING_TOKEN");
    unsetenv("MLFLOW_TRACKING_USERNAME");
    unsetenv("MLFLOW_TRACKING_PASSWORD");
    if (!start_server()) {
        fprintf(stderr, "cannot start the MLflow server; see %s/server.log\n", server_dir);
        return 1;
    }

    test_open_and_dispatch();
    test_unreachable_server();
    ap_registry *registry = open_registry(server_url, 4);
    test_register_and_champion(registry);
    test_rollback(registry);
    test_list_and_resolve(registry);
    test_download(registry);
    test_tampered_artifact(registry);
    test_transient_errors_retried(registry);
    test_lost_replies_create_once(registry);
    test_failed_uploads_keep_champion(registry);
    test_credentials();
    ap_registry_close(registry);
    stop_server();
    int verdict = check_finish();
    /* Keep the server's files for a look when something failed. */
    char command[4200];
    snprintf(command, sizeof(command), "rm -rf '%s'", work_dir);
    if (verdict == 0 && system(command) != 0)
        fprintf(stderr, "cannot remove %s\n", work_dir);
    return verdict;
}
