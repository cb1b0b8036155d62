#include "pipeline/eval/thresholds.h"

#include "tests/reference/metrics_reference.h"
#include "tests/unit/check.h"

/* Eight images of one label, P = 4 positives, plus an unknown at 0.99 that
 * must not become a candidate. Predicted positives (tp, fp) and
 * F1 = 2 tp / (tp + fp + 4) at each candidate:
 *   0.9: (1, 0) 2/5 = 0.400    0.4: (3, 2) 6/9  = 0.667
 *   0.8: (2, 0) 4/6 = 0.667    0.3: (4, 2) 8/10 = 0.800
 *   0.7: (2, 1) 4/7 = 0.571    0.2: (4, 3) 8/11 = 0.727
 *   0.6: (3, 1) 6/8 = 0.750    0.1: (4, 4) 8/12 = 0.667
 *   0.5: (3, 1), as 0.6 */
static const float ladder_probabilities[] = {0.9f, 0.8f, 0.99f, 0.7f, 0.6f, 0.4f, 0.3f, 0.2f, 0.1f};
static const int8_t ladder_targets[] = {1, 1, -1, 0, 1, 0, 1, 0, 0};

static ap_eval_set ladder_set(void)
{
    ap_eval_set set = {ladder_probabilities, ladder_targets, 9, 1, NULL};
    return set;
}

static ap_threshold_choice choose(const ap_eval_set *set, ap_threshold_policy policy,
                                  double target_recall, float fixed)
{
    ap_threshold_rule rule = {policy, target_recall, fixed};
    ap_threshold_choice choice;
    ap_error err = {0};
    ap_status status = ap_threshold_choose(set, 0, &rule, NULL, &choice, &err);
    if (status != AP_OK)
        fprintf(stderr, "ap_threshold_choose failed: %s\n", err.message);
    CHECK_INT_EQ(status, AP_OK);
    return choice;
}

static void test_max_f1(void)
{
    ap_eval_set set = ladder_set();
    ap_threshold_choice c = choose(&set, AP_THRESHOLD_MAX_F1, 0.0, 0.0f);
    CHECK(c.found);
    CHECK(!c.all_positive);
    CHECK_NEAR(c.threshold, 0.3f, 0.0);
    /* Eight distinct known probabilities plus 0.5. */
    CHECK_INT_EQ(c.candidate_count, 9);
    CHECK_NEAR(c.metrics.threshold, 0.3f, 0.0);
    CHECK_INT_EQ(c.metrics.confusion.true_positive, 4);
    CHECK_INT_EQ(c.metrics.confusion.false_positive, 2);
    CHECK_NEAR(c.metrics.metrics[AP_METRIC_F1].value, 0.8, 1e-15);
    CHECK_NEAR(c.metrics.metrics[AP_METRIC_PRECISION].value, 4.0 / 6.0, 1e-15);
    CHECK_NEAR(c.metrics.metrics[AP_METRIC_RECALL].value, 1.0, 0.0);
    CHECK_INT_EQ(c.metrics.unknown, 1);
}

static void test_max_f1_ties(void)
{
    /* P = 2. F1 at 0.95: (1, 0) 2/3; 0.9: (1, 1) 2/4; 0.85: (1, 2) 2/5;
     * 0.8: (2, 2) 4/6 = 2/3; 0.7 and 0.5: (2, 3) 4/7. 0.95 and 0.8 tie
     * and 0.5 is not among them, so the higher one wins. */
    const float probabilities[] = {0.95f, 0.9f, 0.85f, 0.8f, 0.7f};
    const int8_t targets[] = {1, 0, 0, 1, 0};
    ap_eval_set set = {probabilities, targets, 5, 1, NULL};
    ap_threshold_choice c = choose(&set, AP_THRESHOLD_MAX_F1, 0.0, 0.0f);
    CHECK_NEAR(c.threshold, 0.95f, 0.0);

    /* 0.9+ 0.6+ 0.3- 0.2-: F1 is 1 at 0.6 and at 0.5 (same images), so 0.5. */
    const float separable[] = {0.9f, 0.6f, 0.3f, 0.2f};
    const int8_t separable_targets[] = {1, 1, 0, 0};
    ap_eval_set clean = {separable, separable_targets, 4, 1, NULL};
    c = choose(&clean, AP_THRESHOLD_MAX_F1, 0.0, 0.0f);
    CHECK_NEAR(c.threshold, 0.5f, 0.0);
    CHECK_NEAR(c.metrics.metrics[AP_METRIC_F1].value, 1.0, 0.0);
}

static void test_target_recall(void)
{
    ap_eval_set set = ladder_set();

    /* Recall 2/4 is first reached at 0.8 (the 0.5 counts differ): precision 1. */
    ap_threshold_choice c = choose(&set, AP_THRESHOLD_TARGET_RECALL, 0.5, 0.0f);
    CHECK(c.found);
    CHECK_NEAR(c.threshold, 0.8f, 0.0);
    CHECK_NEAR(c.metrics.metrics[AP_METRIC_PRECISION].value, 1.0, 0.0);
    CHECK_NEAR(c.metrics.metrics[AP_METRIC_RECALL].value, 0.5, 0.0);

    /* Recall 3/4 is first reached at 0.6; 0.5 predicts the same images. */
    c = choose(&set, AP_THRESHOLD_TARGET_RECALL, 0.75, 0.0f);
    CHECK_NEAR(c.threshold, 0.5f, 0.0);
    CHECK_NEAR(c.metrics.metrics[AP_METRIC_RECALL].value, 0.75, 0.0);

    /* Recall 0.7 needs 3 of 4 as well. */
    c = choose(&set, AP_THRESHOLD_TARGET_RECALL, 0.7, 0.0f);
    CHECK_NEAR(c.threshold, 0.5f, 0.0);

    /* Recall 1 first at 0.3, above the lowest probability. */
    c = choose(&set, AP_THRESHOLD_TARGET_RECALL, 1.0, 0.0f);
    CHECK_NEAR(c.threshold, 0.3f, 0.0);
    CHECK(!c.all_positive);
    CHECK_NEAR(c.metrics.metrics[AP_METRIC_PRECISION].value, 4.0 / 6.0, 1e-15);
}

static void test_target_recall_only_at_lowest(void)
{
    /* The lowest image is a positive, so recall 1 needs every image positive. */
    const float probabilities[] = {0.8f, 0.6f, 0.2f};
    const int8_t targets[] = {1, 0, 1};
    ap_eval_set set = {probabilities, targets, 3, 1, NULL};
    ap_threshold_choice c = choose(&set, AP_THRESHOLD_TARGET_RECALL, 1.0, 0.0f);
    CHECK(c.found);
    CHECK(c.all_positive);
    CHECK_NEAR(c.threshold, 0.2f, 0.0);
    CHECK_INT_EQ(c.metrics.confusion.true_negative, 0);
}

static void test_target_recall_unreachable(void)
{
    /* No positive with a known target: recall is undefined at every
     * threshold, so the target cannot be met. */
    const float probabilities[] = {0.7f, 0.4f, 0.9f, 0.35f};
    const int8_t targets[] = {0, 0, -1, 0};
    ap_eval_set set = {probabilities, targets, 4, 1, NULL};
    ap_threshold_choice c = choose(&set, AP_THRESHOLD_TARGET_RECALL, 0.9, 0.0f);
    CHECK(!c.found);
    CHECK(c.all_positive);
    CHECK_NEAR(c.threshold, 0.35f, 0.0);
    CHECK(isnan(c.metrics.metrics[AP_METRIC_RECALL].value));

    c = choose(&set, AP_THRESHOLD_MAX_F1, 0.0, 0.0f);
    CHECK(!c.found);
    CHECK_NEAR(c.threshold, 0.35f, 0.0);
}

static void test_fixed(void)
{
    ap_eval_set set = ladder_set();
    /* At 0.65: 0.9+ 0.8+ 0.7- predicted positive. */
    ap_threshold_choice c = choose(&set, AP_THRESHOLD_FIXED, 0.0, 0.65f);
    CHECK(c.found);
    CHECK(!c.all_positive);
    CHECK_NEAR(c.threshold, 0.65f, 0.0);
    CHECK_INT_EQ(c.metrics.confusion.true_positive, 2);
    CHECK_INT_EQ(c.metrics.confusion.false_positive, 1);
    CHECK_INT_EQ(c.metrics.confusion.false_negative, 2);
    CHECK_INT_EQ(c.metrics.confusion.true_negative, 3);

    c = choose(&set, AP_THRESHOLD_FIXED, 0.0, 0.0f);
    CHECK(c.all_positive);
}

static void test_invalid_rules(void)
{
    ap_eval_set set = ladder_set();
    ap_threshold_choice c;
    ap_error err = {0};
    ap_threshold_rule rule = {AP_THRESHOLD_TARGET_RECALL, 0.0, 0.0f};
    CHECK_INT_EQ(ap_threshold_choose(&set, 0, &rule, NULL, &c, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "target recall 0 is invalid");
    rule.target_recall = 1.5;
    CHECK_INT_EQ(ap_threshold_choose(&set, 0, &rule, NULL, &c, &err), AP_ERR_INVALID);
    rule = (ap_threshold_rule){AP_THRESHOLD_FIXED, 0.0, -0.1f};
    CHECK_INT_EQ(ap_threshold_choose(&set, 0, &rule, NULL, &c, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "fixed threshold -0.1");
    rule = (ap_threshold_rule){AP_THRESHOLD_MAX_F1, 0.0, 0.0f};
    CHECK_INT_EQ(ap_threshold_choose(&set, 1, &rule, NULL, &c, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "label 1 is out of range");

    const float probabilities[] = {0.7f, 0.4f};
    const int8_t targets[] = {-1, -1};
    ap_eval_set unknown = {probabilities, targets, 2, 1, NULL};
    CHECK_INT_EQ(ap_threshold_choose(&unknown, 0, &rule, NULL, &c, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "no image with a known target");
}

static void test_policy_names(void)
{
    ap_threshold_policy policy = AP_THRESHOLD_FIXED;
    ap_error err = {0};
    CHECK_INT_EQ(ap_threshold_policy_from_name("target_recall", &policy, &err), AP_OK);
    CHECK_INT_EQ(policy, AP_THRESHOLD_TARGET_RECALL);
    CHECK(strcmp(ap_threshold_policy_name(AP_THRESHOLD_MAX_F1), "max_f1") == 0);
    CHECK_INT_EQ(ap_threshold_policy_from_name("best", &policy, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "\"best\"");
}

static void test_reference_thresholds(void)
{
    /* The reference script searches every candidate by brute force with
     * scikit-learn's f1_score and recall_score; the thresholds must match. */
    size_t cases = sizeof(ref_label_cases) / sizeof(ref_label_cases[0]);
    for (size_t i = 0; i < cases; i++) {
        const ref_label_case *r = &ref_label_cases[i];
        const ref_dataset *d = &ref_datasets[r->dataset];
        ap_eval_set set = {d->probabilities, d->targets, d->count, d->label_count, NULL};
        ap_threshold_rule max_f1 = {AP_THRESHOLD_MAX_F1, 0.0, 0.0f};
        ap_threshold_rule recall = {AP_THRESHOLD_TARGET_RECALL, REF_TARGET_RECALL, 0.0f};
        ap_threshold_choice c;
        ap_error err = {0};
        CHECK_INT_EQ(ap_threshold_choose(&set, r->label, &max_f1, NULL, &c, &err), AP_OK);
        CHECK_NEAR(c.threshold, r->max_f1_threshold, 0.0);
        CHECK_INT_EQ(ap_threshold_choose(&set, r->label, &recall, NULL, &c, &err), AP_OK);
        CHECK_NEAR(c.threshold, r->target_recall_threshold, 0.0);
        CHECK(c.metrics.metrics[AP_METRIC_RECALL].value >= REF_TARGET_RECALL);
    }
}

int main(void)
{
    test_max_f1();
    test_max_f1_ties();
    test_target_recall();
    test_target_recall_only_at_lowest();
    test_target_recall_unreachable();
    test_fixed();
    test_invalid_rules();
    test_policy_names();
    test_reference_thresholds();
    return check_finish();
}
