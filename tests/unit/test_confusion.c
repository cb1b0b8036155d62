#include "pipeline/eval/confusion.h"

#include "tests/unit/check.h"

int main(void)
{
    /* Two labels, six images; label 1 has two unknown targets. */
    const float probabilities[] = {0.9f, 0.2f, 0.6f, 0.7f, 0.4f, 0.5f,
                                   0.1f, 0.9f, 0.8f, 0.3f, 0.3f, 0.6f};
    const int8_t targets[] = {1, 0, 0, 1, 1, -1, 0, 1, 1, -1, 0, 0};

    ap_confusion c;
    ap_confusion_count(probabilities, targets, 6, 2, 0, 0.5f, &c);
    /* Label 0: (0.9,1) TP, (0.6,0) FP, (0.4,1) FN, (0.1,0) TN, (0.8,1) TP, (0.3,0) TN. */
    CHECK_INT_EQ(c.true_positive, 2);
    CHECK_INT_EQ(c.false_positive, 1);
    CHECK_INT_EQ(c.false_negative, 1);
    CHECK_INT_EQ(c.true_negative, 2);
    CHECK_INT_EQ(c.unknown, 0);
    CHECK_NEAR(ap_confusion_accuracy(&c), 4.0 / 6.0, 1e-12);
    CHECK_NEAR(ap_confusion_precision(&c), 2.0 / 3.0, 1e-12);
    CHECK_NEAR(ap_confusion_recall(&c), 2.0 / 3.0, 1e-12);
    CHECK_NEAR(ap_confusion_specificity(&c), 2.0 / 3.0, 1e-12);
    CHECK_NEAR(ap_confusion_f1(&c), 2.0 / 3.0, 1e-12);

    ap_confusion_count(probabilities, targets, 6, 2, 1, 0.5f, &c);
    /* Label 1: (0.2,0) TN, (0.7,1) TP, (0.5,?) skip, (0.9,1) TP, (0.3,?) skip, (0.6,0) FP. */
    CHECK_INT_EQ(c.true_positive, 2);
    CHECK_INT_EQ(c.false_positive, 1);
    CHECK_INT_EQ(c.true_negative, 1);
    CHECK_INT_EQ(c.false_negative, 0);
    CHECK_INT_EQ(c.unknown, 2);
    CHECK_NEAR(ap_confusion_recall(&c), 1.0, 1e-12);

    /* No positives: recall and precision are undefined, not zero. */
    const float p2[] = {0.1f, 0.2f};
    const int8_t t2[] = {0, 0};
    ap_confusion_count(p2, t2, 2, 1, 0, 0.5f, &c);
    CHECK(isnan(ap_confusion_recall(&c)));
    CHECK(isnan(ap_confusion_precision(&c)));
    CHECK_NEAR(ap_confusion_accuracy(&c), 1.0, 1e-12);
    return check_finish();
}
