/* Fuzz the BeeDataset data.json reader. The input becomes data.json in a
 * folder with an images_300 subfolder. A data.json that converts must give
 * a labels.csv that the manifest parser accepts, with one row per image. */

#include <jansson.h>
#include <stdio.h>
#include <unistd.h>

#include "pipeline/data/manifest.h"
#include "pipeline/store/dataset_fetch.h"
#include "tests/fuzz/fuzz_support.h"

static const char *const labels[] = {"varroa", "pollen", "wasps", "cooling"};

static void check_manifest(const char *manifest_path, const uint8_t *data, size_t size)
{
    ap_manifest manifest;
    ap_error err = {0};
    ap_status status = ap_manifest_load(manifest_path, labels, 4, NULL, &manifest, &err);
    FUZZ_REQUIRE(status == AP_OK, "the written labels.csv does not parse: %s", err.message);
    json_t *root = json_loadb((const char *)data, size, 0, NULL);
    FUZZ_REQUIRE(root != NULL, "data.json converted but does not parse here");
    FUZZ_REQUIRE(manifest.row_count == json_object_size(root),
                 "labels.csv has %zu rows for %zu images", manifest.row_count,
                 json_object_size(root));
    json_decref(root);
    ap_manifest_free(&manifest);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char folder[2048], images[2100], json_path[2100], manifest_path[2200];
    snprintf(folder, sizeof(folder), "%s", fuzz_temp_path("bee"));
    snprintf(images, sizeof(images), "%s/images_300", folder);
    snprintf(json_path, sizeof(json_path), "%s/data.json", folder);
    snprintf(manifest_path, sizeof(manifest_path), "%s/labels.csv", images);
    fuzz_make_folder(folder);
    fuzz_make_folder(images);
    unlink(manifest_path);
    fuzz_write_file(json_path, data, size);

    int manifests = 0;
    char data_root[AP_PATH_MAX] = "";
    ap_error err = {0};
    ap_status status = ap_dataset_convert_bee(folder, &manifests, data_root, &err);
    fuzz_note("data.json: %s", status == AP_OK ? "converted" : err.message);
    if (status != AP_OK) {
        FUZZ_REQUIRE(err.message[0] != '\0', "conversion failed without a message");
        return 0;
    }
    FUZZ_REQUIRE(manifests == 1, "%d manifests written for one images folder", manifests);
    check_manifest(manifest_path, data, size);
    return 0;
}
