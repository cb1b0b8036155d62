#include "pipeline/serve/kserve.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "pipeline/serve/base64.h"

#define MAX_DIMENSIONS 4
/* Values a request may hold beyond its tensor data (ids, names, shapes). */
#define EXTRA_VALUES 1024

typedef struct {
    const char *name; /* input name */
    const char *datatype;
    int64_t shape[MAX_DIMENSIONS];
    int dimensions;
    size_t total; /* elements */
} tensor_spec;

/* Writes one element of tensor data; index is its row-major position. */
typedef ap_status (*element_reader)(const json_t *value, size_t index, ap_kserve_request *out,
                                    ap_error *err);

/* A JSON value is at least one character and values in an array are comma
 * separated, so commas bound the number of values. jansson needs tens of
 * bytes per value, so without this check a body of small numbers would
 * claim far more memory than its size. */
static ap_status check_value_count(const char *body, size_t size, const ap_kserve_limits *limits,
                                   ap_error *err)
{
    size_t commas = 0;
    for (size_t i = 0; i < size; i++)
        commas += body[i] == ',';
    size_t image_values = (size_t)limits->width * (size_t)limits->height * 3;
    size_t allowed = limits->max_images * image_values + EXTRA_VALUES;
    if (commas > allowed)
        return ap_error_set(err, AP_ERR_LIMIT,
                            "the request holds more than %zu JSON values, more than %zu images "
                            "of %dx%d pixels need (serve.max_images)",
                            commas, limits->max_images, limits->width, limits->height);
    return AP_OK;
}

static void describe_shape(const tensor_spec *tensor, char *out, size_t out_size)
{
    size_t used = (size_t)snprintf(out, out_size, "[");
    for (int d = 0; d < tensor->dimensions && used < out_size; d++)
        used += (size_t)snprintf(out + used, out_size - used, "%s%" PRId64, d > 0 ? ", " : "",
                                 tensor->shape[d]);
    if (used < out_size)
        snprintf(out + used, out_size - used, "]");
}

static ap_status read_shape(const json_t *input, tensor_spec *tensor, ap_error *err)
{
    const json_t *shape = json_object_get(input, "shape");
    size_t dimensions = json_array_size(shape);
    if (!json_is_array(shape) || dimensions == 0 || dimensions > MAX_DIMENSIONS)
        return ap_error_set(err, AP_ERR_INVALID,
                            "input \"%s\": \"shape\" must be an array of 1 to %d positive "
                            "integers",
                            tensor->name, MAX_DIMENSIONS);
    tensor->dimensions = (int)dimensions;
    tensor->total = 1;
    for (size_t d = 0; d < dimensions; d++) {
        const json_t *size = json_array_get(shape, d);
        json_int_t value = json_integer_value(size);
        if (!json_is_integer(size) || value < 1 || value > 1000000000)
            return ap_error_set(err, AP_ERR_INVALID,
                                "input \"%s\": shape item %zu must be a positive integer",
                                tensor->name, d);
        tensor->shape[d] = value;
        tensor->total *= (size_t)value;
    }
    return AP_OK;
}

/* Check the name, datatype and shape of the input against the model's. */
static ap_status check_tensor(const tensor_spec *tensor, const ap_kserve_limits *limits,
                              ap_error *err)
{
    char shape[96];
    describe_shape(tensor, shape, sizeof(shape));
    bool pixels = strcmp(tensor->name, AP_KSERVE_INPUT_PIXELS) == 0;
    const char *expected = pixels ? "UINT8" : "BYTES";
    if (strcmp(tensor->datatype, expected) != 0)
        return ap_error_set(err, AP_ERR_INVALID, "input \"%s\" has datatype %s; it takes %s",
                            tensor->name, tensor->datatype, expected);
    if (tensor->shape[0] > (int64_t)limits->max_images)
        return ap_error_set(err, AP_ERR_LIMIT,
                            "input \"%s\" has %" PRId64 " images, more than the limit of %zu "
                            "(serve.max_images); split it into smaller requests",
                            tensor->name, tensor->shape[0], limits->max_images);
    bool shape_ok;
    if (pixels)
        shape_ok = tensor->dimensions == 4 && tensor->shape[1] == limits->height &&
                   tensor->shape[2] == limits->width && tensor->shape[3] == 3;
    else
        shape_ok = tensor->dimensions == 1 || (tensor->dimensions == 2 && tensor->shape[1] == 1);
    if (shape_ok)
        return AP_OK;
    if (pixels)
        return ap_error_set(err, AP_ERR_INVALID,
                            "input \"pixels\" has shape %s; it takes [N, %d, %d, 3] (N images "
                            "of the model's %dx%d input size, RGB)",
                            shape, limits->height, limits->width, limits->width, limits->height);
    return ap_error_set(err, AP_ERR_INVALID,
                        "input \"image\" has shape %s; it takes [N] or [N, 1], one encoded "
                        "image per element",
                        shape);
}

static ap_status read_pixel(const json_t *value, size_t index, ap_kserve_request *out,
                            ap_error *err)
{
    json_int_t number = json_integer_value(value);
    if (!json_is_integer(value) || number < 0 || number > 255)
        return ap_error_set(err, AP_ERR_INVALID,
                            "input \"pixels\": data element %zu is not an integer from 0 to 255",
                            index);
    out->pixels[index] = (uint8_t)number;
    return AP_OK;
}

static ap_status read_image(const json_t *value, size_t index, ap_kserve_request *out,
                            ap_error *err)
{
    if (!json_is_string(value))
        return ap_error_set(err, AP_ERR_INVALID,
                            "input \"image\": data element %zu is not a string; send each image "
                            "file base64-encoded",
                            index);
    ap_kserve_bytes *image = &out->images[index];
    ap_status status = ap_base64_decode(json_string_value(value), json_string_length(value),
                                        &image->data, &image->size, err);
    if (status != AP_OK)
        return ap_error_prefix(err, "input \"image\": data element %zu", index);
    return AP_OK;
}

/* Walk data nested to the shape from dimension depth on, handing each leaf
 * to read in row-major order. */
static ap_status read_nested(const json_t *data, const tensor_spec *tensor, int depth,
                             element_reader read, size_t *next, ap_kserve_request *out,
                             ap_error *err)
{
    if (!json_is_array(data) || json_array_size(data) != (size_t)tensor->shape[depth])
        return ap_error_set(err, AP_ERR_INVALID,
                            "input \"%s\": nested data at depth %d must be an array of %" PRId64
                            " items, as the shape says",
                            tensor->name, depth, tensor->shape[depth]);
    size_t index;
    const json_t *item;
    json_array_foreach(data, index, item)
    {
        ap_status status = depth + 1 < tensor->dimensions
                               ? read_nested(item, tensor, depth + 1, read, next, out, err)
                               : read(item, (*next)++, out, err);
        if (status != AP_OK)
            return status;
    }
    return AP_OK;
}

static ap_status read_data(const json_t *data, const tensor_spec *tensor, element_reader read,
                           ap_kserve_request *out, ap_error *err)
{
    if (!json_is_array(data))
        return ap_error_set(err, AP_ERR_INVALID, "input \"%s\": \"data\" must be an array",
                            tensor->name);
    size_t next = 0;
    if (tensor->dimensions > 1 && json_is_array(json_array_get(data, 0)))
        return read_nested(data, tensor, 0, read, &next, out, err);
    if (json_array_size(data) != tensor->total) {
        char shape[96];
        describe_shape(tensor, shape, sizeof(shape));
        return ap_error_set(err, AP_ERR_INVALID,
                            "input \"%s\": \"data\" has %zu elements, but shape %s needs %zu",
                            tensor->name, json_array_size(data), shape, tensor->total);
    }
    size_t index;
    const json_t *item;
    json_array_foreach(data, index, item)
    {
        ap_status status = read(item, index, out, err);
        if (status != AP_OK)
            return status;
    }
    return AP_OK;
}

static ap_status reject_binary(const json_t *parameters, const char *what, ap_error *err)
{
    if (parameters != NULL && !json_is_object(parameters))
        return ap_error_set(err, AP_ERR_INVALID, "%s: \"parameters\" must be an object", what);
    if (json_object_get(parameters, "binary_data_size") != NULL ||
        json_is_true(json_object_get(parameters, "binary_data")))
        return ap_error_set(err, AP_ERR_INVALID,
                            "%s: binary tensor data is not supported; send the data as JSON", what);
    return AP_OK;
}

static ap_status read_input(const json_t *input, const ap_kserve_limits *limits,
                            ap_kserve_request *out, ap_error *err)
{
    tensor_spec tensor = {0};
    tensor.name = json_string_value(json_object_get(input, "name"));
    tensor.datatype = json_string_value(json_object_get(input, "datatype"));
    if (!json_is_object(input) || tensor.name == NULL || tensor.datatype == NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "each input must be an object with string \"name\" and \"datatype\", "
                            "a \"shape\" and \"data\"");
    if (strcmp(tensor.name, AP_KSERVE_INPUT_IMAGE) != 0 &&
        strcmp(tensor.name, AP_KSERVE_INPUT_PIXELS) != 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "input \"%.64s\" is not an input of this model; send \"image\" "
                            "(BYTES [N], base64-encoded JPEG or PNG files) or \"pixels\" (UINT8 "
                            "[N, %d, %d, 3])",
                            tensor.name, limits->height, limits->width);
    ap_status status = reject_binary(json_object_get(input, "parameters"), tensor.name, err);
    if (status == AP_OK)
        status = read_shape(input, &tensor, err);
    if (status == AP_OK)
        status = check_tensor(&tensor, limits, err);
    if (status != AP_OK)
        return status;

    out->has_pixels = strcmp(tensor.name, AP_KSERVE_INPUT_PIXELS) == 0;
    out->count = (size_t)tensor.shape[0];
    if (out->has_pixels)
        out->pixels = malloc(tensor.total);
    else
        out->images = calloc(out->count, sizeof(*out->images));
    if (out->has_pixels ? out->pixels == NULL : out->images == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate input \"%s\" of %zu elements",
                            tensor.name, tensor.total);
    const json_t *data = json_object_get(input, "data");
    if (data == NULL)
        return ap_error_set(err, AP_ERR_INVALID, "input \"%s\" has no \"data\"", tensor.name);
    return read_data(data, &tensor, out->has_pixels ? read_pixel : read_image, out, err);
}

static ap_status read_outputs(const json_t *outputs, ap_kserve_request *out, ap_error *err)
{
    out->want_probabilities = outputs == NULL || json_array_size(outputs) == 0;
    out->want_decisions = out->want_probabilities;
    if (outputs != NULL && !json_is_array(outputs))
        return ap_error_set(err, AP_ERR_INVALID, "\"outputs\" must be an array");
    size_t index;
    const json_t *output;
    json_array_foreach(outputs, index, output)
    {
        const char *name = json_string_value(json_object_get(output, "name"));
        if (name == NULL)
            return ap_error_set(err, AP_ERR_INVALID,
                                "requested output %zu must be an object with a string \"name\"",
                                index);
        ap_status status = reject_binary(json_object_get(output, "parameters"), name, err);
        if (status != AP_OK)
            return status;
        if (strcmp(name, AP_KSERVE_OUTPUT_PROBABILITIES) == 0)
            out->want_probabilities = true;
        else if (strcmp(name, AP_KSERVE_OUTPUT_DECISIONS) == 0)
            out->want_decisions = true;
        else
            return ap_error_set(err, AP_ERR_INVALID,
                                "requested output \"%.64s\" is not an output of this model; it "
                                "has \"probabilities\" and \"decisions\"",
                                name);
    }
    return AP_OK;
}

static ap_status read_request(const json_t *root, const ap_kserve_limits *limits,
                              ap_kserve_request *out, ap_error *err)
{
    if (!json_is_object(root))
        return ap_error_set(err, AP_ERR_INVALID, "the request body must be a JSON object");
    const json_t *id = json_object_get(root, "id");
    if (id != NULL && !json_is_string(id))
        return ap_error_set(err, AP_ERR_INVALID, "\"id\" must be a string");
    if (id != NULL && (out->id = strdup(json_string_value(id))) == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot copy the request id");
    const json_t *parameters = json_object_get(root, "parameters");
    if (parameters != NULL && !json_is_object(parameters))
        return ap_error_set(err, AP_ERR_INVALID, "\"parameters\" must be an object");
    ap_status status = read_outputs(json_object_get(root, "outputs"), out, err);
    if (status != AP_OK)
        return status;
    const json_t *inputs = json_object_get(root, "inputs");
    if (!json_is_array(inputs) || json_array_size(inputs) != 1)
        return ap_error_set(err, AP_ERR_INVALID,
                            "\"inputs\" must be an array of exactly one input, \"image\" or "
                            "\"pixels\"");
    return read_input(json_array_get(inputs, 0), limits, out, err);
}

ap_status ap_kserve_parse_request(const char *body, size_t size, const ap_kserve_limits *limits,
                                  ap_kserve_request *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    ap_status status = check_value_count(body, size, limits, err);
    if (status != AP_OK)
        return status;
    json_error_t parse_error;
    json_t *root = json_loadb(body, size, JSON_REJECT_DUPLICATES, &parse_error);
    if (root == NULL)
        return ap_error_set(err, AP_ERR_INVALID,
                            "the request body is not valid JSON: %s at line %d, column %d",
                            parse_error.text, parse_error.line, parse_error.column);
    status = read_request(root, limits, out, err);
    json_decref(root);
    return status;
}

void ap_kserve_request_free(ap_kserve_request *request)
{
    for (size_t i = 0; request->images != NULL && i < request->count; i++)
        free(request->images[i].data);
    free(request->images);
    free(request->pixels);
    free(request->id);
    memset(request, 0, sizeof(*request));
}
