#ifndef APIARY_REGISTRY_MLFLOW_INTERNAL_H
#define APIARY_REGISTRY_MLFLOW_INTERNAL_H

/* Shared by the source files of the MLflow registry backend. */

#include <stdbool.h>

#include <jansson.h>

#include "pipeline/registry/mlflow_http.h"
#include "pipeline/registry/mlflow_registry.h"

#define MLFLOW_PATH_MAX          4096
#define MLFLOW_TAG_PREFIX        "apiary."
#define MLFLOW_FILE_TAG_PREFIX   "apiary.file."
#define MLFLOW_FORCED_TAG_PREFIX "apiary.forced_alias."
#define MLFLOW_FORMAT_VERSION    1
#define MLFLOW_FILE_NAME_MAX     128
/* Older MLflow releases (mlflow/utils/validation.py in 1.x) limit run and
 * model registry tag values to 5000 characters. */
#define MLFLOW_TAG_VALUE_MAX 4096
/* A forced move's reason is stored in a history tag, within the tag value limit. */
#define MLFLOW_REASON_MAX 2000

typedef struct {
    ap_registry base;
    mlflow_client client;
    char location[MLFLOW_URL_MAX];
    char cache_dir[MLFLOW_PATH_MAX]; /* "" when no default was found */
} mlflow_registry;

/* A model version as the server returned it. */
typedef struct {
    json_t *record; /* the model_version object */
    json_t *tags;   /* its tags as an object of key to value */
    int number;
} mlflow_version;

/* What registration reads from a validation report. */
typedef struct {
    const char *verdict;  /* "pass", "fail", "unknown" or "none" */
    int sha256_match;     /* 1 or 0, or -1 without a report or when it names no weights */
    json_t *failed_rules; /* array of strings */
    json_t *metrics;      /* "LABEL/METRIC" to number */
} mlflow_report;

/* ---- Shared helpers (mlflow_registry.c) ---- */

long long mlflow_now_ms(void);
/* Format milliseconds since the epoch as UTC ISO 8601 with milliseconds. */
void mlflow_format_time(long long ms, char text[32]);
/* Turn MLflow's [{"key", "value"}] list into an object (new reference). */
json_t *mlflow_tags_to_object(const json_t *list);
ap_status mlflow_check_file_name(const char *name, ap_error *err);
ap_status mlflow_check_move(const ap_registry_move *move, ap_error *err);

/* Fetch model-versions/get. AP_ERR_NOT_FOUND when the version does not exist. */
ap_status mlflow_get_version(mlflow_registry *registry, const char *model, int version,
                             mlflow_version *out, ap_error *err);
void mlflow_version_free(mlflow_version *version);

/* The version's files from its apiary.file.* tags: {NAME: {"sha256", "size"}}. */
ap_status mlflow_version_files(const mlflow_version *version, json_t **files, ap_error *err);

/* The artifact path behind an mlflow-artifacts: URI, for example "1/RUN/artifacts". */
ap_status mlflow_artifact_path(const char *uri, char *path, size_t size, ap_error *err);

/* Build the record that ap_registry_show returns, shaped like the local
 * backend's version.json plus an "mlflow" object. */
ap_status mlflow_build_record(const char *model, const mlflow_version *version, json_t **record,
                              ap_error *err);

/* ---- Files of a version (mlflow_files.c) ---- */

/* Check that the version is READY, lists a weights file and a model card,
 * and that every listed file on the server has its recorded sha256. */
ap_status mlflow_verify_files(mlflow_registry *registry, const mlflow_version *version,
                              ap_error *err);
/* The file_path operation: download into the cache folder and check. */
ap_status mlflow_file_path(ap_registry *base, const char *model, int version, const char *file_name,
                           char *path, size_t path_size, ap_error *err);
/* Download every file of a version into folder, and its record as version.json. */
ap_status mlflow_download_version(mlflow_registry *registry, const char *model, int version,
                                  const char *folder, ap_error *err);

/* ---- report.json and the model card (mlflow_report.c) ---- */

/* Start a summary with verdict "none", no failed rules and no metrics. */
ap_status mlflow_report_init(mlflow_report *summary, ap_error *err);
/* Read report.json at path into summary. model_sha256 is the sha256 of the weights. */
ap_status mlflow_report_read(mlflow_report *summary, const char *path, const char *model_sha256,
                             ap_error *err);
void mlflow_report_free(mlflow_report *summary);
/* Format the failed rules as a JSON array of at most MLFLOW_TAG_VALUE_MAX bytes. */
char *mlflow_failed_rules_text(const json_t *rules);
/* Build the runs/log-batch metric objects of the report's metrics. */
json_t *mlflow_report_metrics(const mlflow_report *summary);
/* Build runs/log-batch params from the card's scalar fields, named card.PATH. */
json_t *mlflow_card_params(const char *card_path);

/* ---- Backend operations (mlflow_register.c, mlflow_alias.c) ---- */

ap_status mlflow_register_version(ap_registry *base, const char *model,
                                  const ap_registry_new_version *request, int *version,
                                  ap_error *err);
ap_status mlflow_set_alias(ap_registry *base, const char *model, const char *alias, int version,
                           const ap_registry_move *move, int *previous, ap_error *err);
ap_status mlflow_get_alias(ap_registry *base, const char *model, const char *alias, int *version,
                           ap_error *err);
ap_status mlflow_rollback(ap_registry *base, const char *model, const char *alias, int target,
                          const ap_registry_move *move, int *version, ap_error *err);
ap_status mlflow_history(ap_registry *base, const char *model, json_t **history, ap_error *err);

/* Fetch registered-models/get: the model's aliases and tags. */
ap_status mlflow_get_model(mlflow_registry *registry, const char *model, json_t **registered,
                           ap_error *err);

#endif
