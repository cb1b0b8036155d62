#ifndef APIARY_CONFIG_CONFIG_H
#define APIARY_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

#include "pipeline/common/status.h"

/* Typed configuration read from YAML. Every key is described once in the
 * table in config_table.c (type, bounds, default, help); this struct is
 * where the values go. */

#define AP_MAX_LABELS 16
#define AP_MAX_STAGES 8
#define AP_NAME_MAX   64
#define AP_PATH_MAX   1024

typedef enum { AP_RESIZE_STRETCH = 0, AP_RESIZE_LETTERBOX = 1 } ap_resize_mode;
typedef enum { AP_POS_WEIGHT_AUTO = 0, AP_POS_WEIGHT_NONE = 1 } ap_pos_weight_mode;
typedef enum { AP_LOSS_BCE = 0, AP_LOSS_FOCAL = 1, AP_LOSS_ASYMMETRIC = 2 } ap_loss_kind;
/* group keeps each group on one side; random ignores data.group_column. */
typedef enum { AP_SPLIT_METHOD_GROUP = 0, AP_SPLIT_METHOD_RANDOM = 1 } ap_split_method;
/* How the gate picks each label's decision threshold on the validation split;
 * the same order as ap_threshold_policy in pipeline/eval/thresholds.h. */
typedef enum {
    AP_GATE_THRESHOLD_MAX_F1 = 0,
    AP_GATE_THRESHOLD_TARGET_RECALL = 1,
    AP_GATE_THRESHOLD_FIXED = 2,
} ap_gate_threshold_policy;

#define AP_GATE_MAX_RULES 32
#define AP_GATE_RULE_MAX  128

typedef struct {
    char root[AP_PATH_MAX];     /* dataset folder holding the manifest and images */
    char manifest[AP_PATH_MAX]; /* manifest file name inside root */
    char labels[AP_MAX_LABELS][AP_NAME_MAX];
    int label_count;
    char group_column[AP_NAME_MAX]; /* empty: every image is its own group */
    int width;                      /* network input width in pixels */
    int height;                     /* network input height in pixels */
    ap_resize_mode resize;
    float mean[3]; /* per-channel normalisation of [0,1] pixels, RGB */
    float std[3];
    double max_bad_fraction; /* fail when more of the images cannot be read */
    int64_t max_image_bytes;
    int64_t max_image_pixels;
} ap_data_config;

typedef struct {
    double val_fraction;
    double test_fraction;
    ap_split_method method;
} ap_split_config;

typedef struct {
    int stem_channels;
    int stem_kernel;
    int stem_stride;
    int stage_channels[AP_MAX_STAGES];
    int stage_count;
    int stage_blocks[AP_MAX_STAGES]; /* residual blocks per stage, same count as channels */
    int stage_blocks_count;
    double dropout;
} ap_model_config;

typedef struct {
    char device[16]; /* "cpu" or "cuda" */
    int threads;     /* 0: all cores */
    int epochs;
    int batch_size;
    double learning_rate;
    double min_learning_rate;
    double warmup_epochs;
    double weight_decay;
    double beta1;
    double beta2;
    double epsilon;
    ap_pos_weight_mode pos_weight;
    ap_loss_kind loss;
    double focal_gamma;          /* focal loss exponent of both target kinds */
    double asymmetric_gamma_pos; /* asymmetric loss exponent of positive targets */
    double asymmetric_gamma_neg; /* asymmetric loss exponent of negative targets */
    double asymmetric_clip;      /* asymmetric loss margin subtracted from negatives' p */
    bool augment;
    double brightness;      /* maximum relative brightness change */
    double contrast;        /* maximum relative contrast change */
    int log_every;          /* steps between log lines */
    int checkpoint_every;   /* epochs between checkpoints */
    int accumulation_steps; /* micro-batches per optimizer step in each process */
    int collective_timeout; /* seconds a process waits for the others in one collective */
    char precision[8];      /* "fp32", "tf32" or "bf16"; train.device=cuda only */
    bool deterministic;     /* bit-identical GPU runs: deterministic cuDNN algorithms */
} ap_train_config;

typedef struct {
    /* "LABEL.METRIC[.lower|.upper] OP VALUE" with OP >= or <=; LABEL may be "macro" */
    char rules[AP_GATE_MAX_RULES][AP_GATE_RULE_MAX];
    int rule_count;
    int min_positives; /* test positives each label with a rule needs */
    int min_negatives; /* test negatives each label with a rule needs */
    ap_gate_threshold_policy threshold_policy;
    double target_recall; /* target_recall policy: recall to reach on the validation split */
    double threshold;     /* fixed policy: the threshold of every label */
    double confidence_level;
    int bootstrap_resamples;
    double max_regression;   /* allowed drop in per-label accuracy against the champion */
    double regression_alpha; /* McNemar one-sided p-value below which a drop is real */
} ap_gate_config;

typedef struct {
    char uri[AP_PATH_MAX];        /* a folder, file:// URI or MLflow URL */
    char model_name[AP_NAME_MAX]; /* registered model whose aliases (champion) are used */
} ap_registry_config;

/* Blob store settings for s3:// URIs in data.root and output_dir. */
typedef struct {
    char endpoint[AP_PATH_MAX];  /* "" takes AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, or AWS */
    char region[AP_NAME_MAX];    /* "" takes AWS_REGION, AWS_DEFAULT_REGION, or us-east-1 */
    char path_style[8];          /* "auto", "true" or "false" */
    char ca_bundle[AP_PATH_MAX]; /* PEM file of trusted CAs; "" uses the system's */
    int concurrency;             /* transfers at once */
    int retries;                 /* attempts after a failed one */
    int timeout;                 /* seconds without progress before an attempt is aborted */
    char cache_dir[AP_PATH_MAX]; /* local copies of objects, reused while their ETag matches */
} ap_store_config;

#define AP_SCORE_MAX_ALERTS 16
#define AP_SCORE_ALERT_MAX  128

typedef struct {
    char model[AP_NAME_MAX];         /* registry alias or version number ("3" or "v3") */
    char input[AP_PATH_MAX];         /* folder of images, searched recursively */
    char output[AP_PATH_MAX];        /* predictions go to output/v<VERSION> */
    int batch_size;                  /* images per inference forward pass */
    int chunk_size;                  /* images decoded while the previous chunk runs inference */
    int threads;                     /* 0: all cores */
    char group_pattern[AP_NAME_MAX]; /* "none", "dir", "dir:N" or "name:N" */
    /* "LABEL.METRIC OP VALUE" with METRIC count or rate and OP >, >=, < or <= */
    char alerts[AP_SCORE_MAX_ALERTS][AP_SCORE_ALERT_MAX];
    int alert_count;
} ap_score_config;

typedef struct {
    char host[256];                   /* address or host name to listen on */
    int port;                         /* 0: any free port */
    int threads;                      /* HTTP connection threads */
    int inference_threads;            /* OpenMP threads of the network, 0: all cores */
    int64_t max_body_bytes;           /* request body limit */
    int64_t max_image_pixels;         /* decoded width * height limit per image */
    int max_images;                   /* images per request */
    int request_timeout_seconds;      /* idle time before a connection is closed */
    int shutdown_timeout_seconds;     /* wait for in-flight requests on SIGTERM */
    int max_concurrent;               /* requests served at once, health and /metrics aside */
    int batch_size;                   /* images per inference forward pass */
    int batch_wait_ms;                /* wait for more requests to fill a batch */
    char model[AP_NAME_MAX];          /* registry alias or version number */
    int watch_seconds;                /* registry poll interval */
    char auth_token_env[AP_NAME_MAX]; /* variable holding the bearer token, empty: no auth */
} ap_serve_config;

typedef struct {
    char source_path[AP_PATH_MAX]; /* the YAML file, for messages */
    char run_name[AP_NAME_MAX];
    char output_dir[AP_PATH_MAX]; /* runs go to output_dir/run_name */
    uint64_t seed;
    char log_level[16];
    ap_data_config data;
    ap_split_config split;
    ap_model_config model;
    ap_train_config train;
    ap_gate_config gate;
    ap_registry_config registry;
    ap_store_config store;
    ap_score_config score;
    ap_serve_config serve;
} ap_config;

/* Fill cfg with every default from the table. */
void ap_config_defaults(ap_config *cfg);

/* Parse a YAML file into cfg (defaults first). Unknown keys, wrong types and
 * out-of-range values fail with a message naming file, line and column.
 * ${VAR} in scalar values is replaced from the environment; an unset
 * variable is an error. ${VAR:-default} uses default when VAR is unset or
 * empty, and $$ is a literal '$'. On failure cfg is unchanged. */
ap_status ap_config_load_file(const char *path, ap_config *cfg, ap_error *err);
ap_status ap_config_load_string(const char *yaml, const char *name, ap_config *cfg, ap_error *err);

/* Apply one "--set key=value" override, for example "train.epochs=3", with
 * the same checks as the YAML reader. Lists are comma-separated
 * ("data.labels=wasp,bee"). The value is used as is: no ${VAR} expansion.
 * On failure cfg is unchanged. */
ap_status ap_config_set(ap_config *cfg, const char *assignment, ap_error *err);

/* Set the key name to value as ap_config_set does. The error message is the
 * reason alone, so that a caller can say where the value came from. */
ap_status ap_config_set_key(ap_config *cfg, const char *name, const char *value, ap_error *err);

/* Copy into out only the settings that shape a trained model (seed, data,
 * split, model and, with training set, train), leaving every other key at
 * its default, so two configs can be compared or hashed on those alone.
 * Threads, logging, checkpoint frequency and the collective timeout are
 * never copied. */
void ap_config_model_settings(const ap_config *cfg, bool training, ap_config *out);

/* Check every key against its bounds (fields may have been set by code) and
 * the rules that span several keys (for example stage counts match). */
ap_status ap_config_validate(const ap_config *cfg, ap_error *err);

/* True when every key in the table has the same value in a and b
 * (source_path is not a key and is ignored). */
bool ap_config_equal(const ap_config *a, const ap_config *b);

/* Write the table of keys (key, type, default, bounds, help) for --help. */
void ap_config_print_keys(void *file);

/* Serialise cfg back to YAML text (malloc'd), for the run folder. */
char *ap_config_to_yaml(const ap_config *cfg);

#endif
