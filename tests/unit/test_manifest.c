/* Manifest parsing: CSV syntax, column lookup, label values, file names,
 * and the three real manifests under APIARY_DATA_DIR. */

#include <stdint.h>

#include "pipeline/config/config.h"
#include "pipeline/data/manifest.h"
#include "tests/unit/check.h"

static const char *const two_labels[] = {"a", "b"};

static ap_status parse_text(const char *text, const char *group, ap_manifest *manifest,
                            ap_error *err)
{
    return ap_manifest_parse(text, strlen(text), "labels.csv", two_labels, 2, group, manifest, err);
}

static size_t count_positives(const ap_manifest *manifest, int label)
{
    size_t count = 0;
    for (size_t i = 0; i < manifest->row_count; i++)
        count += manifest->rows[i].labels[label] == 1;
    return count;
}

static size_t count_groups(const ap_manifest *manifest)
{
    size_t count = 0;
    for (size_t i = 0; i < manifest->row_count; i++) {
        int seen = 0;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(manifest->rows[i].group, manifest->rows[j].group) == 0;
        count += !seen;
    }
    return count;
}

static void test_quoting_and_line_ends(void)
{
    const char text[] = "\xEF\xBB\xBF"
                        "file,a,extra,b\r\n"
                        "\"x,1.jpg\",1,\"say \"\"hi\"\"\",0\r\n"
                        "\"dir/y.jpg\",0,\"two\nlines\",\r\n"
                        "z.jpg, 1 ,,0 \r\n"
                        "\r\n";
    ap_manifest manifest;
    ap_error err = {0};
    ap_status status = parse_text(text, NULL, &manifest, &err);
    CHECK_INT_EQ(status, AP_OK);
    if (status != AP_OK) {
        fprintf(stderr, "%s\n", err.message);
        return;
    }
    CHECK_INT_EQ(manifest.row_count, 3);
    CHECK_INT_EQ(manifest.label_count, 2);
    CHECK(strcmp(manifest.label_names[1], "b") == 0);
    CHECK(strcmp(manifest.rows[0].file, "x,1.jpg") == 0);
    CHECK_INT_EQ(manifest.rows[0].labels[0], 1);
    CHECK_INT_EQ(manifest.rows[0].labels[1], 0);
    CHECK(strcmp(manifest.rows[1].file, "dir/y.jpg") == 0);
    CHECK_INT_EQ(manifest.rows[1].labels[1], AP_LABEL_UNKNOWN);
    CHECK_INT_EQ(manifest.rows[0].line, 2);
    CHECK_INT_EQ(manifest.rows[1].line, 3);
    /* The quoted line break in row 2 moves row 3 to line 5. */
    CHECK_INT_EQ(manifest.rows[2].line, 5);
    CHECK_INT_EQ(manifest.rows[2].labels[0], 1);
    CHECK_INT_EQ(manifest.rows[2].labels[1], 0);
    CHECK(strcmp(manifest.rows[2].group, "z.jpg") == 0);
    ap_manifest_free(&manifest);
}

static void test_label_order_and_groups(void)
{
    const char text[] = "b,group,file,a\n"
                        "1,g1,p.jpg,0\n"
                        "0,,q.jpg,1\n"
                        "1,g1,r.jpg,\n";
    ap_manifest manifest;
    ap_error err = {0};
    ap_status status = parse_text(text, "group", &manifest, &err);
    CHECK_INT_EQ(status, AP_OK);
    if (status != AP_OK)
        return;
    CHECK_INT_EQ(manifest.rows[0].labels[0], 0);
    CHECK_INT_EQ(manifest.rows[0].labels[1], 1);
    CHECK_INT_EQ(manifest.rows[1].labels[0], 1);
    CHECK_INT_EQ(manifest.rows[2].labels[0], AP_LABEL_UNKNOWN);
    CHECK(strcmp(manifest.rows[0].group, "g1") == 0);
    CHECK(strcmp(manifest.rows[1].group, "q.jpg") == 0);
    CHECK(strcmp(manifest.rows[2].group, "g1") == 0);
    ap_manifest_free(&manifest);

    status = parse_text(text, "", &manifest, &err);
    CHECK_INT_EQ(status, AP_OK);
    if (status == AP_OK) {
        CHECK(strcmp(manifest.rows[0].group, "p.jpg") == 0);
        ap_manifest_free(&manifest);
    }
}

static void test_no_trailing_newline(void)
{
    ap_manifest manifest;
    ap_error err = {0};
    ap_status status = parse_text("file,a,b\nx.jpg,1,0", NULL, &manifest, &err);
    CHECK_INT_EQ(status, AP_OK);
    if (status == AP_OK) {
        CHECK_INT_EQ(manifest.row_count, 1);
        CHECK_INT_EQ(manifest.rows[0].labels[1], 0);
        ap_manifest_free(&manifest);
    }
}

typedef struct {
    const char *name;
    const char *text;
    const char *group;
    const char *expected[3]; /* substrings of the message; NULL ends the list */
} error_case;

static const error_case error_cases[] = {
    {"missing file column", "name,a,b\nx,1,0\n", NULL, {"labels.csv:1", "\"file\"", "name, a, b"}},
    {"missing label column", "file,a,c\nx,1,0\n", NULL, {"labels.csv:1", "\"b\"", "file, a, c"}},
    {"missing group column", "file,a,b\nx,1,0\n", "hive", {"labels.csv:1", "\"hive\"", "file, a"}},
    {"duplicate header", "file,a,b,a\nx,1,0,1\n", NULL, {"labels.csv:1", "\"a\"", "duplicate"}},
    {"value yes", "file,a,b\nx,1,0\ny,yes,0\n", NULL, {"labels.csv:3", "\"a\"", "\"yes\""}},
    {"value 2", "file,a,b\nx,1,2\n", NULL, {"labels.csv:2", "\"b\"", "\"2\""}},
    {"value 1.0", "file,a,b\nx,1.0,0\n", NULL, {"labels.csv:2", "\"a\"", "\"1.0\""}},
    {"empty file name", "file,a,b\nx,1,0\n,0,0\n", NULL, {"labels.csv:3", "empty file name"}},
    {"duplicate file", "file,a,b\nx,1,0\ny,0,0\nx,0,1\n", NULL, {"labels.csv:4", "lines 2 and 4"}},
    {"absolute path", "file,a,b\n/etc/x.jpg,1,0\n", NULL, {"labels.csv:2", "absolute"}},
    {"dot dot", "file,a,b\nimages/../../x.jpg,1,0\n", NULL, {"labels.csv:2", "\"..\""}},
    {"dot", "file,a,b\n./x.jpg,1,0\n", NULL, {"labels.csv:2", "component"}},
    {"empty component", "file,a,b\nimages//x.jpg,1,0\n", NULL, {"labels.csv:2", "component"}},
    {"trailing slash", "file,a,b\nimages/,1,0\n", NULL, {"labels.csv:2", "ends with /"}},
    {"backslash", "file,a,b\nimages\\x.jpg,1,0\n", NULL, {"labels.csv:2", "backslash"}},
    {"too few fields", "file,a,b\nx,1,0\ny,1\n", NULL, {"labels.csv:3", "2 fields, expected 3"}},
    {"too many fields", "file,a,b\nx,1,0,\n", NULL, {"labels.csv:2", "4 fields, expected 3"}},
    {"unterminated quote", "file,a,b\nx,1,0\n\"y,1,0\n", NULL, {"labels.csv:3", "unterminated"}},
    {"text after quote", "file,a,b\n\"x\"y,1,0\n", NULL, {"labels.csv:2", "closing quote"}},
    {"quote in plain field", "file,a,b\nx\"y,1,0\n", NULL, {"labels.csv:2", "quote"}},
    {"bare carriage return", "file,a,b\rx,1,0\n", NULL, {"labels.csv:1", "carriage return"}},
    {"empty line inside", "file,a,b\nx,1,0\n\ny,1,0\n", NULL, {"labels.csv:3", "empty line"}},
    {"header only", "file,a,b\n", NULL, {"labels.csv", "no rows"}},
    {"empty text", "", NULL, {"labels.csv", "empty"}},
    {"only blank lines", "\n\n", NULL, {"labels.csv", "header"}},
};

static void test_errors(void)
{
    for (size_t i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
        const error_case *c = &error_cases[i];
        ap_manifest manifest;
        ap_error err = {0};
        ap_status status = parse_text(c->text, c->group, &manifest, &err);
        if (status == AP_OK) {
            fprintf(stderr, "case \"%s\" was accepted\n", c->name);
            ap_manifest_free(&manifest);
        }
        CHECK(status != AP_OK);
        CHECK_INT_EQ(manifest.row_count, 0);
        for (int k = 0; k < 3 && c->expected[k] != NULL; k++)
            CHECK_STR_CONTAINS(err.message, c->expected[k]);
    }
}

static void test_too_many_labels(void)
{
    const char *labels[AP_MAX_LABELS + 1];
    char names[AP_MAX_LABELS + 1][16];
    for (int i = 0; i <= AP_MAX_LABELS; i++) {
        snprintf(names[i], sizeof(names[i]), "l%d", i);
        labels[i] = names[i];
    }
    const char text[] = "file,l0\nx,1\n";
    ap_manifest manifest;
    ap_error err = {0};
    ap_status status = ap_manifest_parse(text, strlen(text), "labels.csv", labels,
                                         AP_MAX_LABELS + 1, NULL, &manifest, &err);
    CHECK_INT_EQ(status, AP_ERR_LIMIT);
    CHECK_STR_CONTAINS(err.message, "maximum is 16");

    const char *twice[] = {"a", "a"};
    status = ap_manifest_parse(text, strlen(text), "labels.csv", twice, 2, NULL, &manifest, &err);
    CHECK_INT_EQ(status, AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "requested twice");
}

static void test_csv_table(void)
{
    const char text[] = "x, y ,z\n1,,\"3\"\n,,\n";
    ap_csv_table table;
    ap_error err = {0};
    ap_status status = ap_csv_parse(text, strlen(text), "t.csv", &table, &err);
    CHECK_INT_EQ(status, AP_OK);
    if (status != AP_OK)
        return;
    CHECK_INT_EQ(table.column_count, 3);
    CHECK_INT_EQ(table.row_count, 2);
    CHECK_INT_EQ(ap_csv_column(&table, "y"), 1);
    CHECK_INT_EQ(ap_csv_column(&table, "w"), -1);
    CHECK(strcmp(table.fields[2], "3") == 0);
    CHECK(strcmp(table.fields[3], "") == 0);
    CHECK_INT_EQ(table.lines[1], 3);
    char columns[16];
    ap_csv_describe_columns(&table, columns, sizeof(columns));
    CHECK(strcmp(columns, "x, y, z") == 0);
    ap_csv_free(&table);
}

static void test_load_missing_file(void)
{
    ap_manifest manifest;
    ap_error err = {0};
    ap_status status =
        ap_manifest_load("/nonexistent/labels.csv", two_labels, 2, NULL, &manifest, &err);
    CHECK_INT_EQ(status, AP_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(err.message, "/nonexistent/labels.csv");
}

static int load_real(const char *data_dir, const char *set, const char *const *labels,
                     int label_count, const char *group, ap_manifest *manifest)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s/labels.csv", data_dir, set);
    ap_error err = {0};
    ap_status status = ap_manifest_load(path, labels, label_count, group, manifest, &err);
    CHECK_INT_EQ(status, AP_OK);
    if (status != AP_OK)
        fprintf(stderr, "%s\n", err.message);
    return status == AP_OK;
}

static void test_wasp_trap(const char *data_dir)
{
    /* Requested in another order than the file's columns. */
    const char *labels[] = {"bee", "asian_hornet", "hornet", "wasp"};
    ap_manifest manifest;
    if (!load_real(data_dir, "wasp-trap", labels, 4, "group", &manifest))
        return;
    CHECK_INT_EQ(manifest.row_count, 288);
    CHECK_INT_EQ(count_positives(&manifest, 0), 77);
    CHECK_INT_EQ(count_positives(&manifest, 1), 69);
    CHECK_INT_EQ(count_positives(&manifest, 2), 130);
    CHECK_INT_EQ(count_positives(&manifest, 3), 193);
    CHECK_INT_EQ(count_groups(&manifest), 15);
    CHECK(strcmp(manifest.label_names[0], "bee") == 0);
    ap_manifest_free(&manifest);
}

static void test_hive_health(const char *data_dir)
{
    const char *labels[] = {"varroa", "ants", "robbed", "missing_queen", "pollen"};
    ap_manifest manifest;
    if (!load_real(data_dir, "hive-health", labels, 5, "group", &manifest))
        return;
    CHECK_INT_EQ(manifest.row_count, 4732);
    CHECK_INT_EQ(count_positives(&manifest, 0), 993);
    CHECK_INT_EQ(count_positives(&manifest, 1), 432);
    CHECK_INT_EQ(count_positives(&manifest, 2), 195);
    CHECK_INT_EQ(count_positives(&manifest, 3), 29);
    CHECK_INT_EQ(count_positives(&manifest, 4), 17);
    CHECK_INT_EQ(count_groups(&manifest), 39);
    CHECK_INT_EQ(manifest.rows[4731].line, 4733);
    ap_manifest_free(&manifest);
}

static void test_raspbee(const char *data_dir)
{
    const char *labels[] = {"cooling", "pollen", "varroa", "wasps"};
    ap_manifest manifest;
    if (!load_real(data_dir, "raspbee-samples", labels, 4, NULL, &manifest))
        return;
    CHECK_INT_EQ(manifest.row_count, 24);
    size_t unknown_rows = 0;
    for (size_t i = 0; i < manifest.row_count; i++) {
        int unknown = 0;
        for (int l = 0; l < 4; l++)
            unknown += manifest.rows[i].labels[l] == AP_LABEL_UNKNOWN;
        unknown_rows += unknown == 4;
    }
    CHECK_INT_EQ(unknown_rows, 20);
    for (int l = 0; l < 4; l++)
        CHECK_INT_EQ(count_positives(&manifest, l), 1);
    CHECK_INT_EQ(count_groups(&manifest), 24);
    CHECK(strcmp(manifest.rows[0].group, manifest.rows[0].file) == 0);
    ap_manifest_free(&manifest);

    char path[4096];
    snprintf(path, sizeof(path), "%s/raspbee-samples/labels.csv", data_dir);
    ap_error err = {0};
    ap_status status = ap_manifest_load(path, labels, 4, "group", &manifest, &err);
    CHECK_INT_EQ(status, AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "raspbee-samples/labels.csv:1");
    CHECK_STR_CONTAINS(err.message, "group column \"group\" not found");
}

int main(void)
{
    test_quoting_and_line_ends();
    test_label_order_and_groups();
    test_no_trailing_newline();
    test_errors();
    test_too_many_labels();
    test_csv_table();
    test_load_missing_file();

    const char *data_dir = check_data_dir();
    if (data_dir != NULL) {
        test_wasp_trap(data_dir);
        test_hive_health(data_dir);
        test_raspbee(data_dir);
    } else {
        fprintf(stderr, "APIARY_DATA_DIR is not set; skipping the real manifests\n");
    }
    return check_finish();
}
