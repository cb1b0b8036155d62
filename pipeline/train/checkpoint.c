#include "pipeline/train/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "pipeline/common/fsutil.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors stores little-endian floats; this code copies them without byte swapping"
#endif

/* The header limit of the safetensors Rust crate (MAX_HEADER_SIZE in src/tensor.rs). */
#define MAX_HEADER_BYTES 100000000ull
#define HEADER_ALIGNMENT 8
#define METADATA_KEY     "__metadata__"

/* ---- writing ------------------------------------------------------------ */

/* Element count of a shape, or false when a dimension is negative or the
 * byte count would not fit in size_t. */
static bool count_elements(int ndim, const int64_t *shape, size_t *elements)
{
    size_t count = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0)
            return false;
        uint64_t dim = (uint64_t)shape[d];
        if (dim != 0 && count > SIZE_MAX / sizeof(float) / dim)
            return false;
        count *= (size_t)dim;
    }
    *elements = count;
    return true;
}

static ap_status check_tensor(const char *path, const ap_st_tensor *tensors, size_t index,
                              ap_error *err)
{
    const ap_st_tensor *tensor = &tensors[index];
    if (tensor->name == NULL || tensor->name[0] == '\0' || strcmp(tensor->name, METADATA_KEY) == 0)
        return ap_error_set(err, AP_ERR_INVALID, "%s: tensor %zu has an empty or reserved name",
                            path, index);
    for (size_t j = 0; j < index; j++)
        if (strcmp(tensors[j].name, tensor->name) == 0)
            return ap_error_set(err, AP_ERR_INVALID, "%s: tensor \"%s\" is listed twice", path,
                                tensor->name);
    if (tensor->ndim < 0 || tensor->ndim > AP_ST_MAX_DIMS)
        return ap_error_set(err, AP_ERR_INVALID,
                            "%s: tensor \"%s\" has %d dimensions; 0 to %d are supported", path,
                            tensor->name, tensor->ndim, AP_ST_MAX_DIMS);
    size_t elements = 0;
    if (!count_elements(tensor->ndim, tensor->shape, &elements))
        return ap_error_set(err, AP_ERR_INVALID,
                            "%s: tensor \"%s\" has a negative or too large dimension", path,
                            tensor->name);
    if (elements > 0 && tensor->data == NULL)
        return ap_error_set(err, AP_ERR_INVALID, "%s: tensor \"%s\" has no data", path,
                            tensor->name);
    return AP_OK;
}

static ap_status check_meta(const char *path, const ap_st_meta *meta, size_t meta_count,
                            ap_error *err)
{
    for (size_t i = 0; i < meta_count; i++) {
        if (meta[i].key == NULL || meta[i].value == NULL)
            return ap_error_set(err, AP_ERR_INVALID, "%s: metadata entry %zu has no key or value",
                                path, i);
        for (size_t j = 0; j < i; j++)
            if (strcmp(meta[i].key, meta[j].key) == 0)
                return ap_error_set(err, AP_ERR_INVALID, "%s: metadata key \"%s\" is listed twice",
                                    path, meta[i].key);
    }
    return AP_OK;
}

/* Add key: value to object, taking the reference to value. */
static bool set_new(json_t *object, const char *key, json_t *value)
{
    return value != NULL && json_object_set_new(object, key, value) == 0;
}

static json_t *describe_tensor(const ap_st_tensor *tensor, uint64_t begin, uint64_t end)
{
    json_t *entry = json_object();
    json_t *shape = json_array();
    json_t *offsets = json_pack("[I, I]", (json_int_t)begin, (json_int_t)end);
    bool ok = entry != NULL && shape != NULL && offsets != NULL;
    for (int d = 0; ok && d < tensor->ndim; d++)
        ok = json_array_append_new(shape, json_integer(tensor->shape[d])) == 0;
    ok = ok && set_new(entry, "dtype", json_string("F32"));
    /* json_object_set adds a reference, so shape and offsets are released
     * below whether or not they were added. */
    ok = ok && json_object_set(entry, "shape", shape) == 0;
    ok = ok && json_object_set(entry, "data_offsets", offsets) == 0;
    json_decref(shape);
    json_decref(offsets);
    if (!ok) {
        json_decref(entry);
        return NULL;
    }
    return entry;
}

static json_t *describe_meta(const ap_st_meta *meta, size_t meta_count)
{
    json_t *object = json_object();
    for (size_t i = 0; object != NULL && i < meta_count; i++) {
        if (!set_new(object, meta[i].key, json_string(meta[i].value))) {
            json_decref(object);
            return NULL;
        }
    }
    return object;
}

/* Build the JSON header with tensors laid out back to back in the given order. */
static ap_status build_header(const char *path, const ap_st_tensor *tensors, size_t count,
                              const ap_st_meta *meta, size_t meta_count, char **text, ap_error *err)
{
    json_t *root = json_object();
    bool ok = root != NULL;
    if (ok && meta_count > 0)
        ok = set_new(root, METADATA_KEY, describe_meta(meta, meta_count));
    uint64_t offset = 0;
    for (size_t i = 0; ok && i < count; i++) {
        size_t elements = 0;
        count_elements(tensors[i].ndim, tensors[i].shape, &elements);
        uint64_t end = offset + (uint64_t)elements * sizeof(float);
        ok = set_new(root, tensors[i].name, describe_tensor(&tensors[i], offset, end));
        offset = end;
    }
    *text = ok ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (*text == NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "%s: cannot build the header (a name or metadata text that is not "
                            "valid UTF-8, or out of memory)",
                            path);
    return AP_OK;
}

static ap_status write_file(ap_atomic_file *file, const char *header, size_t header_length,
                            const ap_st_tensor *tensors, size_t count, ap_error *err)
{
    size_t padded = (header_length + HEADER_ALIGNMENT - 1) / HEADER_ALIGNMENT * HEADER_ALIGNMENT;
    uint8_t size_field[8];
    for (int i = 0; i < 8; i++)
        size_field[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    char spaces[HEADER_ALIGNMENT];
    memset(spaces, ' ', sizeof(spaces));

    ap_status status = ap_atomic_write(file, size_field, sizeof(size_field), err);
    if (status == AP_OK)
        status = ap_atomic_write(file, header, header_length, err);
    if (status == AP_OK)
        status = ap_atomic_write(file, spaces, padded - header_length, err);
    for (size_t i = 0; status == AP_OK && i < count; i++) {
        size_t elements = 0;
        count_elements(tensors[i].ndim, tensors[i].shape, &elements);
        status = ap_atomic_write(file, tensors[i].data, elements * sizeof(float), err);
    }
    return status;
}

ap_status ap_safetensors_write(const char *path, const ap_st_tensor *tensors, size_t count,
                               const ap_st_meta *meta, size_t meta_count, ap_error *err)
{
    ap_status status = AP_OK;
    for (size_t i = 0; status == AP_OK && i < count; i++)
        status = check_tensor(path, tensors, i, err);
    if (status == AP_OK)
        status = check_meta(path, meta, meta_count, err);
    if (status != AP_OK)
        return status;

    char *header = NULL;
    status = build_header(path, tensors, count, meta, meta_count, &header, err);
    if (status != AP_OK)
        return status;
    ap_atomic_file file;
    status = ap_atomic_open(&file, path, err);
    if (status == AP_OK) {
        status = write_file(&file, header, strlen(header), tensors, count, err);
        if (status == AP_OK)
            status = ap_atomic_commit(&file, err);
        else
            ap_atomic_abort(&file);
    }
    free(header);
    return status;
}

/* ---- reading ------------------------------------------------------------ */

/* A tensor entry of the header, checked on its own. */
typedef struct {
    const char *name; /* owned by the JSON header */
    int ndim;
    int64_t shape[AP_ST_MAX_DIMS];
    size_t elements;
    uint64_t begin;
    uint64_t end;
} header_entry;

static ap_status read_exactly(int fd, const char *path, void *buffer, size_t size, uint64_t offset,
                              ap_error *err)
{
    uint8_t *bytes = buffer;
    while (size > 0) {
        ssize_t got = pread(fd, bytes, size, (off_t)offset);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return ap_error_set(err, AP_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        if (got == 0)
            return ap_error_set(err, AP_ERR_FORMAT, "%s: file ended early at byte %llu", path,
                                (unsigned long long)offset);
        bytes += got;
        size -= (size_t)got;
        offset += (uint64_t)got;
    }
    return AP_OK;
}

/* Read the size field and the JSON header. The data section is the rest of the file. */
static ap_status read_header(int fd, const char *path, json_t **root, uint64_t *data_offset,
                             uint64_t *data_size, ap_error *err)
{
    struct stat info;
    if (fstat(fd, &info) != 0 || !S_ISREG(info.st_mode))
        return ap_error_set(err, AP_ERR_IO, "%s is not a regular file", path);
    uint64_t file_size = (uint64_t)info.st_size;
    if (file_size < 8)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s: %llu bytes, too short for the 8-byte header size of a "
                            "safetensors file",
                            path, (unsigned long long)file_size);
    uint8_t size_field[8];
    ap_status status = read_exactly(fd, path, size_field, 8, 0, err);
    if (status != AP_OK)
        return status;
    uint64_t header_size = 0;
    for (int i = 0; i < 8; i++)
        header_size |= (uint64_t)size_field[i] << (8 * i);
    if (header_size > MAX_HEADER_BYTES)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s: header size %llu is over the limit of %llu bytes; the file is "
                            "corrupt or not a safetensors file",
                            path, (unsigned long long)header_size, MAX_HEADER_BYTES);
    if (header_size > file_size - 8)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s: header size %llu exceeds the %llu bytes after the size field; the "
                            "file is truncated or not a safetensors file",
                            path, (unsigned long long)header_size,
                            (unsigned long long)(file_size - 8));
    if (header_size < 2)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s: header size %llu is too small for a JSON object", path,
                            (unsigned long long)header_size);

    char *text = malloc((size_t)header_size);
    if (text == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "%s: cannot allocate a %llu-byte header", path,
                            (unsigned long long)header_size);
    status = read_exactly(fd, path, text, (size_t)header_size, 8, err);
    if (status == AP_OK && text[0] != '{')
        status = ap_error_set(err, AP_ERR_FORMAT, "%s: the header does not start with '{'", path);
    if (status == AP_OK) {
        json_error_t json_error;
        *root = json_loadb(text, (size_t)header_size, JSON_REJECT_DUPLICATES, &json_error);
        if (*root == NULL)
            status = ap_error_set(err, AP_ERR_FORMAT, "%s: invalid JSON header at byte %d: %s",
                                  path, json_error.position, json_error.text);
        else if (!json_is_object(*root))
            status = ap_error_set(err, AP_ERR_FORMAT, "%s: the header is not a JSON object", path);
    }
    free(text);
    *data_offset = 8 + header_size;
    *data_size = file_size - 8 - header_size;
    return status;
}

static ap_status parse_shape(const char *path, const char *name, json_t *shape, header_entry *entry,
                             ap_error *err)
{
    if (!json_is_array(shape))
        return ap_error_set(err, AP_ERR_FORMAT, "%s: tensor \"%s\": shape is not an array", path,
                            name);
    size_t ndim = json_array_size(shape);
    if (ndim > AP_ST_MAX_DIMS)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s: tensor \"%s\" has %zu dimensions; at most %d are supported", path,
                            name, ndim, AP_ST_MAX_DIMS);
    entry->ndim = (int)ndim;
    for (size_t d = 0; d < ndim; d++) {
        json_t *dim = json_array_get(shape, d);
        if (!json_is_integer(dim) || json_integer_value(dim) < 0)
            return ap_error_set(err, AP_ERR_FORMAT,
                                "%s: tensor \"%s\": shape entry %zu is not a non-negative integer",
                                path, name, d);
        entry->shape[d] = json_integer_value(dim);
    }
    if (!count_elements(entry->ndim, entry->shape, &entry->elements))
        return ap_error_set(err, AP_ERR_FORMAT, "%s: tensor \"%s\": shape is too large", path,
                            name);
    return AP_OK;
}

static ap_status parse_offsets(const char *path, const char *name, json_t *offsets,
                               uint64_t data_size, header_entry *entry, ap_error *err)
{
    json_t *begin = json_array_get(offsets, 0), *end = json_array_get(offsets, 1);
    if (!json_is_array(offsets) || json_array_size(offsets) != 2 || !json_is_integer(begin) ||
        !json_is_integer(end) || json_integer_value(begin) < 0 || json_integer_value(end) < 0)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s: tensor \"%s\": data_offsets must be two non-negative integers",
                            path, name);
    entry->begin = (uint64_t)json_integer_value(begin);
    entry->end = (uint64_t)json_integer_value(end);
    if (entry->begin > entry->end)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s: tensor \"%s\": data_offsets [%llu, %llu] end before they begin",
                            path, name, (unsigned long long)entry->begin,
                            (unsigned long long)entry->end);
    if (entry->end > data_size)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s: tensor \"%s\": data_offsets [%llu, %llu] lie outside the %llu "
                            "data bytes; the file is truncated or corrupt",
                            path, name, (unsigned long long)entry->begin,
                            (unsigned long long)entry->end, (unsigned long long)data_size);
    if (entry->end - entry->begin != (uint64_t)entry->elements * sizeof(float))
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s: tensor \"%s\": shape has %zu elements (%llu bytes as F32) but "
                            "data_offsets span %llu bytes",
                            path, name, entry->elements,
                            (unsigned long long)entry->elements * sizeof(float),
                            (unsigned long long)(entry->end - entry->begin));
    return AP_OK;
}

static ap_status parse_entry(const char *path, const char *name, json_t *value, uint64_t data_size,
                             header_entry *entry, ap_error *err)
{
    entry->name = name;
    if (!json_is_object(value))
        return ap_error_set(err, AP_ERR_FORMAT, "%s: tensor \"%s\" is not a JSON object", path,
                            name);
    const char *key;
    json_t *field;
    json_object_foreach(value, key, field)
    {
        if (strcmp(key, "dtype") != 0 && strcmp(key, "shape") != 0 &&
            strcmp(key, "data_offsets") != 0)
            return ap_error_set(err, AP_ERR_FORMAT, "%s: tensor \"%s\" has an unknown field \"%s\"",
                                path, name, key);
    }
    json_t *dtype = json_object_get(value, "dtype");
    if (!json_is_string(dtype))
        return ap_error_set(err, AP_ERR_FORMAT, "%s: tensor \"%s\" has no dtype string", path,
                            name);
    if (strcmp(json_string_value(dtype), "F32") != 0)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s: tensor \"%s\" has dtype %s; only F32 is supported", path, name,
                            json_string_value(dtype));
    ap_status status = parse_shape(path, name, json_object_get(value, "shape"), entry, err);
    if (status != AP_OK)
        return status;
    return parse_offsets(path, name, json_object_get(value, "data_offsets"), data_size, entry, err);
}

static ap_status parse_metadata(const char *path, json_t *value, ap_st_file *out, ap_error *err)
{
    if (!json_is_object(value))
        return ap_error_set(err, AP_ERR_FORMAT, "%s: %s is not a JSON object", path, METADATA_KEY);
    size_t count = json_object_size(value);
    out->meta_keys = calloc(count ? count : 1, sizeof(char *));
    out->meta_values = calloc(count ? count : 1, sizeof(char *));
    if (out->meta_keys == NULL || out->meta_values == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "%s: cannot allocate metadata", path);
    const char *key;
    json_t *text;
    json_object_foreach(value, key, text)
    {
        if (!json_is_string(text))
            return ap_error_set(err, AP_ERR_FORMAT, "%s: metadata value of \"%s\" is not a string",
                                path, key);
        size_t i = out->meta_count++;
        out->meta_keys[i] = strdup(key);
        out->meta_values[i] = strdup(json_string_value(text));
        if (out->meta_keys[i] == NULL || out->meta_values[i] == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "%s: cannot allocate metadata", path);
    }
    return AP_OK;
}

static int compare_entries(const void *a, const void *b)
{
    const header_entry *left = a, *right = b;
    if (left->begin != right->begin)
        return left->begin < right->begin ? -1 : 1;
    if (left->end != right->end)
        return left->end < right->end ? -1 : 1;
    return strcmp(left->name, right->name);
}

/* With entries sorted by offset, each tensor must start where the previous
 * one ended: the format allows neither overlaps nor holes. */
static ap_status check_layout(const char *path, header_entry *entries, size_t count,
                              uint64_t data_size, ap_error *err)
{
    qsort(entries, count, sizeof(*entries), compare_entries);
    uint64_t expected = 0;
    const char *previous = NULL;
    for (size_t i = 0; i < count; i++) {
        if (entries[i].begin < expected)
            return ap_error_set(err, AP_ERR_FORMAT,
                                "%s: tensor \"%s\" overlaps tensor \"%s\" (it starts at byte %llu, "
                                "before %llu)",
                                path, entries[i].name, previous,
                                (unsigned long long)entries[i].begin, (unsigned long long)expected);
        if (entries[i].begin > expected)
            return ap_error_set(err, AP_ERR_FORMAT,
                                "%s: %llu unused data bytes before tensor \"%s\" (from byte %llu)",
                                path, (unsigned long long)(entries[i].begin - expected),
                                entries[i].name, (unsigned long long)expected);
        expected = entries[i].end;
        previous = entries[i].name;
    }
    if (expected != data_size)
        return ap_error_set(err, AP_ERR_FORMAT,
                            "%s: %llu unused data bytes after the last tensor%s%s%s", path,
                            (unsigned long long)(data_size - expected), previous ? " (\"" : "",
                            previous ? previous : "", previous ? "\")" : "");
    return AP_OK;
}

/* Collect and check every entry of the header. entries has room for all keys. */
static ap_status parse_entries(const char *path, json_t *root, uint64_t data_size,
                               header_entry *entries, size_t *count, ap_st_file *out, ap_error *err)
{
    const char *key;
    json_t *value;
    *count = 0;
    json_object_foreach(root, key, value)
    {
        ap_status status;
        if (strcmp(key, METADATA_KEY) == 0) {
            status = parse_metadata(path, value, out, err);
        } else {
            status = parse_entry(path, key, value, data_size, &entries[*count], err);
            (*count)++;
        }
        if (status != AP_OK)
            return status;
    }
    return check_layout(path, entries, *count, data_size, err);
}

static ap_status load_tensors(int fd, const char *path, const header_entry *entries, size_t count,
                              uint64_t data_offset, ap_st_file *out, ap_error *err)
{
    out->tensors = calloc(count ? count : 1, sizeof(*out->tensors));
    if (out->tensors == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "%s: cannot allocate %zu tensors", path, count);
    for (size_t i = 0; i < count; i++) {
        ap_st_loaded *tensor = &out->tensors[i];
        out->count = i + 1;
        tensor->name = strdup(entries[i].name);
        tensor->ndim = entries[i].ndim;
        memcpy(tensor->shape, entries[i].shape, sizeof(tensor->shape));
        tensor->size = entries[i].elements;
        tensor->data = malloc(entries[i].elements ? entries[i].elements * sizeof(float) : 1);
        if (tensor->name == NULL || tensor->data == NULL)
            return ap_error_set(err, AP_ERR_NOMEM, "%s: tensor \"%s\": cannot allocate %zu floats",
                                path, entries[i].name, entries[i].elements);
        ap_status status = read_exactly(fd, path, tensor->data, entries[i].elements * sizeof(float),
                                        data_offset + entries[i].begin, err);
        if (status != AP_OK)
            return ap_error_prefix(err, "tensor \"%s\"", entries[i].name);
    }
    return AP_OK;
}

ap_status ap_safetensors_read(const char *path, ap_st_file *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return ap_error_set(err, errno == ENOENT ? AP_ERR_NOT_FOUND : AP_ERR_IO,
                            "cannot open %s: %s", path, strerror(errno));
    json_t *root = NULL;
    uint64_t data_offset = 0, data_size = 0;
    header_entry *entries = NULL;
    size_t count = 0;
    ap_status status = read_header(fd, path, &root, &data_offset, &data_size, err);
    if (status == AP_OK) {
        entries = calloc(json_object_size(root) + 1, sizeof(*entries));
        if (entries == NULL)
            status = ap_error_set(err, AP_ERR_NOMEM, "%s: cannot allocate the tensor list", path);
    }
    if (status == AP_OK)
        status = parse_entries(path, root, data_size, entries, &count, out, err);
    if (status == AP_OK)
        status = load_tensors(fd, path, entries, count, data_offset, out, err);
    free(entries);
    json_decref(root);
    close(fd);
    if (status != AP_OK)
        ap_st_file_free(out);
    return status;
}

const ap_st_loaded *ap_st_find(const ap_st_file *file, const char *name)
{
    for (size_t i = 0; i < file->count; i++)
        if (strcmp(file->tensors[i].name, name) == 0)
            return &file->tensors[i];
    return NULL;
}

const char *ap_st_meta_get(const ap_st_file *file, const char *key)
{
    for (size_t i = 0; i < file->meta_count; i++)
        if (strcmp(file->meta_keys[i], key) == 0)
            return file->meta_values[i];
    return NULL;
}

void ap_st_file_free(ap_st_file *file)
{
    for (size_t i = 0; i < file->count; i++) {
        free(file->tensors[i].name);
        free(file->tensors[i].data);
    }
    free(file->tensors);
    for (size_t i = 0; i < file->meta_count; i++) {
        free(file->meta_keys[i]);
        free(file->meta_values[i]);
    }
    free(file->meta_keys);
    free(file->meta_values);
    memset(file, 0, sizeof(*file));
}
