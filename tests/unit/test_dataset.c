#include <dirent.h>
#include <fcntl.h>
#include <omp.h>
#include <png.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/data/dataset.h"
#include "tests/unit/check.h"

static char dataset_root[4096];
static char work_folder[4096];

typedef struct {
    uint8_t *data;
    size_t size;
} byte_buffer;

static void fail_setup(const char *what)
{
    fprintf(stderr, "test setup failed: %s\n", what);
    exit(1);
}

static void append_bytes(byte_buffer *buffer, const void *data, size_t size)
{
    buffer->data = realloc(buffer->data, buffer->size + size);
    if (buffer->data == NULL)
        fail_setup("out of memory");
    memcpy(buffer->data + buffer->size, data, size);
    buffer->size += size;
}

static void write_png_bytes(png_structp png, png_bytep data, size_t length)
{
    append_bytes(png_get_io_ptr(png), data, length);
}

static void flush_nothing(png_structp png)
{
    (void)png;
}

static byte_buffer encode_png_rgb(const uint8_t *pixels, int width, int height)
{
    byte_buffer out = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    if (png == NULL || info == NULL || setjmp(png_jmpbuf(png)))
        fail_setup("PNG encoder");
    png_set_write_fn(png, &out, write_png_bytes, flush_nothing);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < height; y++)
        png_write_row(png, pixels + (size_t)y * width * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return out;
}

static byte_buffer encode_jpeg_rgb(const uint8_t *pixels, int width, int height)
{
    tjhandle encoder = tjInitCompress();
    unsigned char *jpeg = NULL;
    unsigned long jpeg_size = 0;
    if (encoder == NULL || tjCompress2(encoder, pixels, width, 0, height, TJPF_RGB, &jpeg,
                                       &jpeg_size, TJSAMP_444, 92, 0) != 0)
        fail_setup("JPEG encoder");
    byte_buffer out = {0};
    append_bytes(&out, jpeg, jpeg_size);
    tjFree(jpeg);
    tjDestroy(encoder);
    return out;
}

static uint8_t *constant_pixels(int width, int height, uint8_t red, uint8_t green, uint8_t blue)
{
    uint8_t *pixels = malloc((size_t)width * height * 3);
    for (int i = 0; i < width * height; i++) {
        pixels[3 * i] = red;
        pixels[3 * i + 1] = green;
        pixels[3 * i + 2] = blue;
    }
    return pixels;
}

static uint8_t *noise_pixels(int width, int height, uint32_t seed)
{
    uint8_t *pixels = malloc((size_t)width * height * 3);
    for (size_t i = 0; i < (size_t)width * height * 3; i++) {
        seed = seed * 1664525u + 1013904223u;
        pixels[i] = (uint8_t)(seed >> 24);
    }
    return pixels;
}

static void path_in(char *out, size_t size, const char *folder, const char *name)
{
    if (snprintf(out, size, "%s/%s", folder, name) >= (int)size)
        fail_setup("path too long");
}

/* Writes data to root/name, creating folders on the way. */
static void write_dataset_file(const char *root, const char *name, const void *data, size_t size)
{
    char path[4200], folder[4200];
    path_in(path, sizeof(path), root, name);
    snprintf(folder, sizeof(folder), "%s", path);
    *strrchr(folder, '/') = '\0';
    ap_error err = {0};
    if (ap_mkdirs(folder, &err) != AP_OK || ap_write_atomic(path, data, size, &err) != AP_OK)
        fail_setup(err.message);
}

static void write_constant_png(const char *root, const char *name, int width, int height,
                               uint8_t red, uint8_t green, uint8_t blue)
{
    uint8_t *pixels = constant_pixels(width, height, red, green, blue);
    byte_buffer png = encode_png_rgb(pixels, width, height);
    write_dataset_file(root, name, png.data, png.size);
    free(png.data);
    free(pixels);
}

typedef struct {
    const char *file;
    int8_t labels[2];
} row_spec;

static ap_manifest make_manifest(const row_spec *specs, size_t count)
{
    ap_manifest manifest = {0};
    manifest.label_count = 2;
    manifest.label_names = malloc(2 * sizeof(char *));
    manifest.label_names[0] = strdup("wasp");
    manifest.label_names[1] = strdup("bee");
    manifest.rows = calloc(count, sizeof(ap_manifest_row));
    manifest.row_count = count;
    for (size_t i = 0; i < count; i++) {
        manifest.rows[i].file = strdup(specs[i].file);
        manifest.rows[i].group = strdup(specs[i].file);
        manifest.rows[i].labels = malloc(2);
        memcpy(manifest.rows[i].labels, specs[i].labels, 2);
        manifest.rows[i].line = (int)i + 2;
    }
    return manifest;
}

static void free_manifest(ap_manifest *manifest)
{
    for (size_t i = 0; i < manifest->row_count; i++) {
        free(manifest->rows[i].file);
        free(manifest->rows[i].group);
        free(manifest->rows[i].labels);
    }
    free(manifest->rows);
    for (int i = 0; i < manifest->label_count; i++)
        free(manifest->label_names[i]);
    free(manifest->label_names);
}

#define U AP_LABEL_UNKNOWN

/* Good rows interleaved with bad and missing ones. The good rows are 0, 2, 4, 6 and 8. */
static const row_spec mixed_rows[] = {
    {"red.png", {1, 0}},  {"corrupt.png", {0, 0}},  {"green.png", {0, 1}},
    {"gone.png", {1, 1}}, {"sub/blue.png", {U, 1}}, {"truncated.jpg", {1, 0}},
    {"grey.jpg", {0, 0}}, {"notes.jpg", {0, 1}},    {"fake.jpg", {1, U}},
    {"big.png", {0, 0}},
};
#define MIXED_ROWS (sizeof(mixed_rows) / sizeof(mixed_rows[0]))

/* Builds the dataset. Most files are in images/ (rows name them without the
 * folder) and the rest in sub/ and the root, with two image files no row lists. */
static void build_dataset(const char *root)
{
    write_constant_png(root, "images/red.png", 16, 12, 255, 0, 0);
    write_constant_png(root, "images/green.png", 10, 10, 0, 255, 0);
    write_constant_png(root, "sub/blue.png", 12, 16, 0, 0, 255);
    write_constant_png(root, "images/fake.jpg", 8, 8, 255, 255, 255);
    write_constant_png(root, "images/big.png", 60, 60, 1, 2, 3);

    uint8_t *grey = constant_pixels(24, 16, 128, 128, 128);
    byte_buffer jpeg = encode_jpeg_rgb(grey, 24, 16);
    write_dataset_file(root, "grey.jpg", jpeg.data, jpeg.size);
    free(jpeg.data);
    free(grey);
    uint8_t *noise = noise_pixels(40, 40, 7);
    jpeg = encode_jpeg_rgb(noise, 40, 40);
    write_dataset_file(root, "images/truncated.jpg", jpeg.data, jpeg.size * 3 / 4);
    free(jpeg.data);
    free(noise);

    uint8_t corrupt[200] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    for (size_t i = 8; i < sizeof(corrupt); i++)
        corrupt[i] = (uint8_t)(i * 37);
    write_dataset_file(root, "images/corrupt.png", corrupt, sizeof(corrupt));
    const char notes[] = "these are not pixels\n";
    write_dataset_file(root, "images/notes.jpg", notes, sizeof(notes) - 1);

    write_constant_png(root, "images/extra.PNG", 4, 4, 9, 9, 9);
    write_constant_png(root, "deep/er/stray.jpeg", 4, 4, 9, 9, 9);
    write_dataset_file(root, "README.txt", notes, sizeof(notes) - 1);
    write_dataset_file(root, "labels.csv", "file\n", 5);
}

static void set_root(ap_data_config *cfg, const char *root)
{
    size_t length = strlen(root);
    if (length >= sizeof(cfg->root))
        fail_setup("dataset root too long");
    memcpy(cfg->root, root, length + 1);
}

/* Only big.png (60x60 = 3600 pixels) exceeds the pixel limit of 2000. */
static ap_data_config dataset_config(double max_bad_fraction)
{
    ap_data_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    set_root(&cfg, dataset_root);
    snprintf(cfg.manifest, sizeof(cfg.manifest), "labels.csv");
    cfg.label_count = 2;
    cfg.width = 8;
    cfg.height = 6;
    cfg.resize = AP_RESIZE_STRETCH;
    cfg.max_bad_fraction = max_bad_fraction;
    cfg.max_image_bytes = 1 << 20;
    cfg.max_image_pixels = 2000;
    return cfg;
}

static void check_constant_image(const ap_image_set *set, size_t index, int red, int green,
                                 int blue, int tolerance)
{
    size_t pixel_count = (size_t)set->width * set->height;
    const uint8_t *pixels = set->pixels + index * pixel_count * 3;
    int worst = 0;
    const int expected[3] = {red, green, blue};
    for (size_t i = 0; i < pixel_count * 3; i++) {
        int difference = abs((int)pixels[i] - expected[i % 3]);
        if (difference > worst)
            worst = difference;
    }
    if (worst > tolerance)
        fprintf(stderr, "image %zu is not (%d, %d, %d)\n", index, red, green, blue);
    CHECK_NEAR(worst, 0, tolerance);
}

static void test_report_lists_problems(void)
{
    ap_manifest manifest = make_manifest(mixed_rows, MIXED_ROWS);
    ap_data_config cfg = dataset_config(0.5);
    ap_image_set set;
    ap_data_report report;
    ap_error err = {0};
    ap_status status = ap_image_set_load(&cfg, &manifest, NULL, &set, &report, &err);
    if (status != AP_OK)
        fprintf(stderr, "load failed: %s\n", err.message);
    CHECK_INT_EQ(status, AP_OK);
    CHECK_INT_EQ(set.count, 5);
    CHECK(!set.from_cache);
    CHECK_INT_EQ(strlen(set.content_hash), 64);
    const size_t expected_rows[] = {0, 2, 4, 6, 8};
    for (size_t i = 0; i < 5 && i < set.count; i++) {
        CHECK_INT_EQ(set.row_index[i], expected_rows[i]);
        CHECK_INT_EQ(set.labels[2 * i], mixed_rows[expected_rows[i]].labels[0]);
        CHECK_INT_EQ(set.labels[2 * i + 1], mixed_rows[expected_rows[i]].labels[1]);
    }
    if (set.count == 5) {
        check_constant_image(&set, 0, 255, 0, 0, 0);
        check_constant_image(&set, 1, 0, 255, 0, 0);
        check_constant_image(&set, 2, 0, 0, 255, 0);
        check_constant_image(&set, 3, 128, 128, 128, 2); /* JPEG rounding of a flat block */
        check_constant_image(&set, 4, 255, 255, 255, 0);
    }

    CHECK_INT_EQ(report.bad_count, 4);
    const char *bad_files[] = {"corrupt.png", "truncated.jpg", "notes.jpg", "big.png"};
    const size_t bad_rows[] = {1, 5, 7, 9};
    const char *bad_reasons[] = {"PNG", "truncated", "text", "over the limit"};
    for (size_t i = 0; i < 4 && i < report.bad_count; i++) {
        CHECK_STR_CONTAINS(report.bad_images[i].file, bad_files[i]);
        CHECK_INT_EQ(report.bad_images[i].row, bad_rows[i]);
        CHECK_STR_CONTAINS(report.bad_images[i].reason, bad_reasons[i]);
    }
    CHECK_INT_EQ(report.missing_count, 1);
    if (report.missing_count == 1)
        CHECK_STR_CONTAINS(report.missing_files[0], "gone.png");
    CHECK_INT_EQ(report.unlisted_count, 2);
    if (report.unlisted_count == 2) {
        CHECK_STR_CONTAINS(report.unlisted_files[0], "deep/er/stray.jpeg");
        CHECK_STR_CONTAINS(report.unlisted_files[1], "images/extra.PNG");
    }
    ap_image_set_free(&set);
    ap_data_report_free(&report);
    free_manifest(&manifest);
}

static void test_bad_fraction_enforced(void)
{
    ap_manifest manifest = make_manifest(mixed_rows, MIXED_ROWS);
    ap_data_config cfg = dataset_config(0.4);
    ap_image_set set;
    ap_data_report report;
    ap_error err = {0};
    CHECK_INT_EQ(ap_image_set_load(&cfg, &manifest, NULL, &set, &report, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "5 of 10 manifest rows");
    CHECK_STR_CONTAINS(err.message, "4 bad images, 1 missing");
    CHECK_STR_CONTAINS(err.message, "0.5000 above data.max_bad_fraction = 0.4");
    CHECK_STR_CONTAINS(err.message, "corrupt.png (");
    CHECK_STR_CONTAINS(err.message, "Fix or remove these rows, or raise data.max_bad_fraction");
    CHECK(set.pixels == NULL);
    CHECK_INT_EQ(report.bad_count, 4);
    CHECK_INT_EQ(report.missing_count, 1);
    ap_image_set_free(&set);
    ap_data_report_free(&report);
    free_manifest(&manifest);
}

static void test_no_good_image_fails(void)
{
    const row_spec rows[] = {{"corrupt.png", {0, 0}}, {"gone.png", {1, 1}}};
    ap_manifest manifest = make_manifest(rows, 2);
    ap_data_config cfg = dataset_config(1.0);
    ap_image_set set;
    ap_data_report report;
    ap_error err = {0};
    CHECK_INT_EQ(ap_image_set_load(&cfg, &manifest, NULL, &set, &report, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "none of the 2 manifest rows");
    CHECK_STR_CONTAINS(err.message, "gone.png (file not found)");
    ap_image_set_free(&set);
    ap_data_report_free(&report);
    free_manifest(&manifest);
}

static void test_missing_root_fails(void)
{
    ap_manifest manifest = make_manifest(mixed_rows, MIXED_ROWS);
    ap_data_config cfg = dataset_config(0.5);
    char missing[4200];
    path_in(missing, sizeof(missing), work_folder, "no-such-folder");
    set_root(&cfg, missing);
    ap_image_set set;
    ap_data_report report;
    ap_error err = {0};
    CHECK_INT_EQ(ap_image_set_load(&cfg, &manifest, NULL, &set, &report, &err), AP_ERR_NOT_FOUND);
    CHECK_STR_CONTAINS(err.message, "data.root");
    ap_data_report_free(&report);
    free_manifest(&manifest);
}

/* Loads with the cache, printing the error message on failure. */
static ap_status load_cached(const ap_data_config *cfg, const ap_manifest *manifest,
                             const char *cache, ap_image_set *set, ap_data_report *report)
{
    ap_error err = {0};
    ap_status status = ap_image_set_load(cfg, manifest, cache, set, report, &err);
    if (status != AP_OK)
        fprintf(stderr, "cached load failed: %s\n", err.message);
    return status;
}

static void check_same_set(const ap_image_set *actual, const ap_image_set *expected)
{
    CHECK_INT_EQ(actual->count, expected->count);
    CHECK(strcmp(actual->content_hash, expected->content_hash) == 0);
    if (actual->count != expected->count || actual->pixels == NULL)
        return;
    size_t image_bytes = (size_t)expected->width * expected->height * 3;
    CHECK(memcmp(actual->pixels, expected->pixels, expected->count * image_bytes) == 0);
    CHECK(memcmp(actual->labels, expected->labels, expected->count * 2) == 0);
    CHECK(memcmp(actual->row_index, expected->row_index, expected->count * sizeof(size_t)) == 0);
}

static void check_same_report(const ap_data_report *actual, const ap_data_report *expected)
{
    CHECK_INT_EQ(actual->bad_count, expected->bad_count);
    for (size_t i = 0; i < actual->bad_count && i < expected->bad_count; i++) {
        CHECK(strcmp(actual->bad_images[i].file, expected->bad_images[i].file) == 0);
        CHECK(strcmp(actual->bad_images[i].reason, expected->bad_images[i].reason) == 0);
        CHECK_INT_EQ(actual->bad_images[i].row, expected->bad_images[i].row);
    }
    CHECK_INT_EQ(actual->missing_count, expected->missing_count);
    CHECK_INT_EQ(actual->unlisted_count, expected->unlisted_count);
}

static struct timespec modification_time(const char *path)
{
    struct stat info;
    if (stat(path, &info) != 0)
        fail_setup("stat");
    return info.st_mtim;
}

static void set_modification_time(const char *path, struct timespec when)
{
    struct timespec times[2] = {when, when};
    if (utimensat(AT_FDCWD, path, times, 0) != 0)
        fail_setup("utimensat");
}

/* Overwrites bytes in the middle of a file without changing its size or
 * modification time, so only decoding it would notice. */
static void damage_keeping_size_and_time(const char *path)
{
    struct timespec mtime = modification_time(path);
    FILE *file = fopen(path, "r+b");
    if (file == NULL || fseek(file, 40, SEEK_SET) != 0)
        fail_setup("open for damage");
    const uint8_t junk[16] = {0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    fwrite(junk, 1, sizeof(junk), file);
    fclose(file);
    set_modification_time(path, mtime);
}

static void flip_byte(const char *path, long offset)
{
    FILE *file = fopen(path, "r+b");
    if (file == NULL || fseek(file, offset, offset < 0 ? SEEK_END : SEEK_SET) != 0)
        fail_setup("open cache");
    int value = fgetc(file);
    fseek(file, -1, SEEK_CUR);
    fputc(value ^ 0x5A, file);
    fclose(file);
}

static void truncate_file(const char *path, off_t size)
{
    if (truncate(path, size) != 0)
        fail_setup("truncate");
}

static int count_folder_entries(const char *folder)
{
    DIR *dir = opendir(folder);
    int count = 0;
    struct dirent *entry;
    while (dir != NULL && (entry = readdir(dir)) != NULL) {
        if (strcmp(entry->d_name, ".") != 0 && strcmp(entry->d_name, "..") != 0)
            count++;
    }
    if (dir != NULL)
        closedir(dir);
    return count;
}

/* Loads again and checks whether the cache was used and the result matches. */
static void check_reload(const ap_data_config *cfg, const ap_manifest *manifest, const char *cache,
                         bool expect_hit, const ap_image_set *expected, const char *step)
{
    ap_image_set set;
    ap_data_report report;
    CHECK_INT_EQ(load_cached(cfg, manifest, cache, &set, &report), AP_OK);
    if (set.from_cache != expect_hit)
        fprintf(stderr, "%s: from_cache is %d, expected %d\n", step, set.from_cache, expect_hit);
    CHECK_INT_EQ(set.from_cache, expect_hit);
    if (expected != NULL)
        check_same_set(&set, expected);
    ap_image_set_free(&set);
    ap_data_report_free(&report);
}

static void test_cache(void)
{
    ap_manifest manifest = make_manifest(mixed_rows, MIXED_ROWS);
    ap_data_config cfg = dataset_config(0.6);
    char cache_folder[4200], cache[4300], red[4200], green[4200];
    path_in(cache_folder, sizeof(cache_folder), work_folder, "cache");
    path_in(cache, sizeof(cache), cache_folder, "images.bin");
    path_in(red, sizeof(red), dataset_root, "images/red.png");
    path_in(green, sizeof(green), dataset_root, "images/green.png");

    ap_image_set first, second;
    ap_data_report first_report, second_report;
    CHECK_INT_EQ(load_cached(&cfg, &manifest, cache, &first, &first_report), AP_OK);
    CHECK(!first.from_cache);
    CHECK(ap_path_exists(cache));
    CHECK_INT_EQ(count_folder_entries(cache_folder), 1); /* no temporary file left */
    CHECK_INT_EQ(load_cached(&cfg, &manifest, cache, &second, &second_report), AP_OK);
    CHECK(second.from_cache);
    check_same_set(&second, &first);
    check_same_report(&second_report, &first_report);
    CHECK_INT_EQ(second_report.unlisted_count, 2);
    ap_image_set_free(&second);
    ap_data_report_free(&second_report);

    /* Damage that keeps size and time is invisible to the key: a hit proves
     * that nothing was decoded. A new time then invalidates the cache. */
    damage_keeping_size_and_time(red);
    check_reload(&cfg, &manifest, cache, true, &first, "damaged, same size and time");
    struct timespec later = modification_time(red);
    later.tv_sec += 10;
    set_modification_time(red, later);
    ap_image_set set;
    ap_data_report report;
    CHECK_INT_EQ(load_cached(&cfg, &manifest, cache, &set, &report), AP_OK);
    CHECK(!set.from_cache);
    CHECK_INT_EQ(set.count, 4);
    CHECK_INT_EQ(report.bad_count, 5);
    ap_image_set_free(&set);
    ap_data_report_free(&report);
    write_constant_png(dataset_root, "images/red.png", 16, 12, 255, 0, 0);
    check_reload(&cfg, &manifest, cache, false, &first, "red restored");

    /* A new size with the old time invalidates it too. Green stays uniform,
     * so the content hash equals the first one. */
    struct timespec green_time = modification_time(green);
    write_constant_png(dataset_root, "images/green.png", 20, 20, 0, 255, 0);
    set_modification_time(green, green_time);
    check_reload(&cfg, &manifest, cache, false, &first, "green resized");
    check_reload(&cfg, &manifest, cache, true, &first, "after green rebuild");

    /* A corrupt or truncated cache file is rebuilt, not an error. */
    flip_byte(cache, -1);
    check_reload(&cfg, &manifest, cache, false, &first, "last pixel flipped");
    flip_byte(cache, 248 + 12); /* inside the first stored reason */
    check_reload(&cfg, &manifest, cache, false, &first, "report flipped");
    struct stat info;
    CHECK_INT_EQ(stat(cache, &info), 0);
    truncate_file(cache, info.st_size / 2);
    check_reload(&cfg, &manifest, cache, false, &first, "truncated");
    truncate_file(cache, 0);
    check_reload(&cfg, &manifest, cache, false, &first, "empty");
    check_reload(&cfg, &manifest, cache, true, &first, "after rebuild");

    /* The key covers the resize mode and the manifest labels. */
    cfg.resize = AP_RESIZE_LETTERBOX;
    check_reload(&cfg, &manifest, cache, false, NULL, "letterbox");
    manifest.rows[0].labels[0] = 0;
    check_reload(&cfg, &manifest, cache, false, NULL, "label changed");
    check_reload(&cfg, &manifest, cache, true, NULL, "label changed, again");

    ap_image_set_free(&first);
    ap_data_report_free(&first_report);
    free_manifest(&manifest);
}

/* Images of many sizes, so threads finish rows in a different order than
 * they start them. */
static void test_thread_count_independent(void)
{
    char root[4200];
    path_in(root, sizeof(root), work_folder, "many");
    row_spec rows[30];
    char names[30][32];
    for (int i = 0; i < 30; i++) {
        int width = 10 + (i * 37) % 90, height = 8 + (i * 53) % 70;
        uint8_t *pixels = noise_pixels(width, height, (uint32_t)i);
        byte_buffer encoded = i % 3 == 0 ? encode_jpeg_rgb(pixels, width, height)
                                         : encode_png_rgb(pixels, width, height);
        snprintf(names[i], sizeof(names[i]), "image%02d.%s", i, i % 3 == 0 ? "jpg" : "png");
        write_dataset_file(root, names[i], encoded.data, encoded.size);
        rows[i].file = names[i];
        rows[i].labels[0] = (int8_t)(i % 2);
        rows[i].labels[1] = (int8_t)(i % 3 == 0);
        free(encoded.data);
        free(pixels);
    }
    ap_manifest manifest = make_manifest(rows, 30);
    ap_data_config cfg = dataset_config(0.0);
    set_root(&cfg, root);
    cfg.width = 32;
    cfg.height = 24;
    cfg.resize = AP_RESIZE_LETTERBOX;
    cfg.max_image_pixels = 1000000;

    int threads = omp_get_max_threads();
    ap_image_set single, multiple;
    ap_data_report single_report, multiple_report;
    ap_error err = {0};
    omp_set_num_threads(1);
    CHECK_INT_EQ(ap_image_set_load(&cfg, &manifest, NULL, &single, &single_report, &err), AP_OK);
    omp_set_num_threads(2);
    CHECK_INT_EQ(ap_image_set_load(&cfg, &manifest, NULL, &multiple, &multiple_report, &err),
                 AP_OK);
    omp_set_num_threads(threads);
    CHECK_INT_EQ(single.count, 30);
    check_same_set(&multiple, &single);
    ap_image_set_free(&single);
    ap_image_set_free(&multiple);
    ap_data_report_free(&single_report);
    ap_data_report_free(&multiple_report);
    free_manifest(&manifest);
}

/* The real sets keep labels.csv beside images/, and rows name bare files. */
static void test_real_images_folder(const char *data_dir)
{
    char root[4200], folder[4300];
    path_in(root, sizeof(root), data_dir, "raspbee-samples");
    path_in(folder, sizeof(folder), root, "images");
    DIR *dir = opendir(folder);
    CHECK(dir != NULL);
    if (dir == NULL)
        return;
    row_spec rows[64];
    char names[64][256];
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL && count < 64) {
        if (entry->d_name[0] == '.')
            continue;
        snprintf(names[count], sizeof(names[count]), "%s", entry->d_name);
        rows[count].file = names[count];
        rows[count].labels[0] = U;
        rows[count].labels[1] = U;
        count++;
    }
    closedir(dir);
    ap_manifest manifest = make_manifest(rows, count);
    ap_data_config cfg = dataset_config(0.0);
    set_root(&cfg, root);
    cfg.width = 75;
    cfg.height = 150;
    cfg.max_image_pixels = 10000000;
    ap_image_set set;
    ap_data_report report;
    ap_error err = {0};
    ap_status status = ap_image_set_load(&cfg, &manifest, NULL, &set, &report, &err);
    if (status != AP_OK)
        fprintf(stderr, "%s\n", err.message);
    CHECK_INT_EQ(status, AP_OK);
    CHECK_INT_EQ(count, 24);
    CHECK_INT_EQ(set.count, count);
    CHECK_INT_EQ(report.bad_count, 0);
    CHECK_INT_EQ(report.missing_count, 0);
    CHECK_INT_EQ(report.unlisted_count, 0);
    ap_image_set_free(&set);
    ap_data_report_free(&report);
    free_manifest(&manifest);
}

int main(void)
{
    const char *folder = check_temp_dir("dataset");
    if (folder == NULL) {
        fprintf(stderr, "cannot create a temporary folder\n");
        return 1;
    }
    snprintf(work_folder, sizeof(work_folder), "%s", folder);
    path_in(dataset_root, sizeof(dataset_root), work_folder, "bees");
    build_dataset(dataset_root);

    test_report_lists_problems();
    test_bad_fraction_enforced();
    test_no_good_image_fails();
    test_missing_root_fails();
    test_cache();
    test_thread_count_independent();

    const char *data_dir = check_data_dir();
    if (data_dir != NULL)
        test_real_images_folder(data_dir);
    else
        fprintf(stderr, "APIARY_DATA_DIR is not set: skipping the real image folder check\n");
    return check_finish();
}
