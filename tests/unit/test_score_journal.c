/* Resuming apiary score from predictions.jsonl, including after a crash. */

#include <sys/stat.h>

#include "pipeline/score/score_journal.h"

#include "tests/unit/check.h"

static ap_score_model_info test_model(int version)
{
    ap_score_model_info model = {.version = version, .label_count = 1};
    snprintf(model.sha256_short, sizeof(model.sha256_short), "abcdefabcdef");
    snprintf(model.labels[0], sizeof(model.labels[0]), "wasp");
    model.thresholds[0] = 0.5f;
    return model;
}

/* Write three rows, then `tail` (may be empty) as the last bytes. */
static void write_journal(const char *path, const ap_score_model_info *model, const char *tail)
{
    ap_text lines = {0};
    const float probability = 0.75f;
    ap_score_format_row(&lines, model, "a.jpg", &probability, "");
    ap_score_format_row(&lines, model, "c/d.jpg", NULL, "corrupt JPEG data");
    ap_score_format_row(&lines, model, "b.png", &probability, "");
    FILE *file = fopen(path, "w");
    CHECK(file != NULL);
    if (file != NULL) {
        fwrite(lines.data, 1, lines.length, file);
        fputs(tail, file);
        fclose(file);
    }
    free(lines.data);
}

static long file_size(const char *path)
{
    struct stat info;
    return stat(path, &info) == 0 ? (long)info.st_size : -1;
}

static void test_new_journal(const char *dir)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/new.jsonl", dir);
    ap_score_model_info model = test_model(1);
    ap_score_journal journal;
    ap_error err = {0};
    CHECK_INT_EQ(ap_score_journal_open(path, &model, &journal, &err), AP_OK);
    CHECK_INT_EQ(journal.image_count, 0);
    CHECK(!ap_score_journal_contains(&journal, "a.jpg"));
    CHECK_INT_EQ(file_size(path), 0);
    ap_score_journal_close(&journal);
}

static void test_resume_complete(const char *dir)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/complete.jsonl", dir);
    ap_score_model_info model = test_model(1);
    write_journal(path, &model, "");
    long size = file_size(path);
    ap_score_journal journal;
    ap_error err = {0};
    CHECK_INT_EQ(ap_score_journal_open(path, &model, &journal, &err), AP_OK);
    CHECK_INT_EQ(journal.image_count, 3);
    CHECK_INT_EQ(journal.dropped_bytes, 0);
    CHECK(ap_score_journal_contains(&journal, "a.jpg"));
    CHECK(ap_score_journal_contains(&journal, "b.png"));
    CHECK(ap_score_journal_contains(&journal, "c/d.jpg")); /* error rows count as scored */
    CHECK(!ap_score_journal_contains(&journal, "e.jpg"));
    CHECK_INT_EQ(file_size(path), size);

    /* Appends go to the end and are whole lines. */
    const char *line = "{\"image\":\"e.jpg\",\"model_version\":1,\"model_sha256\":\"abcdefabcdef\","
                       "\"probabilities\":null,\"decisions\":null,\"error\":\"x\"}\n";
    CHECK_INT_EQ(ap_score_journal_append(&journal, line, strlen(line), &err), AP_OK);
    ap_score_journal_close(&journal);
    CHECK_INT_EQ(file_size(path), size + (long)strlen(line));
    CHECK_INT_EQ(ap_score_journal_open(path, &model, &journal, &err), AP_OK);
    CHECK_INT_EQ(journal.image_count, 4);
    CHECK(ap_score_journal_contains(&journal, "e.jpg"));
    ap_score_journal_close(&journal);
}

static void test_truncated_last_line(const char *dir)
{
    static const char *const tails[] = {
        "{\"image\":\"x.jpg\",\"model_vers", /* cut off mid-row */
        ("{\"image\":\"x.jpg\",\"model_version\":1,\"model_sha256\":\"abcdefabcdef\","
         "\"probabilities\":null,\"decisions\":null,\"error\":\"x\"}"), /* whole row, no newline */
        "\0\0\0\0\0\0\0\0",             /* a tail the file system left as zeros */
        "{\"image\":\"x.jpg\",\"mod\n", /* a damaged line with its newline */
    };
    for (size_t i = 0; i < sizeof(tails) / sizeof(tails[0]); i++) {
        char path[4400];
        snprintf(path, sizeof(path), "%s/truncated-%zu.jsonl", dir, i);
        ap_score_model_info model = test_model(1);
        write_journal(path, &model, "");
        long good_size = file_size(path);
        /* The zero tail needs its length spelled out, as it has no NUL terminator. */
        FILE *file = fopen(path, "a");
        if (file != NULL) {
            size_t length = i == 2 ? 8 : strlen(tails[i]);
            fwrite(tails[i], 1, length, file);
            fclose(file);
        }
        ap_score_journal journal;
        ap_error err = {0};
        ap_status status = ap_score_journal_open(path, &model, &journal, &err);
        if (status != AP_OK)
            fprintf(stderr, "tail %zu: %s\n", i, err.message);
        CHECK_INT_EQ(status, AP_OK);
        CHECK_INT_EQ(journal.image_count, 3);
        CHECK(!ap_score_journal_contains(&journal, "x.jpg"));
        CHECK(journal.dropped_bytes > 0);
        CHECK_INT_EQ(file_size(path), good_size);
        ap_score_journal_close(&journal);
    }
}

static void test_damaged_middle_line(const char *dir)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/middle.jsonl", dir);
    ap_score_model_info model = test_model(1);
    write_journal(path, &model, "{\"image\":\"x.jpg\"\n");
    FILE *file = fopen(path, "a");
    if (file != NULL) {
        fputs("{\"image\":\"y.jpg\",\"model_version\":1,\"model_sha256\":\"abcdefabcdef\","
              "\"probabilities\":null,\"decisions\":null,\"error\":\"x\"}\n",
              file);
        fclose(file);
    }
    long size = file_size(path);
    ap_score_journal journal;
    ap_error err = {0};
    CHECK_INT_EQ(ap_score_journal_open(path, &model, &journal, &err), AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, "line 4 is damaged");
    CHECK_STR_CONTAINS(err.message, "is not the last line");
    CHECK_INT_EQ(file_size(path), size); /* nothing is cut off */
    ap_score_journal_close(&journal);
}

static void test_other_model(const char *dir)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/other.jsonl", dir);
    ap_score_model_info written = test_model(1);
    write_journal(path, &written, "");
    ap_score_model_info reader = test_model(2);
    ap_score_journal journal;
    ap_error err = {0};
    CHECK_INT_EQ(ap_score_journal_open(path, &reader, &journal, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "line 1");
    CHECK_STR_CONTAINS(err.message, "model version 1");
    ap_score_journal_close(&journal);
}

static void test_second_writer(const char *dir)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/locked.jsonl", dir);
    ap_score_model_info model = test_model(1);
    ap_score_journal first, second;
    ap_error err = {0};
    CHECK_INT_EQ(ap_score_journal_open(path, &model, &first, &err), AP_OK);
    CHECK_INT_EQ(ap_score_journal_open(path, &model, &second, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "another apiary score");
    ap_score_journal_close(&second);
    ap_score_journal_close(&first);
    CHECK_INT_EQ(ap_score_journal_open(path, &model, &second, &err), AP_OK);
    ap_score_journal_close(&second);
}

int main(void)
{
    const char *dir = check_temp_dir("score-journal");
    if (dir == NULL) {
        fprintf(stderr, "cannot create a temporary folder\n");
        return 1;
    }
    char folder[4200];
    snprintf(folder, sizeof(folder), "%s", dir);
    test_new_journal(folder);
    test_resume_complete(folder);
    test_truncated_last_line(folder);
    test_damaged_middle_line(folder);
    test_other_model(folder);
    test_second_writer(folder);
    return check_finish();
}
