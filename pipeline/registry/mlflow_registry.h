#ifndef APIARY_REGISTRY_MLFLOW_REGISTRY_H
#define APIARY_REGISTRY_MLFLOW_REGISTRY_H

/* The MLflow backend of the model registry: the registry.h operations over
 * the REST API of an MLflow tracking server. It is tested with MLflow 3.17,
 * and the endpoints it uses (aliases among them) exist since MLflow 2.3. Open it with
 * ap_registry_open and an http://, https:// or mlflow:// URL (mlflow:// is plain HTTP), or with
 * ap_mlflow_registry_open_with to change timeouts and retries.
 *
 * Layout on the server, for a model NAME:
 *   experiment "apiary/NAME"   One run per registration. The run's artifacts
 *                              are the version's files, uploaded through the
 *                              mlflow-artifacts API, so the server must serve
 *                              artifacts (the default of `mlflow server` in
 *                              2.x and 3.x).
 *   registered model NAME      Versions numbered by MLflow, aliases, and the
 *                              alias history as tags.
 *   model version tags         apiary.file.FILE = "SHA256 SIZE" per file,
 *                              apiary.verdict (pass, fail, unknown, none),
 *                              apiary.passed, apiary.failed_rules (JSON array),
 *                              apiary.model_sha256, apiary.model_sha256_match,
 *                              apiary.source_run, apiary.forced and
 *                              apiary.force_reason. apiary.forced_alias.ALIAS
 *                              contains the reason of a forced alias move. The
 *                              request's own tags keep their keys.
 *   registered model tags      apiary.history.SEQ.MS.RANDOM = one alias move
 *                              as JSON, in the entry format of
 *                              ap_registry_history.
 *
 * History entries sort by SEQ, which is one more than the highest SEQ
 * present when the move was written. A move writes its history tag first and then the alias,
 * and deletes the tag again when the alias request fails. A tag that outlives
 * a failed move (the delete failed too) records a move from the alias's real
 * target, which rollback skips as it does any move back to the current one.
 *
 * From report.json the backend reads "passed" and "model_sha256" (as the
 * local backend does), "failed_rules" (an array of strings or of objects
 * with a "name") or else the entries of "rules" whose "passed" is false, and
 * per-label metrics, logged to the run as LABEL/METRIC, from "test.labels"
 * ({LABEL: {"metrics": {METRIC: {"value": NUMBER}}}}) and "test.macro"
 * ({METRIC: {"value": NUMBER}}). The model card's scalar fields
 * are logged as run parameters.
 *
 * Every request has a connect timeout and a total timeout. Connection
 * failures, timeouts, HTTP 408, 429 and 5xx are retried with exponential
 * backoff and jitter, but other 4xx replies are not. A request that creates
 * something (experiment, run, model version) is repeated only when it cannot
 * have reached the server, or after a lookup shows that it took no effect.
 * Libraries do not log, so retries are not logged, but a final error states
 * how many tries were made and how long they took.
 *
 * Credentials come from the environment, as for MLflow's own client:
 * MLFLOW_TRACKING_TOKEN (a bearer token) or MLFLOW_TRACKING_USERNAME with
 * MLFLOW_TRACKING_PASSWORD (basic auth). MLFLOW_TRACKING_SERVER_CERT_PATH
 * names a CA bundle and MLFLOW_TRACKING_INSECURE_TLS=true skips TLS checks.
 * They never appear in error messages, and a URL with user:password@ is
 * rejected. Redirects are not followed.
 *
 * ap_registry_file_path downloads the file into a local cache folder and
 * checks its sha256 against the version's tag, so the scorer and the server
 * read MLflow versions as they read local ones. A handle is used by one
 * thread at a time. */

#include "pipeline/registry/registry.h"

typedef struct {
    long connect_timeout_ms;  /* to open a connection */
    long request_timeout_ms;  /* whole API request, response included */
    long transfer_timeout_ms; /* whole artifact upload or download */
    int max_attempts;         /* tries per request, the first included; >= 1 */
    long backoff_initial_ms;  /* wait before the second try; doubles per try */
    long backoff_max_ms;      /* maximum wait between tries */
    long ready_timeout_ms;    /* wait for a new model version to become READY */
    /* Local folder for downloaded files. NULL: $APIARY_MLFLOW_CACHE, else
     * $XDG_CACHE_HOME/apiary/mlflow, else $HOME/.cache/apiary/mlflow. */
    const char *cache_dir;
} ap_mlflow_options;

/* Fill options with the defaults. Connections time out after 10 s, API
 * requests after 60 s and artifact transfers after 30 min. A request gets 5
 * tries with waits from 250 ms up to 8 s. A new version gets 5 min to become
 * READY. Downloads go to the default cache folder. */
void ap_mlflow_options_default(ap_mlflow_options *options);

/* Open the MLflow registry at url with options (NULL: the defaults). Reads
 * the credentials from the environment but does not contact the server yet. */
ap_status ap_mlflow_registry_open_with(const char *url, const ap_mlflow_options *options,
                                       ap_registry **registry, ap_error *err);

/* Download every file of a version into folder (created when missing), each
 * checked against its recorded sha256, and write the version's record, as
 * ap_registry_show returns it, to folder/version.json. */
ap_status ap_mlflow_registry_download(ap_registry *registry, const char *model, int version,
                                      const char *folder, ap_error *err);

#endif
