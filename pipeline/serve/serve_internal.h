#ifndef APIARY_SERVE_SERVE_INTERNAL_H
#define APIARY_SERVE_SERVE_INTERNAL_H

/* State shared by the parts of the server (pipeline/serve) only. */

#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "pipeline/config/config.h"
#include "pipeline/serve/batcher.h"
#include "pipeline/serve/metrics.h"
#include "pipeline/serve/model_watch.h"
#include "pipeline/serve/serve.h"
#include "pipeline/serve/serve_log.h"

#define AP_JSON_CONTENT_TYPE "application/json"
#define AP_PATH_SEGMENT_MAX  128

struct ap_server {
    ap_config cfg;
    char *auth_token; /* NULL: no authentication */
    struct MHD_Daemon *daemon;
    int port;
    ap_serve_log log;
    ap_serve_metrics *metrics;
    ap_model_watch *models;
    ap_batcher *batcher;

    pthread_mutex_t lock; /* guards the counters and stopping */
    pthread_cond_t changed;
    long active;    /* requests in progress, every route */
    long limited;   /* requests in progress that count against serve.max_concurrent */
    long suspended; /* requests waiting for the inference thread */
    bool stopping;
};

typedef struct ap_request ap_request;

enum {
    AP_ROUTE_HEALTH = 1u << 0,  /* no authentication, never rejected as busy */
    AP_ROUTE_LIMITED = 1u << 1, /* counts against serve.max_concurrent */
    AP_ROUTE_BODY = 1u << 2,    /* POST with a request body */
};

typedef struct {
    const char *pattern; /* path with {name} and {version} segments; the metrics label */
    const char *method;  /* "GET" (HEAD is accepted too) or "POST" */
    unsigned flags;
    /* Check the request headers before the body is read; false after responding. */
    bool (*accept)(ap_request *request);
    /* Respond, or start inference, once the body is complete. */
    void (*handle)(ap_request *request);
    /* Respond after inference, which leaves its result in the request's job. */
    void (*finish)(ap_request *request);
} ap_route;

typedef enum {
    AP_PHASE_RECEIVING = 0, /* reading the body */
    AP_PHASE_HANDLING,      /* handler running */
    AP_PHASE_INFERRING,     /* suspended until the batcher is done */
    AP_PHASE_RESPONDED,
} ap_request_phase;

struct ap_request {
    ap_server *server;
    struct MHD_Connection *connection;
    const ap_route *route; /* NULL for an unknown path */
    const char *endpoint;  /* metrics label */
    char method[16];
    char path[256];                            /* for log lines, truncated */
    char model_segment[AP_PATH_SEGMENT_MAX];   /* {name} of the path, "" when absent */
    char version_segment[AP_PATH_SEGMENT_MAX]; /* {version} of the path, "" when absent */
    double started;
    bool method_allowed; /* the route takes the request's method */
    bool admitted;       /* routing, authentication and the limit were checked */
    bool limited;
    ap_request_phase phase;
    int status_code; /* of the response, 0 before one is queued */
    bool failed;     /* queueing a response failed; the connection is closed */

    uint8_t *body;
    size_t body_size;
    size_t body_capacity;
    bool body_too_large;

    /* inference */
    ap_served_model *model; /* reference held until the request is freed */
    uint8_t *pixels;        /* image_count x the model's input size */
    size_t image_count;
    float *probabilities; /* image_count x label_count */
    ap_serve_job job;
    atomic_bool job_done;

    void *state; /* the route's own parsed request, freed with free_state */
    void (*free_state)(void *state);
};

/* Free the request's place under serve.max_concurrent, if it has one. */
void ap_request_leave_limit(ap_request *request);

/* ---- Responses (response.c) ---- */

/* Queue a response with a malloc'd body, which is taken over. */
void ap_respond(ap_request *request, int code, const char *content_type, char *body, size_t size);
/* Queue a JSON response; takes over the reference to json. */
void ap_respond_json(ap_request *request, int code, json_t *json);
/* Queue {"error": message} and log it (identical messages rate-limited). */
void ap_respond_error(ap_request *request, int code, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
/* A JSON string of text. Text that is not valid UTF-8 (a client's file
 * name) has its bytes above 0x7f replaced by '?', since JSON text must be
 * Unicode. NULL when out of memory. */
json_t *ap_json_text(const char *text);
/* The HTTP status for a library error: 400 invalid, 413 limit, 422 format, ... */
int ap_http_status_for(ap_status status);
/* Queue the error response for a library error. */
void ap_respond_failure(ap_request *request, const ap_error *err);

/* ---- Inference for a request (request_inference.c) ---- */

/* Take a reference to the current model; responds 503 and returns false
 * when none is loaded. */
bool ap_request_acquire_model(ap_request *request);
/* Allocate room for count images at the model's input size; responds 413
 * above serve.max_images. */
bool ap_request_reserve_images(ap_request *request, size_t count);
/* Decode one encoded image into slot index at the model's input size. name
 * identifies the image in the error message. Responds and returns false on
 * failure. */
bool ap_request_decode_image(ap_request *request, size_t index, const char *name,
                             const uint8_t *data, size_t size);
/* Suspend the connection and queue the images for the inference thread;
 * the route's finish runs once the probabilities are in. */
void ap_request_start_inference(ap_request *request);
/* The decision for one image and label, counted in the metrics. */
bool ap_request_decide(ap_request *request, size_t image, int label);

/* ---- Handlers ---- */

bool ap_predict_accept(ap_request *request);
void ap_predict_handle(ap_request *request);
void ap_predict_finish(ap_request *request);

void ap_kserve_live(ap_request *request);
void ap_kserve_ready(ap_request *request);
void ap_kserve_server_metadata(ap_request *request);
void ap_kserve_model_metadata(ap_request *request);
void ap_kserve_model_ready(ap_request *request);
bool ap_kserve_infer_accept(ap_request *request);
void ap_kserve_infer_handle(ap_request *request);
void ap_kserve_infer_finish(ap_request *request);

void ap_metrics_handle(ap_request *request);

#endif
