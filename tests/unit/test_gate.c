#include "pipeline/validate/gate.h"

#include "tests/unit/check.h"

static const char test_labels[][AP_NAME_MAX] = {"wasp", "hornet", "a.b"};
#define TEST_LABEL_COUNT 3

static ap_gate_rule parse_ok(const char *text)
{
    ap_gate_rule rule;
    ap_error err = {0};
    ap_status status = ap_gate_rule_parse(text, test_labels, TEST_LABEL_COUNT, &rule, &err);
    if (status != AP_OK)
        fprintf(stderr, "parsing \"%s\" failed: %s\n", text, err.message);
    CHECK_INT_EQ(status, AP_OK);
    return rule;
}

/* Parse text, expect AP_ERR_INVALID and a message containing the rule and expected. */
static void parse_fails(const char *text, const char *expected)
{
    ap_gate_rule rule;
    ap_error err = {0};
    ap_status status = ap_gate_rule_parse(text, test_labels, TEST_LABEL_COUNT, &rule, &err);
    CHECK_INT_EQ(status, AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, expected);
    if (text[strspn(text, " ")] != '\0') {
        char quoted[AP_GATE_RULE_MAX + 32];
        snprintf(quoted, sizeof(quoted), "gate rule \"%.60s", text);
        CHECK_STR_CONTAINS(err.message, quoted);
    }
}

static void test_parse_valid_forms(void)
{
    ap_gate_rule rule = parse_ok("wasp.recall >= 0.9");
    CHECK(strcmp(rule.label, "wasp") == 0);
    CHECK_INT_EQ(rule.label_index, 0);
    CHECK_INT_EQ(rule.metric, AP_METRIC_RECALL);
    CHECK_INT_EQ(rule.bound, AP_GATE_BOUND_VALUE);
    CHECK_INT_EQ(rule.op, AP_GATE_AT_LEAST);
    CHECK_NEAR(rule.limit, 0.9, 0.0);
    CHECK(strcmp(rule.text, "wasp.recall >= 0.9") == 0);

    rule = parse_ok("wasp.recall.lower>=0.91");
    CHECK_INT_EQ(rule.bound, AP_GATE_BOUND_LOWER);
    CHECK_NEAR(rule.limit, 0.91, 0.0);

    rule = parse_ok("  hornet.brier.upper   <=  0.25 ");
    CHECK_INT_EQ(rule.label_index, 1);
    CHECK_INT_EQ(rule.metric, AP_METRIC_BRIER);
    CHECK_INT_EQ(rule.bound, AP_GATE_BOUND_UPPER);
    CHECK_INT_EQ(rule.op, AP_GATE_AT_MOST);
    CHECK_NEAR(rule.limit, 0.25, 0.0);

    rule = parse_ok("macro.f1 >= 0");
    CHECK(strcmp(rule.label, "macro") == 0);
    CHECK_INT_EQ(rule.label_index, -1);
    CHECK_INT_EQ(rule.metric, AP_METRIC_F1);

    rule = parse_ok("wasp.roc_auc.value >= 1");
    CHECK_INT_EQ(rule.metric, AP_METRIC_ROC_AUC);
    CHECK_INT_EQ(rule.bound, AP_GATE_BOUND_VALUE);
    CHECK_NEAR(rule.limit, 1.0, 0.0);

    /* A label with a dot is read from the right. */
    rule = parse_ok("a.b.specificity.lower >= 1e-1");
    CHECK(strcmp(rule.label, "a.b") == 0);
    CHECK_INT_EQ(rule.label_index, 2);
    CHECK_INT_EQ(rule.metric, AP_METRIC_SPECIFICITY);
    CHECK_INT_EQ(rule.bound, AP_GATE_BOUND_LOWER);
    CHECK_NEAR(rule.limit, 0.1, 0.0);
}

static void test_parse_errors(void)
{
    parse_fails("", "gate rule is empty");
    parse_fails("   ", "gate rule is empty");
    parse_fails("wasp.recall 0.9", "no comparison found");
    parse_fails("wasp.recall > 0.9", "'>' is not supported; use >=");
    parse_fails("wasp.recall < 0.9", "'<' is not supported; use <=");
    parse_fails("wasp.recall == 0.9", "\"==\" is not supported");
    parse_fails("wasp.recall = 0.9", "\"=\" is not supported");
    parse_fails("wasp.recall => 0.9", "\"=>\" is not supported");
    parse_fails("wasp.recall != 0.9", "\"!=\" is not supported");
    parse_fails("wasp.recall >= 0.5 <= 0.9", "more than one comparison");
    parse_fails("wasp.recall >=", "value after the comparison is missing");
    parse_fails(">= 0.9", "metric before the comparison is missing");
    parse_fails("wasp.recall >= high", "\"high\" is not a number");
    parse_fails("wasp.recall >= 0.9x", "\"0.9x\" is not a number");
    parse_fails("wasp.recall >= nan", "\"nan\" is not a number");
    parse_fails("wasp.recall >= 1e999", "is not a number");
    parse_fails("wasp.recall >= 90", "outside [0, 1]");
    parse_fails("wasp.recall >= -0.1", "outside [0, 1]");
    parse_fails("recall >= 0.9", "names no label");
    parse_fails("wasp.lower >= 0.9", "names no metric before .lower");
    parse_fails("wasp.recal >= 0.9", "unknown metric \"recal\"");
    parse_fails("wasp.recall.lowr >= 0.9", "unknown bound \"lowr\"");
    parse_fails("moth.recall >= 0.9", "unknown label \"moth\"");
    parse_fails("moth.recall >= 0.9", "wasp, hornet, a.b, macro");
    parse_fails(".recall >= 0.9", "label before .recall is missing");
    parse_fails("wasp recall >= 0.9", "contains spaces");

    char long_rule[AP_GATE_RULE_MAX + 8];
    memset(long_rule, 'w', sizeof(long_rule) - 1);
    long_rule[sizeof(long_rule) - 1] = '\0';
    parse_fails(long_rule, "longer than 127 characters");
}

static void test_parse_config_rules(void)
{
    ap_config cfg;
    ap_config_defaults(&cfg);
    ap_error err = {0};
    CHECK_INT_EQ(ap_config_set(&cfg, "data.labels=wasp,bee", &err), AP_OK);
    CHECK_INT_EQ(ap_config_set(&cfg, "gate.rules=wasp.recall.lower >= 0.9, bee.f1 >= 0.5", &err),
                 AP_OK);
    ap_gate_rule rules[AP_GATE_MAX_RULES];
    int count = -1;
    CHECK_INT_EQ(ap_gate_rules_parse(&cfg, rules, &count, &err), AP_OK);
    CHECK_INT_EQ(count, 2);
    CHECK_INT_EQ(rules[1].label_index, 1);
    CHECK_INT_EQ(rules[1].metric, AP_METRIC_F1);

    CHECK_INT_EQ(ap_config_set(&cfg, "gate.rules=wasp.recall >= 0.9,hornet.recall >= 0.9", &err),
                 AP_OK);
    CHECK_INT_EQ(ap_gate_rules_parse(&cfg, rules, &count, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "gate.rules item 2");
    CHECK_STR_CONTAINS(err.message, "unknown label \"hornet\"");
    CHECK_INT_EQ(count, 1);
}

/* An evaluation of two labels with hand-set values and intervals. */
static ap_label_metrics eval_labels[2];

static ap_evaluation constructed_evaluation(int resamples)
{
    memset(eval_labels, 0, sizeof(eval_labels));
    ap_evaluation evaluation = {0};
    evaluation.label_count = 2;
    evaluation.labels = eval_labels;
    ap_metrics_options_default(&evaluation.options);
    evaluation.options.resamples = resamples;
    for (int l = 0; l < 2; l++) {
        for (int m = 0; m < AP_METRIC_COUNT; m++)
            eval_labels[l].metrics[m] =
                (ap_metric_value){NAN, {AP_INTERVAL_NONE, 0.95, NAN, NAN, 0, 0}};
        eval_labels[l].label = l;
    }
    eval_labels[0].positives = 40;
    eval_labels[0].negatives = 22;
    eval_labels[0].metrics[AP_METRIC_RECALL] =
        (ap_metric_value){0.95, {AP_INTERVAL_WILSON, 0.95, 0.90, 0.98, 0, 0}};
    eval_labels[0].metrics[AP_METRIC_BRIER] =
        (ap_metric_value){0.1, {AP_INTERVAL_NONE, 0.95, NAN, NAN, 0, 0}};
    /* hornet has no positives: recall undefined. */
    eval_labels[1].negatives = 62;
    eval_labels[1].metrics[AP_METRIC_SPECIFICITY] =
        (ap_metric_value){0.9, {AP_INTERVAL_WILSON, 0.95, 0.8, 0.95, 0, 0}};
    for (int m = 0; m < AP_METRIC_COUNT; m++)
        evaluation.macro.metrics[m] =
            (ap_metric_value){NAN, {AP_INTERVAL_NONE, 0.95, NAN, NAN, 0, 0}};
    evaluation.macro.metrics[AP_METRIC_F1] =
        (ap_metric_value){0.8, {AP_INTERVAL_BOOTSTRAP, 0.95, 0.7, 0.85, 1000, 0}};
    return evaluation;
}

static ap_gate_outcome evaluate(const char *text, const ap_evaluation *evaluation)
{
    ap_gate_rule rule = parse_ok(text);
    ap_gate_outcome outcome;
    ap_gate_rule_evaluate(&rule, evaluation, &outcome);
    return outcome;
}

static void test_evaluate_bounds(void)
{
    ap_evaluation evaluation = constructed_evaluation(1000);
    ap_gate_outcome o = evaluate("wasp.recall >= 0.9", &evaluation);
    CHECK(o.passed);
    CHECK_NEAR(o.actual, 0.95, 0.0);
    CHECK_STR_CONTAINS(o.detail, "wasp recall is 0.9500, at least 0.9 as required");

    o = evaluate("wasp.recall >= 0.95", &evaluation);
    CHECK(o.passed);

    o = evaluate("wasp.recall.lower >= 0.92", &evaluation);
    CHECK(!o.passed);
    CHECK_NEAR(o.actual, 0.90, 0.0);
    CHECK_STR_CONTAINS(o.detail, "the lower 95% wilson bound of wasp recall is 0.9000");
    CHECK_STR_CONTAINS(o.detail, "below the required minimum 0.92");

    o = evaluate("wasp.recall.upper <= 0.97", &evaluation);
    CHECK(!o.passed);
    CHECK_NEAR(o.actual, 0.98, 0.0);
    CHECK_STR_CONTAINS(o.detail, "above the required maximum 0.97");

    o = evaluate("wasp.recall.upper <= 0.98", &evaluation);
    CHECK(o.passed);
    CHECK_STR_CONTAINS(o.detail, "at most 0.98 as required");

    o = evaluate("wasp.brier <= 0.2", &evaluation);
    CHECK(o.passed);
    CHECK_NEAR(o.actual, 0.1, 0.0);

    o = evaluate("macro.f1.lower >= 0.75", &evaluation);
    CHECK(!o.passed);
    CHECK_NEAR(o.actual, 0.7, 0.0);
    CHECK_STR_CONTAINS(o.detail, "bootstrap bound of macro-average f1 is 0.7000");

    o = evaluate("hornet.specificity.lower >= 0.8", &evaluation);
    CHECK(o.passed);
}

static void test_evaluate_undefined(void)
{
    ap_evaluation evaluation = constructed_evaluation(1000);
    ap_gate_outcome o = evaluate("hornet.recall >= 0", &evaluation);
    CHECK(!o.passed);
    CHECK(isnan(o.actual));
    CHECK_STR_CONTAINS(o.detail, "hornet recall is undefined");
    CHECK_STR_CONTAINS(o.detail, "no positive image");
    CHECK_STR_CONTAINS(o.detail, "so the rule fails");

    /* A NAN limit comparison must fail for <= as well. */
    o = evaluate("hornet.recall <= 1", &evaluation);
    CHECK(!o.passed);

    o = evaluate("macro.recall >= 0", &evaluation);
    CHECK(!o.passed);
    CHECK_STR_CONTAINS(o.detail, "no label has a defined value");

    /* The value is defined but has no interval: brier's comes from the bootstrap. */
    ap_evaluation no_bootstrap = constructed_evaluation(0);
    o = evaluate("wasp.brier.upper <= 0.5", &no_bootstrap);
    CHECK(!o.passed);
    CHECK(isnan(o.actual));
    CHECK_STR_CONTAINS(o.detail, "gate.bootstrap_resamples = 0");

    o = evaluate("wasp.brier.upper <= 0.5", &evaluation);
    CHECK(!o.passed);
    CHECK_STR_CONTAINS(o.detail, "no interval was computed");
}

static void test_support_check(void)
{
    const long positives[] = {40, 3, 10}, negatives[] = {22, 59, 10};
    ap_gate_rule rules[2];
    rules[0] = parse_ok("wasp.recall.lower >= 0.9");
    rules[1] = parse_ok("a.b.recall >= 0.5");
    ap_data_check check;
    ap_gate_check_support(rules, 2, test_labels, TEST_LABEL_COUNT, positives, negatives, 10, 10,
                          &check);
    CHECK(strcmp(check.name, "test_support") == 0);
    CHECK(check.passed);
    CHECK_STR_CONTAINS(check.detail, "wasp has 40 positive and 22 negative test images");
    CHECK_STR_CONTAINS(check.detail, "a.b has 10 positive and 10 negative");
    CHECK(strstr(check.detail, "hornet") == NULL);

    /* A macro rule needs every label, and hornet has 3 positives. */
    rules[1] = parse_ok("macro.f1 >= 0.5");
    ap_gate_check_support(rules, 2, test_labels, TEST_LABEL_COUNT, positives, negatives, 10, 10,
                          &check);
    CHECK(!check.passed);
    CHECK_STR_CONTAINS(check.detail, "hornet has 3 positive and 59 negative test images (too few)");
    CHECK_STR_CONTAINS(check.detail, "at least 10 positive and 10 negative");

    ap_gate_check_support(rules, 1, test_labels, TEST_LABEL_COUNT, positives, negatives, 41, 0,
                          &check);
    CHECK(!check.passed);
    CHECK_STR_CONTAINS(check.detail, "wasp has 40 positive and 22 negative test images (too few)");

    ap_gate_check_support(rules, 0, test_labels, TEST_LABEL_COUNT, positives, negatives, 1000, 1000,
                          &check);
    CHECK(check.passed);
    CHECK_STR_CONTAINS(check.detail, "no gate rule names a label");
}

int main(void)
{
    test_parse_valid_forms();
    test_parse_errors();
    test_parse_config_rules();
    test_evaluate_bounds();
    test_evaluate_undefined();
    test_support_check();
    return check_finish();
}
