#include "pipeline/eval/confusion.h"

#include <math.h>

void ap_confusion_count(const float *probabilities, const int8_t *targets, size_t count,
                        int label_count, int label, float threshold, ap_confusion *out)
{
    ap_confusion c = {0};
    for (size_t i = 0; i < count; i++) {
        int8_t target = targets[i * (size_t)label_count + (size_t)label];
        int predicted = probabilities[i * (size_t)label_count + (size_t)label] >= threshold;
        if (target < 0)
            c.unknown++;
        else if (target == 1)
            predicted ? c.true_positive++ : c.false_negative++;
        else
            predicted ? c.false_positive++ : c.true_negative++;
    }
    *out = c;
}

static double ratio(long numerator, long denominator)
{
    return denominator > 0 ? (double)numerator / (double)denominator : NAN;
}

double ap_confusion_accuracy(const ap_confusion *c)
{
    long total = c->true_positive + c->false_positive + c->true_negative + c->false_negative;
    return ratio(c->true_positive + c->true_negative, total);
}

double ap_confusion_precision(const ap_confusion *c)
{
    return ratio(c->true_positive, c->true_positive + c->false_positive);
}

double ap_confusion_recall(const ap_confusion *c)
{
    return ratio(c->true_positive, c->true_positive + c->false_negative);
}

double ap_confusion_specificity(const ap_confusion *c)
{
    return ratio(c->true_negative, c->true_negative + c->false_positive);
}

double ap_confusion_f1(const ap_confusion *c)
{
    return ratio(2 * c->true_positive,
                 2 * c->true_positive + c->false_positive + c->false_negative);
}
