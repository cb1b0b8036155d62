#include "pipeline/config/config_table.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/config/config_text.h"

/* The enum keys store the index of a name in their choices list. */
_Static_assert(AP_RESIZE_STRETCH == 0 && AP_RESIZE_LETTERBOX == 1, "resize names out of order");
_Static_assert(AP_POS_WEIGHT_AUTO == 0 && AP_POS_WEIGHT_NONE == 1, "pos_weight names out of order");
_Static_assert(sizeof(ap_resize_mode) == sizeof(int), "enum keys are stored as int");
_Static_assert(sizeof(ap_pos_weight_mode) == sizeof(int), "enum keys are stored as int");
_Static_assert(AP_GATE_THRESHOLD_MAX_F1 == 0 && AP_GATE_THRESHOLD_TARGET_RECALL == 1 &&
                   AP_GATE_THRESHOLD_FIXED == 2,
               "threshold policy names out of order");
_Static_assert(sizeof(ap_gate_threshold_policy) == sizeof(int), "enum keys are stored as int");

static const char *const resize_names[] = {"stretch", "letterbox", NULL};
static const char *const pos_weight_names[] = {"auto", "none", NULL};
_Static_assert(AP_LOSS_BCE == 0 && AP_LOSS_FOCAL == 1 && AP_LOSS_ASYMMETRIC == 2,
               "loss names out of order");
_Static_assert(AP_SPLIT_METHOD_GROUP == 0 && AP_SPLIT_METHOD_RANDOM == 1,
               "split method names out of order");
_Static_assert(sizeof(ap_loss_kind) == sizeof(int) && sizeof(ap_split_method) == sizeof(int),
               "enum keys are stored as int");
static const char *const loss_names[] = {"bce", "focal", "asymmetric", NULL};
static const char *const split_method_names[] = {"group", "random", NULL};
static const char *const device_names[] = {"cpu", "cuda", NULL};
static const char *const precision_names[] = {"fp32", "tf32", "bf16", NULL};
static const char *const log_level_names[] = {"debug", "info", "warn", "error", NULL};
static const char *const path_style_names[] = {"auto", "true", "false", NULL};
static const char *const threshold_policy_names[] = {"max_f1", "target_recall", "fixed", NULL};

#define MEMBER(member) (((ap_config *)0)->member)
#define FIELD(member)  .offset = offsetof(ap_config, member), .size = sizeof(MEMBER(member))
#define ITEMS(member)                                                                              \
    FIELD(member), .item_size = sizeof(MEMBER(member)[0]),                                         \
                   .max_items = (int)(sizeof(MEMBER(member)) / sizeof(MEMBER(member)[0]))
#define COUNT(member)    .count_offset = offsetof(ap_config, member)
#define INTS(low, high)  .int_min = (low), .int_max = (high)
#define REALS(low, high) .real_min = (low), .real_max = (high)
#define MIB              (1024 * 1024)

/* Every configuration key, in the order ap_config_to_yaml writes them. Keys
 * of one section must stay together. */
const ap_config_key ap_config_keys[] = {
    {.name = "run_name",
     .type = AP_VALUE_STRING,
     FIELD(run_name),
     .flags = AP_KEY_NAME | AP_KEY_NONEMPTY,
     .default_text = "local",
     .help = "Name of this run, whose files go to output_dir/run_name"},
    {.name = "output_dir",
     .type = AP_VALUE_STRING,
     FIELD(output_dir),
     .flags = AP_KEY_NONEMPTY,
     .default_text = "runs",
     .help = "Folder that contains one subfolder per run"},
    {.name = "seed",
     .type = AP_VALUE_UINT64,
     FIELD(seed),
     .default_text = "42",
     .help = "Seed for the split, weight initialisation, shuffling, dropout and augmentation"},
    {.name = "log_level",
     .type = AP_VALUE_CHOICE,
     FIELD(log_level),
     .choices = log_level_names,
     .default_text = "info",
     .help = "Minimum level of the log messages that are printed"},

    {.name = "data.root",
     .type = AP_VALUE_STRING,
     FIELD(data.root),
     .default_text = "",
     .help = "Dataset folder that contains the manifest and the images (required)"},
    {.name = "data.manifest",
     .type = AP_VALUE_STRING,
     FIELD(data.manifest),
     .flags = AP_KEY_NONEMPTY,
     .default_text = "labels.csv",
     .help = "Manifest CSV file inside data.root: a file column and one column per label"},
    {.name = "data.labels",
     .type = AP_VALUE_STRING_LIST,
     ITEMS(data.labels),
     COUNT(data.label_count),
     .flags = AP_KEY_NAME | AP_KEY_NONEMPTY,
     .default_text = "",
     .help = "Manifest label columns the network predicts, one output each (required)"},
    {.name = "data.group_column",
     .type = AP_VALUE_STRING,
     FIELD(data.group_column),
     .flags = AP_KEY_NAME,
     .default_text = "",
     .help = "Manifest column naming each image's group, which stays on one side of the "
             "split. Empty makes every image its own group"},
    {.name = "data.width",
     .type = AP_VALUE_INT,
     FIELD(data.width),
     INTS(16, 4096),
     .default_text = "64",
     .help = "Network input width in pixels"},
    {.name = "data.height",
     .type = AP_VALUE_INT,
     FIELD(data.height),
     INTS(16, 4096),
     .default_text = "64",
     .help = "Network input height in pixels"},
    {.name = "data.resize",
     .type = AP_VALUE_ENUM,
     FIELD(data.resize),
     .choices = resize_names,
     .default_text = "letterbox",
     .help = "How images reach the input size: stretch ignores the aspect ratio, letterbox "
             "keeps it and pads with black"},
    {.name = "data.mean",
     .type = AP_VALUE_FLOAT_LIST,
     ITEMS(data.mean),
     REALS(0.0, 1.0),
     .default_text = "0.5,0.5,0.5",
     .help = "Per-channel mean (red, green, blue) subtracted from pixels scaled to [0, 1]"},
    {.name = "data.std",
     .type = AP_VALUE_FLOAT_LIST,
     ITEMS(data.std),
     REALS(0.0, 1.0),
     .flags = AP_KEY_MIN_EXCLUSIVE,
     .default_text = "0.25,0.25,0.25",
     .help = "Per-channel standard deviation (red, green, blue) that pixels are divided by"},
    {.name = "data.max_bad_fraction",
     .type = AP_VALUE_DOUBLE,
     FIELD(data.max_bad_fraction),
     REALS(0.0, 1.0),
     .default_text = "0.05",
     .help = "Maximum fraction of manifest rows whose image may be missing or unreadable"},
    {.name = "data.max_image_bytes",
     .type = AP_VALUE_INT64,
     FIELD(data.max_image_bytes),
     INTS(1, INT64_C(4) * 1024 * MIB),
     .default_text = "33554432",
     .help = "Maximum encoded image file size in bytes. Larger files count as bad images"},
    {.name = "data.max_image_pixels",
     .type = AP_VALUE_INT64,
     FIELD(data.max_image_pixels),
     INTS(1, 1000000000),
     .default_text = "50000000",
     .help = "Maximum decoded image size in pixels (width x height), checked before decoding"},

    {.name = "split.val_fraction",
     .type = AP_VALUE_DOUBLE,
     FIELD(split.val_fraction),
     REALS(0.0, 0.9),
     .flags = AP_KEY_MAX_EXCLUSIVE,
     .default_text = "0.15",
     .help = "Fraction of the images (by group) held out for validation during training"},
    {.name = "split.test_fraction",
     .type = AP_VALUE_DOUBLE,
     FIELD(split.test_fraction),
     REALS(0.0, 0.9),
     .flags = AP_KEY_MAX_EXCLUSIVE,
     .default_text = "0.2",
     .help = "Fraction of the images (by group) held out for the final test"},
    {.name = "split.method",
     .type = AP_VALUE_ENUM,
     FIELD(split.method),
     .choices = split_method_names,
     .default_text = "group",
     .help = "group keeps every group of data.group_column in one part; random ignores "
             "data.group_column and splits single images, which lets near duplicates reach "
             "both sides (only for measuring that leakage)"},

    {.name = "model.stem_channels",
     .type = AP_VALUE_INT,
     FIELD(model.stem_channels),
     INTS(1, 1024),
     .default_text = "16",
     .help = "Output channels of the first convolution"},
    {.name = "model.stem_kernel",
     .type = AP_VALUE_INT,
     FIELD(model.stem_kernel),
     INTS(1, 15),
     .default_text = "3",
     .help = "Kernel size of the first convolution in pixels"},
    {.name = "model.stem_stride",
     .type = AP_VALUE_INT,
     FIELD(model.stem_stride),
     INTS(1, 4),
     .default_text = "1",
     .help = "Stride of the first convolution in pixels"},
    {.name = "model.stage_channels",
     .type = AP_VALUE_INT_LIST,
     ITEMS(model.stage_channels),
     COUNT(model.stage_count),
     INTS(1, 4096),
     .default_text = "16,32,64",
     .help = "Channels of each residual stage. Every stage after the first halves the "
             "resolution"},
    {.name = "model.stage_blocks",
     .type = AP_VALUE_INT_LIST,
     ITEMS(model.stage_blocks),
     COUNT(model.stage_blocks_count),
     INTS(1, 64),
     .default_text = "1,1,1",
     .help = "Residual blocks in each stage, one count per entry of model.stage_channels"},
    {.name = "model.dropout",
     .type = AP_VALUE_DOUBLE,
     FIELD(model.dropout),
     REALS(0.0, 1.0),
     .flags = AP_KEY_MAX_EXCLUSIVE,
     .default_text = "0.2",
     .help = "Probability of dropping each pooled feature before the last layer in training"},

    {.name = "train.device",
     .type = AP_VALUE_CHOICE,
     FIELD(train.device),
     .choices = device_names,
     .default_text = "cpu",
     .help = "Where to train: cpu (oneDNN) or cuda (one GPU per process)"},
    {.name = "train.threads",
     .type = AP_VALUE_INT,
     FIELD(train.threads),
     INTS(0, 4096),
     .default_text = "0",
     .help = "CPU threads per process, or 0 for every core"},
    {.name = "train.epochs",
     .type = AP_VALUE_INT,
     FIELD(train.epochs),
     INTS(1, 100000),
     .default_text = "10",
     .help = "Passes over the training split"},
    {.name = "train.batch_size",
     .type = AP_VALUE_INT,
     FIELD(train.batch_size),
     INTS(2, 65536),
     .default_text = "32",
     .help = "Images per optimizer step over all processes (the global batch); each of N "
             "processes takes batch_size / N, at least 2 because batch norm needs two"},
    {.name = "train.learning_rate",
     .type = AP_VALUE_DOUBLE,
     FIELD(train.learning_rate),
     REALS(0.0, 10.0),
     .flags = AP_KEY_MIN_EXCLUSIVE,
     .default_text = "0.003",
     .help = "Peak AdamW learning rate, reached at the end of warmup"},
    {.name = "train.min_learning_rate",
     .type = AP_VALUE_DOUBLE,
     FIELD(train.min_learning_rate),
     REALS(0.0, 10.0),
     .default_text = "1e-05",
     .help = "Learning rate at the end of the schedule, at most train.learning_rate"},
    {.name = "train.warmup_epochs",
     .type = AP_VALUE_DOUBLE,
     FIELD(train.warmup_epochs),
     REALS(0.0, 100000.0),
     .default_text = "1",
     .help = "Epochs over which the learning rate rises linearly to its peak"},
    {.name = "train.weight_decay",
     .type = AP_VALUE_DOUBLE,
     FIELD(train.weight_decay),
     REALS(0.0, 1.0),
     .default_text = "0.05",
     .help = "Decoupled (AdamW) weight decay of convolution and dense weights"},
    {.name = "train.beta1",
     .type = AP_VALUE_DOUBLE,
     FIELD(train.beta1),
     REALS(0.0, 1.0),
     .flags = AP_KEY_MAX_EXCLUSIVE,
     .default_text = "0.9",
     .help = "AdamW decay rate of the first moment (gradient mean)"},
    {.name = "train.beta2",
     .type = AP_VALUE_DOUBLE,
     FIELD(train.beta2),
     REALS(0.0, 1.0),
     .flags = AP_KEY_MAX_EXCLUSIVE,
     .default_text = "0.999",
     .help = "AdamW decay rate of the second moment (squared gradient mean)"},
    {.name = "train.epsilon",
     .type = AP_VALUE_DOUBLE,
     FIELD(train.epsilon),
     REALS(0.0, 1.0),
     .flags = AP_KEY_MIN_EXCLUSIVE,
     .default_text = "1e-08",
     .help = "AdamW term added to the denominator for numerical stability"},
    {.name = "train.pos_weight",
     .type = AP_VALUE_ENUM,
     FIELD(train.pos_weight),
     .choices = pos_weight_names,
     .default_text = "auto",
     .help = "Loss weight of positive examples: auto uses negatives/positives of each label "
             "in the training split, none uses 1"},
    {.name = "train.loss",
     .type = AP_VALUE_ENUM,
     FIELD(train.loss),
     .choices = loss_names,
     .default_text = "bce",
     .help = "Loss on the logits, skipping unknown labels: bce (binary cross-entropy), focal "
             "(Lin et al. 2017) or asymmetric (Ridnik et al. 2021); all scale positives by "
             "train.pos_weight"},
    {.name = "train.focal_gamma",
     .type = AP_VALUE_DOUBLE,
     FIELD(train.focal_gamma),
     REALS(0.0, 10.0),
     .default_text = "2",
     .help = "Focal loss exponent: each target's loss is scaled by (1 - p_correct)^gamma, "
             "0 gives bce"},
    {.name = "train.asymmetric_gamma_pos",
     .type = AP_VALUE_DOUBLE,
     FIELD(train.asymmetric_gamma_pos),
     REALS(0.0, 10.0),
     .default_text = "0",
     .help = "Asymmetric loss exponent of positive targets: their loss is scaled by "
             "(1 - p)^gamma_pos"},
    {.name = "train.asymmetric_gamma_neg",
     .type = AP_VALUE_DOUBLE,
     FIELD(train.asymmetric_gamma_neg),
     REALS(0.0, 10.0),
     .default_text = "4",
     .help = "Asymmetric loss exponent of negative targets: their loss is scaled by "
             "p_m^gamma_neg, with p_m = max(p - asymmetric_clip, 0)"},
    {.name = "train.asymmetric_clip",
     .type = AP_VALUE_DOUBLE,
     FIELD(train.asymmetric_clip),
     REALS(0.0, 1.0),
     .flags = AP_KEY_MAX_EXCLUSIVE,
     .default_text = "0.05",
     .help = "Asymmetric loss probability margin: negatives with p at or below it add no loss"},
    {.name = "train.augment",
     .type = AP_VALUE_BOOL,
     FIELD(train.augment),
     .default_text = "true",
     .help = "Randomly flip and change brightness and contrast of training images"},
    {.name = "train.brightness",
     .type = AP_VALUE_DOUBLE,
     FIELD(train.brightness),
     REALS(0.0, 1.0),
     .default_text = "0.1",
     .help = "Maximum relative brightness change of augmentation (0.1 is +-10%)"},
    {.name = "train.contrast",
     .type = AP_VALUE_DOUBLE,
     FIELD(train.contrast),
     REALS(0.0, 1.0),
     .default_text = "0.1",
     .help = "Maximum relative contrast change of augmentation (0.1 is +-10%)"},
    {.name = "train.log_every",
     .type = AP_VALUE_INT,
     FIELD(train.log_every),
     INTS(1, 1000000),
     .default_text = "10",
     .help = "Optimizer steps between training log lines"},
    {.name = "train.checkpoint_every",
     .type = AP_VALUE_INT,
     FIELD(train.checkpoint_every),
     INTS(1, 100000),
     .default_text = "1",
     .help = "Epochs between checkpoints"},
    {.name = "train.accumulation_steps",
     .type = AP_VALUE_INT,
     FIELD(train.accumulation_steps),
     INTS(1, 65536),
     .default_text = "1",
     .help = "Micro-batches per optimizer step in each process: train.batch_size is split "
             "into processes x accumulation_steps micro-batches whose gradients are summed, "
             "and batch norm normalises each micro-batch on its own"},
    {.name = "train.collective_timeout",
     .type = AP_VALUE_INT,
     FIELD(train.collective_timeout),
     INTS(1, 86400),
     .default_text = "600",
     .help = "Seconds a process of a multi-process (mpirun) job waits for the others in one "
             "collective, such as the gradient all-reduce or the wait for rank 0 to prepare "
             "the data, before the job is aborted"},
    {.name = "train.precision",
     .type = AP_VALUE_CHOICE,
     FIELD(train.precision),
     .choices = precision_names,
     .default_text = "fp32",
     .help = "GPU arithmetic of convolutions and the dense layer (train.device=cuda): fp32, "
             "tf32 (tensor cores round their inputs to TF32) or bf16 (convolutions read bf16 "
             "copies of input and weights and return bf16 outputs and gradients, with float "
             "accumulation; the dense layer rounds its inputs to bf16); activations, batch "
             "norm, loss, gradients and master weights stay fp32 in every mode"},
    {.name = "train.deterministic",
     .type = AP_VALUE_BOOL,
     FIELD(train.deterministic),
     .default_text = "false",
     .help = "GPU training with deterministic cuDNN algorithms and fixed reduction order, so "
             "two runs are bit-identical, at some cost in speed; CPU training always is"},

    {.name = "gate.rules",
     .type = AP_VALUE_STRING_LIST,
     ITEMS(gate.rules),
     COUNT(gate.rule_count),
     .flags = AP_KEY_NONEMPTY,
     .default_text = "",
     .help = "Test-split bars the model must meet, each \"LABEL.METRIC[.lower|.upper] OP VALUE\" "
             "with OP >= or <=, LABEL a data.labels entry or macro, for example "
             "\"wasp.recall.lower >= 0.9\". .lower and .upper are the confidence bounds"},
    {.name = "gate.min_positives",
     .type = AP_VALUE_INT,
     FIELD(gate.min_positives),
     INTS(0, 100000000),
     .default_text = "10",
     .help = "Test positives every label named by a rule needs (all labels for a macro rule); "
             "fewer fail the gate"},
    {.name = "gate.min_negatives",
     .type = AP_VALUE_INT,
     FIELD(gate.min_negatives),
     INTS(0, 100000000),
     .default_text = "10",
     .help = "Test negatives every label named by a rule needs (all labels for a macro rule); "
             "fewer fail the gate"},
    {.name = "gate.threshold_policy",
     .type = AP_VALUE_ENUM,
     FIELD(gate.threshold_policy),
     .choices = threshold_policy_names,
     .default_text = "max_f1",
     .help = "How each label's decision threshold is chosen on the validation split: max_f1, "
             "target_recall (the highest threshold reaching gate.target_recall) or fixed "
             "(gate.threshold)"},
    {.name = "gate.target_recall",
     .type = AP_VALUE_DOUBLE,
     FIELD(gate.target_recall),
     REALS(0.0, 1.0),
     .flags = AP_KEY_MIN_EXCLUSIVE,
     .default_text = "0.95",
     .help = "Validation recall the target_recall threshold policy reaches for every label"},
    {.name = "gate.threshold",
     .type = AP_VALUE_DOUBLE,
     FIELD(gate.threshold),
     REALS(0.0, 1.0),
     .default_text = "0.5",
     .help = "Decision threshold of every label under the fixed threshold policy"},
    {.name = "gate.confidence_level",
     .type = AP_VALUE_DOUBLE,
     FIELD(gate.confidence_level),
     REALS(0.0, 1.0),
     .flags = AP_KEY_MIN_EXCLUSIVE | AP_KEY_MAX_EXCLUSIVE,
     .default_text = "0.95",
     .help = "Two-sided confidence level of the metric intervals that .lower and .upper read"},
    {.name = "gate.bootstrap_resamples",
     .type = AP_VALUE_INT,
     FIELD(gate.bootstrap_resamples),
     INTS(0, 100000),
     .default_text = "1000",
     .help = "Group bootstrap resamples for the intervals of f1, AUCs, brier, ece and macro "
             "averages; 0 leaves those intervals out"},
    {.name = "gate.max_regression",
     .type = AP_VALUE_DOUBLE,
     FIELD(gate.max_regression),
     REALS(0.0, 1.0),
     .default_text = "0.01",
     .help = "Largest drop in a label's test accuracy against the registry champion that is "
             "accepted, as a fraction (0.01 is one percentage point)"},
    {.name = "gate.regression_alpha",
     .type = AP_VALUE_DOUBLE,
     FIELD(gate.regression_alpha),
     REALS(0.0, 1.0),
     .flags = AP_KEY_MIN_EXCLUSIVE | AP_KEY_MAX_EXCLUSIVE,
     .default_text = "0.05",
     .help = "A drop larger than gate.max_regression fails only when McNemar's one-sided "
             "p-value is below this significance level"},

    {.name = "registry.uri",
     .type = AP_VALUE_STRING,
     FIELD(registry.uri),
     .flags = AP_KEY_NONEMPTY,
     .default_text = "registry",
     .help = "Model registry: a folder path or file:// URI for the local registry, or an "
             "http://, https:// or mlflow:// URL of an MLflow tracking server"},
    {.name = "registry.model_name",
     .type = AP_VALUE_STRING,
     FIELD(registry.model_name),
     .flags = AP_KEY_NAME | AP_KEY_NONEMPTY,
     .default_text = "apiary-bees",
     .help = "Registered model name: a lowercase letter, then lowercase letters, digits, '_' "
             "or '-'"},

    {.name = "store.endpoint",
     .type = AP_VALUE_STRING,
     FIELD(store.endpoint),
     .default_text = "",
     .help = "S3 endpoint URL, https://HOST[:PORT]. Empty takes AWS_ENDPOINT_URL_S3, then "
             "AWS_ENDPOINT_URL, then AWS (https://s3.REGION.amazonaws.com)"},
    {.name = "store.region",
     .type = AP_VALUE_STRING,
     FIELD(store.region),
     .default_text = "",
     .help = "S3 region that requests are signed for. Empty takes AWS_REGION, then "
             "AWS_DEFAULT_REGION, then us-east-1"},
    {.name = "store.path_style",
     .type = AP_VALUE_CHOICE,
     FIELD(store.path_style),
     .choices = path_style_names,
     .default_text = "auto",
     .help = "S3 addressing: true puts the bucket in the path (MinIO, Ceph), false in the "
             "host name, auto picks the host name for amazonaws.com endpoints"},
    {.name = "store.ca_bundle",
     .type = AP_VALUE_STRING,
     FIELD(store.ca_bundle),
     .default_text = "",
     .help = "PEM file of the certificate authorities trusted for https endpoints. Empty uses "
             "the system's. Certificates are always verified"},
    {.name = "store.concurrency",
     .type = AP_VALUE_INT,
     FIELD(store.concurrency),
     INTS(1, 256),
     .default_text = "8",
     .help = "S3 transfers in flight at once"},
    {.name = "store.retries",
     .type = AP_VALUE_INT,
     FIELD(store.retries),
     INTS(0, 100),
     .default_text = "5",
     .help = "Retries of an S3 request after a connection error, timeout, HTTP 5xx, 429 or "
             "SlowDown, with exponential backoff and jitter"},
    {.name = "store.timeout",
     .type = AP_VALUE_INT,
     FIELD(store.timeout),
     INTS(1, 3600),
     .default_text = "60",
     .help = "Seconds an S3 transfer may go without moving a byte before it is aborted and "
             "retried"},
    {.name = "store.cache_dir",
     .type = AP_VALUE_STRING,
     FIELD(store.cache_dir),
     .flags = AP_KEY_NONEMPTY,
     .default_text = ".apiary-cache",
     .help = "Folder of local copies of s3:// data (reused while the ETag matches) and of "
             "s3:// run folders staged for upload"},

    {.name = "score.model",
     .type = AP_VALUE_STRING,
     FIELD(score.model),
     .flags = AP_KEY_NAME | AP_KEY_NONEMPTY,
     .default_text = "champion",
     .help = "Registered model that apiary score uses: an alias such as champion, or a version "
             "number such as 3 or v3"},
    {.name = "score.input",
     .type = AP_VALUE_STRING,
     FIELD(score.input),
     .default_text = "",
     .help = "Folder of images to score, searched recursively for .jpg, .jpeg and .png files "
             "(required unless apiary score gets --input)"},
    {.name = "score.output",
     .type = AP_VALUE_STRING,
     FIELD(score.output),
     .flags = AP_KEY_NONEMPTY,
     .default_text = "scores",
     .help = "Folder for predictions; each model version writes to its own subfolder v<VERSION>"},
    {.name = "score.batch_size",
     .type = AP_VALUE_INT,
     FIELD(score.batch_size),
     INTS(1, 4096),
     .default_text = "32",
     .help = "Images per inference forward pass"},
    {.name = "score.chunk_size",
     .type = AP_VALUE_INT,
     FIELD(score.chunk_size),
     INTS(1, 65536),
     .default_text = "256",
     .help = "Images decoded while the previous chunk runs inference, rounded up to a multiple "
             "of score.batch_size; predictions are flushed to disk once per chunk"},
    {.name = "score.threads",
     .type = AP_VALUE_INT,
     FIELD(score.threads),
     INTS(0, 4096),
     .default_text = "0",
     .help = "CPU threads for decoding and for inference, or 0 for every core"},
    {.name = "score.group_pattern",
     .type = AP_VALUE_STRING,
     FIELD(score.group_pattern),
     .flags = AP_KEY_NONEMPTY,
     .default_text = "dir",
     .help = "How an image's group (hive, camera, day) comes from its path below score.input: "
             "none; dir (first folder); dir:N (first N folders); name:N (first N '_'-separated "
             "fields of the file name)"},
    {.name = "score.alerts",
     .type = AP_VALUE_STRING_LIST,
     ITEMS(score.alerts),
     COUNT(score.alert_count),
     .flags = AP_KEY_NONEMPTY,
     .default_text = "",
     .help = "Conditions reported as alerts, each \"LABEL.METRIC OP VALUE\" with METRIC count "
             "(positive decisions) or rate (count per decoded image), OP >, >=, < or <=, and "
             "LABEL a model label or errors (images that failed to decode), for example "
             "\"wasp.count >= 1\"; checked for the whole run and for every group"},

    {.name = "serve.host",
     .type = AP_VALUE_STRING,
     FIELD(serve.host),
     .flags = AP_KEY_NONEMPTY,
     .default_text = "127.0.0.1",
     .help = "Address or host name apiary serve listens on. The default accepts only local "
             "clients, and 0.0.0.0 or :: accepts clients from every network"},
    {.name = "serve.port",
     .type = AP_VALUE_INT,
     FIELD(serve.port),
     INTS(0, 65535),
     .default_text = "8080",
     .help = "TCP port apiary serve listens on, or 0 for any free port (the log names it)"},
    {.name = "serve.threads",
     .type = AP_VALUE_INT,
     FIELD(serve.threads),
     INTS(1, 1024),
     .default_text = "4",
     .help = "HTTP threads that read requests, decode images and write responses"},
    {.name = "serve.inference_threads",
     .type = AP_VALUE_INT,
     FIELD(serve.inference_threads),
     INTS(0, 4096),
     .default_text = "1",
     .help = "CPU threads of the network's forward pass, or 0 for every core. The default "
             "leaves the other cores to the HTTP threads, which decode the images; OpenMP "
             "threads that share cores with them wait for each other at every layer"},
    {.name = "serve.max_body_bytes",
     .type = AP_VALUE_INT64,
     FIELD(serve.max_body_bytes),
     INTS(1, 1024 * MIB),
     .default_text = "16777216",
     .help = "Maximum request body size in bytes; larger requests get 413"},
    {.name = "serve.max_image_pixels",
     .type = AP_VALUE_INT64,
     FIELD(serve.max_image_pixels),
     INTS(1, 1000000000),
     .default_text = "16777216",
     .help = "Maximum decoded size of one image in pixels (width x height), checked before "
             "decoding; larger images get 413"},
    {.name = "serve.max_images",
     .type = AP_VALUE_INT,
     FIELD(serve.max_images),
     INTS(1, 4096),
     .default_text = "64",
     .help = "Maximum images in one request; more get 413"},
    {.name = "serve.request_timeout_seconds",
     .type = AP_VALUE_INT,
     FIELD(serve.request_timeout_seconds),
     INTS(1, 3600),
     .default_text = "30",
     .help = "Seconds a connection may stay idle (no bytes received or sent) before it is closed"},
    {.name = "serve.shutdown_timeout_seconds",
     .type = AP_VALUE_INT,
     FIELD(serve.shutdown_timeout_seconds),
     INTS(0, 3600),
     .default_text = "25",
     .help = "Seconds apiary serve waits on SIGTERM or SIGINT for in-flight requests to finish "
             "before it closes their connections. The default stays below the 30 s grace period "
             "that Kubernetes gives a pod by default"},
    {.name = "serve.max_concurrent",
     .type = AP_VALUE_INT,
     FIELD(serve.max_concurrent),
     INTS(1, 100000),
     .default_text = "64",
     .help = "Requests served at once; more get 503 with Retry-After. Health checks and "
             "/metrics are not counted and never rejected as busy"},
    {.name = "serve.batch_size",
     .type = AP_VALUE_INT,
     FIELD(serve.batch_size),
     INTS(1, 1024),
     .default_text = "8",
     .help = "Images per forward pass: images of requests that arrive together run as one "
             "batch"},
    {.name = "serve.batch_wait_ms",
     .type = AP_VALUE_INT,
     FIELD(serve.batch_wait_ms),
     INTS(0, 10000),
     .default_text = "2",
     .help = "Milliseconds the first request of a batch waits for others to fill it"},
    {.name = "serve.model",
     .type = AP_VALUE_STRING,
     FIELD(serve.model),
     .flags = AP_KEY_NAME | AP_KEY_NONEMPTY,
     .default_text = "champion",
     .help = "Registered model that apiary serve loads: an alias such as champion, or a "
             "version number such as 3 or v3"},
    {.name = "serve.watch_seconds",
     .type = AP_VALUE_INT,
     FIELD(serve.watch_seconds),
     INTS(1, 86400),
     .default_text = "30",
     .help = "Seconds between checks of serve.model in the registry; when the alias moves, the "
             "new version is loaded in the background and replaces the old one"},
    {.name = "serve.auth_token_env",
     .type = AP_VALUE_STRING,
     FIELD(serve.auth_token_env),
     .flags = AP_KEY_NAME,
     .default_text = "",
     .help = "Environment variable holding a bearer token that every request except health "
             "checks must send as Authorization: Bearer TOKEN; empty turns authentication off"},
};

const size_t ap_config_key_count = sizeof(ap_config_keys) / sizeof(ap_config_keys[0]);

const ap_config_key *ap_config_key_find(const char *name)
{
    for (size_t i = 0; i < ap_config_key_count; i++)
        if (strcmp(ap_config_keys[i].name, name) == 0)
            return &ap_config_keys[i];
    return NULL;
}

bool ap_config_is_section(const char *name)
{
    size_t length = strlen(name);
    if (length == 0)
        return false;
    for (size_t i = 0; i < ap_config_key_count; i++) {
        const char *key = ap_config_keys[i].name;
        if (strncmp(key, name, length) == 0 && key[length] == '.')
            return true;
    }
    return false;
}

bool ap_config_key_is_list(const ap_config_key *key)
{
    return key->type == AP_VALUE_FLOAT_LIST || key->type == AP_VALUE_STRING_LIST ||
           key->type == AP_VALUE_INT_LIST;
}

/* ---- Messages about keys ---- */

static size_t edit_distance(const char *a, const char *b)
{
    size_t rows = strlen(a), columns = strlen(b);
    size_t previous[KEY_PATH_MAX + 1], current[KEY_PATH_MAX + 1];
    if (rows > KEY_PATH_MAX || columns > KEY_PATH_MAX)
        return SIZE_MAX;
    for (size_t j = 0; j <= columns; j++)
        previous[j] = j;
    for (size_t i = 1; i <= rows; i++) {
        current[0] = i;
        for (size_t j = 1; j <= columns; j++) {
            size_t replace = previous[j - 1] + (a[i - 1] != b[j - 1]);
            size_t remove = previous[j] + 1;
            size_t insert = current[j - 1] + 1;
            size_t best = replace < remove ? replace : remove;
            current[j] = best < insert ? best : insert;
        }
        memcpy(previous, current, (columns + 1) * sizeof(size_t));
    }
    return previous[columns];
}

/* The known key closest to name, or NULL when none is close enough to be
 * a likely typo. */
static const char *closest_key(const char *name)
{
    const char *best = NULL;
    size_t best_distance = strlen(name) >= 12 ? 3 : 2;
    for (size_t i = 0; i < ap_config_key_count; i++) {
        size_t distance = edit_distance(name, ap_config_keys[i].name);
        if (distance <= best_distance) {
            best = ap_config_keys[i].name;
            best_distance = distance;
        }
    }
    return best;
}

void ap_config_list_children(const char *section, char *out, size_t out_size)
{
    size_t prefix_length = section[0] != '\0' ? strlen(section) + 1 : 0;
    text_buffer list = {0};
    text_append(&list, "", 0);
    const char *previous = NULL;
    size_t previous_length = 0;
    for (size_t i = 0; i < ap_config_key_count; i++) {
        const char *name = ap_config_keys[i].name;
        if (prefix_length > 0 &&
            !(strncmp(name, section, prefix_length - 1) == 0 && name[prefix_length - 1] == '.'))
            continue;
        const char *child = name + prefix_length;
        size_t child_length = strcspn(child, ".");

        /* Keys of a section are adjacent in the table, so a repeat follows its first. */
        if (previous != NULL && previous_length == child_length &&
            strncmp(previous, child, child_length) == 0)
            continue;
        if (list.length > 0)
            text_append_string(&list, ", ");
        text_append(&list, child, child_length);
        previous = child;
        previous_length = child_length;
    }
    snprintf(out, out_size, "%s", list.failed ? "" : list.data);
    free(list.data);
}

void ap_config_describe_unknown_key(const char *name, char *out, size_t out_size)
{
    char section[KEY_PATH_MAX], children[REASON_MAX], suggestion[KEY_PATH_MAX + 32] = "";
    const char *dot = strrchr(name, '.');
    snprintf(section, sizeof(section), "%.*s", dot != NULL ? (int)(dot - name) : 0, name);
    if (!ap_config_is_section(section))
        section[0] = '\0';
    ap_config_list_children(section, children, sizeof(children));

    const char *closest = closest_key(name);
    if (closest != NULL)
        snprintf(suggestion, sizeof(suggestion), "did you mean %s? ", closest);
    if (section[0] != '\0')
        snprintf(out, out_size, "unknown key; %skeys under %s are: %s", suggestion, section,
                 children);
    else
        snprintf(out, out_size, "unknown key; %stop-level keys are: %s", suggestion, children);
}

/* ---- What a key accepts ---- */

void ap_config_format_double(double value, char *out, size_t out_size)
{
    /* Whole numbers read better as 100000 than as 1e+05. */
    if (value == floor(value) && fabs(value) < 1e15) {
        snprintf(out, out_size, "%.0f", value);
        return;
    }
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(out, out_size, "%.*g", digits, value);
        if (strtod(out, NULL) == value)
            return;
    }
}

static void describe_real(const ap_config_key *key, char *out, size_t out_size)
{
    char low[32], high[32];
    ap_config_format_double(key->real_min, low, sizeof(low));
    ap_config_format_double(key->real_max, high, sizeof(high));
    bool low_open = (key->flags & AP_KEY_MIN_EXCLUSIVE) != 0;
    bool high_open = (key->flags & AP_KEY_MAX_EXCLUSIVE) != 0;
    if (low_open && high_open)
        snprintf(out, out_size, "a number greater than %s and less than %s", low, high);
    else if (low_open)
        snprintf(out, out_size, "a number greater than %s and at most %s", low, high);
    else if (high_open)
        snprintf(out, out_size, "a number of at least %s and less than %s", low, high);
    else
        snprintf(out, out_size, "a number from %s to %s", low, high);
}

static void describe_choices(const ap_config_key *key, const char *separator, char *out,
                             size_t out_size)
{
    size_t used = 0;
    out[0] = '\0';
    for (int i = 0; key->choices[i] != NULL && used < out_size; i++) {
        int written =
            snprintf(out + used, out_size - used, "%s%s", i > 0 ? separator : "", key->choices[i]);
        if (written < 0)
            return;
        used += (size_t)written;
    }
}

void ap_config_key_describe_string(const ap_config_key *key, size_t size, char *out,
                                   size_t out_size)
{
    const char *nonempty = (key->flags & AP_KEY_NONEMPTY) ? "non-empty " : "";
    if (key->flags & AP_KEY_NAME)
        snprintf(out, out_size,
                 "a %sname of at most %zu characters (letters, digits, '_', '-' and '.')", nonempty,
                 size - 1);
    else
        snprintf(out, out_size, "%stext of at most %zu characters", nonempty, size - 1);
}

void ap_config_key_describe_value(const ap_config_key *key, char *out, size_t out_size)
{
    char choices[192];
    switch (key->type) {
    case AP_VALUE_INT:
    case AP_VALUE_INT64:
    case AP_VALUE_INT_LIST:
        snprintf(out, out_size, "an integer from %" PRId64 " to %" PRId64, key->int_min,
                 key->int_max);
        break;
    case AP_VALUE_UINT64:
        snprintf(out, out_size, "an integer from 0 to %" PRIu64, UINT64_MAX);
        break;
    case AP_VALUE_DOUBLE:
    case AP_VALUE_FLOAT_LIST:
        describe_real(key, out, out_size);
        break;
    case AP_VALUE_BOOL:
        snprintf(out, out_size, "true or false");
        break;
    case AP_VALUE_STRING:
        ap_config_key_describe_string(key, key->size, out, out_size);
        break;
    case AP_VALUE_STRING_LIST:
        ap_config_key_describe_string(key, key->item_size, out, out_size);
        break;
    case AP_VALUE_CHOICE:
    case AP_VALUE_ENUM:
        describe_choices(key, ", ", choices, sizeof(choices));
        snprintf(out, out_size, "one of %s", choices);
        break;
    }
}

void ap_config_key_describe(const ap_config_key *key, char *out, size_t out_size)
{
    char item[256];
    ap_config_key_describe_value(key, item, sizeof(item));
    if (key->type == AP_VALUE_FLOAT_LIST)
        snprintf(out, out_size, "a list of exactly %d items, each %s", key->max_items, item);
    else if (ap_config_key_is_list(key))
        snprintf(out, out_size, "a list of at most %d items, each %s", key->max_items, item);
    else
        snprintf(out, out_size, "%s", item);
}

static void describe_short_value(const ap_config_key *key, char *out, size_t out_size)
{
    char low[32], high[32];
    switch (key->type) {
    case AP_VALUE_INT:
    case AP_VALUE_INT64:
    case AP_VALUE_INT_LIST:
        snprintf(out, out_size, "[%" PRId64 ", %" PRId64 "]", key->int_min, key->int_max);
        break;
    case AP_VALUE_UINT64:
        snprintf(out, out_size, "[0, 2^64-1]");
        break;
    case AP_VALUE_DOUBLE:
    case AP_VALUE_FLOAT_LIST:
        ap_config_format_double(key->real_min, low, sizeof(low));
        ap_config_format_double(key->real_max, high, sizeof(high));
        snprintf(out, out_size, "%s%s, %s%s", (key->flags & AP_KEY_MIN_EXCLUSIVE) ? "(" : "[", low,
                 high, (key->flags & AP_KEY_MAX_EXCLUSIVE) ? ")" : "]");
        break;
    case AP_VALUE_BOOL:
        snprintf(out, out_size, "true|false");
        break;
    case AP_VALUE_STRING:
    case AP_VALUE_STRING_LIST:
        snprintf(out, out_size, "%s<= %zu chars", (key->flags & AP_KEY_NAME) ? "name, " : "",
                 (key->type == AP_VALUE_STRING ? key->size : key->item_size) - 1);
        break;
    case AP_VALUE_CHOICE:
    case AP_VALUE_ENUM:
        describe_choices(key, "|", out, out_size);
        break;
    }
}

void ap_config_key_describe_short(const ap_config_key *key, char *out, size_t out_size)
{
    char item[128];
    describe_short_value(key, item, sizeof(item));
    if (key->type == AP_VALUE_FLOAT_LIST)
        snprintf(out, out_size, "%d x %s", key->max_items, item);
    else if (ap_config_key_is_list(key))
        snprintf(out, out_size, "<= %d x %s", key->max_items, item);
    else
        snprintf(out, out_size, "%s", item);
}

const char *ap_config_key_type_name(const ap_config_key *key)
{
    switch (key->type) {
    case AP_VALUE_INT:
        return "int";
    case AP_VALUE_INT64:
        return "int64";
    case AP_VALUE_UINT64:
        return "uint64";
    case AP_VALUE_DOUBLE:
        return "double";
    case AP_VALUE_BOOL:
        return "bool";
    case AP_VALUE_STRING:
        return "string";
    case AP_VALUE_CHOICE:
    case AP_VALUE_ENUM:
        return "enum";
    case AP_VALUE_FLOAT_LIST:
        return "float[3]";
    case AP_VALUE_STRING_LIST:
        return "string list";
    case AP_VALUE_INT_LIST:
        return "int list";
    }
    return "unknown";
}
