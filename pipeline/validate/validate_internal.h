#ifndef APIARY_VALIDATE_VALIDATE_INTERNAL_H
#define APIARY_VALIDATE_VALIDATE_INTERNAL_H

/* State shared by the parts of the validation stage (validate*.c) only. */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "pipeline/config/config.h"
#include "pipeline/eval/curves.h"
#include "pipeline/eval/metrics.h"
#include "pipeline/eval/thresholds.h"
#include "pipeline/train/run_data.h"
#include "pipeline/validate/gate.h"
#include "pipeline/validate/model_load.h"

#define AP_DATA_CHECK_MAX 3

/* The threshold of one label and how it was chosen on the validation split. */
typedef struct {
    float value;
    ap_threshold_policy policy;  /* the policy that gave value, fixed after a fallback */
    ap_label_metrics validation; /* on the validation split at value */
    bool has_validation;         /* false when the label has no known validation target */
    char detail[256];
} ap_label_threshold;

/* One label of the comparison with the champion, on the test images whose
 * target is known. */
typedef struct {
    char label[AP_NAME_MAX];
    long images;
    double champion_accuracy;
    double challenger_accuracy;
    long challenger_only_correct; /* McNemar c */
    long champion_only_correct;   /* McNemar b */
    double p_value;               /* one-sided: the challenger is worse */
    bool passed;
    char detail[512];
} ap_label_comparison;

typedef struct {
    bool skipped;
    char reason[512];
    int champion_version;
    char champion_sha256[65];
    int label_count;
    ap_label_comparison labels[AP_MAX_LABELS];
    /* Champion labels that this model lacks fail the gate, because promoting
     * the model would stop serving and scoring them. Labels that this model
     * adds pass, since the champion has no result to compare them with. */
    int missing_count;
    char missing_labels[AP_MAX_LABELS][AP_NAME_MAX];
    int added_count;
    char added_labels[AP_MAX_LABELS][AP_NAME_MAX];
    char label_detail[1536];
    bool passed;
} ap_champion_comparison;

/* Predictions of the model on one split. */
typedef struct {
    const size_t *images; /* indices into the run's image set */
    size_t count;
    float *probabilities; /* count x label_count, owned */
    int8_t *targets;      /* count x label_count, owned */
} ap_split_predictions;

typedef struct {
    const ap_config *cfg;
    const char *finish_command; /* see ap_validate_request; may be NULL */
    char run_dir[AP_PATH_MAX];
    ap_gate_rule rules[AP_GATE_MAX_RULES];
    int rule_count;
    ap_loaded_model model;
    ap_run_data data;
    bool data_loaded;

    ap_data_check checks[AP_DATA_CHECK_MAX];
    int check_count;
    bool checks_passed;

    ap_split_predictions val;
    ap_split_predictions test;
    int *test_groups; /* group id of each test image, for the bootstrap */
    ap_label_threshold thresholds[AP_MAX_LABELS];
    float threshold_values[AP_MAX_LABELS];
    bool thresholds_chosen;

    ap_evaluation evaluation;
    bool evaluated;
    ap_label_curves curves[AP_MAX_LABELS];
    ap_gate_outcome outcomes[AP_GATE_MAX_RULES];
    ap_champion_comparison comparison;
    bool passed;
    char card_sha256[65]; /* of model_card.json after the thresholds were stored */
} ap_validation;

/* validate_checks.c: data checks. */

/* Check split.csv of the run folder directly, before the data is loaded,
 * for groups with files in the test part and in train or val. */
ap_status ap_validation_check_groups(ap_validation *v, ap_error *err);
/* Check that no test image file has the SHA-256 of a train or val image file. */
ap_status ap_validation_check_duplicates(ap_validation *v, ap_error *err);
/* Check the minimum test support of the labels with rules. */
void ap_validation_check_support(ap_validation *v);

/* validate_compare.c: the comparison with the registry champion. */
ap_status ap_validation_compare_champion(ap_validation *v, ap_error *err);

/* validate_json.c: the report. */
ap_status ap_validation_build_report(const ap_validation *v, json_t **report, ap_error *err);

#endif
