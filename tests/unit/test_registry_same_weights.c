/* Registering the same weights from several processes at once: the local
 * registry keeps one version and every process gets its number. */

#include <sys/wait.h>
#include <unistd.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/registry/registry.h"

#include "tests/unit/check.h"

#define MODEL     "bees"
#define PROCESSES 4

static void write_text(const char *path, const char *text)
{
    ap_error err = {0};
    if (ap_write_atomic(path, text, strlen(text), &err) != AP_OK) {
        fprintf(stderr, "cannot write test input: %s\n", err.message);
        exit(1);
    }
}

/* Register the weights at paths and write the version number to fd; exits. */
static void register_in_child(const char *root, char paths[2][4200], int fd)
{
    ap_registry *registry = NULL;
    ap_error err = {0};
    int version = 0;
    ap_registry_new_version request = {.model_path = paths[0], .model_card_path = paths[1]};
    ap_status status = ap_registry_open(root, &registry, &err);
    if (status == AP_OK)
        status = ap_registry_register(registry, MODEL, &request, &version, &err);
    if (status != AP_OK)
        fprintf(stderr, "registration failed: %s\n", err.message);
    ap_registry_close(registry);
    ssize_t written = write(fd, &version, sizeof(version));
    _exit(status == AP_OK && written == (ssize_t)sizeof(version) ? 0 : 1);
}

static size_t count_versions(const char *root)
{
    ap_registry *registry = NULL;
    ap_registry_version_info *versions = NULL;
    size_t count = 0;
    ap_error err = {0};
    CHECK_INT_EQ(ap_registry_open(root, &registry, &err), AP_OK);
    CHECK_INT_EQ(ap_registry_list(registry, MODEL, &versions, &count, &err), AP_OK);
    ap_registry_free_versions(versions, count);
    ap_registry_close(registry);
    return count;
}

static void test_concurrent_same_weights(void)
{
    const char *dir = check_temp_dir("registry-same-weights");
    if (dir == NULL)
        return;
    char root[4200], paths[2][4200];
    snprintf(root, sizeof(root), "%s/registry", dir);
    snprintf(paths[0], sizeof(paths[0]), "%s/model.safetensors", dir);
    snprintf(paths[1], sizeof(paths[1]), "%s/model_card.json", dir);
    write_text(paths[0], "the same weights");
    write_text(paths[1], "{\"name\": \"bees\"}\n");

    int pipes[PROCESSES][2];
    pid_t children[PROCESSES];
    for (int i = 0; i < PROCESSES; i++) {
        CHECK_INT_EQ(pipe(pipes[i]), 0);
        children[i] = fork();
        if (children[i] == 0)
            register_in_child(root, paths, pipes[i][1]);
        close(pipes[i][1]);
    }
    for (int i = 0; i < PROCESSES; i++) {
        int version = 0, code = -1;
        CHECK_INT_EQ(read(pipes[i][0], &version, sizeof(version)), sizeof(version));
        close(pipes[i][0]);
        CHECK_INT_EQ(waitpid(children[i], &code, 0), children[i]);
        CHECK_INT_EQ(code, 0);
        CHECK_INT_EQ(version, 1);
    }
    CHECK_INT_EQ(count_versions(root), 1);

    /* Other weights still get a new version. */
    write_text(paths[0], "other weights");
    ap_registry *registry = NULL;
    ap_error err = {0};
    int version = 0;
    ap_registry_new_version request = {.model_path = paths[0], .model_card_path = paths[1]};
    CHECK_INT_EQ(ap_registry_open(root, &registry, &err), AP_OK);
    CHECK_INT_EQ(ap_registry_register(registry, MODEL, &request, &version, &err), AP_OK);
    CHECK_INT_EQ(version, 2);
    ap_registry_close(registry);
}

int main(void)
{
    test_concurrent_same_weights();
    return check_finish();
}
