/* POST /v1/predict: one image as the body (image/jpeg or image/png), or
 * several as the file parts of a multipart/form-data body. */

#include <stdlib.h>
#include <string.h>

#include "pipeline/serve/multipart.h"
#include "pipeline/serve/serve_internal.h"

#define ACCEPTED_TYPES "image/jpeg, image/png or multipart/form-data"

typedef struct {
    char (*file_names)[AP_MULTIPART_NAME_MAX]; /* one per image; NULL for a single-image body */
} predict_state;

static void free_predict_state(void *state)
{
    predict_state *predict = state;
    free(predict->file_names);
    free(predict);
}

static const char *content_type_of(const ap_request *request)
{
    return MHD_lookup_connection_value(request->connection, MHD_HEADER_KIND,
                                       MHD_HTTP_HEADER_CONTENT_TYPE);
}

static bool is_image_type(const char *content_type)
{
    return ap_media_type_is(content_type, "image/jpeg") ||
           ap_media_type_is(content_type, "image/png");
}

bool ap_predict_accept(ap_request *request)
{
    const char *content_type = content_type_of(request);
    if (content_type == NULL) {
        ap_respond_error(request, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                         "the request has no Content-Type; send %s", ACCEPTED_TYPES);
        return false;
    }
    if (is_image_type(content_type))
        return true;
    if (!ap_media_type_is(content_type, "multipart/form-data")) {
        ap_respond_error(request, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                         "content type \"%.100s\" is not supported; send %s", content_type,
                         ACCEPTED_TYPES);
        return false;
    }
    char boundary[AP_MULTIPART_BOUNDARY_MAX + 1];
    ap_error err = {0};
    if (ap_multipart_boundary(content_type, boundary, &err) != AP_OK) {
        ap_respond_failure(request, &err);
        return false;
    }
    return true;
}

/* Check a file part and keep its name; responds and returns false when it
 * is not an image part. */
static bool check_part(ap_request *request, const ap_multipart_part *part, size_t index)
{
    if (!part->has_filename) {
        ap_respond_error(request, MHD_HTTP_BAD_REQUEST,
                         "multipart part %zu (field \"%s\") is not a file; send each image as a "
                         "file part with a filename, for example curl -F file=@bee.jpg",
                         index + 1, part->name);
        return false;
    }
    const char *type = part->content_type;
    if (type[0] != '\0' && !is_image_type(type) &&
        !ap_media_type_is(type, "application/octet-stream")) {
        ap_respond_error(request, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE,
                         "multipart part %zu (file \"%s\") has content type \"%s\"; send "
                         "image/jpeg or image/png",
                         index + 1, part->filename, type);
        return false;
    }
    return true;
}

/* Decode the file parts of a multipart body into the request's images. */
static bool decode_parts(ap_request *request, predict_state *state)
{
    const ap_serve_config *settings = &request->server->cfg.serve;
    char boundary[AP_MULTIPART_BOUNDARY_MAX + 1];
    ap_error err = {0};
    size_t count = 0;
    ap_multipart_part *parts = calloc((size_t)settings->max_images, sizeof(*parts));
    if (parts == NULL) {
        ap_respond_error(request, MHD_HTTP_SERVICE_UNAVAILABLE,
                         "cannot allocate the multipart parts; retry later");
        return false;
    }
    ap_status status = ap_multipart_boundary(content_type_of(request), boundary, &err);
    if (status == AP_OK)
        status = ap_multipart_parse(request->body, request->body_size, boundary, parts,
                                    (size_t)settings->max_images, &count, &err);
    if (status != AP_OK)
        ap_respond_failure(request, &err);
    bool ok = status == AP_OK;
    for (size_t i = 0; ok && i < count; i++)
        ok = check_part(request, &parts[i], i);
    ok = ok && ap_request_reserve_images(request, count);
    if (ok) {
        state->file_names = calloc(count, sizeof(*state->file_names));
        if (state->file_names == NULL) {
            ap_respond_error(request, MHD_HTTP_SERVICE_UNAVAILABLE,
                             "cannot allocate the file names; retry later");
            ok = false;
        }
    }
    for (size_t i = 0; ok && i < count; i++) {
        memcpy(state->file_names[i], parts[i].filename, sizeof(state->file_names[i]));
        char name[AP_MULTIPART_NAME_MAX + 16];
        snprintf(name, sizeof(name), "\"%s\"", parts[i].filename);
        ok = ap_request_decode_image(request, i, name, parts[i].data, parts[i].size);
    }
    free(parts);
    return ok;
}

void ap_predict_handle(ap_request *request)
{
    if (!ap_request_acquire_model(request))
        return;
    predict_state *state = calloc(1, sizeof(*state));
    if (state == NULL) {
        ap_respond_error(request, MHD_HTTP_SERVICE_UNAVAILABLE,
                         "cannot allocate the request state; retry later");
        return;
    }
    request->state = state;
    request->free_state = free_predict_state;

    bool ok;
    if (is_image_type(content_type_of(request)))
        ok = ap_request_reserve_images(request, 1) &&
             ap_request_decode_image(request, 0, "in the request body", request->body,
                                     request->body_size);
    else
        ok = decode_parts(request, state);
    if (ok)
        ap_request_start_inference(request);
}

static json_t *model_json(const ap_served_model *model)
{
    return json_pack("{s:s, s:s, s:s}", "name", model->name, "version", model->version_text,
                     "sha256", model->loaded.weights_sha256);
}

static json_t *prediction_json(ap_request *request, const predict_state *state, size_t image)
{
    const ap_loaded_model *model = &request->model->loaded;
    json_t *labels = json_object();
    for (int l = 0; labels != NULL && l < model->label_count; l++) {
        float probability = request->probabilities[image * (size_t)model->label_count + (size_t)l];
        json_t *entry = json_pack("{s:f, s:b}", "probability", (double)probability, "decision",
                                  ap_request_decide(request, image, l));
        if (json_object_set_new(labels, model->labels[l], entry) != 0) {
            json_decref(labels);
            labels = NULL;
        }
    }
    json_t *file = state->file_names != NULL ? ap_json_text(state->file_names[image]) : json_null();
    return json_pack("{s:o, s:o}", "file", file, "labels", labels);
}

void ap_predict_finish(ap_request *request)
{
    const predict_state *state = request->state;
    json_t *predictions = json_array();
    for (size_t i = 0; predictions != NULL && i < request->image_count; i++) {
        if (json_array_append_new(predictions, prediction_json(request, state, i)) != 0) {
            json_decref(predictions);
            predictions = NULL;
        }
    }
    json_t *body =
        json_pack("{s:o, s:o}", "model", model_json(request->model), "predictions", predictions);
    ap_respond_json(request, MHD_HTTP_OK, body);
}
