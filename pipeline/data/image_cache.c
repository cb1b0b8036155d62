#include "pipeline/data/image_cache.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

/* Cache file layout. Integers are little-endian, hashes are 64 hex digits.
 *
 *   header (HEADER_SIZE bytes): magic "APIMGSET", u32 version, u32 width,
 *     u32 height, u32 label_count, u64 manifest row count, u64 image count,
 *     u64 bad image count, u64 report size in bytes, key, content hash,
 *     report hash
 *   report: per bad image a u64 manifest row, a u16 reason length, the reason
 *   per image a u64 manifest row, then per image label_count int8 labels
 *   pixels: count * height * width * 3 bytes, the set's block as it is
 *
 * A file is used only when its key equals the key of the current inputs.
 * The content hash (over names, labels and pixels) and the report hash
 * detect a file corrupted after it was written. */

#define CACHE_MAGIC   "APIMGSET"
#define CACHE_VERSION 1u
/* Part of the key: bump it whenever decoding or resizing changes pixels.
 * NOTE: the key does not cover the libjpeg-turbo and libpng versions, so
 * after a decoder upgrade that changes pixels, delete the cache by hand. */
#define PIXEL_VERSION 1u
#define HASH_HEX      64
#define HEADER_SIZE   (8 + 4 * 4 + 4 * 8 + 3 * HASH_HEX)
#define REASON_MAX    255

typedef struct {
    uint32_t version;
    uint32_t width;
    uint32_t height;
    uint32_t label_count;
    uint64_t row_count;
    uint64_t count;
    uint64_t bad_count;
    uint64_t report_bytes;
    char key[HASH_HEX + 1];
    char content_hash[HASH_HEX + 1];
    char report_hash[HASH_HEX + 1];
} cache_header;

ap_status ap_image_cache_key(const ap_data_config *cfg, const ap_manifest *manifest,
                             const ap_row_file *files, char key[65], ap_error *err)
{
    ap_sha256_ctx *ctx = ap_sha256_begin();
    if (ctx == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate a SHA-256 context");
    ap_hash_string(ctx, "apiary image cache key");
    ap_hash_u64(ctx, CACHE_VERSION);
    ap_hash_u64(ctx, PIXEL_VERSION);
    ap_hash_u64(ctx, (uint64_t)cfg->width);
    ap_hash_u64(ctx, (uint64_t)cfg->height);
    ap_hash_u64(ctx, (uint64_t)cfg->resize);
    ap_hash_u64(ctx, (uint64_t)cfg->max_image_bytes);
    ap_hash_u64(ctx, (uint64_t)cfg->max_image_pixels);
    ap_hash_u64(ctx, (uint64_t)manifest->label_count);
    for (int i = 0; i < manifest->label_count; i++)
        ap_hash_string(ctx, manifest->label_names[i]);
    ap_hash_u64(ctx, manifest->row_count);
    for (size_t i = 0; i < manifest->row_count; i++) {
        const ap_manifest_row *row = &manifest->rows[i];
        ap_hash_string(ctx, row->file);
        ap_hash_string(ctx, row->group);
        ap_sha256_update(ctx, row->labels, (size_t)manifest->label_count);
        ap_hash_string(ctx, files[i].relative);
        ap_hash_u64(ctx, (uint64_t)files[i].state);
        ap_hash_u64(ctx, (uint64_t)files[i].size);
        ap_hash_u64(ctx, (uint64_t)files[i].mtime_seconds);
        ap_hash_u64(ctx, (uint64_t)files[i].mtime_nanoseconds);
    }
    ap_sha256_end(ctx, key);
    return AP_OK;
}

/* A growing byte buffer for the small parts of the file. */
typedef struct {
    uint8_t *data;
    size_t size;
    size_t capacity;
    bool failed;
} byte_buffer;

static void put_bytes(byte_buffer *buffer, const void *data, size_t size)
{
    if (buffer->failed)
        return;
    if (buffer->size + size > buffer->capacity) {
        size_t capacity = buffer->capacity > 0 ? buffer->capacity : 4096;
        while (capacity < buffer->size + size)
            capacity *= 2;
        uint8_t *grown = realloc(buffer->data, capacity);
        if (grown == NULL) {
            buffer->failed = true;
            return;
        }
        buffer->data = grown;
        buffer->capacity = capacity;
    }
    if (size > 0)
        memcpy(buffer->data + buffer->size, data, size);
    buffer->size += size;
}

static void put_uint(byte_buffer *buffer, uint64_t value, int bytes)
{
    uint8_t encoded[8];
    for (int i = 0; i < bytes; i++)
        encoded[i] = (uint8_t)(value >> (8 * i));
    put_bytes(buffer, encoded, (size_t)bytes);
}

/* A cursor over bytes read back. A read past the end clears ok. */
typedef struct {
    const uint8_t *data;
    size_t size;
    size_t offset;
    bool ok;
} byte_reader;

static const uint8_t *take_bytes(byte_reader *reader, size_t size)
{
    if (!reader->ok || size > reader->size - reader->offset) {
        reader->ok = false;
        return NULL;
    }
    const uint8_t *start = reader->data + reader->offset;
    reader->offset += size;
    return start;
}

static uint64_t take_uint(byte_reader *reader, int bytes)
{
    const uint8_t *encoded = take_bytes(reader, (size_t)bytes);
    uint64_t value = 0;
    for (int i = 0; encoded != NULL && i < bytes; i++)
        value |= (uint64_t)encoded[i] << (8 * i);
    return value;
}

static void take_hex(byte_reader *reader, char hex[HASH_HEX + 1])
{
    const uint8_t *bytes = take_bytes(reader, HASH_HEX);
    memset(hex, 0, HASH_HEX + 1);
    if (bytes != NULL)
        memcpy(hex, bytes, HASH_HEX);
}

static void encode_report(const ap_data_report *report, byte_buffer *out)
{
    for (size_t i = 0; i < report->bad_count; i++) {
        const ap_data_problem *problem = &report->bad_images[i];
        size_t length = strnlen(problem->reason, REASON_MAX);
        put_uint(out, problem->row, 8);
        put_uint(out, length, 2);
        put_bytes(out, problem->reason, length);
    }
}

static void encode_images(const ap_image_set *set, byte_buffer *out)
{
    for (size_t i = 0; i < set->count; i++)
        put_uint(out, set->row_index[i], 8);
    put_bytes(out, set->labels, set->count * (size_t)set->label_count);
}

static void encode_header(const ap_image_set *set, size_t row_count, size_t bad_count,
                          size_t report_bytes, const char *key, const char *report_hash,
                          byte_buffer *out)
{
    put_bytes(out, CACHE_MAGIC, 8);
    put_uint(out, CACHE_VERSION, 4);
    put_uint(out, (uint64_t)set->width, 4);
    put_uint(out, (uint64_t)set->height, 4);
    put_uint(out, (uint64_t)set->label_count, 4);
    put_uint(out, row_count, 8);
    put_uint(out, set->count, 8);
    put_uint(out, bad_count, 8);
    put_uint(out, report_bytes, 8);
    put_bytes(out, key, HASH_HEX);
    put_bytes(out, set->content_hash, HASH_HEX);
    put_bytes(out, report_hash, HASH_HEX);
}

static ap_status make_parent_folder(const char *path, ap_error *err)
{
    char copy[AP_PATH_MAX * 4];
    if (snprintf(copy, sizeof(copy), "%s", path) >= (int)sizeof(copy))
        return ap_error_set(err, AP_ERR_INVALID, "cache path too long: %s", path);
    return ap_mkdirs(dirname(copy), err);
}

static ap_status write_parts(const char *path, const byte_buffer *parts, int part_count,
                             const ap_image_set *set, ap_error *err)
{
    ap_status status = make_parent_folder(path, err);
    if (status != AP_OK)
        return status;
    ap_atomic_file file;
    status = ap_atomic_open(&file, path, err);
    if (status != AP_OK)
        return status;
    for (int i = 0; i < part_count && status == AP_OK; i++)
        status = ap_atomic_write(&file, parts[i].data, parts[i].size, err);
    if (status == AP_OK) {
        size_t image_bytes = (size_t)set->width * (size_t)set->height * 3;
        status = ap_atomic_write(&file, set->pixels, set->count * image_bytes, err);
    }
    if (status != AP_OK) {
        ap_atomic_abort(&file);
        return status;
    }
    return ap_atomic_commit(&file, err);
}

ap_status ap_image_cache_write(const char *path, const char key[65], const ap_manifest *manifest,
                               const ap_image_set *set, const ap_data_report *report, ap_error *err)
{
    byte_buffer parts[3] = {{0}};
    byte_buffer *header = &parts[0], *bad = &parts[1], *images = &parts[2];
    encode_report(report, bad);
    encode_images(set, images);
    char report_hash[HASH_HEX + 1];
    ap_sha256_hex(bad->data, bad->size, report_hash);
    encode_header(set, manifest->row_count, report->bad_count, bad->size, key, report_hash, header);

    ap_status status;
    if (header->failed || bad->failed || images->failed)
        status = ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the image cache header");
    else
        status = write_parts(path, parts, 3, set, err);
    for (int i = 0; i < 3; i++)
        free(parts[i].data);
    if (status != AP_OK)
        ap_error_prefix(err, "cannot write the image cache %s", path);
    return status;
}

static bool parse_header(const uint8_t *bytes, cache_header *header)
{
    byte_reader reader = {bytes, HEADER_SIZE, 0, true};
    if (memcmp(take_bytes(&reader, 8), CACHE_MAGIC, 8) != 0)
        return false;
    header->version = (uint32_t)take_uint(&reader, 4);
    header->width = (uint32_t)take_uint(&reader, 4);
    header->height = (uint32_t)take_uint(&reader, 4);
    header->label_count = (uint32_t)take_uint(&reader, 4);
    header->row_count = take_uint(&reader, 8);
    header->count = take_uint(&reader, 8);
    header->bad_count = take_uint(&reader, 8);
    header->report_bytes = take_uint(&reader, 8);
    take_hex(&reader, header->key);
    take_hex(&reader, header->content_hash);
    take_hex(&reader, header->report_hash);
    return reader.ok;
}

/* True when the header belongs to these inputs and its counts are plausible
 * enough to compute the file size from them without overflow. */
static bool header_matches(const cache_header *header, const char *key, const ap_manifest *manifest,
                           int width, int height)
{
    uint64_t rows = manifest->row_count;
    return header->version == CACHE_VERSION && header->width == (uint32_t)width &&
           header->height == (uint32_t)height &&
           header->label_count == (uint32_t)manifest->label_count && header->row_count == rows &&
           memcmp(header->key, key, HASH_HEX) == 0 && header->count > 0 && header->count <= rows &&
           header->bad_count <= rows - header->count &&
           header->report_bytes <= header->bad_count * (8 + 2 + REASON_MAX);
}

static ap_status decode_report(byte_reader *reader, const cache_header *header,
                               const ap_manifest *manifest, ap_data_report *report, ap_error *err)
{
    if (header->bad_count == 0)
        return AP_OK;
    report->bad_images = calloc(header->bad_count, sizeof(ap_data_problem));
    if (report->bad_images == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the cached report");
    for (uint64_t i = 0; i < header->bad_count && reader->ok; i++) {
        ap_data_problem *problem = &report->bad_images[i];
        uint64_t row = take_uint(reader, 8);
        uint64_t length = take_uint(reader, 2);
        const uint8_t *reason = take_bytes(reader, length);
        if (!reader->ok || row >= manifest->row_count || length > REASON_MAX) {
            reader->ok = false;
            break;
        }
        problem->row = row;
        memcpy(problem->reason, reason, length);
        problem->file = strdup(manifest->rows[row].file);
        report->bad_count++;
        if (problem->file == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the cached report");
    }
    return AP_OK;
}

/* Reads row indices and labels, which must be increasing rows and must
 * equal the manifest's labels of those rows. */
static ap_status decode_images(byte_reader *reader, const ap_manifest *manifest, ap_image_set *set,
                               ap_error *err)
{
    size_t label_count = (size_t)manifest->label_count;
    set->row_index = malloc(set->count * sizeof(size_t));
    set->labels = malloc(set->count * label_count + 1);
    if (set->row_index == NULL || set->labels == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate labels for %zu cached images",
                            set->count);
    for (size_t i = 0; i < set->count && reader->ok; i++) {
        uint64_t row = take_uint(reader, 8);
        if (row >= manifest->row_count || (i > 0 && row <= set->row_index[i - 1]))
            reader->ok = false;
        set->row_index[i] = (size_t)row;
    }
    const uint8_t *labels = take_bytes(reader, set->count * label_count);
    for (size_t i = 0; i < set->count && reader->ok; i++) {
        const int8_t *expected = manifest->rows[set->row_index[i]].labels;
        if (memcmp(labels + i * label_count, expected, label_count) != 0)
            reader->ok = false;
    }
    if (reader->ok)
        memcpy(set->labels, labels, set->count * label_count);
    return AP_OK;
}

/* Reads everything after the header. *hit stays false on any mismatch. */
static ap_status read_body(FILE *file, const cache_header *header, const ap_manifest *manifest,
                           ap_image_set *set, ap_data_report *report, bool *hit, ap_error *err)
{
    size_t image_bytes = (size_t)header->width * header->height * 3;
    size_t meta_bytes = header->count * (8 + (size_t)header->label_count);
    size_t small_bytes = header->report_bytes + meta_bytes;
    struct stat info;
    if (fstat(fileno(file), &info) != 0 ||
        (uint64_t)info.st_size != HEADER_SIZE + small_bytes + header->count * image_bytes)
        return AP_OK;

    uint8_t *small = malloc(small_bytes + 1);
    if (small == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %zu bytes for the image cache",
                            small_bytes);
    ap_status status = AP_OK;
    byte_reader reader = {small, small_bytes, 0, fread(small, 1, small_bytes, file) == small_bytes};
    char report_hash[HASH_HEX + 1];
    ap_sha256_hex(small, header->report_bytes, report_hash);
    reader.ok = reader.ok && strcmp(report_hash, header->report_hash) == 0;
    if (reader.ok)
        status = decode_report(&reader, header, manifest, report, err);
    reader.ok = reader.ok && reader.offset == header->report_bytes;
    if (status == AP_OK && reader.ok)
        status = decode_images(&reader, manifest, set, err);
    free(small);
    if (status != AP_OK || !reader.ok)
        return status;

    /* One read straight into the pixel block. The content hash check that
     * follows costs about as much again (SHA-256 over the pixels). */
    set->pixels = malloc(header->count * image_bytes);
    if (set->pixels == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %zu bytes for cached pixels",
                            header->count * image_bytes);
    if (fread(set->pixels, 1, header->count * image_bytes, file) != header->count * image_bytes)
        return AP_OK;
    *hit = true;
    return AP_OK;
}

static ap_status read_cache(FILE *file, const char *key, const ap_manifest *manifest, int width,
                            int height, ap_image_set *set, ap_data_report *report, bool *hit,
                            ap_error *err)
{
    uint8_t bytes[HEADER_SIZE];
    cache_header header;
    if (fread(bytes, 1, HEADER_SIZE, file) != HEADER_SIZE || !parse_header(bytes, &header) ||
        !header_matches(&header, key, manifest, width, height))
        return AP_OK;
    set->width = width;
    set->height = height;
    set->label_count = manifest->label_count;
    set->count = header.count;
    memcpy(set->content_hash, header.content_hash, sizeof(set->content_hash));
    ap_status status = read_body(file, &header, manifest, set, report, hit, err);
    if (status != AP_OK || !*hit)
        return status;

    char actual[HASH_HEX + 1];
    status = ap_image_set_hash(manifest, set, actual, err);
    *hit = status == AP_OK && strcmp(actual, header.content_hash) == 0;
    return status;
}

ap_status ap_image_cache_read(const char *path, const char key[65], const ap_manifest *manifest,
                              int width, int height, ap_image_set *set, ap_data_report *report,
                              bool *hit, ap_error *err)
{
    *hit = false;
    FILE *file = fopen(path, "rb");
    if (file == NULL)
        return AP_OK;
    ap_image_set loaded = {0};
    ap_data_report cached = {0};
    ap_status status = read_cache(file, key, manifest, width, height, &loaded, &cached, hit, err);
    fclose(file);
    if (status != AP_OK || !*hit) {
        *hit = false;
        ap_image_set_free(&loaded);
        ap_data_report_free(&cached);
        return status;
    }
    loaded.from_cache = true;
    *set = loaded;
    report->bad_images = cached.bad_images;
    report->bad_count = cached.bad_count;
    return AP_OK;
}
