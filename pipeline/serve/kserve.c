/* The KServe v2 (Open Inference Protocol) endpoints: health, server and
 * model metadata, model readiness and inference. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/serve/kserve.h"
#include "pipeline/serve/multipart.h"
#include "pipeline/serve/serve_internal.h"

#define PLATFORM "apiary_onednn"

void ap_kserve_live(ap_request *request)
{
    ap_respond_json(request, MHD_HTTP_OK, json_pack("{s:b}", "live", 1));
}

void ap_kserve_ready(ap_request *request)
{
    if (ap_request_acquire_model(request))
        ap_respond_json(request, MHD_HTTP_OK, json_pack("{s:b}", "ready", 1));
}

void ap_kserve_server_metadata(ap_request *request)
{
    ap_respond_json(
        request, MHD_HTTP_OK,
        json_pack("{s:s, s:s, s:[]}", "name", "apiary", "version", APIARY_VERSION, "extensions"));
}

/* Take the model the path names. Responds 404 for another model or version
 * and 503 while no model is loaded. */
static bool acquire_named_model(ap_request *request)
{
    const char *served = request->server->cfg.registry.model_name;
    if (strcmp(request->model_segment, served) != 0) {
        ap_respond_error(request, MHD_HTTP_NOT_FOUND,
                         "model \"%s\" not found; this server serves \"%s\"",
                         request->model_segment, served);
        return false;
    }
    if (!ap_request_acquire_model(request))
        return false;
    const char *loaded = request->model->version_text;
    if (request->version_segment[0] != '\0' && strcmp(request->version_segment, loaded) != 0) {
        ap_respond_error(request, MHD_HTTP_NOT_FOUND,
                         "version \"%s\" of model \"%s\" is not loaded; this server serves "
                         "version %s",
                         request->version_segment, served, loaded);
        return false;
    }
    return true;
}

/* The labels as one comma-separated string: v2 parameters hold only scalars. */
static json_t *labels_text(const ap_loaded_model *model)
{
    char text[AP_MAX_LABELS * (AP_NAME_MAX + 1)] = "";
    for (int l = 0; l < model->label_count; l++) {
        if (l > 0)
            strcat(text, ",");
        strcat(text, model->labels[l]);
    }
    return json_string(text);
}

static json_t *metadata_tensor(const char *name, const char *datatype, json_t *shape)
{
    return json_pack("{s:s, s:s, s:o}", "name", name, "datatype", datatype, "shape", shape);
}

void ap_kserve_model_metadata(ap_request *request)
{
    if (!acquire_named_model(request))
        return;
    const ap_served_model *served = request->model;
    const ap_loaded_model *model = &served->loaded;
    json_t *inputs =
        json_pack("[o, o]", metadata_tensor(AP_KSERVE_INPUT_IMAGE, "BYTES", json_pack("[i]", -1)),
                  metadata_tensor(AP_KSERVE_INPUT_PIXELS, "UINT8",
                                  json_pack("[i, i, i, i]", -1, model->height, model->width, 3)));
    json_t *outputs = json_pack("[o, o]",
                                metadata_tensor(AP_KSERVE_OUTPUT_PROBABILITIES, "FP32",
                                                json_pack("[i, i]", -1, model->label_count)),
                                metadata_tensor(AP_KSERVE_OUTPUT_DECISIONS, "BOOL",
                                                json_pack("[i, i]", -1, model->label_count)));
    json_t *parameters =
        json_pack("{s:o, s:s}", "labels", labels_text(model), "sha256", model->weights_sha256);
    ap_respond_json(request, MHD_HTTP_OK,
                    json_pack("{s:s, s:[s], s:s, s:o, s:o, s:o}", "name", served->name, "versions",
                              served->version_text, "platform", PLATFORM, "inputs", inputs,
                              "outputs", outputs, "parameters", parameters));
}

void ap_kserve_model_ready(ap_request *request)
{
    if (acquire_named_model(request))
        ap_respond_json(request, MHD_HTTP_OK,
                        json_pack("{s:s, s:b}", "name", request->model->name, "ready", 1));
}

/* ---- Inference ---- */

static void free_kserve_state(void *state)
{
    ap_kserve_request_free(state);
    free(state);
}

bool ap_kserve_infer_accept(ap_request *request)
{
    const char *content_type = MHD_lookup_connection_value(request->connection, MHD_HEADER_KIND,
                                                           MHD_HTTP_HEADER_CONTENT_TYPE);
    if (content_type != NULL && !ap_media_type_is(content_type, AP_JSON_CONTENT_TYPE)) {
        ap_respond_error(request, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                         "content type \"%.100s\" is not supported; send application/json",
                         content_type);
        return false;
    }
    const char *served = request->server->cfg.registry.model_name;
    if (strcmp(request->model_segment, served) != 0) {
        ap_respond_error(request, MHD_HTTP_NOT_FOUND,
                         "model \"%s\" not found; this server serves \"%s\"",
                         request->model_segment, served);
        return false;
    }
    return true;
}

/* Move the request's images into the request's pixel buffer. */
static bool take_images(ap_request *request, ap_kserve_request *parsed)
{
    if (!ap_request_reserve_images(request, parsed->count))
        return false;
    if (parsed->has_pixels) {
        const ap_loaded_model *model = &request->model->loaded;
        memcpy(request->pixels, parsed->pixels,
               parsed->count * (size_t)model->width * (size_t)model->height * 3);
        return true;
    }
    for (size_t i = 0; i < parsed->count; i++) {
        char name[64];
        snprintf(name, sizeof(name), "%zu of input \"image\"", i);
        if (!ap_request_decode_image(request, i, name, parsed->images[i].data,
                                     parsed->images[i].size))
            return false;
        free(parsed->images[i].data); /* only the decoded pixels are needed from here on */
        parsed->images[i].data = NULL;
    }
    return true;
}

void ap_kserve_infer_handle(ap_request *request)
{
    if (!acquire_named_model(request))
        return;
    ap_kserve_request *parsed = calloc(1, sizeof(*parsed));
    if (parsed == NULL) {
        ap_respond_error(request, MHD_HTTP_SERVICE_UNAVAILABLE,
                         "cannot allocate the request state; retry later");
        return;
    }
    request->state = parsed;
    request->free_state = free_kserve_state;
    const ap_loaded_model *model = &request->model->loaded;
    ap_kserve_limits limits = {.width = model->width,
                               .height = model->height,
                               .max_images = (size_t)request->server->cfg.serve.max_images};
    ap_error err = {0};
    if (ap_kserve_parse_request((const char *)request->body, request->body_size, &limits, parsed,
                                &err) != AP_OK) {
        ap_respond_failure(request, &err);
        return;
    }
    if (take_images(request, parsed))
        ap_request_start_inference(request);
}

static json_t *output_tensor(const char *name, const char *datatype, size_t rows, int columns,
                             json_t *data)
{
    return json_pack("{s:s, s:s, s:[I, i], s:o}", "name", name, "datatype", datatype, "shape",
                     (json_int_t)rows, columns, "data", data);
}

void ap_kserve_infer_finish(ap_request *request)
{
    const ap_kserve_request *parsed = request->state;
    const ap_served_model *served = request->model;
    const ap_loaded_model *model = &served->loaded;
    json_t *probabilities = json_array(), *decisions = json_array();
    for (size_t i = 0; i < request->image_count; i++) {
        for (int l = 0; l < model->label_count; l++) {
            float probability = request->probabilities[i * (size_t)model->label_count + (size_t)l];
            json_array_append_new(probabilities, json_real(probability));
            json_array_append_new(decisions, json_boolean(ap_request_decide(request, i, l)));
        }
    }
    json_t *outputs = json_array();
    if (parsed->want_probabilities) {
        json_t *tensor = output_tensor(AP_KSERVE_OUTPUT_PROBABILITIES, "FP32", request->image_count,
                                       model->label_count, probabilities);
        json_object_set_new(tensor, "parameters", json_pack("{s:o}", "labels", labels_text(model)));
        json_array_append_new(outputs, tensor);
    } else {
        json_decref(probabilities);
    }
    if (parsed->want_decisions)
        json_array_append_new(outputs,
                              output_tensor(AP_KSERVE_OUTPUT_DECISIONS, "BOOL",
                                            request->image_count, model->label_count, decisions));
    else
        json_decref(decisions);
    json_t *body = json_pack("{s:s, s:s, s:o}", "model_name", served->name, "model_version",
                             served->version_text, "outputs", outputs);
    if (body != NULL && parsed->id != NULL)
        json_object_set_new(body, "id", ap_json_text(parsed->id));
    ap_respond_json(request, MHD_HTTP_OK, body);
}
