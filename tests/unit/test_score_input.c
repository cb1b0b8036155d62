/* Input listing, image reading and group patterns of apiary score. */

#include <sys/stat.h>
#include <unistd.h>

#include "pipeline/score/score_input.h"

#include "tests/unit/check.h"

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *file = fopen(path, "w");
    CHECK(file != NULL);
    if (file == NULL)
        return;
    fputs(text, file);
    fclose(file);
}

static void make_folder(const char *dir, const char *name)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    CHECK_INT_EQ(mkdir(path, 0755), 0);
}

static void test_image_names(void)
{
    CHECK(ap_score_is_image_name("a.jpg"));
    CHECK(ap_score_is_image_name("a.JPEG"));
    CHECK(ap_score_is_image_name("b.avi.jpeg"));
    CHECK(ap_score_is_image_name("c.Png"));
    CHECK(!ap_score_is_image_name(".jpg"));
    CHECK(!ap_score_is_image_name("a.gif"));
    CHECK(!ap_score_is_image_name("a.jpg.txt"));
    CHECK(!ap_score_is_image_name("jpg"));
}

static void test_utf8(void)
{
    CHECK_INT_EQ(ap_score_utf8_length((const unsigned char *)"a"), 1);
    CHECK_INT_EQ(ap_score_utf8_length((const unsigned char *)"\xc3\xa9"), 2);         /* e acute */
    CHECK_INT_EQ(ap_score_utf8_length((const unsigned char *)"\xe2\x82\xac"), 3);     /* euro */
    CHECK_INT_EQ(ap_score_utf8_length((const unsigned char *)"\xf0\x9f\x90\x9d"), 4); /* bee */
    CHECK_INT_EQ(ap_score_utf8_length((const unsigned char *)"\xc0\xaf"), 0);         /* overlong */
    CHECK_INT_EQ(ap_score_utf8_length((const unsigned char *)"\xed\xa0\x80"), 0); /* surrogate */
    CHECK_INT_EQ(ap_score_utf8_length((const unsigned char *)"\xe9t"), 0);        /* Latin-1 */
    CHECK_INT_EQ(ap_score_utf8_length((const unsigned char *)"\xf4\x90\x80\x80"), 0);
}

static void test_listing(void)
{
    const char *dir = check_temp_dir("score-list");
    CHECK(dir != NULL);
    if (dir == NULL)
        return;
    make_folder(dir, "hive-2");
    make_folder(dir, "hive-1");
    make_folder(dir, "hive-1/cam-a");
    make_folder(dir, ".hidden");
    write_text(dir, "top.PNG", "x");
    write_text(dir, "hive-2/b.jpeg", "x");
    write_text(dir, "hive-1/cam-a/a.jpg", "x");
    write_text(dir, "hive-1/notes.txt", "x");
    write_text(dir, ".hidden/c.jpg", "x");
    write_text(dir, "hive-1/.d.jpg", "x");
    write_text(dir, "bad-\xe9.jpg", "x");
    char link[4200];
    snprintf(link, sizeof(link), "%s/linked", dir);
    CHECK_INT_EQ(symlink("hive-2", link), 0);
    snprintf(link, sizeof(link), "%s/hive-2/gone.jpg", dir);
    CHECK_INT_EQ(symlink("/nonexistent/gone.jpg", link), 0);

    ap_score_inputs inputs;
    ap_error err = {0};
    ap_status status = ap_score_list_inputs(dir, &inputs, &err);
    if (status != AP_OK)
        fprintf(stderr, "listing: %s\n", err.message);
    CHECK_INT_EQ(status, AP_OK);
    static const char *const expected[] = {"hive-1/cam-a/a.jpg", "hive-2/b.jpeg",
                                           "hive-2/gone.jpg",    "linked/b.jpeg",
                                           "linked/gone.jpg",    "top.PNG"};
    CHECK_INT_EQ(inputs.count, 6);
    CHECK_INT_EQ(inputs.rejected, 1);
    for (size_t i = 0; i < inputs.count && i < 6; i++) {
        if (strcmp(inputs.paths[i], expected[i]) != 0)
            fprintf(stderr, "path %zu is %s, expected %s\n", i, inputs.paths[i], expected[i]);
        CHECK_INT_EQ(strcmp(inputs.paths[i], expected[i]), 0);
    }
    ap_score_inputs_free(&inputs);

    /* The same folder as a file:// URI. */
    char uri[4200];
    snprintf(uri, sizeof(uri), "file://%s", dir);
    CHECK_INT_EQ(ap_score_list_inputs(uri, &inputs, &err), AP_OK);
    CHECK_INT_EQ(inputs.count, 6);
    ap_score_inputs_free(&inputs);

    /* A link back to a parent would list forever. */
    snprintf(link, sizeof(link), "%s/hive-1/cam-a/up", dir);
    CHECK_INT_EQ(symlink("../..", link), 0);
    CHECK_INT_EQ(ap_score_list_inputs(dir, &inputs, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "links back to one of its parents");
}

static void test_listing_errors(void)
{
    ap_score_inputs inputs;
    ap_error err = {0};
    CHECK_INT_EQ(ap_score_list_inputs("/nonexistent/score-input", &inputs, &err), AP_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(err.message, "/nonexistent/score-input");
    CHECK_INT_EQ(ap_score_list_inputs("s3://bucket/prefix", &inputs, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "only local folders");
    CHECK_INT_EQ(ap_score_list_inputs("", &inputs, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "score.input");
    const char *dir = check_temp_dir("score-list-file");
    if (dir == NULL)
        return;
    write_text(dir, "a.jpg", "x");
    char path[4200];
    snprintf(path, sizeof(path), "%s/a.jpg", dir);
    CHECK_INT_EQ(ap_score_list_inputs(path, &inputs, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "only a .csv manifest or a .txt or .lst listing");
}

static void check_paths(const ap_score_inputs *inputs, const char *const *expected, size_t count)
{
    CHECK_INT_EQ(inputs->count, count);
    for (size_t i = 0; i < count && i < inputs->count; i++)
        CHECK_STR_CONTAINS(inputs->paths[i], expected[i]);
}

static void test_manifest_input(void)
{
    const char *dir = check_temp_dir("score-manifest");
    if (dir == NULL)
        return;
    make_folder(dir, "hive");
    write_text(dir, "hive/b.jpg", "b");
    write_text(dir, "labels.csv", "file,wasp\nhive/b.jpg,1\n\"a,1.png\",0\nhive/b.jpg,1\n");
    char path[4200];
    snprintf(path, sizeof(path), "%s/labels.csv", dir);
    ap_score_inputs inputs;
    ap_error err = {0};
    CHECK_INT_EQ(ap_score_list_inputs(path, &inputs, &err), AP_OK);
    static const char *const expected[] = {"a,1.png", "hive/b.jpg"};
    check_paths(&inputs, expected, 2); /* sorted, the repeated row once */
    ap_score_inputs_free(&inputs);

    /* Paths are read relative to the manifest's folder. */
    ap_score_buffer buffer = {0};
    size_t size = 0;
    CHECK_INT_EQ(ap_score_read_input(path, "hive/b.jpg", 100, &buffer, &size, &err), AP_OK);
    CHECK_INT_EQ(size, 1);
    ap_score_buffer_free(&buffer);

    write_text(dir, "nofile.csv", "image,wasp\na.jpg,1\n");
    snprintf(path, sizeof(path), "%s/nofile.csv", dir);
    CHECK_INT_EQ(ap_score_list_inputs(path, &inputs, &err), AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, "no \"file\" column");
    write_text(dir, "escape.csv", "file\n../outside.jpg\n");
    snprintf(path, sizeof(path), "%s/escape.csv", dir);
    CHECK_INT_EQ(ap_score_list_inputs(path, &inputs, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "escape.csv:2");
}

static void test_listing_input(void)
{
    const char *dir = check_temp_dir("score-listing");
    if (dir == NULL)
        return;
    write_text(dir, "batch.txt", "# today\n  c.jpg \r\n\nb/d.JPG\na.png\n\xff.jpg\nc.jpg");
    char path[4200];
    snprintf(path, sizeof(path), "%s/batch.txt", dir);
    ap_score_inputs inputs;
    ap_error err = {0};
    CHECK_INT_EQ(ap_score_list_inputs(path, &inputs, &err), AP_OK);
    static const char *const expected[] = {"a.png", "b/d.JPG", "c.jpg"};
    check_paths(&inputs, expected, 3);
    CHECK_INT_EQ(inputs.rejected, 1); /* the name that is not UTF-8 */
    ap_score_inputs_free(&inputs);

    write_text(dir, "absolute.lst", "/etc/passwd\n");
    snprintf(path, sizeof(path), "%s/absolute.lst", dir);
    CHECK_INT_EQ(ap_score_list_inputs(path, &inputs, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "absolute.lst:1");
    FILE *file = fopen(path, "wb");
    CHECK(file != NULL);
    if (file != NULL) {
        fwrite("a.jpg\0b.jpg\n", 1, 12, file);
        fclose(file);
    }
    CHECK_INT_EQ(ap_score_list_inputs(path, &inputs, &err), AP_ERR_FORMAT);
    CHECK_STR_CONTAINS(err.message, "NUL byte");
}

static void test_read_input(void)
{
    const char *dir = check_temp_dir("score-read");
    if (dir == NULL)
        return;
    write_text(dir, "small.jpg", "0123456789");
    ap_score_buffer buffer = {0};
    size_t size = 0;
    ap_error err = {0};
    CHECK_INT_EQ(ap_score_read_input(dir, "small.jpg", 100, &buffer, &size, &err), AP_OK);
    CHECK_INT_EQ(size, 10);
    CHECK(buffer.data != NULL);
    CHECK(buffer.data == NULL || memcmp(buffer.data, "0123456789", 10) == 0);
    uint8_t *first = buffer.data;
    CHECK_INT_EQ(ap_score_read_input(dir, "small.jpg", 100, &buffer, &size, &err), AP_OK);
    CHECK(buffer.data == first); /* the buffer is reused, not reallocated */
    CHECK_INT_EQ(ap_score_read_input(dir, "small.jpg", 9, &buffer, &size, &err), AP_ERR_LIMIT);
    CHECK_STR_CONTAINS(err.message, "data.max_image_bytes");
    CHECK_INT_EQ(ap_score_read_input(dir, "missing.jpg", 100, &buffer, &size, &err), AP_ERR_IO);
    CHECK_STR_CONTAINS(err.message, "missing.jpg");
    ap_score_buffer_free(&buffer);
}

static void test_group_patterns(void)
{
    static const struct {
        const char *text;
        ap_group_kind kind;
        int fields;
    } valid[] = {{"none", AP_GROUP_NONE, 0},
                 {"dir", AP_GROUP_DIR, 1},
                 {"dir:3", AP_GROUP_DIR, 3},
                 {"name", AP_GROUP_NAME, 1},
                 {"name:2", AP_GROUP_NAME, 2}};
    for (size_t i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        ap_group_pattern pattern;
        ap_error err = {0};
        CHECK_INT_EQ(ap_group_pattern_parse(valid[i].text, &pattern, &err), AP_OK);
        CHECK_INT_EQ(pattern.kind, valid[i].kind);
        CHECK_INT_EQ(pattern.fields, valid[i].fields);
    }
    static const struct {
        const char *text;
        const char *message;
    } invalid[] = {{"folder", "is unknown"},   {"dir:0", "from 1 to 16"},
                   {"dir:17", "from 1 to 16"}, {"dir:", "from 1 to 16"},
                   {"dir:2x", "from 1 to 16"}, {"name:-1", "from 1 to 16"},
                   {"dirs", "is unknown"},     {"", "is unknown"}};
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        ap_group_pattern pattern;
        ap_error err = {0};
        CHECK_INT_EQ(ap_group_pattern_parse(invalid[i].text, &pattern, &err), AP_ERR_INVALID);
        CHECK_STR_CONTAINS(err.message, invalid[i].message);
        CHECK_STR_CONTAINS(err.message, "score.group_pattern");
    }
}

static void test_group_of_path(void)
{
    static const struct {
        const char *pattern;
        const char *path;
        const char *group; /* NULL: no group */
    } cases[] = {
        {"dir", "hive-3/cam/2024-05-01/a.jpg", "hive-3"},
        {"dir:2", "hive-3/cam/2024-05-01/a.jpg", "hive-3/cam"},
        {"dir:3", "hive-3/cam/2024-05-01/a.jpg", "hive-3/cam/2024-05-01"},
        {"dir:4", "hive-3/cam/2024-05-01/a.jpg", NULL},
        {"dir", "a.jpg", NULL},
        {"name", "cam/2020.09.16_F_278605_T_1_output.avi.jpeg", "2020.09.16"},
        {"name:2", "2020.09.16_F_278605.jpeg", "2020.09.16_F"},
        {"name:3", "2020.09.16_F_278605.jpeg", NULL},
        {"name", "_x.jpg", NULL},
        {"none", "hive-3/a.jpg", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ap_group_pattern pattern;
        ap_error err = {0};
        CHECK_INT_EQ(ap_group_pattern_parse(cases[i].pattern, &pattern, &err), AP_OK);
        char group[256];
        bool found = ap_group_of_path(&pattern, cases[i].path, group);
        CHECK_INT_EQ(found, cases[i].group != NULL);
        if (cases[i].group != NULL && strcmp(group, cases[i].group) != 0) {
            fprintf(stderr, "%s of %s is \"%s\", expected \"%s\"\n", cases[i].pattern,
                    cases[i].path, group, cases[i].group);
            CHECK(false);
        }
    }
}

int main(void)
{
    test_image_names();
    test_utf8();
    test_listing();
    test_listing_errors();
    test_manifest_input();
    test_listing_input();
    test_read_input();
    test_group_patterns();
    test_group_of_path();
    return check_finish();
}
