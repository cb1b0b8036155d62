#include "pipeline/eval/intervals.h"

#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/rng.h"

static double normal_cdf(double x)
{
    return 0.5 * erfc(-x / sqrt(2.0));
}

double ap_normal_quantile(double probability)
{
    if (!(probability > 0.0 && probability < 1.0))
        return NAN;
    /* The quantile of any double in (0, 1) lies inside [-40, 40]; halve the
     * bracket until it cannot shrink further. */
    double low = -40.0, high = 40.0;
    for (int i = 0; i < 200; i++) {
        double middle = 0.5 * (low + high);
        if (middle <= low || middle >= high)
            break;
        if (normal_cdf(middle) < probability)
            low = middle;
        else
            high = middle;
    }
    return 0.5 * (low + high);
}

ap_status ap_wilson_interval(long successes, long trials, double level, ap_interval *out,
                             ap_error *err)
{
    *out = (ap_interval){AP_INTERVAL_WILSON, level, NAN, NAN, 0, 0};
    if (!(level > 0.0 && level < 1.0))
        return ap_error_set(err, AP_ERR_INVALID,
                            "confidence level %g is invalid; use a value in (0, 1)", level);
    if (trials < 0 || successes < 0 || successes > trials)
        return ap_error_set(err, AP_ERR_INVALID,
                            "Wilson interval of %ld successes in %ld trials is invalid; "
                            "successes must be in [0, trials]",
                            successes, trials);
    if (trials == 0)
        return AP_OK;

    double z = ap_normal_quantile((1.0 + level) / 2.0);
    double n = (double)trials, p = (double)successes / n, z2 = z * z;
    double denominator = 1.0 + z2 / n;
    double center = (p + z2 / (2.0 * n)) / denominator;
    double half = z * sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denominator;
    out->lower = fmax(0.0, center - half);
    out->upper = fmin(1.0, center + half);
    return AP_OK;
}

/* Rows of the evaluation set grouped by group id: group g owns
 * members[start[g]] to members[start[g + 1] - 1]. */
typedef struct {
    size_t group_count;
    size_t *start;
    size_t *members;
} group_index;

typedef struct {
    int group;
    size_t row;
} group_row;

static int compare_group_rows(const void *a, const void *b)
{
    const group_row *x = a, *y = b;
    if (x->group != y->group)
        return x->group < y->group ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

static void fill_group_index(const int *groups, size_t count, group_row *rows, group_index *g)
{
    for (size_t i = 0; i < count; i++) {
        rows[i].group = groups != NULL ? groups[i] : 0;
        rows[i].row = i;
    }
    if (groups != NULL)
        qsort(rows, count, sizeof(*rows), compare_group_rows);
    for (size_t i = 0; i < count; i++) {
        bool new_group = groups == NULL || i == 0 || rows[i].group != rows[i - 1].group;
        if (new_group)
            g->start[g->group_count++] = i;
        g->members[i] = rows[i].row;
    }
    g->start[g->group_count] = count;
}

static ap_status build_group_index(const int *groups, size_t count, group_index *g, ap_error *err)
{
    memset(g, 0, sizeof(*g));
    g->start = malloc((count + 1) * sizeof(*g->start));
    g->members = malloc((count > 0 ? count : 1) * sizeof(*g->members));
    group_row *rows = malloc((count > 0 ? count : 1) * sizeof(*rows));
    if (g->start == NULL || g->members == NULL || rows == NULL) {
        free(rows);
        free(g->start);
        free(g->members);
        /* The caller frees the index after a failure too. */
        memset(g, 0, sizeof(*g));
        return ap_error_set(err, AP_ERR_NOMEM, "cannot allocate the groups of %zu images", count);
    }
    fill_group_index(groups, count, rows, g);
    free(rows);
    return AP_OK;
}

static void free_group_index(group_index *g)
{
    free(g->start);
    free(g->members);
}

/* Weight each row by how often its group is drawn. The modulo bias is below
 * group_count / 2^64 and does not matter here. */
static void draw_resample(const group_index *g, uint64_t seed, int resample, uint32_t *weights,
                          size_t count)
{
    memset(weights, 0, count * sizeof(*weights));
    for (size_t d = 0; d < g->group_count; d++) {
        uint64_t group = ap_rng_u64(seed, (uint64_t)resample, (uint64_t)d) % g->group_count;
        for (size_t k = g->start[group]; k < g->start[group + 1]; k++)
            weights[g->members[k]]++;
    }
}

/* Per-resample values: slot l < label_count is label l, slot label_count the
 * macro average. */
typedef struct {
    int label_count;
    int resamples;
    double *values; /* resamples x (label_count + 1) x AP_METRIC_COUNT */
} resample_table;

static double *table_row(const resample_table *t, int resample, int slot)
{
    size_t row = (size_t)resample * (size_t)(t->label_count + 1) + (size_t)slot;
    return t->values + row * AP_METRIC_COUNT;
}

static void evaluate_resample(const ap_label_order *orders, const ap_evaluation *evaluation,
                              const uint32_t *weights, ap_label_metrics *scratch,
                              const resample_table *t, int resample)
{
    int bins = evaluation->options.ece_bins;
    for (int l = 0; l < t->label_count; l++) {
        ap_label_metrics_compute(&orders[l], weights, evaluation->labels[l].threshold, bins,
                                 &scratch[l]);
        double *row = table_row(t, resample, l);
        for (int m = 0; m < AP_METRIC_COUNT; m++)
            row[m] = scratch[l].metrics[m].value;
    }
    ap_macro_metrics macro;
    ap_macro_average(scratch, t->label_count, &macro);
    double *row = table_row(t, resample, t->label_count);
    for (int m = 0; m < AP_METRIC_COUNT; m++)
        row[m] = macro.metrics[m].value;
}

/* Fill the table; every resample is computed whole by one thread, so the
 * values do not depend on the thread count. Returns false when a thread's
 * buffers could not be allocated. */
static bool run_resamples(const ap_eval_set *set, const ap_label_order *orders,
                          const group_index *groups, const ap_evaluation *evaluation,
                          resample_table *t)
{
    const ap_metrics_options *options = &evaluation->options;
    /* NOLINTNEXTLINE(clang-analyzer-deadcode.DeadStores): read by num_threads below */
    int threads = options->threads > 0 ? options->threads : omp_get_max_threads();
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        uint32_t *weights = malloc((set->count > 0 ? set->count : 1) * sizeof(*weights));
        ap_label_metrics *scratch = malloc((size_t)t->label_count * sizeof(*scratch));
        if (weights == NULL || scratch == NULL) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int r = 0; r < t->resamples; r++) {
            if (weights == NULL || scratch == NULL)
                continue;
            draw_resample(groups, options->seed, r, weights, set->count);
            evaluate_resample(orders, evaluation, weights, scratch, t, r);
        }
        free(weights);
        free(scratch);
    }
    return failed == 0;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Quantile q of sorted[0..n-1], interpolated linearly between order
 * statistics at position (n - 1) q. */
static double sorted_quantile(const double *sorted, size_t n, double q)
{
    double position = (double)(n - 1) * q;
    size_t below = (size_t)floor(position);
    if (below + 1 >= n)
        return sorted[n - 1];
    double fraction = position - (double)below;
    return sorted[below] + fraction * (sorted[below + 1] - sorted[below]);
}

/* Percentile interval of one slot and metric; buffer has room for t->resamples doubles. */
static ap_interval percentile_interval(const resample_table *t, int slot, int metric, double level,
                                       double *buffer)
{
    size_t used = 0;
    for (int r = 0; r < t->resamples; r++) {
        double value = table_row(t, r, slot)[metric];
        if (!isnan(value))
            buffer[used++] = value;
    }
    ap_interval interval = {AP_INTERVAL_BOOTSTRAP,   level, NAN, NAN, (int)used,
                            t->resamples - (int)used};
    if (used > 0) {
        qsort(buffer, used, sizeof(*buffer), compare_doubles);
        interval.lower = sorted_quantile(buffer, used, (1.0 - level) / 2.0);
        interval.upper = sorted_quantile(buffer, used, (1.0 + level) / 2.0);
    }
    return interval;
}

static void store_intervals(const resample_table *t, ap_evaluation *evaluation, double *buffer)
{
    const ap_metrics_options *options = &evaluation->options;
    for (int m = 0; m < AP_METRIC_COUNT; m++) {
        bool label_bootstrap =
            !ap_metric_is_proportion((ap_metric)m) || options->bootstrap_proportions;
        for (int l = 0; label_bootstrap && l < t->label_count; l++)
            evaluation->labels[l].metrics[m].interval =
                percentile_interval(t, l, m, options->level, buffer);
        evaluation->macro.metrics[m].interval =
            percentile_interval(t, t->label_count, m, options->level, buffer);
    }
}

ap_status ap_bootstrap_intervals(const ap_eval_set *set, const ap_label_order *orders,
                                 const ap_metrics_options *options, ap_evaluation *evaluation,
                                 ap_error *err)
{
    ap_status status = ap_metrics_options_check(options, err);
    if (status != AP_OK)
        return status;
    if (evaluation->label_count != set->label_count)
        return ap_error_set(err, AP_ERR_INVALID,
                            "evaluation has %d labels but the set has %d; evaluate the same set",
                            evaluation->label_count, set->label_count);
    evaluation->options = *options;
    if (options->resamples == 0)
        return AP_OK;

    group_index groups;
    status = build_group_index(set->groups, set->count, &groups, err);
    if (status != AP_OK)
        return status;
    resample_table t = {set->label_count, options->resamples, NULL};
    size_t cells = (size_t)options->resamples * (size_t)(set->label_count + 1) * AP_METRIC_COUNT;
    t.values = malloc(cells * sizeof(*t.values));
    double *buffer = malloc((size_t)options->resamples * sizeof(*buffer));
    if (t.values == NULL || buffer == NULL)
        status = ap_error_set(err, AP_ERR_NOMEM, "cannot allocate %d bootstrap resamples",
                              options->resamples);
    else if (!run_resamples(set, orders, &groups, evaluation, &t))
        status = ap_error_set(err, AP_ERR_NOMEM, "cannot allocate bootstrap buffers for %zu images",
                              set->count);
    else
        store_intervals(&t, evaluation, buffer);

    free(buffer);
    free(t.values);
    free_group_index(&groups);
    return status;
}

static ap_status check_pair(const ap_paired_predictions *pair, int label, float champion_threshold,
                            float challenger_threshold, ap_error *err)
{
    if (pair->label_count < 1 || label < 0 || label >= pair->label_count)
        return ap_error_set(err, AP_ERR_INVALID, "label %d is out of range for %d labels", label,
                            pair->label_count);
    if (pair->count > 0 &&
        (pair->champion == NULL || pair->challenger == NULL || pair->targets == NULL))
        return ap_error_set(err, AP_ERR_INVALID,
                            "paired predictions of %zu images are missing an array", pair->count);
    if (!(champion_threshold >= 0.0f && champion_threshold <= 1.0f) ||
        !(challenger_threshold >= 0.0f && challenger_threshold <= 1.0f))
        return ap_error_set(err, AP_ERR_INVALID,
                            "thresholds %g (champion) and %g (challenger) must be in [0, 1]",
                            (double)champion_threshold, (double)challenger_threshold);
    return AP_OK;
}

ap_status ap_mcnemar_count(const ap_paired_predictions *pair, int label, float champion_threshold,
                           float challenger_threshold, long *b, long *c, ap_error *err)
{
    *b = 0;
    *c = 0;
    ap_status status = check_pair(pair, label, champion_threshold, challenger_threshold, err);
    if (status != AP_OK)
        return status;
    for (size_t i = 0; i < pair->count; i++) {
        size_t at = i * (size_t)pair->label_count + (size_t)label;
        int8_t target = pair->targets[at];
        if (target != 1 && target != 0 && target != -1)
            return ap_error_set(err, AP_ERR_INVALID,
                                "target %d of image %zu, label %d is invalid; "
                                "use 1, 0 or -1 for unknown",
                                target, i, label);
        if (target < 0)
            continue;
        bool champion_right = (pair->champion[at] >= champion_threshold) == (target == 1);
        bool challenger_right = (pair->challenger[at] >= challenger_threshold) == (target == 1);
        if (champion_right && !challenger_right)
            (*b)++;
        else if (!champion_right && challenger_right)
            (*c)++;
    }
    return AP_OK;
}

/* P(X <= k) for X ~ Binomial(n, 1/2), summed from the smallest term up. */
static double binomial_half_cdf(long k, long n)
{
    if (k < 0)
        return 0.0;
    if (k >= n)
        return 1.0;
    double log_n_factorial = lgamma((double)n + 1.0);
    double log_half_power = (double)n * log(0.5);
    double total = 0.0;
    for (long i = 0; i <= k; i++)
        total += exp(log_n_factorial - lgamma((double)i + 1.0) - lgamma((double)(n - i) + 1.0) +
                     log_half_power);
    return fmin(total, 1.0);
}

static void mcnemar_exact(ap_mcnemar_result *r)
{
    long n = r->b + r->c;
    if (r->alternative == AP_MCNEMAR_TWO_SIDED) {
        long smaller = r->b < r->c ? r->b : r->c;
        r->statistic = (double)smaller;
        r->p_value = fmin(1.0, 2.0 * binomial_half_cdf(smaller, n));
    } else {
        /* P(X >= b) equals P(X <= c) because the distribution is symmetric. */
        r->statistic = (double)r->b;
        r->p_value = binomial_half_cdf(r->c, n);
    }
}

static void mcnemar_chi_square(ap_mcnemar_result *r)
{
    double n = (double)(r->b + r->c);
    if (n == 0.0) {
        r->statistic = 0.0;
        r->p_value = 1.0;
    } else if (r->alternative == AP_MCNEMAR_TWO_SIDED) {
        double excess = fmax(0.0, fabs((double)(r->b - r->c)) - 1.0);
        r->statistic = excess * excess / n;
        r->p_value = erfc(sqrt(r->statistic / 2.0));
    } else {
        /* Normal approximation of P(X >= b) with the continuity correction:
         * (b - 1/2 - n/2) / (sqrt(n) / 2) = (b - c - 1) / sqrt(n). */
        r->statistic = ((double)(r->b - r->c) - 1.0) / sqrt(n);
        r->p_value = 0.5 * erfc(r->statistic / sqrt(2.0));
    }
}

ap_status ap_mcnemar_test(long b, long c, ap_mcnemar_alternative alternative,
                          ap_mcnemar_method method, ap_mcnemar_result *out, ap_error *err)
{
    memset(out, 0, sizeof(*out));
    if (b < 0 || c < 0)
        return ap_error_set(err, AP_ERR_INVALID,
                            "McNemar counts b = %ld and c = %ld are invalid; they cannot be "
                            "negative",
                            b, c);
    if (alternative != AP_MCNEMAR_TWO_SIDED && alternative != AP_MCNEMAR_CHALLENGER_WORSE)
        return ap_error_set(err, AP_ERR_INVALID, "McNemar alternative %d is unknown",
                            (int)alternative);
    if (method == AP_MCNEMAR_AUTO)
        method = b + c < AP_MCNEMAR_EXACT_BELOW ? AP_MCNEMAR_EXACT : AP_MCNEMAR_CHI_SQUARE;
    if (method != AP_MCNEMAR_EXACT && method != AP_MCNEMAR_CHI_SQUARE)
        return ap_error_set(err, AP_ERR_INVALID, "McNemar method %d is unknown", (int)method);

    out->b = b;
    out->c = c;
    out->method = method;
    out->alternative = alternative;
    if (method == AP_MCNEMAR_EXACT)
        mcnemar_exact(out);
    else
        mcnemar_chi_square(out);
    return AP_OK;
}
