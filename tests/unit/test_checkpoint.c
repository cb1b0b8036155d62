/* safetensors files: round trip, a file built byte by byte, rejection of
 * corrupt headers and layouts, and atomic replacement. */

#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/train/checkpoint.h"
#include "tests/unit/check.h"

static char temp_dir[2048];

static void temp_path(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/%s", temp_dir, name);
}

static int write_bytes(const char *path, const void *data, size_t size)
{
    FILE *file = fopen(path, "wb");
    if (file == NULL)
        return 0;
    size_t written = fwrite(data, 1, size, file);
    return fclose(file) == 0 && written == size;
}

/* Write the 8-byte size, header and data_size bytes of data (0, 1, 2, ...). */
static int write_file_with_header(const char *path, const char *header, size_t data_size)
{
    size_t header_size = strlen(header);
    size_t total = 8 + header_size + data_size;
    uint8_t *bytes = malloc(total);
    for (int i = 0; i < 8; i++)
        bytes[i] = (uint8_t)((uint64_t)header_size >> (8 * i));
    memcpy(bytes + 8, header, header_size);
    for (size_t i = 0; i < data_size; i++)
        bytes[8 + header_size + i] = (uint8_t)i;
    int ok = write_bytes(path, bytes, total);
    free(bytes);
    return ok;
}

typedef struct {
    float weight[24];
    float bias[5];
    float scalar[1];
} sample_data;

static void fill_sample(sample_data *data)
{
    for (int i = 0; i < 24; i++)
        data->weight[i] = (float)i * 0.25f - 3.0f;
    for (int i = 0; i < 5; i++)
        data->bias[i] = -(float)i / 3.0f;
    data->scalar[0] = 1e-30f;
}

static ap_status write_sample(const char *path, const sample_data *data, ap_error *err)
{
    const ap_st_tensor tensors[] = {
        {"conv.weight", 4, {2, 3, 2, 2}, data->weight},
        {"fc.bias", 1, {5}, data->bias},
        {"step", 0, {0}, data->scalar},
        {"empty", 2, {0, 3}, NULL},
    };
    const ap_st_meta meta[] = {
        {"format", "apiary-model"},
        {"note", "a \"quoted\" value, caf\xC3\xA9"},
    };
    return ap_safetensors_write(path, tensors, 4, meta, 2, err);
}

static void test_round_trip(void)
{
    char path[4096];
    temp_path(path, sizeof(path), "round.safetensors");
    sample_data data;
    fill_sample(&data);
    ap_error err = {0};
    ap_status status = write_sample(path, &data, &err);
    CHECK_INT_EQ(status, AP_OK);
    if (status != AP_OK) {
        fprintf(stderr, "%s\n", err.message);
        return;
    }

    uint8_t *bytes = NULL;
    size_t size = 0;
    CHECK_INT_EQ(ap_read_file(path, 1 << 20, &bytes, &size, &err), AP_OK);
    uint64_t header_size = 0;
    for (int i = 0; i < 8; i++)
        header_size |= (uint64_t)bytes[i] << (8 * i);
    CHECK_INT_EQ(header_size % 8, 0);
    CHECK_INT_EQ(size, 8 + header_size + sizeof(float) * (24 + 5 + 1));
    CHECK_INT_EQ(bytes[8], '{');
    /* The JSON ends with '}' and spaces pad it to a multiple of 8 bytes. */
    CHECK(bytes[8 + header_size - 1] == ' ' || bytes[8 + header_size - 1] == '}');
    /* Tensors are stored in the given order, so the weights come first. */
    CHECK(memcmp(bytes + 8 + header_size, data.weight, sizeof(data.weight)) == 0);
    free(bytes);

    ap_st_file file;
    status = ap_safetensors_read(path, &file, &err);
    CHECK_INT_EQ(status, AP_OK);
    if (status != AP_OK) {
        fprintf(stderr, "%s\n", err.message);
        return;
    }
    CHECK_INT_EQ(file.count, 4);
    const ap_st_loaded *weight = ap_st_find(&file, "conv.weight");
    CHECK(weight != NULL);
    if (weight != NULL) {
        CHECK_INT_EQ(weight->ndim, 4);
        CHECK_INT_EQ(weight->shape[1], 3);
        CHECK_INT_EQ(weight->size, 24);
        CHECK(memcmp(weight->data, data.weight, sizeof(data.weight)) == 0);
    }
    const ap_st_loaded *bias = ap_st_find(&file, "fc.bias");
    CHECK(bias != NULL);
    if (bias != NULL)
        CHECK(memcmp(bias->data, data.bias, sizeof(data.bias)) == 0);
    const ap_st_loaded *step = ap_st_find(&file, "step");
    CHECK(step != NULL);
    if (step != NULL) {
        CHECK_INT_EQ(step->ndim, 0);
        CHECK_INT_EQ(step->size, 1);
        CHECK(step->data[0] == 1e-30f);
    }
    const ap_st_loaded *empty = ap_st_find(&file, "empty");
    CHECK(empty != NULL);
    if (empty != NULL) {
        CHECK_INT_EQ(empty->size, 0);
        CHECK_INT_EQ(empty->shape[0], 0);
        CHECK_INT_EQ(empty->shape[1], 3);
    }
    CHECK(ap_st_find(&file, "missing") == NULL);
    CHECK(strcmp(file.tensors[0].name, "conv.weight") == 0);
    CHECK_INT_EQ(file.meta_count, 2);
    CHECK(strcmp(ap_st_meta_get(&file, "format"), "apiary-model") == 0);
    CHECK(strcmp(ap_st_meta_get(&file, "note"), "a \"quoted\" value, caf\xC3\xA9") == 0);
    CHECK(ap_st_meta_get(&file, "absent") == NULL);
    ap_st_file_free(&file);
}

/* A file laid out by hand: the header lists "b" before "a", but "a" comes
 * first in the data; 1.0f is 00 00 80 3f in little-endian IEEE 754. */
static void test_hand_built_file(void)
{
    static const char header[] =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[1,2],\"data_offsets\":[0,8]}}";
    size_t header_size = strlen(header);
    size_t padded = (header_size + 7) / 8 * 8;
    uint8_t bytes[512];
    size_t at = 0;
    for (int i = 0; i < 8; i++)
        bytes[at++] = (uint8_t)(padded >> (8 * i));
    for (size_t i = 0; i < padded; i++)
        bytes[at++] = i < header_size ? (uint8_t)header[i] : ' ';
    static const uint8_t values[16] = {0x00, 0x00, 0x80, 0x3f,  /* a[0] = 1.0 */
                                       0x00, 0x00, 0x00, 0xc0,  /* a[1] = -2.0 */
                                       0x00, 0x00, 0x00, 0x3f,  /* b[0] = 0.5 */
                                       0x00, 0x00, 0x40, 0x40}; /* b[1] = 3.0 */
    memcpy(bytes + at, values, sizeof(values));
    at += sizeof(values);

    char path[4096];
    temp_path(path, sizeof(path), "hand.safetensors");
    CHECK(write_bytes(path, bytes, at));
    ap_st_file file;
    ap_error err = {0};
    ap_status status = ap_safetensors_read(path, &file, &err);
    CHECK_INT_EQ(status, AP_OK);
    if (status != AP_OK) {
        fprintf(stderr, "%s\n", err.message);
        return;
    }
    const ap_st_loaded *a = ap_st_find(&file, "a");
    const ap_st_loaded *b = ap_st_find(&file, "b");
    CHECK(a != NULL);
    CHECK(b != NULL);
    if (a != NULL && b != NULL) {
        CHECK_INT_EQ(a->ndim, 2);
        CHECK_NEAR(a->data[0], 1.0, 0);
        CHECK_NEAR(a->data[1], -2.0, 0);
        CHECK_NEAR(b->data[0], 0.5, 0);
        CHECK_NEAR(b->data[1], 3.0, 0);
    }
    CHECK(strcmp(ap_st_meta_get(&file, "format"), "pt") == 0);
    ap_st_file_free(&file);
}

static void test_truncated_files(void)
{
    char path[4096], cut_path[4096];
    temp_path(path, sizeof(path), "whole.safetensors");
    temp_path(cut_path, sizeof(cut_path), "cut.safetensors");
    sample_data data;
    fill_sample(&data);
    ap_error err = {0};
    CHECK_INT_EQ(write_sample(path, &data, &err), AP_OK);
    uint8_t *bytes = NULL;
    size_t size = 0;
    if (ap_read_file(path, 1 << 20, &bytes, &size, &err) != AP_OK)
        return;
    size_t header_size = bytes[0] | (size_t)bytes[1] << 8;
    const size_t cuts[] = {
        0, 4, 7, 8, 8 + header_size / 2, 8 + header_size, 8 + header_size + 5, size - 1};
    for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
        CHECK(write_bytes(cut_path, bytes, cuts[i]));
        ap_st_file file;
        ap_status status = ap_safetensors_read(cut_path, &file, &err);
        if (status == AP_OK)
            fprintf(stderr, "a file cut to %zu bytes was accepted\n", cuts[i]);
        CHECK_INT_EQ(status, AP_ERR_FORMAT);
        CHECK_STR_CONTAINS(err.message, cut_path);
        CHECK_INT_EQ(file.count, 0);
    }
    free(bytes);
}

static void test_header_size_beyond_file(void)
{
    char path[4096];
    temp_path(path, sizeof(path), "size.safetensors");
    const uint8_t sizes[][8] = {
        {0xe8, 0x03, 0, 0, 0, 0, 0, 0}, /* 1000 bytes */
        {0, 0, 0, 0, 0, 0, 0, 0x80},    /* 2^63 bytes */
        {0, 0, 0, 0, 0, 0, 0, 0},       /* no header */
    };
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint8_t bytes[64];
        memcpy(bytes, sizes[i], 8);
        memcpy(bytes + 8, "{}                                                     ", 56);
        CHECK(write_bytes(path, bytes, sizeof(bytes)));
        ap_st_file file;
        ap_error err = {0};
        CHECK_INT_EQ(ap_safetensors_read(path, &file, &err), AP_ERR_FORMAT);
        CHECK_STR_CONTAINS(err.message, "header size");
    }
}

typedef struct {
    const char *name;
    const char *header;
    size_t data_size;
    const char *expected[2];
} bad_header_case;

#define F32(shape, begin, end)                                                                     \
    "{\"dtype\":\"F32\",\"shape\":" shape ",\"data_offsets\":[" #begin "," #end "]}"

static const bad_header_case bad_headers[] = {
    {"bad JSON", "{\"a\":" F32("[2]", 0, 8), 8, {"invalid JSON", NULL}},
    {"not an object", "[1, 2]  ", 0, {"does not start with '{'", NULL}},
    {"array in braces", "{\"a\":[1]}", 0, {"tensor \"a\" is not a JSON object", NULL}},
    {"dtype F16",
     "{\"h\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]}}",
     8,
     {"tensor \"h\"", "dtype F16"}},
    {"missing dtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, {"\"a\"", "dtype"}},
    {"shape mismatch", "{\"w\":" F32("[3]", 0, 8) "}", 8, {"tensor \"w\"", "3 elements"}},
    {"negative dimension", "{\"w\":" F32("[-2]", 0, 8) "}", 8, {"tensor \"w\"", "shape entry 0"}},
    {"fractional dimension", "{\"w\":" F32("[2.0]", 0, 8) "}", 8, {"tensor \"w\"", "shape"}},
    {"five dimensions", "{\"w\":" F32("[1,1,1,1,2]", 0, 8) "}", 8, {"tensor \"w\"", "5 dim"}},
    {"overflowing shape",
     "{\"w\":" F32("[4294967296,4294967296,4]", 0, 8) "}",
     8,
     {"tensor \"w\"", "too large"}},
    {"overlap",
     "{\"a\":" F32("[2]", 0, 8) ",\"b\":" F32("[2]", 4, 12) "}",
     12,
     {"\"b\" overlaps tensor \"a\"", NULL}},
    {"offsets beyond data", "{\"a\":" F32("[4]", 0, 16) "}", 8, {"tensor \"a\"", "outside"}},
    {"reversed offsets", "{\"a\":" F32("[0]", 8, 0) "}", 8, {"tensor \"a\"", "end before"}},
    {"one offset",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0]}}",
     0,
     {"\"a\"", "data_offsets"}},
    {"hole",
     "{\"a\":" F32("[1]", 0, 4) ",\"b\":" F32("[1]", 8, 12) "}",
     12,
     {"unused data bytes before tensor \"b\"", NULL}},
    {"trailing data", "{\"a\":" F32("[1]", 0, 4) "}", 8, {"unused data bytes after", "\"a\""}},
    {"metadata number", "{\"__metadata__\":{\"epoch\":3}}", 0, {"\"epoch\"", "not a string"}},
    {"metadata array", "{\"__metadata__\":[]}", 0, {"__metadata__", "not a JSON object"}},
    {"duplicate tensor",
     "{\"a\":" F32("[1]", 0, 4) ",\"a\":" F32("[1]", 4, 8) "}",
     8,
     {"invalid JSON", "duplicate"}},
    {"unknown field",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}",
     4,
     {"tensor \"a\"", "\"x\""}},
};

static void test_bad_headers(void)
{
    char path[4096];
    temp_path(path, sizeof(path), "bad.safetensors");
    for (size_t i = 0; i < sizeof(bad_headers) / sizeof(bad_headers[0]); i++) {
        const bad_header_case *c = &bad_headers[i];
        CHECK(write_file_with_header(path, c->header, c->data_size));
        ap_st_file file;
        ap_error err = {0};
        ap_status status = ap_safetensors_read(path, &file, &err);
        if (status == AP_OK) {
            fprintf(stderr, "case \"%s\" was accepted\n", c->name);
            ap_st_file_free(&file);
        }
        CHECK_INT_EQ(status, AP_ERR_FORMAT);
        CHECK_STR_CONTAINS(err.message, path);
        for (int k = 0; k < 2 && c->expected[k] != NULL; k++)
            CHECK_STR_CONTAINS(err.message, c->expected[k]);
    }
}

static void test_write_rejects_bad_input(void)
{
    char path[4096];
    temp_path(path, sizeof(path), "never.safetensors");
    float value = 1;
    const ap_st_tensor twice[] = {{"a", 1, {1}, &value}, {"a", 1, {1}, &value}};
    const ap_st_tensor no_data[] = {{"a", 1, {3}, NULL}};
    const ap_st_tensor too_many_dims[] = {{"a", 5, {1, 1, 1, 1}, &value}};
    const ap_st_tensor negative[] = {{"a", 1, {-1}, &value}};
    const ap_st_tensor reserved[] = {{"__metadata__", 1, {1}, &value}};
    const ap_st_tensor *cases[] = {twice, no_data, too_many_dims, negative, reserved};
    const size_t counts[] = {2, 1, 1, 1, 1};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ap_error err = {0};
        CHECK_INT_EQ(ap_safetensors_write(path, cases[i], counts[i], NULL, 0, &err),
                     AP_ERR_INVALID);
        CHECK_STR_CONTAINS(err.message, path);
    }
    const ap_st_meta meta[] = {{"k", "1"}, {"k", "2"}};
    ap_error err = {0};
    CHECK_INT_EQ(ap_safetensors_write(path, NULL, 0, meta, 2, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "\"k\"");
    CHECK(!ap_path_exists(path));
}

static int count_temp_files(void)
{
    DIR *dir = opendir(temp_dir);
    int count = 0;
    for (struct dirent *entry; dir != NULL && (entry = readdir(dir)) != NULL;)
        count += strstr(entry->d_name, ".tmp.") != NULL;
    if (dir != NULL)
        closedir(dir);
    return count;
}

/* Write a larger file while the process may not create files over 4 KiB:
 * the write fails and the previous file stays as it was. */
static void test_failed_write_keeps_file(void)
{
    char path[4096];
    temp_path(path, sizeof(path), "keep.safetensors");
    sample_data data;
    fill_sample(&data);
    ap_error err = {0};
    CHECK_INT_EQ(write_sample(path, &data, &err), AP_OK);
    char before[65], after[65];
    CHECK_INT_EQ(ap_sha256_file(path, before, &err), AP_OK);

    static float big[4096];
    const ap_st_tensor tensors[] = {{"big", 1, {4096}, big}};
    struct rlimit saved, limited;
    CHECK_INT_EQ(getrlimit(RLIMIT_FSIZE, &saved), 0);
    limited = saved;
    limited.rlim_cur = 4096;
    signal(SIGXFSZ, SIG_IGN);
    CHECK_INT_EQ(setrlimit(RLIMIT_FSIZE, &limited), 0);
    ap_status status = ap_safetensors_write(path, tensors, 1, NULL, 0, &err);
    CHECK_INT_EQ(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, SIG_DFL);
    CHECK_INT_EQ(status, AP_ERR_IO);
    CHECK_STR_CONTAINS(err.message, path);

    CHECK_INT_EQ(ap_sha256_file(path, after, &err), AP_OK);
    CHECK(strcmp(before, after) == 0);
    CHECK_INT_EQ(count_temp_files(), 0);
    ap_st_file file;
    CHECK_INT_EQ(ap_safetensors_read(path, &file, &err), AP_OK);
    ap_st_file_free(&file);
}

/* A folder without write permission: the temporary file cannot be created.
 * The superuser ignores the permission, so this part needs another user. */
static void test_read_only_folder_keeps_file(void)
{
    if (geteuid() == 0) {
        fprintf(stderr, "running as root; skipping the read-only folder case\n");
        return;
    }
    char folder[3072], path[4096];
    temp_path(folder, sizeof(folder), "locked");
    CHECK_INT_EQ(mkdir(folder, 0755), 0);
    snprintf(path, sizeof(path), "%s/model.safetensors", folder);
    sample_data data;
    fill_sample(&data);
    ap_error err = {0};
    CHECK_INT_EQ(write_sample(path, &data, &err), AP_OK);
    char before[65], after[65];
    CHECK_INT_EQ(ap_sha256_file(path, before, &err), AP_OK);

    CHECK_INT_EQ(chmod(folder, 0555), 0);
    data.weight[0] = 99;
    CHECK_INT_EQ(write_sample(path, &data, &err), AP_ERR_IO);
    CHECK_INT_EQ(chmod(folder, 0755), 0);
    CHECK_INT_EQ(ap_sha256_file(path, after, &err), AP_OK);
    CHECK(strcmp(before, after) == 0);
}

int main(void)
{
    const char *dir = check_temp_dir("checkpoint");
    if (dir == NULL) {
        fprintf(stderr, "cannot create a temporary folder\n");
        return 1;
    }
    snprintf(temp_dir, sizeof(temp_dir), "%s", dir);
    test_round_trip();
    test_hand_built_file();
    test_truncated_files();
    test_header_size_beyond_file();
    test_bad_headers();
    test_write_rejects_bad_input();
    test_failed_write_keeps_file();
    test_read_only_folder_keeps_file();
    return check_finish();
}
