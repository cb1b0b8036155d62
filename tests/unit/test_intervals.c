#include "pipeline/eval/intervals.h"

#include "kernels/cpu/rng.h"
#include "tests/reference/metrics_reference.h"
#include "tests/unit/check.h"

/* z for a two-sided 95% interval, from scipy.stats.norm.ppf(0.975). */
#define Z_975 1.959963984540054

static void test_normal_quantile(void)
{
    CHECK_NEAR(ap_normal_quantile(0.975), Z_975, 1e-14);
    CHECK_NEAR(ap_normal_quantile(0.5), 0.0, 1e-15);
    /* scipy.stats.norm.ppf(0.05) and norm.ppf(0.995). */
    CHECK_NEAR(ap_normal_quantile(0.05), -1.6448536269514729, 1e-14);
    CHECK_NEAR(ap_normal_quantile(0.995), 2.5758293035489004, 1e-14);
    CHECK(isnan(ap_normal_quantile(0.0)));
    CHECK(isnan(ap_normal_quantile(1.0)));
    CHECK(isnan(ap_normal_quantile(NAN)));
}

static void test_wilson_by_hand(void)
{
    ap_interval interval;
    ap_error err = {0};
    double z2 = Z_975 * Z_975;

    /* 0 of 10: p = 0, so center = (z^2/20) / (1 + z^2/10) and the half
     * width z sqrt(z^2/400) / (1 + z^2/10) is the same: lower 0, upper
     * (z^2/10) / (1 + z^2/10) = 0.3841459 / 1.3841459 = 0.2775328. */
    CHECK_INT_EQ(ap_wilson_interval(0, 10, 0.95, &interval, &err), AP_OK);
    CHECK_INT_EQ(interval.method, AP_INTERVAL_WILSON);
    CHECK_NEAR(interval.lower, 0.0, 1e-15);
    CHECK_NEAR(interval.upper, (z2 / 10) / (1 + z2 / 10), 1e-14);
    CHECK_NEAR(interval.upper, 0.2775328, 1e-7);

    /* 10 of 10 mirrors it: [1 - 0.2775328, 1]. */
    CHECK_INT_EQ(ap_wilson_interval(10, 10, 0.95, &interval, &err), AP_OK);
    CHECK_NEAR(interval.lower, 1.0 - (z2 / 10) / (1 + z2 / 10), 1e-14);
    CHECK_NEAR(interval.upper, 1.0, 1e-15);

    /* 5 of 10: center (0.5 + z^2/20) / (1 + z^2/10) = 0.5; half width
     * z sqrt(0.25/10 + z^2/400) / (1 + z^2/10) = 1.959964 x 0.1860206 /
     * 1.3841459 = 0.2634069, so [0.2365931, 0.7634069]. */
    CHECK_INT_EQ(ap_wilson_interval(5, 10, 0.95, &interval, &err), AP_OK);
    double half = Z_975 * sqrt(0.025 + z2 / 400) / (1 + z2 / 10);
    CHECK_NEAR(interval.lower, 0.5 - half, 1e-14);
    CHECK_NEAR(interval.upper, 0.5 + half, 1e-14);
    CHECK_NEAR(interval.lower, 0.2365931, 1e-7);
    CHECK_NEAR(interval.level, 0.95, 0.0);
}

static void test_wilson_edges(void)
{
    ap_interval interval;
    ap_error err = {0};
    CHECK_INT_EQ(ap_wilson_interval(0, 0, 0.95, &interval, &err), AP_OK);
    CHECK(isnan(interval.lower));
    CHECK(isnan(interval.upper));
    CHECK_INT_EQ(ap_wilson_interval(11, 10, 0.95, &interval, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "11 successes in 10 trials");
    CHECK_INT_EQ(ap_wilson_interval(-1, 10, 0.95, &interval, &err), AP_ERR_INVALID);
    CHECK_INT_EQ(ap_wilson_interval(1, 10, 0.0, &interval, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "confidence level 0");
}

static void test_wilson_reference(void)
{
    /* statsmodels proportion_confint(method="wilson") uses norm.isf; the
     * quantile here comes from bisection, so allow a few units in the last
     * place of the bounds. */
    size_t cases = sizeof(ref_wilson_cases) / sizeof(ref_wilson_cases[0]);
    for (size_t i = 0; i < cases; i++) {
        const ref_wilson_case *r = &ref_wilson_cases[i];
        ap_interval interval;
        ap_error err = {0};
        CHECK_INT_EQ(ap_wilson_interval(r->successes, r->trials, r->level, &interval, &err), AP_OK);
        CHECK_NEAR(interval.lower, r->lower, 1e-12);
        CHECK_NEAR(interval.upper, r->upper, 1e-12);
    }
}

static ap_mcnemar_result mcnemar(long b, long c, ap_mcnemar_alternative alternative,
                                 ap_mcnemar_method method)
{
    ap_mcnemar_result result;
    ap_error err = {0};
    CHECK_INT_EQ(ap_mcnemar_test(b, c, alternative, method, &result, &err), AP_OK);
    return result;
}

static void test_mcnemar_by_hand(void)
{
    /* b = 1, c = 9: P(X <= 1) for X ~ Binomial(10, 1/2) is (1 + 10) / 1024;
     * two-sided 22 / 1024. */
    ap_mcnemar_result r = mcnemar(1, 9, AP_MCNEMAR_TWO_SIDED, AP_MCNEMAR_AUTO);
    CHECK_INT_EQ(r.method, AP_MCNEMAR_EXACT);
    CHECK_INT_EQ(r.b, 1);
    CHECK_INT_EQ(r.c, 9);
    CHECK_NEAR(r.statistic, 1.0, 0.0);
    CHECK_NEAR(r.p_value, 22.0 / 1024.0, 1e-14);

    /* Challenger worse with b = 9, c = 1: P(X >= 9) = (10 + 1) / 1024. */
    r = mcnemar(9, 1, AP_MCNEMAR_CHALLENGER_WORSE, AP_MCNEMAR_AUTO);
    CHECK_NEAR(r.statistic, 9.0, 0.0);
    CHECK_NEAR(r.p_value, 11.0 / 1024.0, 1e-14);
    /* The other direction is no evidence: P(X >= 1) = 1 - 1/1024. */
    r = mcnemar(1, 9, AP_MCNEMAR_CHALLENGER_WORSE, AP_MCNEMAR_AUTO);
    CHECK_NEAR(r.p_value, 1023.0 / 1024.0, 1e-14);

    /* b = 30, c = 15 (45 >= 25, so chi-square): (|30 - 15| - 1)^2 / 45 =
     * 196 / 45; with 1 degree of freedom p = erfc(sqrt(196/45 / 2)). */
    r = mcnemar(30, 15, AP_MCNEMAR_TWO_SIDED, AP_MCNEMAR_AUTO);
    CHECK_INT_EQ(r.method, AP_MCNEMAR_CHI_SQUARE);
    CHECK_NEAR(r.statistic, 196.0 / 45.0, 1e-14);
    CHECK_NEAR(r.p_value, erfc(sqrt(196.0 / 90.0)), 1e-15);
    CHECK_NEAR(r.p_value, 0.0368884, 1e-7);

    /* One-sided normal form: z = (30 - 15 - 1) / sqrt(45) = 2.0869968. */
    r = mcnemar(30, 15, AP_MCNEMAR_CHALLENGER_WORSE, AP_MCNEMAR_AUTO);
    CHECK_NEAR(r.statistic, 14.0 / sqrt(45.0), 1e-14);
    CHECK_NEAR(r.p_value, 0.5 * erfc(14.0 / sqrt(90.0)), 1e-15);
}

static void test_mcnemar_edges(void)
{
    /* The exact test runs below 25 discordant images. */
    CHECK_INT_EQ(mcnemar(12, 12, AP_MCNEMAR_TWO_SIDED, AP_MCNEMAR_AUTO).method, AP_MCNEMAR_EXACT);
    CHECK_INT_EQ(mcnemar(12, 13, AP_MCNEMAR_TWO_SIDED, AP_MCNEMAR_AUTO).method,
                 AP_MCNEMAR_CHI_SQUARE);

    ap_mcnemar_result r = mcnemar(0, 0, AP_MCNEMAR_TWO_SIDED, AP_MCNEMAR_CHI_SQUARE);
    CHECK_NEAR(r.statistic, 0.0, 0.0);
    CHECK_NEAR(r.p_value, 1.0, 0.0);
    r = mcnemar(0, 0, AP_MCNEMAR_CHALLENGER_WORSE, AP_MCNEMAR_CHI_SQUARE);
    CHECK_NEAR(r.p_value, 1.0, 0.0);
    r = mcnemar(0, 0, AP_MCNEMAR_TWO_SIDED, AP_MCNEMAR_EXACT);
    CHECK_NEAR(r.p_value, 1.0, 0.0);

    /* Equal counts: the corrected statistic is clamped at 0. */
    r = mcnemar(20, 20, AP_MCNEMAR_TWO_SIDED, AP_MCNEMAR_CHI_SQUARE);
    CHECK_NEAR(r.statistic, 0.0, 0.0);
    CHECK_NEAR(r.p_value, 1.0, 0.0);

    ap_error err = {0};
    CHECK_INT_EQ(ap_mcnemar_test(-1, 3, AP_MCNEMAR_TWO_SIDED, AP_MCNEMAR_AUTO, &r, &err),
                 AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "b = -1");
    CHECK_INT_EQ(ap_mcnemar_test(1, 3, (ap_mcnemar_alternative)7, AP_MCNEMAR_AUTO, &r, &err),
                 AP_ERR_INVALID);
}

static void test_mcnemar_reference(void)
{
    /* statsmodels mcnemar and scipy binomtest sum the binomial terms
     * differently; 1e-12 covers that for these small tables. */
    size_t cases = sizeof(ref_mcnemar_cases) / sizeof(ref_mcnemar_cases[0]);
    for (size_t i = 0; i < cases; i++) {
        const ref_mcnemar_case *e = &ref_mcnemar_cases[i];
        int failures_before = check_failures;
        ap_mcnemar_result r = mcnemar(e->b, e->c, AP_MCNEMAR_TWO_SIDED, AP_MCNEMAR_EXACT);
        CHECK_NEAR(r.statistic, e->exact_statistic, 0.0);
        CHECK_NEAR(r.p_value, e->exact_p, 1e-12);
        if (e->has_chi_square) {
            r = mcnemar(e->b, e->c, AP_MCNEMAR_TWO_SIDED, AP_MCNEMAR_CHI_SQUARE);
            CHECK_NEAR(r.statistic, e->chi_square_statistic, 1e-12);
            CHECK_NEAR(r.p_value, e->chi_square_p, 1e-12);
        }
        r = mcnemar(e->b, e->c, AP_MCNEMAR_CHALLENGER_WORSE, AP_MCNEMAR_EXACT);
        CHECK_NEAR(r.p_value, e->exact_greater_p, 1e-12);
        r = mcnemar(e->b, e->c, AP_MCNEMAR_CHALLENGER_WORSE, AP_MCNEMAR_CHI_SQUARE);
        CHECK_NEAR(r.statistic, e->normal_greater_statistic, 1e-12);
        CHECK_NEAR(r.p_value, e->normal_greater_p, 1e-12);
        if (check_failures > failures_before)
            fprintf(stderr, "in McNemar reference case b = %ld, c = %ld\n", e->b, e->c);
    }
}

static void test_mcnemar_count(void)
{
    /* Row 0: champion right, challenger wrong (b). Row 1: champion wrong,
     * challenger right (c). Row 2: both right. Row 3: c. Row 4: b. Row 5:
     * unknown, skipped. */
    const float champion[] = {0.9f, 0.2f, 0.1f, 0.7f, 0.8f, 0.9f};
    const float challenger[] = {0.3f, 0.8f, 0.2f, 0.1f, 0.1f, 0.1f};
    const int8_t targets[] = {1, 1, 0, 0, 1, -1};
    ap_paired_predictions pair = {champion, challenger, targets, 6, 1};
    long b = -1, c = -1;
    ap_error err = {0};
    CHECK_INT_EQ(ap_mcnemar_count(&pair, 0, 0.5f, 0.5f, &b, &c, &err), AP_OK);
    CHECK_INT_EQ(b, 2);
    CHECK_INT_EQ(c, 2);

    /* With the challenger at threshold 0.25, row 0 becomes right for it
     * (0.3 >= 0.25) and leaves b; the other rows keep their outcome. */
    CHECK_INT_EQ(ap_mcnemar_count(&pair, 0, 0.5f, 0.25f, &b, &c, &err), AP_OK);
    CHECK_INT_EQ(b, 1);
    CHECK_INT_EQ(c, 2);

    CHECK_INT_EQ(ap_mcnemar_count(&pair, 1, 0.5f, 0.5f, &b, &c, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "label 1 is out of range");
    CHECK_INT_EQ(ap_mcnemar_count(&pair, 0, 0.5f, 1.5f, &b, &c, &err), AP_ERR_INVALID);
}

/* A deterministic two-label set: label 0 about 30% positives, label 1 about
 * 13%, probabilities that separate the classes imperfectly. */
static void make_set(size_t count, float *probabilities, int8_t *targets)
{
    for (size_t i = 0; i < count; i++) {
        for (int label = 0; label < 2; label++) {
            size_t at = i * 2 + (size_t)label;
            float prevalence = label == 0 ? 0.3f : 0.13f;
            int positive = ap_rng_uniform(7, (uint64_t)label, i) < prevalence;
            float noise = ap_rng_uniform(8, (uint64_t)label, i) - 0.5f;
            float p = 0.3f + 0.35f * (float)positive + 0.6f * noise;
            probabilities[at] = p < 0.0f ? 0.0f : (p > 1.0f ? 1.0f : p);
            targets[at] = (int8_t)positive;
        }
    }
}

static ap_status bootstrap(const ap_eval_set *set, int resamples, uint64_t seed, int threads,
                           ap_evaluation *out)
{
    ap_metrics_options options;
    ap_metrics_options_default(&options);
    options.resamples = resamples;
    options.seed = seed;
    options.threads = threads;
    ap_error err = {0};
    ap_status status = ap_evaluate(set, NULL, &options, out, &err);
    if (status != AP_OK)
        fprintf(stderr, "ap_evaluate failed: %s\n", err.message);
    return status;
}

static bool same_interval(const ap_interval *a, const ap_interval *b)
{
    bool same_lower = a->lower == b->lower || (isnan(a->lower) && isnan(b->lower));
    bool same_upper = a->upper == b->upper || (isnan(a->upper) && isnan(b->upper));
    return a->method == b->method && same_lower && same_upper &&
           a->resamples_used == b->resamples_used;
}

/* Number of intervals, over labels and macro, that differ between a and b. */
static int count_differences(const ap_evaluation *a, const ap_evaluation *b)
{
    int differences = 0;
    for (int m = 0; m < AP_METRIC_COUNT; m++) {
        for (int l = 0; l < a->label_count; l++)
            differences += !same_interval(&a->labels[l].metrics[m].interval,
                                          &b->labels[l].metrics[m].interval);
        differences += !same_interval(&a->macro.metrics[m].interval, &b->macro.metrics[m].interval);
    }
    return differences;
}

#define SET_SIZE 300

static void test_bootstrap_determinism(void)
{
    static float probabilities[SET_SIZE * 2];
    static int8_t targets[SET_SIZE * 2];
    make_set(SET_SIZE, probabilities, targets);
    ap_eval_set set = {probabilities, targets, SET_SIZE, 2, NULL};

    ap_evaluation first, again, two_threads, other_seed;
    CHECK_INT_EQ(bootstrap(&set, 400, 42, 1, &first), AP_OK);
    CHECK_INT_EQ(bootstrap(&set, 400, 42, 1, &again), AP_OK);
    CHECK_INT_EQ(bootstrap(&set, 400, 42, 2, &two_threads), AP_OK);
    CHECK_INT_EQ(bootstrap(&set, 400, 43, 2, &other_seed), AP_OK);

    CHECK_INT_EQ(count_differences(&first, &again), 0);
    CHECK_INT_EQ(count_differences(&first, &two_threads), 0);
    /* Another seed moves most bootstrap bounds of this set. */
    CHECK(count_differences(&first, &other_seed) > 10);

    /* Every image its own group, spelled out, draws the same resamples. */
    static int groups[SET_SIZE];
    for (int i = 0; i < SET_SIZE; i++)
        groups[i] = i;
    ap_eval_set grouped = set;
    grouped.groups = groups;
    ap_evaluation explicit_groups;
    CHECK_INT_EQ(bootstrap(&grouped, 400, 42, 2, &explicit_groups), AP_OK);
    CHECK_INT_EQ(count_differences(&first, &explicit_groups), 0);

    ap_evaluation_free(&first);
    ap_evaluation_free(&again);
    ap_evaluation_free(&two_threads);
    ap_evaluation_free(&other_seed);
    ap_evaluation_free(&explicit_groups);
}

static void check_contains_estimate(const ap_metric_value *v, const char *what, int label)
{
    bool inside = v->interval.lower <= v->value && v->value <= v->interval.upper;
    if (!inside)
        fprintf(stderr, "%s of label %d: %g is outside [%g, %g]\n", what, label, v->value,
                v->interval.lower, v->interval.upper);
    CHECK(inside);
}

static void test_bootstrap_contains_estimate(void)
{
    static float probabilities[SET_SIZE * 2];
    static int8_t targets[SET_SIZE * 2];
    make_set(SET_SIZE, probabilities, targets);
    ap_eval_set set = {probabilities, targets, SET_SIZE, 2, NULL};
    ap_evaluation e;
    CHECK_INT_EQ(bootstrap(&set, 1000, 5, 0, &e), AP_OK);

    for (int m = 0; m < AP_METRIC_COUNT; m++) {
        const char *name = ap_metric_name((ap_metric)m);
        for (int l = 0; l < 2; l++) {
            const ap_metric_value *v = &e.labels[l].metrics[m];
            ap_interval_method expected =
                ap_metric_is_proportion((ap_metric)m) ? AP_INTERVAL_WILSON : AP_INTERVAL_BOOTSTRAP;
            CHECK_INT_EQ(v->interval.method, expected);
            CHECK(v->interval.lower < v->interval.upper);
            check_contains_estimate(v, name, l);
        }
        CHECK_INT_EQ(e.macro.metrics[m].interval.method, AP_INTERVAL_BOOTSTRAP);
        CHECK_INT_EQ(e.macro.metrics[m].interval.resamples_used, 1000);
        check_contains_estimate(&e.macro.metrics[m], name, -1);
    }
    ap_evaluation_free(&e);
}

static void test_bootstrap_proportions(void)
{
    static float probabilities[SET_SIZE * 2];
    static int8_t targets[SET_SIZE * 2];
    make_set(SET_SIZE, probabilities, targets);
    ap_eval_set set = {probabilities, targets, SET_SIZE, 2, NULL};
    ap_metrics_options options;
    ap_metrics_options_default(&options);
    options.resamples = 200;
    options.bootstrap_proportions = true;
    ap_evaluation e;
    ap_error err = {0};
    CHECK_INT_EQ(ap_evaluate(&set, NULL, &options, &e, &err), AP_OK);
    CHECK_INT_EQ(e.labels[0].metrics[AP_METRIC_RECALL].interval.method, AP_INTERVAL_BOOTSTRAP);
    CHECK_INT_EQ(e.labels[1].metrics[AP_METRIC_ACCURACY].interval.method, AP_INTERVAL_BOOTSTRAP);
    check_contains_estimate(&e.labels[0].metrics[AP_METRIC_RECALL], "recall", 0);
    ap_evaluation_free(&e);
}

static double width(const ap_metric_value *v)
{
    return v->interval.upper - v->interval.lower;
}

static void test_bootstrap_groups_widen(void)
{
    /* 60 groups of 5 identical images: the data carry 60 independent
     * observations, not 300. The group bootstrap resamples 60 groups, while
     * the per-image bootstrap treats the copies as independent, so its
     * intervals are narrower by about sqrt(5). */
    enum { GROUPS = 60, SIZE = 5 };
    static float base_probabilities[GROUPS * 2];
    static int8_t base_targets[GROUPS * 2];
    static float probabilities[GROUPS * SIZE * 2];
    static int8_t targets[GROUPS * SIZE * 2];
    static int groups[GROUPS * SIZE];
    make_set(GROUPS, base_probabilities, base_targets);
    for (int i = 0; i < GROUPS * SIZE; i++) {
        /* Group ids out of order and negative, to show any int works. */
        groups[i] = 1000 - 7 * (i / SIZE);
        for (int label = 0; label < 2; label++) {
            probabilities[i * 2 + label] = base_probabilities[(i / SIZE) * 2 + label];
            targets[i * 2 + label] = base_targets[(i / SIZE) * 2 + label];
        }
    }
    ap_eval_set per_image = {probabilities, targets, GROUPS * SIZE, 2, NULL};
    ap_eval_set per_group = per_image;
    per_group.groups = groups;
    ap_evaluation image_result, group_result;
    CHECK_INT_EQ(bootstrap(&per_image, 1000, 3, 0, &image_result), AP_OK);
    CHECK_INT_EQ(bootstrap(&per_group, 1000, 3, 0, &group_result), AP_OK);

    const ap_metric metrics[] = {AP_METRIC_ROC_AUC, AP_METRIC_PR_AUC, AP_METRIC_F1, AP_METRIC_BRIER,
                                 AP_METRIC_BALANCED_ACCURACY};
    for (size_t k = 0; k < sizeof(metrics) / sizeof(metrics[0]); k++) {
        double image_width = width(&image_result.labels[0].metrics[metrics[k]]);
        double group_width = width(&group_result.labels[0].metrics[metrics[k]]);
        if (!(group_width > 1.5 * image_width))
            fprintf(stderr, "%s: group width %g, per-image width %g\n", ap_metric_name(metrics[k]),
                    group_width, image_width);
        CHECK(group_width > 1.5 * image_width);
    }
    /* Point estimates do not depend on the grouping. */
    CHECK_NEAR(group_result.labels[0].metrics[AP_METRIC_ROC_AUC].value,
               image_result.labels[0].metrics[AP_METRIC_ROC_AUC].value, 0.0);
    ap_evaluation_free(&image_result);
    ap_evaluation_free(&group_result);
}

static void test_bootstrap_keeps_groups_whole(void)
{
    /* Group 4 contains the positives (0.9, 0.3), group 8 the negatives (0.5,
     * 0.1). A resample draws two groups; roc_auc is defined only when both
     * are drawn (half the resamples), and then all four images are in it:
     * pairs 0.9 > 0.5, 0.9 > 0.1, 0.3 > 0.1 give (1 + 1 + 0 + 1) / 4. */
    const float probabilities[] = {0.9f, 0.5f, 0.3f, 0.1f};
    const int8_t targets[] = {1, 0, 1, 0};
    const int groups[] = {4, 8, 4, 8};
    ap_eval_set set = {probabilities, targets, 4, 1, groups};
    ap_evaluation e;
    CHECK_INT_EQ(bootstrap(&set, 400, 17, 2, &e), AP_OK);
    const ap_interval *auc = &e.labels[0].metrics[AP_METRIC_ROC_AUC].interval;
    CHECK_NEAR(auc->lower, 0.75, 0.0);
    CHECK_NEAR(auc->upper, 0.75, 0.0);
    CHECK_INT_EQ(auc->resamples_used + auc->resamples_skipped, 400);
    CHECK(auc->resamples_skipped > 150);
    CHECK(auc->resamples_skipped < 250);
    ap_evaluation_free(&e);
}

static void test_bootstrap_skips_undefined(void)
{
    /* One positive among 20 images: a resample misses it with probability
     * (19/20)^20 = 0.36, and roc_auc is then undefined. */
    float probabilities[20];
    int8_t targets[20];
    for (int i = 0; i < 20; i++) {
        probabilities[i] = 0.05f * (float)i;
        targets[i] = i == 15;
    }
    ap_eval_set set = {probabilities, targets, 20, 1, NULL};
    ap_evaluation e;
    CHECK_INT_EQ(bootstrap(&set, 500, 9, 2, &e), AP_OK);
    const ap_interval *auc = &e.labels[0].metrics[AP_METRIC_ROC_AUC].interval;
    CHECK_INT_EQ(auc->resamples_used + auc->resamples_skipped, 500);
    CHECK(auc->resamples_skipped > 120);
    CHECK(auc->resamples_skipped < 240);
    CHECK(!isnan(auc->lower));
    /* brier is defined in every resample. */
    CHECK_INT_EQ(e.labels[0].metrics[AP_METRIC_BRIER].interval.resamples_skipped, 0);
    ap_evaluation_free(&e);
}

static void test_bootstrap_empty_set(void)
{
    ap_eval_set set = {NULL, NULL, 0, 1, NULL};
    ap_evaluation e;
    CHECK_INT_EQ(bootstrap(&set, 20, 1, 1, &e), AP_OK);
    const ap_interval *auc = &e.labels[0].metrics[AP_METRIC_ROC_AUC].interval;
    CHECK_INT_EQ(auc->resamples_skipped, 20);
    CHECK(isnan(auc->lower));
    CHECK(isnan(e.labels[0].metrics[AP_METRIC_ACCURACY].value));
    ap_evaluation_free(&e);
}

static void test_bootstrap_invalid_options(void)
{
    const float probabilities[] = {0.2f, 0.8f};
    const int8_t targets[] = {0, 1};
    ap_eval_set set = {probabilities, targets, 2, 1, NULL};
    ap_metrics_options options;
    ap_metrics_options_default(&options);
    options.resamples = -1;
    ap_evaluation e;
    ap_error err = {0};
    CHECK_INT_EQ(ap_evaluate(&set, NULL, &options, &e, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "bootstrap resamples -1");
    options.resamples = 10;
    options.threads = -2;
    CHECK_INT_EQ(ap_evaluate(&set, NULL, &options, &e, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "thread count -2");
}

int main(void)
{
    test_normal_quantile();
    test_wilson_by_hand();
    test_wilson_edges();
    test_wilson_reference();
    test_mcnemar_by_hand();
    test_mcnemar_edges();
    test_mcnemar_reference();
    test_mcnemar_count();
    test_bootstrap_determinism();
    test_bootstrap_contains_estimate();
    test_bootstrap_proportions();
    test_bootstrap_groups_widen();
    test_bootstrap_keeps_groups_whole();
    test_bootstrap_skips_undefined();
    test_bootstrap_empty_set();
    test_bootstrap_invalid_options();
    return check_finish();
}
