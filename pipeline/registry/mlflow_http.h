#ifndef APIARY_REGISTRY_MLFLOW_HTTP_H
#define APIARY_REGISTRY_MLFLOW_HTTP_H

/* The HTTP side of the MLflow registry backend: JSON calls to the MLflow REST
 * API and artifact transfers through the mlflow-artifacts API, over libcurl,
 * with the timeouts, retries and credentials described in mlflow_registry.h.
 * Private to the backend. A client is used by one thread at a time. */

#include <stdbool.h>

#include <curl/curl.h>
#include <jansson.h>

#include "pipeline/common/fsutil.h"
#include "pipeline/common/status.h"
#include "pipeline/registry/mlflow_registry.h"

#define MLFLOW_URL_MAX 1024

typedef struct {
    char base_url[MLFLOW_URL_MAX]; /* scheme://host[:port][/prefix], no credentials */
    ap_mlflow_options options;     /* cache_dir is not used here */
    CURL *curl;
    struct curl_slist *json_headers;
    struct curl_slist *binary_headers;
    char *username;
    char *password;
    char *ca_file;
    bool insecure_tls;
    unsigned int jitter_seed;
} mlflow_client;

typedef enum {
    /* Reads and writes that may be repeated: retried after any transient failure. */
    MLFLOW_IDEMPOTENT,
    /* Creates: retried only when the request cannot have reached the server. */
    MLFLOW_CREATE,
} mlflow_retry;

/* Details of a failed call, for callers that act on them. */
typedef struct {
    long http_status;     /* 0 when no response arrived */
    bool outcome_unknown; /* the request may have taken effect on the server */
    char error_code[64];  /* MLflow's error_code, or "" */
} mlflow_failure;

/* Parse url (http://, https:// or mlflow://, which means http://) and read
 * the credentials from the environment. */
ap_status mlflow_client_init(mlflow_client *client, const char *url,
                             const ap_mlflow_options *options, ap_error *err);
void mlflow_client_cleanup(mlflow_client *client);

/* Call the REST endpoint /api/2.0/mlflow/ENDPOINT. A GET sends the string and
 * integer fields of request as the query string, and other methods send
 * request as a JSON body (NULL: "{}"). *response (may be NULL) receives the reply
 * object. failure (may be NULL) is filled when the call fails. */
ap_status mlflow_call(mlflow_client *client, const char *method, const char *endpoint,
                      const json_t *request, mlflow_retry retry, json_t **response,
                      mlflow_failure *failure, ap_error *err);

/* PUT the file at local_path to the artifact artifact_path (relative to the
 * server's artifact root, for example "1/RUN/artifacts/model.safetensors"). */
ap_status mlflow_upload(mlflow_client *client, const char *artifact_path, const char *local_path,
                        ap_error *err);

/* GET the artifact artifact_path, computing its sha256 and size. When file is
 * not NULL the bytes are also written to it (the caller commits or aborts). */
ap_status mlflow_download(mlflow_client *client, const char *artifact_path, ap_atomic_file *file,
                          char sha256[65], long long *size, ap_error *err);

/* Sleep before try number attempt + 1 (attempt >= 1): exponential backoff
 * with jitter, never less than retry_after_ms. */
void mlflow_backoff(mlflow_client *client, int attempt, long retry_after_ms);

#endif
