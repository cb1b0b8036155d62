#include "pipeline/eval/metrics.h"

#include "pipeline/eval/intervals.h"
#include "tests/reference/metrics_reference.h"
#include "tests/unit/check.h"

/* Nine images, two labels. Label 0 has one unknown target (row 3); label 1
 * has no positives. Probabilities sit inside calibration bins, away from the
 * bin edges, because 0.9f, for example, is 0.8999999762 and falls in bin 8. */
static const float hand_probabilities[] = {
    0.95f, 0.10f, /* row 0 */
    0.85f, 0.20f, /* row 1 */
    0.85f, 0.65f, /* row 2 */
    0.75f, 0.30f, /* row 3 */
    0.65f, 0.40f, /* row 4 */
    0.55f, 0.90f, /* row 5 */
    0.45f, 0.15f, /* row 6 */
    0.35f, 0.25f, /* row 7 */
    0.15f, 0.05f, /* row 8 */
};
static const int8_t hand_targets[] = {
    1,  0,  /* row 0 */
    1,  0,  /* row 1 */
    0,  0,  /* row 2 */
    -1, -1, /* row 3 */
    0,  0,  /* row 4 */
    1,  0,  /* row 5 */
    0,  0,  /* row 6 */
    1,  0,  /* row 7 */
    0,  0,  /* row 8 */
};

static ap_eval_set hand_set(void)
{
    ap_eval_set set = {hand_probabilities, hand_targets, 9, 2, NULL};
    return set;
}

static void compute_label(const ap_eval_set *set, int label, float threshold, ap_label_metrics *out)
{
    ap_label_order order;
    ap_error err = {0};
    CHECK_INT_EQ(ap_label_order_build(set, label, &order, &err), AP_OK);
    ap_label_metrics_compute(&order, NULL, threshold, 10, out);
    ap_label_order_free(&order);
}

static double value_of(const ap_label_metrics *m, ap_metric metric)
{
    return m->metrics[metric].value;
}

static void test_hand_label(void)
{
    ap_eval_set set = hand_set();
    ap_label_metrics m;
    compute_label(&set, 0, 0.5f, &m);

    /* Known: 0.95+ 0.85+ 0.85- 0.65- 0.55+ 0.45- 0.35+ 0.15-; threshold 0.5.
     * TP = {0.95, 0.85, 0.55} = 3, FP = {0.85, 0.65} = 2, FN = {0.35} = 1,
     * TN = {0.45, 0.15} = 2. */
    CHECK_INT_EQ(m.confusion.true_positive, 3);
    CHECK_INT_EQ(m.confusion.false_positive, 2);
    CHECK_INT_EQ(m.confusion.false_negative, 1);
    CHECK_INT_EQ(m.confusion.true_negative, 2);
    CHECK_INT_EQ(m.confusion.unknown, 1);
    CHECK_INT_EQ(m.positives, 4);
    CHECK_INT_EQ(m.negatives, 4);
    CHECK_INT_EQ(m.unknown, 1);
    CHECK_INT_EQ(m.label, 0);
    CHECK_NEAR(m.threshold, 0.5, 0.0);

    /* accuracy (3 + 2) / 8; precision 3 / 5; recall 3 / 4; specificity 2 / 4;
     * balanced (0.75 + 0.5) / 2; F1 2*3 / (2*3 + 2 + 1) = 6 / 9. */
    CHECK_NEAR(value_of(&m, AP_METRIC_ACCURACY), 0.625, 1e-15);
    CHECK_NEAR(value_of(&m, AP_METRIC_PRECISION), 0.6, 1e-15);
    CHECK_NEAR(value_of(&m, AP_METRIC_RECALL), 0.75, 1e-15);
    CHECK_NEAR(value_of(&m, AP_METRIC_SPECIFICITY), 0.5, 1e-15);
    CHECK_NEAR(value_of(&m, AP_METRIC_BALANCED_ACCURACY), 0.625, 1e-15);
    CHECK_NEAR(value_of(&m, AP_METRIC_F1), 6.0 / 9.0, 1e-15);

    /* ROC AUC over 4 x 4 pairs, each positive scoring the negatives below it
     * plus 1/2 per tie: 0.95 -> 4, 0.85 -> 3 + 1/2 (tie with 0.85-),
     * 0.55 -> 2, 0.35 -> 1. (4 + 3.5 + 2 + 1) / 16 = 10.5 / 16. */
    CHECK_NEAR(value_of(&m, AP_METRIC_ROC_AUC), 10.5 / 16.0, 1e-15);

    /* Average precision: precision at each step where recall grows, times
     * the recall step. 0.95: 1/1; 0.85 (one + and one -): 2/3; 0.55: 3/5;
     * 0.35: 4/7. (1 + 2/3 + 3/5 + 4/7) / 4 = 298 / 420. */
    CHECK_NEAR(value_of(&m, AP_METRIC_PR_AUC), 298.0 / 420.0, 1e-15);

    /* Brier: squared errors 0.05^2 + 0.15^2 + 0.85^2 + 0.65^2 + 0.45^2 +
     * 0.45^2 + 0.65^2 + 0.15^2 = 2.02, over 8 images = 0.2525. The float
     * inputs differ from the decimals by up to 3e-8. */
    CHECK_NEAR(value_of(&m, AP_METRIC_BRIER), 0.2525, 1e-7);

    /* ECE with 10 bins: bin 9 {0.95+}: |0.95 - 1| = 0.05; bin 8 {0.85+,
     * 0.85-}: |1.7 - 1| = 0.7; bin 6 {0.65-}: 0.65; bin 5 {0.55+}: 0.45;
     * bin 4 {0.45-}: 0.45; bin 3 {0.35+}: 0.65; bin 1 {0.15-}: 0.15.
     * Sum 3.1 over 8 images = 0.3875. */
    CHECK_NEAR(value_of(&m, AP_METRIC_ECE), 0.3875, 1e-7);
}

static void test_undefined_label(void)
{
    ap_eval_set set = hand_set();
    ap_label_metrics m;
    compute_label(&set, 1, 0.5f, &m);

    /* Label 1: 8 known negatives; predicted positive: 0.65 and 0.90. */
    CHECK_INT_EQ(m.positives, 0);
    CHECK_INT_EQ(m.negatives, 8);
    CHECK_INT_EQ(m.confusion.false_positive, 2);
    CHECK_INT_EQ(m.confusion.true_negative, 6);
    CHECK(isnan(value_of(&m, AP_METRIC_RECALL)));
    CHECK(isnan(value_of(&m, AP_METRIC_BALANCED_ACCURACY)));
    CHECK(isnan(value_of(&m, AP_METRIC_ROC_AUC)));
    CHECK(isnan(value_of(&m, AP_METRIC_PR_AUC)));
    /* Defined: precision 0 / 2, F1 0 / (0 + 2 + 0), specificity 6 / 8. */
    CHECK_NEAR(value_of(&m, AP_METRIC_PRECISION), 0.0, 0.0);
    CHECK_NEAR(value_of(&m, AP_METRIC_F1), 0.0, 0.0);
    CHECK_NEAR(value_of(&m, AP_METRIC_SPECIFICITY), 0.75, 1e-15);
    CHECK_NEAR(value_of(&m, AP_METRIC_ACCURACY), 0.75, 1e-15);

    /* At threshold 1 nothing is predicted positive: precision and F1 have a
     * zero denominator. */
    compute_label(&set, 1, 1.0f, &m);
    CHECK(isnan(value_of(&m, AP_METRIC_PRECISION)));
    CHECK(isnan(value_of(&m, AP_METRIC_F1)));
}

static void test_no_known_targets(void)
{
    const float probabilities[] = {0.2f, 0.7f};
    const int8_t targets[] = {-1, -1};
    ap_eval_set set = {probabilities, targets, 2, 1, NULL};
    ap_label_metrics m;
    compute_label(&set, 0, 0.5f, &m);
    CHECK_INT_EQ(m.unknown, 2);
    for (int metric = 0; metric < AP_METRIC_COUNT; metric++) {
        if (!isnan(m.metrics[metric].value))
            fprintf(stderr, "metric %s is %g, expected NAN\n", ap_metric_name((ap_metric)metric),
                    m.metrics[metric].value);
        CHECK(isnan(m.metrics[metric].value));
    }
}

static void test_weights_match_copies(void)
{
    /* Weights 2, 0, 1, 3 equal the rows written out that many times. */
    const float probabilities[] = {0.9f, 0.7f, 0.4f, 0.2f};
    const int8_t targets[] = {1, 0, 1, 0};
    const uint32_t weights[] = {2, 0, 1, 3};
    const float copied_probabilities[] = {0.9f, 0.9f, 0.4f, 0.2f, 0.2f, 0.2f};
    const int8_t copied_targets[] = {1, 1, 1, 0, 0, 0};
    ap_eval_set set = {probabilities, targets, 4, 1, NULL};
    ap_eval_set copied = {copied_probabilities, copied_targets, 6, 1, NULL};

    ap_label_order order;
    ap_error err = {0};
    CHECK_INT_EQ(ap_label_order_build(&set, 0, &order, &err), AP_OK);
    ap_label_metrics weighted, expected;
    ap_label_metrics_compute(&order, weights, 0.5f, 10, &weighted);
    ap_label_order_free(&order);
    compute_label(&copied, 0, 0.5f, &expected);

    CHECK_INT_EQ(weighted.positives, expected.positives);
    CHECK_INT_EQ(weighted.negatives, expected.negatives);
    CHECK_INT_EQ(weighted.confusion.true_positive, expected.confusion.true_positive);
    CHECK_INT_EQ(weighted.confusion.false_positive, expected.confusion.false_positive);
    for (int metric = 0; metric < AP_METRIC_COUNT; metric++) {
        double a = weighted.metrics[metric].value, e = expected.metrics[metric].value;
        if (isnan(e))
            CHECK(isnan(a));
        else
            CHECK_NEAR(a, e, 1e-15);
    }
}

static void test_ranking_order(void)
{
    const float probabilities[] = {0.3f, 0.8f, 0.3f, 0.9f};
    const int8_t targets[] = {0, 1, -1, 1};
    ap_eval_set set = {probabilities, targets, 4, 1, NULL};
    ap_label_order order;
    ap_error err = {0};
    CHECK_INT_EQ(ap_label_order_build(&set, 0, &order, &err), AP_OK);
    /* Decreasing probability, the unknown row 2 left out. */
    CHECK_INT_EQ(order.known_count, 3);
    CHECK_INT_EQ(order.unknown, 1);
    CHECK_INT_EQ(order.ranked[0].image, 3);
    CHECK_INT_EQ(order.ranked[1].image, 1);
    CHECK_INT_EQ(order.ranked[2].image, 0);
    ap_label_order_free(&order);

    CHECK_INT_EQ(ap_label_order_build(&set, 1, &order, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "label 1 is out of range");
    ap_label_order_free(&order);
}

static void test_reference_cases(void)
{
    /* Tolerance: the C sums run in another order than scikit-learn's
     * (by run of tied scores, over up to 400 images), so the last few bits
     * differ; 1e-12 is far below any gate decision. */
    const double tolerance = 1e-12;
    size_t cases = sizeof(ref_label_cases) / sizeof(ref_label_cases[0]);
    for (size_t i = 0; i < cases; i++) {
        const ref_label_case *r = &ref_label_cases[i];
        const ref_dataset *d = &ref_datasets[r->dataset];
        ap_eval_set set = {d->probabilities, d->targets, d->count, d->label_count, NULL};
        ap_label_metrics m;
        ap_label_order order;
        ap_error err = {0};
        int failures_before = check_failures;
        CHECK_INT_EQ(ap_label_order_build(&set, r->label, &order, &err), AP_OK);
        ap_label_metrics_compute(&order, NULL, r->threshold, REF_ECE_BINS, &m);
        ap_label_order_free(&order);

        CHECK_INT_EQ(m.confusion.true_positive, r->true_positive);
        CHECK_INT_EQ(m.confusion.false_positive, r->false_positive);
        CHECK_INT_EQ(m.confusion.true_negative, r->true_negative);
        CHECK_INT_EQ(m.confusion.false_negative, r->false_negative);
        CHECK_INT_EQ(m.unknown, r->unknown);
        CHECK_NEAR(value_of(&m, AP_METRIC_ACCURACY), r->accuracy, tolerance);
        CHECK_NEAR(value_of(&m, AP_METRIC_BALANCED_ACCURACY), r->balanced_accuracy, tolerance);
        CHECK_NEAR(value_of(&m, AP_METRIC_PRECISION), r->precision, tolerance);
        CHECK_NEAR(value_of(&m, AP_METRIC_RECALL), r->recall, tolerance);
        CHECK_NEAR(value_of(&m, AP_METRIC_SPECIFICITY), r->specificity, tolerance);
        CHECK_NEAR(value_of(&m, AP_METRIC_F1), r->f1, tolerance);
        CHECK_NEAR(value_of(&m, AP_METRIC_ROC_AUC), r->roc_auc, tolerance);
        CHECK_NEAR(value_of(&m, AP_METRIC_PR_AUC), r->pr_auc, tolerance);
        CHECK_NEAR(value_of(&m, AP_METRIC_BRIER), r->brier, tolerance);
        CHECK_NEAR(value_of(&m, AP_METRIC_ECE), r->ece, tolerance);
        if (check_failures > failures_before)
            fprintf(stderr, "in reference case %zu: %s label %d threshold %g\n", i, d->name,
                    r->label, (double)r->threshold);
    }
}

static void test_metric_names(void)
{
    ap_error err = {0};
    for (int m = 0; m < AP_METRIC_COUNT; m++) {
        ap_metric found = AP_METRIC_COUNT;
        CHECK_INT_EQ(ap_metric_from_name(ap_metric_name((ap_metric)m), &found, &err), AP_OK);
        CHECK_INT_EQ(found, m);
    }
    ap_metric found;
    CHECK_INT_EQ(ap_metric_from_name("recal", &found, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "\"recal\"");
    CHECK_STR_CONTAINS(err.message, "balanced_accuracy");
    CHECK_STR_CONTAINS(err.message, "ece");
    CHECK(strcmp(ap_metric_name(AP_METRIC_ROC_AUC), "roc_auc") == 0);
    CHECK(strcmp(ap_metric_name(AP_METRIC_PR_AUC), "pr_auc") == 0);
    CHECK(!ap_metric_higher_is_better(AP_METRIC_BRIER));
    CHECK(!ap_metric_higher_is_better(AP_METRIC_ECE));
    CHECK(ap_metric_higher_is_better(AP_METRIC_RECALL));
    CHECK(ap_metric_is_proportion(AP_METRIC_SPECIFICITY));
    CHECK(!ap_metric_is_proportion(AP_METRIC_F1));
}

static void evaluate_hand(ap_evaluation *evaluation, int resamples)
{
    ap_eval_set set = hand_set();
    ap_metrics_options options;
    ap_metrics_options_default(&options);
    options.resamples = resamples;
    ap_error err = {0};
    const float thresholds[] = {0.5f, 0.5f};
    CHECK_INT_EQ(ap_evaluate(&set, thresholds, &options, evaluation, &err), AP_OK);
}

static void test_evaluate_and_get(void)
{
    ap_evaluation evaluation;
    evaluate_hand(&evaluation, 0);
    CHECK_INT_EQ(evaluation.label_count, 2);

    /* Recall of label 0 is 3 of 4 with its Wilson interval from the counts. */
    ap_metric_value recall;
    ap_error err = {0};
    CHECK_INT_EQ(ap_label_metrics_get(&evaluation.labels[0], "recall", &recall, &err), AP_OK);
    CHECK_NEAR(recall.value, 0.75, 1e-15);
    CHECK_INT_EQ(recall.interval.method, AP_INTERVAL_WILSON);
    ap_interval expected;
    CHECK_INT_EQ(ap_wilson_interval(3, 4, 0.95, &expected, &err), AP_OK);
    CHECK_NEAR(recall.interval.lower, expected.lower, 0.0);
    CHECK_NEAR(recall.interval.upper, expected.upper, 0.0);

    /* Without resamples, roc_auc has no interval. */
    ap_metric_value auc;
    CHECK_INT_EQ(ap_label_metrics_get(&evaluation.labels[0], "roc_auc", &auc, &err), AP_OK);
    CHECK_INT_EQ(auc.interval.method, AP_INTERVAL_NONE);
    CHECK(isnan(auc.interval.lower));

    CHECK_INT_EQ(ap_label_metrics_get(&evaluation.labels[0], "auc", &auc, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "unknown metric \"auc\"");

    /* Macro: recall is defined for label 0 only; accuracy (5/8 and 6/8) for both. */
    ap_metric_value macro;
    CHECK_INT_EQ(ap_macro_metrics_get(&evaluation.macro, "recall", &macro, &err), AP_OK);
    CHECK_NEAR(macro.value, 0.75, 1e-15);
    CHECK_INT_EQ(evaluation.macro.label_count[AP_METRIC_RECALL], 1);
    CHECK_NEAR(evaluation.macro.metrics[AP_METRIC_ACCURACY].value, (0.625 + 0.75) / 2, 1e-15);
    CHECK_INT_EQ(evaluation.macro.label_count[AP_METRIC_ACCURACY], 2);
    ap_evaluation_free(&evaluation);
}

static void test_macro_all_undefined(void)
{
    ap_label_metrics labels[2];
    memset(labels, 0, sizeof(labels));
    for (int l = 0; l < 2; l++)
        for (int m = 0; m < AP_METRIC_COUNT; m++)
            labels[l].metrics[m].value = NAN;
    labels[1].metrics[AP_METRIC_F1].value = 0.4;
    ap_macro_metrics macro;
    ap_macro_average(labels, 2, &macro);
    CHECK(isnan(macro.metrics[AP_METRIC_RECALL].value));
    CHECK_INT_EQ(macro.label_count[AP_METRIC_RECALL], 0);
    CHECK_NEAR(macro.metrics[AP_METRIC_F1].value, 0.4, 0.0);
    CHECK_INT_EQ(macro.label_count[AP_METRIC_F1], 1);
}

static json_t *json_path(json_t *root, const char *a, const char *b, const char *c, const char *d)
{
    json_t *node = json_object_get(root, a);
    node = b != NULL ? json_object_get(node, b) : node;
    node = c != NULL ? json_object_get(node, c) : node;
    return d != NULL ? json_object_get(node, d) : node;
}

static void test_json(void)
{
    ap_evaluation evaluation;
    evaluate_hand(&evaluation, 50);
    const char *const names[] = {"varroa", "wasps"};
    json_t *root = NULL;
    ap_error err = {0};
    CHECK_INT_EQ(ap_evaluation_to_json(&evaluation, names, &root, &err), AP_OK);

    json_t *recall = json_path(root, "labels", "varroa", "metrics", "recall");
    CHECK_NEAR(json_real_value(json_object_get(recall, "value")), 0.75, 1e-15);
    json_t *method = json_path(recall, "interval", "method", NULL, NULL);
    CHECK_STR_CONTAINS(json_string_value(method), "wilson");
    json_t *auc_interval = json_path(root, "labels", "varroa", "metrics", "roc_auc");
    auc_interval = json_object_get(auc_interval, "interval");
    CHECK_STR_CONTAINS(json_string_value(json_object_get(auc_interval, "method")), "bootstrap");
    CHECK_INT_EQ(json_integer_value(json_object_get(auc_interval, "resamples_used")) +
                     json_integer_value(json_object_get(auc_interval, "resamples_skipped")),
                 50);

    /* Undefined values are null, not 0. */
    json_t *wasp_recall = json_path(root, "labels", "wasps", "metrics", "recall");
    CHECK(json_is_null(json_object_get(wasp_recall, "value")));
    CHECK_INT_EQ(json_integer_value(json_path(root, "labels", "wasps", "positives", NULL)), 0);
    CHECK_INT_EQ(
        json_integer_value(json_path(root, "labels", "varroa", "confusion", "false_negative")), 1);
    CHECK_INT_EQ(json_integer_value(json_path(root, "macro", "recall", "labels", NULL)), 1);
    CHECK_INT_EQ(json_integer_value(json_path(root, "options", "resamples", NULL, NULL)), 50);
    CHECK_NEAR(json_real_value(json_path(root, "options", "level", NULL, NULL)), 0.95, 0.0);

    char *text = json_dumps(root, JSON_COMPACT);
    CHECK(text != NULL);
    CHECK_STR_CONTAINS(text, "\"ece\"");
    free(text);
    json_decref(root);

    /* Labels without names are numbered. */
    CHECK_INT_EQ(ap_evaluation_to_json(&evaluation, NULL, &root, &err), AP_OK);
    CHECK(json_path(root, "labels", "1", NULL, NULL) != NULL);
    json_decref(root);
    ap_evaluation_free(&evaluation);
}

static void test_invalid_inputs(void)
{
    ap_evaluation evaluation;
    ap_error err = {0};
    const float probabilities[] = {0.2f, 1.5f};
    const int8_t targets[] = {0, 1};
    ap_eval_set set = {probabilities, targets, 2, 1, NULL};
    CHECK_INT_EQ(ap_evaluate(&set, NULL, NULL, &evaluation, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "probability 1.5 of image 1, label 0 is outside [0, 1]");

    const float good[] = {0.2f, 0.5f};
    const int8_t bad_targets[] = {0, 2};
    ap_eval_set bad = {good, bad_targets, 2, 1, NULL};
    CHECK_INT_EQ(ap_evaluate(&bad, NULL, NULL, &evaluation, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "target 2 of image 1");

    ap_eval_set fine = {good, targets, 2, 1, NULL};
    ap_metrics_options options;
    ap_metrics_options_default(&options);
    options.level = 1.0;
    CHECK_INT_EQ(ap_evaluate(&fine, NULL, &options, &evaluation, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "confidence level 1");

    ap_metrics_options_default(&options);
    options.ece_bins = 0;
    CHECK_INT_EQ(ap_evaluate(&fine, NULL, &options, &evaluation, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "calibration bin count 0");

    const float threshold[] = {1.2f};
    CHECK_INT_EQ(ap_evaluate(&fine, threshold, NULL, &evaluation, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "threshold 1.2 of label 0");

    ap_eval_set no_labels = {good, targets, 2, 0, NULL};
    CHECK_INT_EQ(ap_evaluate(&no_labels, NULL, NULL, &evaluation, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "label count 0");
}

int main(void)
{
    test_hand_label();
    test_undefined_label();
    test_no_known_targets();
    test_weights_match_copies();
    test_ranking_order();
    test_reference_cases();
    test_metric_names();
    test_evaluate_and_get();
    test_macro_all_undefined();
    test_json();
    test_invalid_inputs();
    return check_finish();
}
