/* Fuzz the split.csv reader. The input is a labels.csv manifest, a line
 * "--split--", then the split.csv text checked against that manifest. A
 * split that reads keeps every group on one side, and writing it and
 * reading it again gives the same assignment. */

#include <stdlib.h>
#include <string.h>

#include "pipeline/data/manifest.h"
#include "pipeline/data/split.h"
#include "tests/fuzz/fuzz_support.h"

#define SEPARATOR "\n--split--\n"

static const char *const labels[] = {"wasps", "pollen"};

static void check_groups(const ap_manifest *manifest, const uint8_t *assignment)
{
    for (size_t i = 0; i < manifest->row_count; i++) {
        FUZZ_REQUIRE(assignment[i] <= AP_SPLIT_TEST, "row %zu has part %d", i, assignment[i]);
        for (size_t j = i + 1; j < manifest->row_count; j++)
            if (strcmp(manifest->rows[i].group, manifest->rows[j].group) == 0)
                FUZZ_REQUIRE(assignment[i] == assignment[j], "group %s is split between %s and %s",
                             manifest->rows[i].group, ap_split_part_name(assignment[i]),
                             ap_split_part_name(assignment[j]));
    }
}

static void check_round_trip(const ap_manifest *manifest, const uint8_t *assignment)
{
    const char *path = fuzz_temp_path("written-split.csv");
    ap_error err = {0};
    ap_status status = ap_split_write(path, manifest, assignment, &err);
    FUZZ_REQUIRE(status == AP_OK, "writing the split failed: %s", err.message);
    uint8_t *again = malloc(manifest->row_count + 1);
    FUZZ_REQUIRE(again != NULL, "out of memory");
    status = ap_split_read(path, manifest, again, &err);
    FUZZ_REQUIRE(status == AP_OK, "the written split does not read: %s", err.message);
    FUZZ_REQUIRE(memcmp(again, assignment, manifest->row_count) == 0,
                 "the written split reads back differently");
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *manifest_text, *split_text;
    size_t manifest_size, split_size;
    fuzz_split(data, size, SEPARATOR, &manifest_text, &manifest_size, &split_text, &split_size);

    ap_manifest manifest;
    ap_error err = {0};
    if (ap_manifest_parse((const char *)manifest_text, manifest_size, "labels.csv", labels, 2,
                          "group", &manifest, &err) != AP_OK) {
        fuzz_note("labels.csv: %s", err.message);
        ap_manifest_free(&manifest);
        return 0;
    }
    const char *path = fuzz_temp_path("split.csv");
    fuzz_write_file(path, split_text, split_size);
    uint8_t *assignment = malloc(manifest.row_count + 1);
    FUZZ_REQUIRE(assignment != NULL, "out of memory");
    ap_status status = ap_split_read(path, &manifest, assignment, &err);
    fuzz_note("split.csv: %s", status == AP_OK ? "read" : err.message);
    if (status == AP_OK) {
        check_groups(&manifest, assignment);
        check_round_trip(&manifest, assignment);
    } else {
        FUZZ_REQUIRE(err.message[0] != '\0', "split error without a message");
    }
    free(assignment);
    ap_manifest_free(&manifest);
    return 0;
}
