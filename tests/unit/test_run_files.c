#include "pipeline/train/run_files.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pipeline/common/fsutil.h"
#include "tests/unit/check.h"

static char run_dir[4096];

static void run_file(const char *name, char *out, size_t size)
{
    snprintf(out, size, "%s/%s", run_dir, name);
}

static void write_text(const char *name, const char *text)
{
    char path[4200];
    run_file(name, path, sizeof(path));
    ap_error err = {0};
    CHECK_INT_EQ(ap_write_atomic(path, text, strlen(text), &err), AP_OK);
}

/* The text of a file in the run folder, or "" when it cannot be read. */
static const char *read_text(const char *name)
{
    static char text[256];
    char path[4200];
    run_file(name, path, sizeof(path));
    text[0] = '\0';
    FILE *file = fopen(path, "r");
    if (file == NULL)
        return text;
    size_t got = fread(text, 1, sizeof(text) - 1, file);
    text[got] = '\0';
    fclose(file);
    return text;
}

/* A finished run: weights, a card that records their hash, and the marker. */
static void write_finished_run(const char *weights)
{
    char hash[65], card[512];
    ap_sha256_hex(weights, strlen(weights), hash);
    write_text(AP_RUN_MODEL_FILE, weights);
    snprintf(card, sizeof(card),
             "{\"format\": \"apiary-model-card\", \"weights\": {\"file\": \"%s\", \"format\": "
             "\"safetensors\", \"sha256\": \"%s\"}}",
             AP_RUN_MODEL_FILE, hash);
    write_text(AP_RUN_CARD_FILE, card);
    ap_error err = {0};
    CHECK_INT_EQ(ap_run_mark_complete(run_dir, 3, 30, hash, &err), AP_OK);
}

static void remove_file(const char *name)
{
    char path[4200];
    run_file(name, path, sizeof(path));
    CHECK_INT_EQ(unlink(path), 0);
}

static void test_intact_run(void)
{
    write_finished_run("weights one");
    ap_error err = {0};
    CHECK_INT_EQ(ap_run_check_complete(run_dir, &err), AP_OK);
    CHECK_STR_CONTAINS(read_text(AP_RUN_COMPLETE_FILE), "\"epochs\": 3, \"steps\": 30");
}

static void test_missing_weights(void)
{
    write_finished_run("weights one");
    remove_file(AP_RUN_MODEL_FILE);
    ap_error err = {0};
    CHECK_INT_EQ(ap_run_check_complete(run_dir, &err), AP_ERR_IO);
    char path[4200];
    run_file(AP_RUN_MODEL_FILE, path, sizeof(path));
    CHECK_STR_CONTAINS(err.message, path);
    CHECK_STR_CONTAINS(err.message, "is missing");
}

static void test_altered_weights(void)
{
    write_finished_run("weights one");
    write_text(AP_RUN_MODEL_FILE, "weights two");
    ap_error err = {0};
    CHECK_INT_EQ(ap_run_check_complete(run_dir, &err), AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, "instead of the recorded");
}

static void test_missing_card(void)
{
    write_finished_run("weights one");
    remove_file(AP_RUN_CARD_FILE);
    ap_error err = {0};
    CHECK_INT_EQ(ap_run_check_complete(run_dir, &err), AP_ERR_IO);
    char path[4200];
    run_file(AP_RUN_CARD_FILE, path, sizeof(path));
    CHECK_STR_CONTAINS(err.message, path);
}

/* A card and weights that match each other but not the marker belong to
 * another training than the one complete.json records. */
static void test_card_of_other_weights(void)
{
    write_finished_run("weights one");
    char marker[512];
    snprintf(marker, sizeof(marker), "%s", read_text(AP_RUN_COMPLETE_FILE));
    write_finished_run("weights two");
    write_text(AP_RUN_COMPLETE_FILE, marker);
    ap_error err = {0};
    CHECK_INT_EQ(ap_run_check_complete(run_dir, &err), AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, "but its model card");
}

static void test_marker_without_hash(void)
{
    write_finished_run("weights one");
    write_text(AP_RUN_COMPLETE_FILE, "{\"epochs\": 3}\n");
    ap_error err = {0};
    CHECK_INT_EQ(ap_run_check_complete(run_dir, &err), AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, "no weights_sha256");
}

static void test_set_aside_log(void)
{
    char moved_to[4300], expected[4300];
    ap_error err = {0};

    /* No log, or an empty one, stays where it is. */
    CHECK_INT_EQ(ap_run_set_aside_log(run_dir, moved_to, sizeof(moved_to), &err), AP_OK);
    CHECK_INT_EQ(strlen(moved_to), 0);
    write_text(AP_RUN_LOG_FILE, "");
    CHECK_INT_EQ(ap_run_set_aside_log(run_dir, moved_to, sizeof(moved_to), &err), AP_OK);
    CHECK_INT_EQ(strlen(moved_to), 0);

    /* Each log goes to the first free number, and no earlier one is overwritten. */
    write_text(AP_RUN_LOG_FILE, "first\n");
    CHECK_INT_EQ(ap_run_set_aside_log(run_dir, moved_to, sizeof(moved_to), &err), AP_OK);
    snprintf(expected, sizeof(expected), "%s/%s.1", run_dir, AP_RUN_LOG_FILE);
    CHECK_STR_CONTAINS(moved_to, expected);
    write_text(AP_RUN_LOG_FILE, "second\n");
    CHECK_INT_EQ(ap_run_set_aside_log(run_dir, moved_to, sizeof(moved_to), &err), AP_OK);
    snprintf(expected, sizeof(expected), "%s/%s.2", run_dir, AP_RUN_LOG_FILE);
    CHECK_STR_CONTAINS(moved_to, expected);
    CHECK_STR_CONTAINS(read_text(AP_RUN_LOG_FILE ".1"), "first");
    CHECK_STR_CONTAINS(read_text(AP_RUN_LOG_FILE ".2"), "second");
    char path[4200];
    run_file(AP_RUN_LOG_FILE, path, sizeof(path));
    CHECK(!ap_path_exists(path));
}

int main(void)
{
    const char *dir = check_temp_dir("run-files");
    CHECK(dir != NULL);
    if (dir == NULL)
        return check_finish();
    snprintf(run_dir, sizeof(run_dir), "%s", dir);
    test_intact_run();
    test_missing_weights();
    test_altered_weights();
    test_missing_card();
    test_card_of_other_weights();
    test_marker_without_hash();
    test_set_aside_log();
    return check_finish();
}
