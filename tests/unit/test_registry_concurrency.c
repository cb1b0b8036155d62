#include "pipeline/registry/registry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pipeline/common/fsutil.h"
#include "tests/unit/check.h"

#define MODEL   "bees"
#define WRITERS 6
#define MOVES   60
#define ROUNDS  2 /* versions each writer registers */

static char root[4096];
static char inputs[4096];

/* What one writer process did, sent back through a pipe. */
typedef struct {
    int versions[ROUNDS];
    int champion_moves;
    int challenger_moves;
    int failed;
} writer_result;

static void write_text(const char *path, const char *text)
{
    ap_error err = {0};
    if (ap_write_atomic(path, text, strlen(text), &err) != AP_OK) {
        fprintf(stderr, "cannot write test input: %s\n", err.message);
        exit(1);
    }
}

/* Write a candidate whose report passes, so it may become champion. */
static void make_candidate(const char *name, ap_registry_new_version *request, char paths[3][4200])
{
    char weights[256], sha[65], report[512];
    snprintf(weights, sizeof(weights), "weights of %s", name);
    ap_sha256_hex(weights, strlen(weights), sha);
    snprintf(report, sizeof(report), "{\"passed\": true, \"model_sha256\": \"%s\"}\n", sha);
    snprintf(paths[0], 4200, "%s/%s.safetensors", inputs, name);
    snprintf(paths[1], 4200, "%s/%s.card.json", inputs, name);
    snprintf(paths[2], 4200, "%s/%s.report.json", inputs, name);
    write_text(paths[0], weights);
    write_text(paths[1], "{\"name\": \"bees\"}\n");
    write_text(paths[2], report);
    *request = (ap_registry_new_version){
        .model_path = paths[0], .model_card_path = paths[1], .report_path = paths[2]};
}

static bool report_failure(int writer, const char *step, ap_status status, const ap_error *err)
{
    if (status == AP_OK)
        return false;
    fprintf(stderr, "writer %d: %s failed: %s\n", writer, step, err->message);
    return true;
}

/* Move an alias to version and count it when it really moved. */
static bool move_counted(ap_registry *registry, int writer, const char *alias, int version,
                         int *moves)
{
    char reason[64];
    snprintf(reason, sizeof(reason), "writer %d", writer);
    ap_registry_move move = {.reason = reason};
    int previous = 0;
    ap_error err = {0};
    ap_status status =
        ap_registry_set_alias(registry, MODEL, alias, version, &move, &previous, &err);
    if (report_failure(writer, "set_alias", status, &err))
        return false;
    if (previous != version)
        (*moves)++;
    return true;
}

static bool register_round(ap_registry *registry, int writer, int round, int *version)
{
    char name[64], paths[3][4200];
    ap_registry_new_version request;
    snprintf(name, sizeof(name), "writer%d-round%d", writer, round);
    make_candidate(name, &request, paths);
    ap_error err = {0};
    ap_status status = ap_registry_register(registry, MODEL, &request, version, &err);
    return !report_failure(writer, "register", status, &err);
}

/* Register a version, later a second one while the others move aliases, and
 * keep moving champion (every fourth step also challenger) between this
 * writer's versions, so that nearly every move changes the alias. */
static writer_result run_writer(int writer)
{
    writer_result result = {0};
    ap_registry *registry = NULL;
    ap_error err = {0};
    bool ok = !report_failure(writer, "open", ap_registry_open(root, &registry, &err), &err);
    ok = ok && register_round(registry, writer, 0, &result.versions[0]);
    int registered = 1;
    for (int step = 0; ok && step < MOVES; step++) {
        if (step == MOVES / 3 && registered < ROUNDS) {
            ok = register_round(registry, writer, registered, &result.versions[registered]);
            registered++;
        }
        int version = result.versions[step % registered];
        ok = ok && move_counted(registry, writer, "champion", version, &result.champion_moves);
        if (ok && step % 4 == 0)
            ok = move_counted(registry, writer, "challenger", version, &result.challenger_moves);
    }
    ap_registry_close(registry);
    result.failed = !ok;
    return result;
}

static void spawn_writers(pid_t pids[WRITERS], int results_fd[2])
{
    int start_gate[2];
    if (pipe(start_gate) != 0 || pipe(results_fd) != 0) {
        perror("pipe");
        exit(1);
    }
    for (int writer = 0; writer < WRITERS; writer++) {
        pids[writer] = fork();
        if (pids[writer] < 0) {
            perror("fork");
            exit(1);
        }
        if (pids[writer] == 0) {
            close(start_gate[1]);
            close(results_fd[0]);
            char byte;
            while (read(start_gate[0], &byte, 1) < 0 && errno == EINTR)
                continue;
            writer_result result = run_writer(writer);
            ssize_t written = write(results_fd[1], &result, sizeof(result));
            _exit(written == (ssize_t)sizeof(result) && !result.failed ? 0 : 1);
        }
    }
    /* Closing the gate's write end releases every writer at once. */
    close(start_gate[0]);
    close(start_gate[1]);
    close(results_fd[1]);
}

static bool collect_results(const pid_t pids[WRITERS], int results_fd, writer_result *total,
                            int *versions_seen, int versions_capacity)
{
    bool ok = true;
    for (int writer = 0; writer < WRITERS; writer++) {
        int status = 0;
        CHECK_INT_EQ(waitpid(pids[writer], &status, 0), pids[writer]);
        CHECK(WIFEXITED(status));
        CHECK_INT_EQ(WEXITSTATUS(status), 0);
        ok = ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    writer_result result;
    int received = 0;
    while (read(results_fd, &result, sizeof(result)) == (ssize_t)sizeof(result)) {
        received++;
        total->champion_moves += result.champion_moves;
        total->challenger_moves += result.challenger_moves;
        for (int round = 0; round < ROUNDS; round++) {
            int version = result.versions[round];
            CHECK(version >= 1);
            CHECK(version <= versions_capacity);
            if (version >= 1 && version <= versions_capacity)
                versions_seen[version]++;
        }
    }
    close(results_fd);
    CHECK_INT_EQ(received, WRITERS);
    return ok && received == WRITERS;
}

/* Every version 1..expected exists once, is complete and has its own weights. */
static void check_versions(ap_registry *registry, int expected)
{
    ap_registry_version_info *versions = NULL;
    size_t count = 0;
    ap_error err = {0};
    CHECK_INT_EQ(ap_registry_list(registry, MODEL, &versions, &count, &err), AP_OK);
    CHECK_INT_EQ(count, expected);
    char(*hashes)[65] = calloc(count + 1, sizeof(*hashes));
    for (size_t i = 0; i < count; i++) {
        CHECK_INT_EQ(versions[i].version, (int)i + 1);
        CHECK(versions[i].complete);
        err = (ap_error){0};
        CHECK_INT_EQ(ap_registry_verify(registry, MODEL, versions[i].version, &err), AP_OK);
        if (err.message[0] != '\0')
            fprintf(stderr, "%s\n", err.message);
        json_t *info = NULL;
        CHECK_INT_EQ(ap_registry_show(registry, MODEL, versions[i].version, &info, &err), AP_OK);
        const char *sha = json_string_value(json_object_get(
            json_object_get(json_object_get(info, "files"), AP_REGISTRY_MODEL_FILE), "sha256"));
        snprintf(hashes[i], 65, "%s", sha != NULL ? sha : "");
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(hashes[i], hashes[j]) != 0);
        json_decref(info);
    }
    free(hashes);
    ap_registry_free_versions(versions, count);
}

/* Each alias's history is a chain: every move starts where the last one ended. */
static void check_history(int champion_moves, int challenger_moves)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s/aliases.json", root, MODEL);
    json_error_t parse_error;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &parse_error);
    CHECK(doc != NULL);
    json_t *history = json_object_get(doc, "history");
    CHECK_INT_EQ(json_array_size(history), champion_moves + challenger_moves);
    static const char *aliases[] = {"champion", "challenger"};
    int counts[2] = {0, 0};
    for (int a = 0; a < 2; a++) {
        json_int_t last = 0;
        for (size_t i = 0; i < json_array_size(history); i++) {
            json_t *entry = json_array_get(history, i);
            if (strcmp(json_string_value(json_object_get(entry, "alias")), aliases[a]) != 0)
                continue;
            CHECK_INT_EQ(json_integer_value(json_object_get(entry, "from")), last);
            last = json_integer_value(json_object_get(entry, "to"));
            counts[a]++;
        }
        CHECK_INT_EQ(
            json_integer_value(json_object_get(json_object_get(doc, "aliases"), aliases[a])), last);
    }
    CHECK_INT_EQ(counts[0], champion_moves);
    CHECK_INT_EQ(counts[1], challenger_moves);
    json_decref(doc);
}

/* Count entries other than the expected ones in the model folder and versions/. */
static int count_leftovers(void)
{
    char model_dir[4200], versions_dir[4300];
    snprintf(model_dir, sizeof(model_dir), "%s/%s", root, MODEL);
    snprintf(versions_dir, sizeof(versions_dir), "%s/versions", model_dir);
    int leftovers = 0;
    DIR *dir = opendir(model_dir);
    struct dirent *entry;
    while (dir != NULL && (entry = readdir(dir)) != NULL) {
        const char *name = entry->d_name;
        if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0 && strcmp(name, ".lock") != 0 &&
            strcmp(name, "versions") != 0 && strcmp(name, "aliases.json") != 0) {
            fprintf(stderr, "leftover %s/%s\n", model_dir, name);
            leftovers++;
        }
    }
    if (dir != NULL)
        closedir(dir);
    dir = opendir(versions_dir);
    int version;
    while (dir != NULL && (entry = readdir(dir)) != NULL) {
        const char *name = entry->d_name;
        if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0 &&
            (name[0] == 'v' || !ap_registry_parse_version(name, &version))) {
            fprintf(stderr, "leftover %s/%s\n", versions_dir, name);
            leftovers++;
        }
    }
    if (dir != NULL)
        closedir(dir);
    return leftovers;
}

static bool staging_folder_exists(void)
{
    char model_dir[4200];
    snprintf(model_dir, sizeof(model_dir), "%s/%s", root, MODEL);
    DIR *dir = opendir(model_dir);
    bool found = false;
    struct dirent *entry;
    while (dir != NULL && !found && (entry = readdir(dir)) != NULL)
        found = strncmp(entry->d_name, ".register-", 10) == 0;
    if (dir != NULL)
        closedir(dir);
    return found;
}

/* Kill a writer as soon as its staging folder appears, while it copies a
 * large file. */
static void kill_writer_midway(void)
{
    char big[4200], paths[3][4200];
    ap_registry_new_version request;
    make_candidate("killed", &request, paths);
    snprintf(big, sizeof(big), "%s/big.safetensors", inputs);
    int fd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK_INT_EQ(ftruncate(fd, 64L << 20), 0);
    close(fd);
    request.model_path = big;
    request.report_path = NULL;

    pid_t pid = fork();
    if (pid == 0) {
        ap_registry *registry = NULL;
        ap_error err = {0};
        int version = 0;
        if (ap_registry_open(root, &registry, &err) != AP_OK ||
            ap_registry_register(registry, MODEL, &request, &version, &err) != AP_OK)
            _exit(1);
        _exit(0);
    }
    struct timespec pause = {0, 200000};
    for (int i = 0; i < 50000 && !staging_folder_exists(); i++)
        nanosleep(&pause, NULL);
    kill(pid, SIGKILL);
    int status = 0;
    CHECK_INT_EQ(waitpid(pid, &status, 0), pid);
    CHECK(WIFSIGNALED(status));
    unlink(big);
}

int main(void)
{
    const char *dir = check_temp_dir("registry-concurrency");
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

    pid_t pids[WRITERS];
    int results_fd[2];
    spawn_writers(pids, results_fd);
    writer_result total = {0};
    int versions_seen[WRITERS * ROUNDS + 1] = {0};
    bool writers_ok = collect_results(pids, results_fd[0], &total, versions_seen, WRITERS * ROUNDS);
    for (int version = 1; version <= WRITERS * ROUNDS; version++)
        CHECK_INT_EQ(versions_seen[version], 1);

    ap_registry *registry = NULL;
    CHECK_INT_EQ(ap_registry_open(root, &registry, &err), AP_OK);
    if (registry == NULL || !writers_ok)
        return check_finish();
    check_versions(registry, WRITERS * ROUNDS);
    check_history(total.champion_moves, total.challenger_moves);
    CHECK(total.champion_moves >= WRITERS * ROUNDS);
    CHECK_INT_EQ(count_leftovers(), 0);

    /* A writer killed mid-copy leaves a staging folder that the next
     * registration removes; numbering goes on without a gap. A slow
     * scheduler may let the writer publish before the kill lands. */
    kill_writer_midway();
    ap_registry_version_info *versions = NULL;
    size_t expected = 0;
    CHECK_INT_EQ(ap_registry_list(registry, MODEL, &versions, &expected, &err), AP_OK);
    ap_registry_free_versions(versions, expected);
    CHECK(expected == WRITERS * ROUNDS || expected == WRITERS * ROUNDS + 1);
    char paths[3][4200];
    ap_registry_new_version request;
    make_candidate("after-kill", &request, paths);
    int version = 0;
    CHECK_INT_EQ(ap_registry_register(registry, MODEL, &request, &version, &err), AP_OK);
    CHECK_INT_EQ(version, expected + 1);
    CHECK_INT_EQ(count_leftovers(), 0);
    check_versions(registry, (int)expected + 1);
    ap_registry_close(registry);
    return check_finish();
}
