/* Fuzz the safetensors reader: the input is written to a file and read back.
 * A file that reads must be consistent with what ap_safetensors_read checks. */

#include "pipeline/train/checkpoint.h"
#include "tests/fuzz/fuzz_support.h"

static void check_file(const ap_st_file *file)
{
    for (size_t i = 0; i < file->count; i++) {
        const ap_st_loaded *tensor = &file->tensors[i];
        FUZZ_REQUIRE(tensor->ndim >= 0 && tensor->ndim <= AP_ST_MAX_DIMS, "ndim %d", tensor->ndim);
        size_t elements = 1;
        for (int d = 0; d < tensor->ndim; d++)
            elements *= (size_t)tensor->shape[d];
        FUZZ_REQUIRE(elements == tensor->size, "tensor %s: shape has %zu elements, size %zu",
                     tensor->name, elements, tensor->size);
        FUZZ_REQUIRE(ap_st_find(file, tensor->name) != NULL, "tensor %s not found by name",
                     tensor->name);
        volatile float sum = 0.0f;
        for (size_t e = 0; e < tensor->size; e++)
            sum += tensor->data[e];
        (void)sum;
    }
    for (size_t i = 0; i < file->meta_count; i++)
        FUZZ_REQUIRE(ap_st_meta_get(file, file->meta_keys[i]) != NULL, "metadata %s not found",
                     file->meta_keys[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_temp_path("input.safetensors");
    fuzz_write_file(path, data, size);
    ap_st_file file;
    ap_error err = {0};
    ap_status status = ap_safetensors_read(path, &file, &err);
    fuzz_note("safetensors: %s", status == AP_OK ? "read" : err.message);
    if (status == AP_OK) {
        check_file(&file);
        ap_st_file_free(&file);
    } else {
        FUZZ_REQUIRE(err.message[0] != '\0', "read failed without a message");
    }
    return 0;
}
