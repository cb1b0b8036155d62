/* Fuzz the CSV layer and the labels.csv manifest parser, with and without a
 * group column, and check what a parsed manifest promises its readers. */

#include <string.h>

#include "pipeline/data/manifest.h"
#include "tests/fuzz/fuzz_support.h"

static const char *const labels[] = {"varroa", "pollen", "wasps", "cooling"};
#define LABEL_COUNT 4

static void check_table(const ap_csv_table *table)
{
    FUZZ_REQUIRE(table->column_count > 0, "a table without columns");
    for (int c = 0; c < table->column_count; c++)
        FUZZ_REQUIRE(table->header[c] != NULL, "header %d is NULL", c);
    for (size_t r = 0; r < table->row_count; r++) {
        FUZZ_REQUIRE(table->lines[r] >= 2, "row %zu starts on line %d", r, table->lines[r]);
        for (int c = 0; c < table->column_count; c++)
            FUZZ_REQUIRE(table->fields[r * (size_t)table->column_count + (size_t)c] != NULL,
                         "field %zu,%d is NULL", r, c);
    }
    char columns[64];
    ap_csv_describe_columns(table, columns, sizeof(columns));
    FUZZ_REQUIRE(strlen(columns) < sizeof(columns), "column list overran its buffer");
    (void)ap_csv_column(table, "file");
}

static void check_manifest(const ap_manifest *manifest)
{
    FUZZ_REQUIRE(manifest->label_count == LABEL_COUNT, "label_count %d", manifest->label_count);
    for (size_t r = 0; r < manifest->row_count; r++) {
        const ap_manifest_row *row = &manifest->rows[r];
        FUZZ_REQUIRE(row->file != NULL && row->file[0] != '\0', "row %zu has no file", r);
        FUZZ_REQUIRE(row->file[0] != '/', "row %zu has the absolute path %s", r, row->file);
        FUZZ_REQUIRE(row->group != NULL && row->group[0] != '\0', "row %zu has no group", r);
        for (int l = 0; l < LABEL_COUNT; l++)
            FUZZ_REQUIRE(row->labels[l] == 0 || row->labels[l] == 1 ||
                             row->labels[l] == AP_LABEL_UNKNOWN,
                         "row %zu label %d is %d", r, l, row->labels[l]);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    ap_error err = {0};
    ap_csv_table table;
    if (ap_csv_parse(text, size, "fuzz.csv", &table, &err) == AP_OK) {
        check_table(&table);
        ap_csv_free(&table);
    } else {
        FUZZ_REQUIRE(err.message[0] != '\0', "CSV error without a message");
    }

    const char *groups[] = {NULL, "group"};
    for (int g = 0; g < 2; g++) {
        ap_manifest manifest;
        memset(&err, 0, sizeof(err));
        ap_status status = ap_manifest_parse(text, size, "labels.csv", labels, LABEL_COUNT,
                                             groups[g], &manifest, &err);
        fuzz_note("manifest (group column %s): %s", groups[g] ? groups[g] : "none",
                  status == AP_OK ? "parsed" : err.message);
        if (status == AP_OK)
            check_manifest(&manifest);
        else
            FUZZ_REQUIRE(err.message[0] != '\0', "manifest error without a message");
        ap_manifest_free(&manifest);
    }
    return 0;
}
