#include "pipeline/eval/thresholds.h"

#include <stdlib.h>
#include <string.h>

static const char *const policy_names[] = {
    [AP_THRESHOLD_MAX_F1] = "max_f1",
    [AP_THRESHOLD_TARGET_RECALL] = "target_recall",
    [AP_THRESHOLD_FIXED] = "fixed",
};

#define POLICY_COUNT ((int)(sizeof(policy_names) / sizeof(policy_names[0])))

const char *ap_threshold_policy_name(ap_threshold_policy policy)
{
    return policy >= 0 && (int)policy < POLICY_COUNT ? policy_names[policy] : "unknown";
}

ap_status ap_threshold_policy_from_name(const char *name, ap_threshold_policy *out, ap_error *err)
{
    for (int p = 0; name != NULL && p < POLICY_COUNT; p++) {
        if (strcmp(name, policy_names[p]) == 0) {
            *out = (ap_threshold_policy)p;
            return AP_OK;
        }
    }
    return ap_error_set(err, AP_ERR_INVALID,
                        "unknown threshold policy \"%s\"; use max_f1, target_recall or fixed",
                        name != NULL ? name : "(null)");
}

/* One candidate threshold and the predicted positives it gives. */
typedef struct {
    float threshold;
    long true_positive;
    long false_positive;
} candidate;

typedef struct {
    candidate *items; /* by decreasing threshold */
    size_t count;
    long positives;
    float lowest_probability;
} candidate_list;

static ap_status check_rule(const ap_threshold_rule *rule, ap_error *err)
{
    switch (rule->policy) {
    case AP_THRESHOLD_MAX_F1:
        return AP_OK;
    case AP_THRESHOLD_TARGET_RECALL:
        if (rule->target_recall > 0.0 && rule->target_recall <= 1.0)
            return AP_OK;
        return ap_error_set(err, AP_ERR_INVALID,
                            "target recall %g is invalid; use a value in (0, 1]",
                            rule->target_recall);
    case AP_THRESHOLD_FIXED:
        if (rule->fixed >= 0.0f && rule->fixed <= 1.0f)
            return AP_OK;
        return ap_error_set(err, AP_ERR_INVALID,
                            "fixed threshold %g is invalid; use a value in [0, 1]",
                            (double)rule->fixed);
    }
    return ap_error_set(err, AP_ERR_INVALID, "threshold policy %d is unknown", (int)rule->policy);
}

/* Append the candidate 0.5 where it belongs, unless a probability equals it. */
static void add_half(candidate_list *list, long half_tp, long half_fp)
{
    size_t at = 0;
    while (at < list->count && list->items[at].threshold > 0.5f)
        at++;
    if (at < list->count && list->items[at].threshold == 0.5f)
        return;
    memmove(&list->items[at + 1], &list->items[at], (list->count - at) * sizeof(candidate));
    list->items[at] = (candidate){0.5f, half_tp, half_fp};
    list->count++;
}

/* Walk the images by decreasing probability: after each run of equal
 * probabilities, the counts so far are the predicted positives at that
 * probability as threshold. */
static ap_status build_candidates(const ap_label_order *order, candidate_list *list, ap_error *err)
{
    memset(list, 0, sizeof(*list));
    list->items = malloc((order->known_count + 1) * sizeof(*list->items));
    if (list->items == NULL)
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %zu candidate thresholds",
                            order->known_count + 1);
    long tp = 0, fp = 0, half_tp = 0, half_fp = 0;
    size_t i = 0;
    while (i < order->known_count) {
        float probability = order->ranked[i].probability;
        for (; i < order->known_count && order->ranked[i].probability == probability; i++)
            order->ranked[i].target == 1 ? tp++ : fp++;
        list->items[list->count++] = (candidate){probability, tp, fp};
        if (probability >= 0.5f) {
            half_tp = tp;
            half_fp = fp;
        }
    }
    list->positives = tp;
    list->lowest_probability = order->ranked[order->known_count - 1].probability;
    add_half(list, half_tp, half_fp);
    return AP_OK;
}

/* Compare F1 = 2 tp / (tp + fp + positives) of two candidates exactly, by
 * cross-multiplying; the products stay below 2^63 for AP_EVAL_MAX_IMAGES. */
static int compare_f1(const candidate *a, const candidate *b, long positives)
{
    unsigned long long left =
        (unsigned long long)a->true_positive *
        (unsigned long long)(b->true_positive + b->false_positive + positives);
    unsigned long long right =
        (unsigned long long)b->true_positive *
        (unsigned long long)(a->true_positive + a->false_positive + positives);
    return (left > right) - (left < right);
}

/* Candidates come by decreasing threshold, so the first best one is the
 * highest; 0.5 replaces it on a tie. */
static float choose_max_f1(const candidate_list *list)
{
    size_t best = 0;
    for (size_t i = 1; i < list->count; i++) {
        int order = compare_f1(&list->items[i], &list->items[best], list->positives);
        if (order > 0 || (order == 0 && list->items[i].threshold == 0.5f))
            best = i;
    }
    return list->items[best].threshold;
}

/* The first candidate whose recall reaches the target is the highest. The
 * lowest probability always reaches it (recall 1) when there are positives. */
static float choose_target_recall(const candidate_list *list, double target)
{
    size_t chosen = list->count - 1;
    for (size_t i = 0; i < list->count; i++) {
        double recall = (double)list->items[i].true_positive / (double)list->positives;
        if (recall >= target) {
            chosen = i;
            break;
        }
    }
    const candidate *c = &list->items[chosen];
    for (size_t i = 0; i < list->count; i++) {
        const candidate *half = &list->items[i];
        if (half->threshold == 0.5f && half->true_positive == c->true_positive &&
            half->false_positive == c->false_positive)
            return 0.5f;
    }
    return c->threshold;
}

static void choose(const ap_threshold_rule *rule, const candidate_list *list,
                   ap_threshold_choice *out)
{
    out->candidate_count = list->count;
    out->found = true;
    if (rule->policy == AP_THRESHOLD_FIXED) {
        out->threshold = rule->fixed;
    } else if (list->positives == 0) {
        out->found = false;
        out->threshold = list->lowest_probability;
    } else if (rule->policy == AP_THRESHOLD_MAX_F1) {
        out->threshold = choose_max_f1(list);
    } else {
        out->threshold = choose_target_recall(list, rule->target_recall);
    }
    out->all_positive = out->threshold <= list->lowest_probability;
}

static ap_status check_inputs(const ap_eval_set *set, int label, const ap_threshold_rule *rule,
                              const ap_metrics_options *options, ap_error *err)
{
    ap_status status = check_rule(rule, err);
    if (status == AP_OK && options != NULL)
        status = ap_metrics_options_check(options, err);
    if (status == AP_OK)
        status = ap_eval_set_check(set, err);
    if (status == AP_OK && (label < 0 || label >= set->label_count))
        status =
            ap_error_set(err, AP_ERR_INVALID, "label %d is out of range; the set has %d labels",
                         label, set->label_count);
    return status;
}

ap_status ap_threshold_choose(const ap_eval_set *set, int label, const ap_threshold_rule *rule,
                              const ap_metrics_options *options, ap_threshold_choice *out,
                              ap_error *err)
{
    memset(out, 0, sizeof(*out));
    ap_status status = check_inputs(set, label, rule, options, err);
    if (status != AP_OK)
        return status;
    ap_metrics_options defaults;
    ap_metrics_options_default(&defaults);
    int bins = options != NULL ? options->ece_bins : defaults.ece_bins;

    ap_label_order order;
    status = ap_label_order_build(set, label, &order, err);
    if (status == AP_OK && order.known_count == 0)
        status = ap_error_set(err, AP_ERR_INVALID,
                              "label %d has no image with a known target among %zu images; "
                              "a threshold needs labelled validation images",
                              label, set->count);
    candidate_list list = {0};
    if (status == AP_OK)
        status = build_candidates(&order, &list, err);
    if (status == AP_OK) {
        choose(rule, &list, out);
        ap_label_metrics_compute(&order, NULL, out->threshold, bins, &out->metrics);
    }
    free(list.items);
    ap_label_order_free(&order);
    return status;
}
