#ifndef APIARY_SERVE_SERVE_H
#define APIARY_SERVE_SERVE_H

/* apiary serve: an HTTP inference server on libmicrohttpd. It serves
 * /v1/predict (images in, labels with probabilities and decisions out), the
 * KServe v2 inference protocol under /v2 and Prometheus metrics at
 * /metrics. docs/openapi.yaml describes every endpoint. The model comes
 * from the registry (serve.model, default champion) and is swapped without
 * dropping requests when the alias moves. */

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"

typedef struct ap_server ap_server;

/* Start listening on serve.host and serve.port with the settings of
 * cfg->serve and the registry of cfg->registry. The model loads in the
 * background: until it has, readiness checks and inference get 503.
 * Signals are the caller's business: block SIGTERM and SIGINT before the
 * call so that the server's threads never handle them. */
ap_status ap_server_start(const ap_config *cfg, ap_server **out, ap_error *err);

/* The TCP port the server listens on (the chosen one when serve.port is 0). */
int ap_server_port(const ap_server *server);

/* Shut down gracefully and free the server: stop accepting connections,
 * wait up to serve.shutdown_timeout_seconds for requests in flight to
 * finish, stop every thread and free the model. Returns the number of
 * requests that were still in flight when the wait ended (0 normally). */
long ap_server_stop(ap_server *server);

#endif
