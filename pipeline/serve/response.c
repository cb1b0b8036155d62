#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/serve/serve_internal.h"

/* Probabilities are float32, which 7 significant digits represent closely
 * enough for a client; %.17g would triple the response size. */
#define JSON_DUMP_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(7))

static void add_headers(ap_request *request, struct MHD_Response *response, int code,
                        const char *content_type)
{
    ap_server *server = request->server;
    bool ok = MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (code == MHD_HTTP_SERVICE_UNAVAILABLE)
        ok = ok && MHD_add_response_header(response, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (code == MHD_HTTP_UNAUTHORIZED)
        ok = ok && MHD_add_response_header(response, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                           "Bearer realm=\"apiary\"");
    if (code == MHD_HTTP_METHOD_NOT_ALLOWED && request->route != NULL)
        ok = ok && MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW,
                                           strcmp(request->route->method, "GET") == 0
                                               ? "GET, HEAD"
                                               : request->route->method);
    pthread_mutex_lock(&server->lock);
    bool stopping = server->stopping;
    pthread_mutex_unlock(&server->lock);
    /* Clients on a kept-alive connection move to another replica during shutdown. */
    if (stopping)
        ok = ok && MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
    if (!ok)
        ap_serve_log_write(&server->log, AP_LOG_ERROR,
                           "serve: cannot add a response header for %s %s", request->method,
                           request->path);
}

void ap_respond(ap_request *request, int code, const char *content_type, char *body, size_t size)
{
    request->phase = AP_PHASE_RESPONDED;
    struct MHD_Response *response =
        MHD_create_response_from_buffer(size, body, MHD_RESPMEM_MUST_FREE);
    if (response == NULL) {
        free(body);
        request->failed = true;
        ap_serve_log_write(&request->server->log, AP_LOG_ERROR,
                           "serve: cannot create a response for %s %s; closing the connection",
                           request->method, request->path);
        return;
    }
    add_headers(request, response, code, content_type);
    /* The work is done once the response is queued, and a client that sends
     * its next request as soon as this response arrives must find the slot
     * free: the completion callback runs only after the last byte is sent. */
    ap_request_leave_limit(request);
    if (MHD_queue_response(request->connection, (unsigned int)code, response) == MHD_YES) {
        request->status_code = code;
    } else {
        request->failed = true;
        ap_serve_log_write(&request->server->log, AP_LOG_ERROR,
                           "serve: cannot queue the %d response to %s %s; closing the connection",
                           code, request->method, request->path);
    }
    MHD_destroy_response(response);
}

void ap_respond_json(ap_request *request, int code, json_t *json)
{
    char *text = json != NULL ? json_dumps(json, JSON_DUMP_FLAGS) : NULL;
    json_decref(json);
    if (text == NULL) {
        ap_respond_error(request, MHD_HTTP_INTERNAL_SERVER_ERROR,
                         "cannot encode the response as JSON (out of memory)");
        return;
    }
    size_t size = strlen(text);
    text[size] = '\n'; /* json_dumps leaves no newline; the NUL is not sent */
    ap_respond(request, code, AP_JSON_CONTENT_TYPE, text, size + 1);
}

json_t *ap_json_text(const char *text)
{
    json_t *value = json_string(text);
    if (value != NULL)
        return value;
    char *copy = strdup(text);
    if (copy == NULL)
        return NULL;
    for (char *p = copy; *p != '\0'; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    value = json_string(copy);
    free(copy);
    return value;
}

void ap_respond_error(ap_request *request, int code, const char *format, ...)
{
    char message[AP_ERROR_MESSAGE_MAX];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof(message), format, args);
    va_end(args);
    ap_serve_log_write(&request->server->log, code == 500 ? AP_LOG_ERROR : AP_LOG_WARN,
                       "serve: %s %s -> %d: %s", request->method, request->path, code, message);

    json_t *text = ap_json_text(message);
    json_t *body = json_object();
    if (body == NULL || text == NULL || json_object_set_new(body, "error", text) != 0) {
        json_decref(body);
        request->failed = true;
        return;
    }
    char *dumped = json_dumps(body, JSON_DUMP_FLAGS);
    json_decref(body);
    if (dumped == NULL) {
        request->failed = true;
        return;
    }
    size_t size = strlen(dumped);
    dumped[size] = '\n';
    ap_respond(request, code, AP_JSON_CONTENT_TYPE, dumped, size + 1);
}

int ap_http_status_for(ap_status status)
{
    switch (status) {
    case AP_OK:
        return MHD_HTTP_OK;
    case AP_ERR_INVALID:
        return MHD_HTTP_BAD_REQUEST;
    case AP_ERR_FORMAT:
        return MHD_HTTP_UNPROCESSABLE_CONTENT;
    case AP_ERR_LIMIT:
        return MHD_HTTP_CONTENT_TOO_LARGE;
    case AP_ERR_NOT_FOUND:
        return MHD_HTTP_NOT_FOUND;
    case AP_ERR_NOMEM:
    case AP_ERR_INTERRUPTED:
        return MHD_HTTP_SERVICE_UNAVAILABLE;
    case AP_ERR_IO:
    case AP_ERR_BACKEND:
        return MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
    return MHD_HTTP_INTERNAL_SERVER_ERROR;
}

void ap_respond_failure(ap_request *request, const ap_error *err)
{
    ap_respond_error(request, ap_http_status_for(err->code), "%s", err->message);
}
