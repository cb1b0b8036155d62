#ifndef APIARY_EVAL_CONFUSION_H
#define APIARY_EVAL_CONFUSION_H

#include <stddef.h>
#include <stdint.h>

/* Per-label confusion counts at a decision threshold, and the rates that
 * follow from them. Unknown targets (-1) are counted apart and skipped. */

typedef struct {
    long true_positive;
    long false_positive;
    long true_negative;
    long false_negative;
    long unknown;
} ap_confusion;

/* Count one label: probabilities and targets are strided by label_count. */
void ap_confusion_count(const float *probabilities, const int8_t *targets, size_t count,
                        int label_count, int label, float threshold, ap_confusion *out);

/* Rates; each is NAN when its denominator is zero. */
double ap_confusion_accuracy(const ap_confusion *c);
double ap_confusion_precision(const ap_confusion *c);
double ap_confusion_recall(const ap_confusion *c);
double ap_confusion_specificity(const ap_confusion *c);
double ap_confusion_f1(const ap_confusion *c);

#endif
