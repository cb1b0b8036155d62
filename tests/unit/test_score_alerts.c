/* Alert conditions of apiary score: parsing, label lookup and evaluation. */

#include "pipeline/score/score_alerts.h"

#include "tests/unit/check.h"

static const char labels[][AP_NAME_MAX] = {"wasp", "varroa", "pollen.load"};
#define LABEL_COUNT 3

static void test_parse_valid(void)
{
    static const struct {
        const char *text;
        const char *subject;
        ap_alert_metric metric;
        ap_alert_op op;
        double threshold;
    } cases[] = {
        {"wasp.count >= 1", "wasp", AP_ALERT_COUNT, AP_ALERT_GE, 1.0},
        {"varroa.rate > 0.05", "varroa", AP_ALERT_RATE, AP_ALERT_GT, 0.05},
        {"wasp.count<3", "wasp", AP_ALERT_COUNT, AP_ALERT_LT, 3.0},
        {"  varroa.rate <=   1  ", "varroa", AP_ALERT_RATE, AP_ALERT_LE, 1.0},
        {"pollen.load.rate >= 0.5", "pollen.load", AP_ALERT_RATE, AP_ALERT_GE, 0.5},
        {"errors.rate > 0", "errors", AP_ALERT_RATE, AP_ALERT_GT, 0.0},
        {"wasp.count >= 1e1", "wasp", AP_ALERT_COUNT, AP_ALERT_GE, 10.0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ap_score_alert alert;
        ap_error err = {0};
        ap_status status = ap_score_alert_parse(cases[i].text, &alert, &err);
        if (status != AP_OK)
            fprintf(stderr, "case \"%s\": %s\n", cases[i].text, err.message);
        CHECK_INT_EQ(status, AP_OK);
        CHECK_STR_CONTAINS(alert.subject, cases[i].subject);
        CHECK_INT_EQ(strlen(alert.subject), strlen(cases[i].subject));
        CHECK_INT_EQ(alert.metric, cases[i].metric);
        CHECK_INT_EQ(alert.op, cases[i].op);
        CHECK_NEAR(alert.threshold, cases[i].threshold, 1e-12);
        CHECK_INT_EQ(strcmp(alert.text, cases[i].text), 0);
    }
}

static void test_parse_invalid(void)
{
    static const struct {
        const char *text;
        const char *message;
    } cases[] = {
        {"wasp.cnt >= 1", "unknown metric \"cnt\""},
        {"wasp >= 1", "expected LABEL.METRIC OP VALUE"},
        {".count >= 1", "expected LABEL.METRIC OP VALUE"},
        {"wasp.count == 1", "unsupported operator \"==\""},
        {"wasp.count = 1", "unsupported operator \"=\""},
        {"wasp.count => 1", "unsupported operator \"=>\""},
        {"wasp.count 1", "missing operator"},
        {"wasp.count >=", "not a number"},
        {"wasp.count >= one", "not a number"},
        {"wasp.count >= nan", "not a number"},
        {"wasp.count >= 1 hives", "unexpected text \"hives\""},
        {"wasp.count >= -1", "a count of at least 0"},
        {"varroa.rate > 1.5", "a rate from 0 to 1"},
        {"", "expected LABEL.METRIC OP VALUE"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ap_score_alert alert;
        ap_error err = {0};
        CHECK_INT_EQ(ap_score_alert_parse(cases[i].text, &alert, &err), AP_ERR_INVALID);
        CHECK_STR_CONTAINS(err.message, cases[i].message);
        CHECK_STR_CONTAINS(err.message, "score.alerts entry");
    }
}

static void test_parse_config_list(void)
{
    ap_score_config cfg = {0};
    snprintf(cfg.alerts[0], sizeof(cfg.alerts[0]), "wasp.count >= 1");
    snprintf(cfg.alerts[1], sizeof(cfg.alerts[1]), "varroa.ratio > 0.1");
    cfg.alert_count = 2;
    ap_score_alert alerts[AP_SCORE_MAX_ALERTS];
    int count = -1;
    ap_error err = {0};
    CHECK_INT_EQ(ap_score_alerts_parse(&cfg, alerts, &count, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "varroa.ratio > 0.1");
    cfg.alert_count = 1;
    CHECK_INT_EQ(ap_score_alerts_parse(&cfg, alerts, &count, &err), AP_OK);
    CHECK_INT_EQ(count, 1);
}

static void test_resolve(void)
{
    ap_score_alert alert;
    ap_error err = {0};
    ap_score_alert_parse("varroa.rate > 0.05", &alert, &err);
    CHECK_INT_EQ(ap_score_alert_resolve(&alert, labels, LABEL_COUNT, &err), AP_OK);
    CHECK_INT_EQ(alert.label, 1);

    ap_score_alert_parse("errors.count >= 1", &alert, &err);
    CHECK_INT_EQ(ap_score_alert_resolve(&alert, labels, LABEL_COUNT, &err), AP_OK);
    CHECK_INT_EQ(alert.label, AP_ALERT_ERRORS);

    ap_score_alert_parse("wsp.count >= 1", &alert, &err);
    CHECK_INT_EQ(ap_score_alert_resolve(&alert, labels, LABEL_COUNT, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "\"wsp\" is not a label of the model");
    CHECK_STR_CONTAINS(err.message, "wasp, varroa, pollen.load");

    static const char clashing[][AP_NAME_MAX] = {"wasp", "errors"};
    ap_score_alert_parse("errors.count >= 1", &alert, &err);
    CHECK_INT_EQ(ap_score_alert_resolve(&alert, clashing, 2, &err), AP_ERR_INVALID);
    CHECK_STR_CONTAINS(err.message, "has a label named errors");
}

static void test_values(void)
{
    ap_score_counts counts = {.images = 10, .errors = 2, .positives = {4, 0, 8}};
    ap_score_alert alert;
    ap_error err = {0};
    double value = -1;

    ap_score_alert_parse("wasp.rate > 0.5", &alert, &err);
    ap_score_alert_resolve(&alert, labels, LABEL_COUNT, &err);
    CHECK(ap_score_alert_value(&alert, &counts, &value));
    CHECK_NEAR(value, 0.5, 1e-12); /* 4 of the 8 decoded images */
    CHECK(!ap_score_alert_fires(&alert, value));
    alert.op = AP_ALERT_GE;
    CHECK(ap_score_alert_fires(&alert, value));

    ap_score_alert_parse("errors.rate >= 0.2", &alert, &err);
    ap_score_alert_resolve(&alert, labels, LABEL_COUNT, &err);
    CHECK(ap_score_alert_value(&alert, &counts, &value));
    CHECK_NEAR(value, 0.2, 1e-12); /* 2 of all 10 images */
    CHECK(ap_score_alert_fires(&alert, value));

    ap_score_alert_parse("varroa.count < 1", &alert, &err);
    ap_score_alert_resolve(&alert, labels, LABEL_COUNT, &err);
    CHECK(ap_score_alert_value(&alert, &counts, &value));
    CHECK_NEAR(value, 0.0, 0.0);
    CHECK(ap_score_alert_fires(&alert, value));
    alert.op = AP_ALERT_LE;
    alert.threshold = -0.5;
    CHECK(!ap_score_alert_fires(&alert, value));

    /* A rate over no decoded images is undefined and never fires. */
    ap_score_counts failed = {.images = 3, .errors = 3};
    ap_score_alert_parse("wasp.rate >= 0", &alert, &err);
    ap_score_alert_resolve(&alert, labels, LABEL_COUNT, &err);
    CHECK(!ap_score_alert_value(&alert, &failed, &value));
    ap_score_alert_parse("wasp.count >= 0", &alert, &err);
    ap_score_alert_resolve(&alert, labels, LABEL_COUNT, &err);
    CHECK(ap_score_alert_value(&alert, &failed, &value));
}

int main(void)
{
    test_parse_valid();
    test_parse_invalid();
    test_parse_config_list();
    test_resolve();
    test_values();
    return check_finish();
}
