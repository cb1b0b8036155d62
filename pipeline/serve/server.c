/* The HTTP daemon: start and graceful stop, routing, authentication, the
 * concurrency limit and request bodies. Each request moves through
 * receiving (body), handling (decode), inferring (connection suspended
 * until the inference thread is done) and responded. */

#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "pipeline/serve/serve_internal.h"

#define UNMATCHED_ENDPOINT "unmatched"
/* After inference stops, resumed requests only need to write their response. */
#define RESUME_WAIT_SECONDS 5.0

/* Maximum open connections, idle or slow ones included. libmicrohttpd's default
 * (FD_SETSIZE - 4 = 1020, shared by the pool threads) let about a thousand
 * clients that send their headers a byte at a time lock out every other
 * client, health checks included. Each connection takes a 32 KiB buffer
 * (the libmicrohttpd 0.9 default), so the limit costs at most 128 MiB. */
#define CONNECTION_LIMIT 4096
/* File descriptors kept for the model, registry and log files. */
#define RESERVED_FILES 256

static const ap_route routes[] = {
    {"/v1/predict", "POST", AP_ROUTE_LIMITED | AP_ROUTE_BODY, ap_predict_accept, ap_predict_handle,
     ap_predict_finish},
    {"/v2/health/live", "GET", AP_ROUTE_HEALTH, NULL, ap_kserve_live, NULL},
    {"/v2/health/ready", "GET", AP_ROUTE_HEALTH, NULL, ap_kserve_ready, NULL},
    {"/v2", "GET", AP_ROUTE_LIMITED, NULL, ap_kserve_server_metadata, NULL},
    {"/v2/models/{name}", "GET", AP_ROUTE_LIMITED, NULL, ap_kserve_model_metadata, NULL},
    {"/v2/models/{name}/ready", "GET", AP_ROUTE_HEALTH, NULL, ap_kserve_model_ready, NULL},
    {"/v2/models/{name}/infer", "POST", AP_ROUTE_LIMITED | AP_ROUTE_BODY, ap_kserve_infer_accept,
     ap_kserve_infer_handle, ap_kserve_infer_finish},
    {"/v2/models/{name}/versions/{version}", "GET", AP_ROUTE_LIMITED, NULL,
     ap_kserve_model_metadata, NULL},
    {"/v2/models/{name}/versions/{version}/ready", "GET", AP_ROUTE_HEALTH, NULL,
     ap_kserve_model_ready, NULL},
    {"/v2/models/{name}/versions/{version}/infer", "POST", AP_ROUTE_LIMITED | AP_ROUTE_BODY,
     ap_kserve_infer_accept, ap_kserve_infer_handle, ap_kserve_infer_finish},
    {"/metrics", "GET", 0, NULL, ap_metrics_handle, NULL},
};

#define ROUTE_COUNT (sizeof(routes) / sizeof(routes[0]))

void ap_metrics_handle(ap_request *request)
{
    ap_server *server = request->server;
    pthread_mutex_lock(&server->lock);
    long in_flight = server->active;
    pthread_mutex_unlock(&server->lock);
    char *text = ap_serve_metrics_render(server->metrics, in_flight);
    if (text == NULL) {
        ap_respond_error(request, MHD_HTTP_SERVICE_UNAVAILABLE,
                         "cannot render the metrics (out of memory)");
        return;
    }
    ap_respond(request, MHD_HTTP_OK, AP_METRICS_CONTENT_TYPE, text, strlen(text));
}

/* ---- Routing ---- */

/* Match path against a pattern, storing its {name} and {version} segments. */
static bool match_pattern(const char *pattern, const char *path, ap_request *request)
{
    request->model_segment[0] = '\0';
    request->version_segment[0] = '\0';
    const char *p = pattern, *u = path;
    while (*p != '\0' && *u != '\0') {
        if (*p != '{') {
            if (*p++ != *u++)
                return false;
            continue;
        }
        size_t length = strcspn(u, "/");
        if (length == 0 || length >= AP_PATH_SEGMENT_MAX)
            return false;
        char *segment =
            strncmp(p, "{name}", 6) == 0 ? request->model_segment : request->version_segment;
        memcpy(segment, u, length);
        segment[length] = '\0';
        p = strchr(p, '}') + 1;
        u += length;
    }
    return *p == '\0' && *u == '\0';
}

static bool method_matches(const ap_route *route, const char *method)
{
    if (strcmp(route->method, method) == 0)
        return true;
    return strcmp(route->method, "GET") == 0 && strcmp(method, "HEAD") == 0;
}

/* Set the request's route and whether the method is the route's. */
static void find_route(ap_request *request, const char *path)
{
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        if (!match_pattern(routes[i].pattern, path, request))
            continue;
        request->route = &routes[i];
        request->endpoint = routes[i].pattern;
        request->method_allowed = method_matches(&routes[i], request->method);
        return;
    }
}

/* ---- Admission: authentication, the concurrency limit, body size ---- */

static bool authorized(const ap_request *request)
{
    const char *token = request->server->auth_token;
    if (token == NULL)
        return true;
    const char *header = MHD_lookup_connection_value(request->connection, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_AUTHORIZATION);
    if (header == NULL || strncasecmp(header, "Bearer ", 7) != 0)
        return false;
    const char *given = header + 7;
    while (*given == ' ')
        given++;
    size_t length = strlen(token);
    /* constant time in the token's content; its length is not secret */
    return strlen(given) == length && CRYPTO_memcmp(given, token, length) == 0;
}

static bool enter_limit(ap_request *request)
{
    ap_server *server = request->server;
    pthread_mutex_lock(&server->lock);
    bool admitted = server->limited < server->cfg.serve.max_concurrent;
    if (admitted)
        server->limited++;
    pthread_mutex_unlock(&server->lock);
    request->limited = admitted;
    return admitted;
}

void ap_request_leave_limit(ap_request *request)
{
    if (!request->limited)
        return;
    ap_server *server = request->server;
    pthread_mutex_lock(&server->lock);
    server->limited--;
    pthread_mutex_unlock(&server->lock);
    request->limited = false;
}

/* Reject a body whose Content-Length is over the limit before reading it. */
static bool declared_length_fits(ap_request *request)
{
    const char *header = MHD_lookup_connection_value(request->connection, MHD_HEADER_KIND,
                                                     MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (header == NULL)
        return true;
    char *end = NULL;
    errno = 0;
    unsigned long long length = strtoull(header, &end, 10);
    long long limit = (long long)request->server->cfg.serve.max_body_bytes;
    if (errno == 0 && end != header && *end == '\0' && length <= (unsigned long long)limit)
        return true;
    ap_respond_error(request, MHD_HTTP_CONTENT_TOO_LARGE,
                     "the request body of %.30s bytes is larger than the limit of %lld bytes "
                     "(serve.max_body_bytes)",
                     header, limit);
    return false;
}

/* Route checks, authentication and the concurrency limit, and for a
 * route with a body what can be checked before the body arrives. A route
 * without a body gets its response here. */
static void admit(ap_request *request)
{
    const ap_route *route = request->route;
    request->admitted = true;
    if (route == NULL) {
        ap_respond_error(request, MHD_HTTP_NOT_FOUND,
                         "no endpoint at %s; the server has /v1/predict, /v2/... (KServe v2) and "
                         "/metrics, see docs/openapi.yaml",
                         request->path);
        return;
    }
    if (!request->method_allowed) {
        ap_respond_error(request, MHD_HTTP_METHOD_NOT_ALLOWED, "%s is not allowed on %s; use %s",
                         request->method, route->pattern, route->method);
        return;
    }
    if (!(route->flags & AP_ROUTE_HEALTH) && !authorized(request)) {
        ap_respond_error(request, MHD_HTTP_UNAUTHORIZED,
                         "missing or wrong bearer token: send the header Authorization: Bearer "
                         "TOKEN with the token the server was given (serve.auth_token_env)");
        return;
    }
    if ((route->flags & AP_ROUTE_LIMITED) && !enter_limit(request)) {
        ap_respond_error(request, MHD_HTTP_SERVICE_UNAVAILABLE,
                         "the server is busy: %d requests are in progress "
                         "(serve.max_concurrent); retry later",
                         request->server->cfg.serve.max_concurrent);
        return;
    }
    if (route->flags & AP_ROUTE_BODY) {
        if (declared_length_fits(request) && route->accept != NULL)
            route->accept(request);
        return; /* the body comes next, unless a response is already queued */
    }
    request->phase = AP_PHASE_HANDLING;
    route->handle(request);
}

/* ---- Body, handling and the return from inference ---- */

static void receive_body(ap_request *request, const char *data, size_t size)
{
    size_t limit = (size_t)request->server->cfg.serve.max_body_bytes;
    if (request->phase != AP_PHASE_RECEIVING || request->body_too_large)
        return;
    if (size > limit - request->body_size) {
        /* a body without Content-Length is read to its end, then rejected */
        request->body_too_large = true;
        free(request->body);
        request->body = NULL;
        request->body_size = 0;
        return;
    }
    if (request->body_size + size > request->body_capacity) {
        size_t capacity = request->body_capacity > 0 ? request->body_capacity : 65536;
        while (capacity < request->body_size + size)
            capacity *= 2;
        capacity = capacity < limit ? capacity : limit;
        uint8_t *grown = realloc(request->body, capacity + 1);
        if (grown == NULL) {
            /* libmicrohttpd takes no response while a body is arriving */
            ap_serve_log_write(&request->server->log, AP_LOG_ERROR,
                               "serve: %s %s: cannot allocate %zu bytes for the request body; "
                               "closing the connection",
                               request->method, request->path, capacity);
            request->failed = true;
            return;
        }
        request->body = grown;
        request->body_capacity = capacity;
    }
    memcpy(request->body + request->body_size, data, size);
    request->body_size += size;
}

static void handle_body(ap_request *request)
{
    if (request->body_too_large) {
        ap_respond_error(request, MHD_HTTP_CONTENT_TOO_LARGE,
                         "the request body is larger than the limit of %lld bytes "
                         "(serve.max_body_bytes)",
                         (long long)request->server->cfg.serve.max_body_bytes);
        return;
    }
    if (request->body_size == 0) {
        ap_respond_error(request, MHD_HTTP_BAD_REQUEST,
                         "the request body is empty; send an image or an inference request");
        return;
    }
    request->body[request->body_size] = '\0'; /* room was allocated for it */
    request->phase = AP_PHASE_HANDLING;
    request->route->handle(request);
}

static void finish_inference(ap_request *request)
{
    ap_server *server = request->server;
    pthread_mutex_lock(&server->lock);
    server->suspended--;
    pthread_cond_broadcast(&server->changed);
    pthread_mutex_unlock(&server->lock);
    request->phase = AP_PHASE_HANDLING;
    if (request->job.status != AP_OK)
        ap_respond_failure(request, &request->job.error);
    else
        request->route->finish(request);
}

/* A later call for a request: the end of the body or the return from inference. */
static void continue_request(ap_request *request)
{
    if (!request->admitted)
        admit(request);
    else if (request->phase == AP_PHASE_RECEIVING)
        handle_body(request);
    else if (request->phase == AP_PHASE_INFERRING && atomic_load(&request->job_done))
        finish_inference(request);
    if (request->phase == AP_PHASE_HANDLING && !request->failed)
        ap_respond_error(request, MHD_HTTP_INTERNAL_SERVER_ERROR,
                         "the handler of %s returned without a response", request->endpoint);
}

/* ---- Request life ---- */

static ap_request *create_request(ap_server *server, struct MHD_Connection *connection,
                                  const char *path, const char *method)
{
    ap_request *request = calloc(1, sizeof(*request));
    if (request == NULL) {
        ap_serve_log_write(&server->log, AP_LOG_ERROR,
                           "serve: cannot allocate a request for %s %s; closing the connection",
                           method, path);
        return NULL;
    }
    request->server = server;
    request->connection = connection;
    request->endpoint = UNMATCHED_ENDPOINT;
    request->started = ap_serve_now();
    snprintf(request->method, sizeof(request->method), "%s", method);
    snprintf(request->path, sizeof(request->path), "%s", path);
    atomic_init(&request->job_done, false);
    pthread_mutex_lock(&server->lock);
    server->active++;
    pthread_mutex_unlock(&server->lock);
    return request;
}

static void free_request(ap_request *request)
{
    ap_served_model_release(request->model);
    if (request->free_state != NULL)
        request->free_state(request->state);
    free(request->body);
    free(request->pixels);
    free(request->probabilities);
    free(request);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *connection, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **context)
{
    ap_request *request = *context;
    if (request == NULL) {
        request = create_request(cls, connection, url, method);
        if (request == NULL)
            return MHD_NO;
        *context = request;
        find_route(request, url);
        /* libmicrohttpd closes the connection after a response queued on
         * this first call, since the body may not have been read. That is
         * right for a rejected body, but requests without a body get their
         * response on the next call, which keeps the connection alive. */
        bool answer_now = request->route == NULL || !request->method_allowed ||
                          (request->route->flags & AP_ROUTE_BODY);
        if (answer_now)
            admit(request);
    } else if (*upload_data_size > 0) {
        receive_body(request, upload_data, *upload_data_size);
        *upload_data_size = 0;
    } else {
        continue_request(request);
    }
    return request->failed ? MHD_NO : MHD_YES;
}

static const char *termination_text(enum MHD_RequestTerminationCode code)
{
    switch (code) {
    case MHD_REQUEST_TERMINATED_COMPLETED_OK:
        return "completed";
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
        return "the connection was idle longer than serve.request_timeout_seconds";
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
        return "the client closed the connection";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
        return "the server shut down";
    case MHD_REQUEST_TERMINATED_READ_ERROR:
        return "reading from the connection failed";
    default:
        return "the connection failed";
    }
}

static void on_completed(void *cls, struct MHD_Connection *connection, void **context,
                         enum MHD_RequestTerminationCode termination)
{
    ap_server *server = cls;
    ap_request *request = *context;
    if (request == NULL)
        return;
    *context = NULL;
    bool completed = termination == MHD_REQUEST_TERMINATED_COMPLETED_OK;
    if (!completed)
        ap_serve_log_write(&server->log, AP_LOG_WARN, "serve: %s %s ended early: %s",
                           request->method, request->path, termination_text(termination));
    ap_serve_metrics_observe_request(server->metrics, request->endpoint,
                                     completed ? request->status_code : 0,
                                     ap_serve_now() - request->started);
    ap_request_leave_limit(request);
    pthread_mutex_lock(&server->lock);
    server->active--;
    pthread_cond_broadcast(&server->changed);
    pthread_mutex_unlock(&server->lock);
    free_request(request);
}

__attribute__((format(printf, 2, 0))) static void on_library_log(void *cls, const char *format,
                                                                 va_list args)
{
    ap_server *server = cls;
    char message[512];
    vsnprintf(message, sizeof(message), format, args);
    message[strcspn(message, "\n")] = '\0';
    ap_serve_log_write(&server->log, AP_LOG_WARN, "serve: libmicrohttpd: %s", message);
}

/* ---- Start and stop ---- */

static ap_status read_auth_token(ap_server *server, ap_error *err)
{
    const char *variable = server->cfg.serve.auth_token_env;
    if (variable[0] == '\0')
        return AP_OK;
    const char *token = getenv(variable);
    if (token == NULL || token[0] == '\0')
        return ap_error_set(err, AP_ERR_INVALID,
                            "serve.auth_token_env names the environment variable %s, which is "
                            "unset or empty; set it to the bearer token, or set "
                            "serve.auth_token_env to \"\" to turn authentication off",
                            variable);
    server->auth_token = strdup(token);
    if (server->auth_token == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot copy the bearer token");
    return AP_OK;
}

static ap_status resolve_address(const ap_serve_config *settings, struct sockaddr_storage *address,
                                 ap_error *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *found = NULL;
    char port[16];
    snprintf(port, sizeof(port), "%d", settings->port);
    int failed = getaddrinfo(settings->host, port, &hints, &found);
    if (failed != 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "serve.host \"%s\" is not an address or a host name that resolves "
                            "(%s); use for example 127.0.0.1, ::1 or 0.0.0.0",
                            settings->host, gai_strerror(failed));
    memset(address, 0, sizeof(*address));
    memcpy(address, found->ai_addr, found->ai_addrlen);
    freeaddrinfo(found);
    return AP_OK;
}

/* Raise the soft open-file limit as far as CONNECTION_LIMIT needs and the
 * hard limit allows, and return the connection limit that then fits. */
static unsigned int fit_connection_limit(void)
{
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) != 0)
        return 1000;
    rlim_t wanted = CONNECTION_LIMIT + RESERVED_FILES;
    if (files.rlim_cur != RLIM_INFINITY && files.rlim_cur < wanted) {
        struct rlimit raised = files;
        raised.rlim_cur =
            files.rlim_max == RLIM_INFINITY || files.rlim_max > wanted ? wanted : files.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            files = raised;
    }
    if (files.rlim_cur == RLIM_INFINITY || files.rlim_cur >= wanted)
        return CONNECTION_LIMIT;
    if (files.rlim_cur <= 2 * RESERVED_FILES)
        return (unsigned int)(files.rlim_cur / 2);
    return (unsigned int)(files.rlim_cur - RESERVED_FILES);
}

static ap_status start_daemon(ap_server *server, ap_error *err)
{
    const ap_serve_config *settings = &server->cfg.serve;
    struct sockaddr_storage address;
    ap_status status = resolve_address(settings, &address, err);
    if (status != AP_OK)
        return status;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_ALLOW_SUSPEND_RESUME |
                         MHD_USE_ERROR_LOG;
    if (address.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    unsigned int connection_limit = fit_connection_limit();
    server->daemon = MHD_start_daemon(
        flags, (uint16_t)settings->port, NULL, NULL, on_request, server, MHD_OPTION_EXTERNAL_LOGGER,
        on_library_log, server, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned int)settings->threads, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)settings->request_timeout_seconds, MHD_OPTION_NOTIFY_COMPLETED, on_completed,
        server, MHD_OPTION_CONNECTION_LIMIT, connection_limit, MHD_OPTION_END);
    if (server->daemon == NULL)
        return ap_error_set(err, AP_ERR_IO,
                            "cannot listen on %s port %d (%s); if another process uses the "
                            "port, choose another serve.port",
                            settings->host, settings->port, strerror(errno));
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_BIND_PORT);
    server->port = info != NULL ? info->port : settings->port;
    return AP_OK;
}

static ap_status start_workers(ap_server *server, ap_error *err)
{
    const ap_config *cfg = &server->cfg;
    ap_status status = ap_serve_metrics_create(&server->metrics, err);
    if (status != AP_OK)
        return status;
    ap_model_watch_options watch = {
        .registry_uri = cfg->registry.uri,
        .model_name = cfg->registry.model_name,
        .reference = cfg->serve.model,
        .batch_size = cfg->serve.batch_size,
        .inference_threads = cfg->serve.inference_threads,
        .watch_seconds = cfg->serve.watch_seconds,
        .metrics = server->metrics,
        .log = &server->log,
    };
    status = ap_model_watch_start(&watch, &server->models, err);
    if (status != AP_OK)
        return status;
    ap_batcher_options batching = {
        .batch_size = cfg->serve.batch_size,
        .wait_ms = cfg->serve.batch_wait_ms,
        .inference_threads = cfg->serve.inference_threads,
        .metrics = server->metrics,
    };
    return ap_batcher_start(&batching, &server->batcher, err);
}

static void free_server(ap_server *server)
{
    if (server->daemon != NULL)
        MHD_stop_daemon(server->daemon);
    ap_batcher_free(server->batcher);
    ap_model_watch_stop(server->models);
    ap_serve_metrics_destroy(server->metrics);
    ap_serve_log_destroy(&server->log);
    pthread_cond_destroy(&server->changed);
    pthread_mutex_destroy(&server->lock);
    free(server->auth_token);
    free(server);
}

ap_status ap_server_start(const ap_config *cfg, ap_server **out, ap_error *err)
{
    *out = NULL;
    ap_server *server = calloc(1, sizeof(*server));
    if (server == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the server");
    server->cfg = *cfg;
    pthread_mutex_init(&server->lock, NULL);
    pthread_condattr_t attributes;
    pthread_condattr_init(&attributes);
    pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC);
    pthread_cond_init(&server->changed, &attributes);
    pthread_condattr_destroy(&attributes);
    ap_serve_log_init(&server->log);

    ap_status status = read_auth_token(server, err);
    if (status == AP_OK)
        status = start_workers(server, err);
    if (status == AP_OK)
        status = start_daemon(server, err);
    if (status != AP_OK) {
        free_server(server);
        return status;
    }
    const ap_serve_config *settings = &cfg->serve;
    AP_INFO("serve: listening on %s port %d (%d HTTP threads, batches of up to %d images within "
            "%d ms, at most %d requests at once%s); model %s %s from registry %s",
            settings->host, server->port, settings->threads, settings->batch_size,
            settings->batch_wait_ms, settings->max_concurrent,
            server->auth_token != NULL ? ", bearer token required" : "", cfg->registry.model_name,
            settings->model, cfg->registry.uri);
    *out = server;
    return AP_OK;
}

int ap_server_port(const ap_server *server)
{
    return server->port;
}

/* Wait until *counter is 0 or seconds have passed; returns its last value. */
static long wait_for_zero(ap_server *server, const long *counter, double seconds)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    double end = (double)deadline.tv_sec + (double)deadline.tv_nsec * 1e-9 + seconds;
    deadline.tv_sec = (time_t)end;
    deadline.tv_nsec = (long)((end - (double)deadline.tv_sec) * 1e9);
    pthread_mutex_lock(&server->lock);
    while (*counter > 0 &&
           pthread_cond_timedwait(&server->changed, &server->lock, &deadline) == 0) {
    }
    long left = *counter;
    pthread_mutex_unlock(&server->lock);
    return left;
}

long ap_server_stop(ap_server *server)
{
    int timeout = server->cfg.serve.shutdown_timeout_seconds;
    pthread_mutex_lock(&server->lock);
    server->stopping = true;
    long active = server->active;
    pthread_mutex_unlock(&server->lock);
    AP_INFO("serve: stopping: no new connections; waiting up to %d s for %ld requests in flight",
            timeout, active);
    MHD_socket listener = MHD_quiesce_daemon(server->daemon);

    long left = wait_for_zero(server, &server->active, (double)timeout);
    if (left > 0)
        AP_WARN("serve: %ld requests still in flight after %d s (serve.shutdown_timeout_seconds); "
                "closing their connections",
                left, timeout);
    /* Every suspended connection must be resumed before MHD_stop_daemon. */
    ap_batcher_stop(server->batcher);
    wait_for_zero(server, &server->suspended, RESUME_WAIT_SECONDS);
    MHD_stop_daemon(server->daemon);
    server->daemon = NULL;
    if (listener != MHD_INVALID_SOCKET)
        close(listener);
    free_server(server);
    AP_INFO("serve: stopped");
    return left;
}
