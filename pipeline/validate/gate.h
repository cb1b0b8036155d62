#ifndef APIARY_VALIDATE_GATE_H
#define APIARY_VALIDATE_GATE_H

/* The rules of the validation gate and their evaluation on test metrics.
 *
 * A rule reads "LABEL.METRIC[.BOUND] OP VALUE", for example
 * "wasp.recall.lower >= 0.9":
 *   LABEL  a configured label, or "macro" for the mean over labels (which
 *          hides a configured label of that name)
 *   METRIC a metric name of pipeline/eval/metrics.h (recall, precision, ...)
 *   BOUND  lower or upper for a confidence bound, or value (the default)
 *   OP     >= or <=
 *   VALUE  a number in [0, 1], the range of every metric.
 * Labels may contain dots, so the text is read from the right. A last part
 * of lower, upper or value is the bound, and the part before it the metric. */

#include <stdbool.h>

#include "pipeline/common/status.h"
#include "pipeline/config/config.h"
#include "pipeline/eval/metrics.h"

#define AP_GATE_MACRO "macro"

typedef enum { AP_GATE_BOUND_VALUE = 0, AP_GATE_BOUND_LOWER, AP_GATE_BOUND_UPPER } ap_gate_bound;
typedef enum { AP_GATE_AT_LEAST = 0, AP_GATE_AT_MOST } ap_gate_op;

typedef struct {
    char text[AP_GATE_RULE_MAX]; /* the rule as configured */
    char label[AP_NAME_MAX];     /* a label name or "macro" */
    int label_index;             /* index into the labels, -1 for macro */
    ap_metric metric;
    ap_gate_bound bound;
    ap_gate_op op;
    double limit;
} ap_gate_rule;

/* A rule applied to one evaluation. */
typedef struct {
    double actual; /* NAN when the metric or bound is undefined */
    bool passed;   /* false whenever actual is NAN */
    char detail[512];
} ap_gate_outcome;

/* One check of the test data made before any metric. */
typedef struct {
    char name[32]; /* "group_overlap", "duplicate_images" or "test_support" */
    bool passed;
    char detail[1024];
} ap_data_check;

/* "value", "lower", "upper"; ">=", "<=". */
const char *ap_gate_bound_name(ap_gate_bound bound);
const char *ap_gate_op_text(ap_gate_op op);

/* Parse one rule against the label names. Error messages quote the rule
 * and show the form to write instead. */
ap_status ap_gate_rule_parse(const char *text, const char (*labels)[AP_NAME_MAX], int label_count,
                             ap_gate_rule *out, ap_error *err);

/* Parse every gate.rules entry of cfg against data.labels into rules
 * (AP_GATE_MAX_RULES entries); *count receives cfg->gate.rule_count. */
ap_status ap_gate_rules_parse(const ap_config *cfg, ap_gate_rule *rules, int *count, ap_error *err);

/* Evaluate rule on an evaluation whose labels are in the order the rule
 * was parsed against, and explain the result in out->detail. */
void ap_gate_rule_evaluate(const ap_gate_rule *rule, const ap_evaluation *evaluation,
                           ap_gate_outcome *out);

/* Check that every label named by a rule (every label when a rule is a
 * macro rule) has at least min_positives and min_negatives test images.
 * positives and negatives hold the test counts of each of label_count labels. */
void ap_gate_check_support(const ap_gate_rule *rules, int rule_count,
                           const char (*labels)[AP_NAME_MAX], int label_count,
                           const long *positives, const long *negatives, long min_positives,
                           long min_negatives, ap_data_check *out);

#endif
