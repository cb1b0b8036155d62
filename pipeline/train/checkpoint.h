#ifndef APIARY_TRAIN_CHECKPOINT_H
#define APIARY_TRAIN_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "pipeline/common/status.h"

/* safetensors files (https://github.com/huggingface/safetensors): an 8-byte
 * little-endian header length, a JSON header, then the raw tensor bytes.
 * apiary writes and reads F32 tensors and string metadata. */

#define AP_ST_MAX_DIMS 4

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[AP_ST_MAX_DIMS];
    const float *data;
} ap_st_tensor;

typedef struct {
    const char *key;
    const char *value;
} ap_st_meta;

/* Write tensors (and metadata pairs) to path atomically. */
ap_status ap_safetensors_write(const char *path, const ap_st_tensor *tensors, size_t count,
                               const ap_st_meta *meta, size_t meta_count, ap_error *err);

typedef struct {
    char *name;
    int ndim;
    int64_t shape[AP_ST_MAX_DIMS];
    size_t size; /* element count, the product of the shape */
    float *data;
} ap_st_loaded;

typedef struct {
    ap_st_loaded *tensors;
    size_t count;
    char **meta_keys;
    char **meta_values;
    size_t meta_count;
} ap_st_file;

/* Read and validate a file: header size and JSON, dtype F32 only, offsets in
 * bounds and not overlapping, shapes matching the byte counts. */
ap_status ap_safetensors_read(const char *path, ap_st_file *out, ap_error *err);
const ap_st_loaded *ap_st_find(const ap_st_file *file, const char *name);
const char *ap_st_meta_get(const ap_st_file *file, const char *key);
void ap_st_file_free(ap_st_file *file);

#endif
