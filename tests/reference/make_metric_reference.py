#!/usr/bin/env python3
"""Write tests/reference/metrics_reference.h: datasets and the metric values
scikit-learn, SciPy and statsmodels compute for them, for tests/unit/test_metrics.c,
test_intervals.c and test_thresholds.c to compare with.

Run it from the repository root after changing a dataset or a reference:

    python3 -m venv /tmp/metrics-venv
    /tmp/metrics-venv/bin/pip install scikit-learn scipy statsmodels
    /tmp/metrics-venv/bin/python tests/reference/make_metric_reference.py

The committed header was made with scikit-learn 1.9.1, SciPy 1.17.1,
statsmodels 0.15.0 and NumPy 2.4.6. The C tests need none of them.
"""

import math
import pathlib

import numpy as np
import scipy
import sklearn
import statsmodels
from scipy import stats
from sklearn import metrics
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

OUTPUT = pathlib.Path(__file__).with_name("metrics_reference.h")
ECE_BINS = 10
TARGET_RECALL = 0.8


def to_float32(values):
    return np.asarray(values, dtype=np.float32)


def make_ties():
    """60 images, one label, probabilities on a 0.1 grid: many tied scores."""
    rng = np.random.default_rng(11)
    targets = (rng.random(60) < 0.4).astype(np.int8)
    scores = 0.35 + 0.3 * targets + rng.normal(0.0, 0.2, 60)
    probabilities = np.clip(np.round(scores, 1), 0.0, 1.0)
    return to_float32(probabilities).reshape(60, 1), targets.reshape(60, 1)


def make_unknown():
    """150 images, two labels with 10% and 20% unknown targets, 0.01 grid."""
    rng = np.random.default_rng(12)
    count = 150
    targets = np.stack(
        [(rng.random(count) < 0.4), (rng.random(count) < 0.15)], axis=1
    ).astype(np.int8)
    scores = 0.3 + 0.35 * targets + rng.normal(0.0, 0.22, (count, 2))
    probabilities = np.clip(np.round(scores, 2), 0.0, 1.0)
    unknown = np.stack([rng.random(count) < 0.1, rng.random(count) < 0.2], axis=1)
    targets[unknown] = -1
    return to_float32(probabilities), targets


def make_imbalanced():
    """400 images, one label, about 13% positives, continuous probabilities."""
    rng = np.random.default_rng(13)
    count = 400
    targets = (rng.random(count) < 0.13).astype(np.int8)
    probabilities = np.where(
        targets == 1, rng.beta(4.0, 2.5, count), rng.beta(1.6, 5.0, count)
    )
    return to_float32(probabilities).reshape(count, 1), targets.reshape(count, 1)


DATASETS = [("ties", make_ties()), ("unknown", make_unknown()), ("imbalanced", make_imbalanced())]

# (dataset index, label, threshold)
LABEL_CASES = [(0, 0, 0.5), (0, 0, 0.3), (1, 0, 0.5), (1, 1, 0.5), (2, 0, 0.5), (2, 0, 0.3)]

WILSON_CASES = [
    (0, 10, 0.95),
    (10, 10, 0.95),
    (5, 10, 0.95),
    (1, 3, 0.90),
    (87, 100, 0.95),
    (13, 100, 0.99),
    (450, 520, 0.95),
    (1, 1000, 0.80),
]

MCNEMAR_CASES = [(0, 0), (3, 7), (1, 9), (0, 5), (12, 12), (6, 2), (30, 15), (40, 60), (130, 100)]


RATE_KEYS = ("accuracy", "balanced_accuracy", "precision", "recall", "specificity", "f1",
             "roc_auc", "pr_auc", "brier", "ece")


def calibration_error(probabilities, targets):
    """Expected calibration error: 10 equal-width bins on [0, 1], the last one
    closed, each weighted by its share of the images."""
    bins = np.minimum((probabilities * ECE_BINS).astype(int), ECE_BINS - 1)
    total = 0.0
    for b in range(ECE_BINS):
        inside = bins == b
        total += abs(probabilities[inside].sum() - targets[inside].sum())
    return total / len(probabilities)


def candidate_thresholds(probabilities):
    """Distinct probabilities and 0.5, highest first."""
    values = set(float(p) for p in probabilities) | {0.5}
    return sorted(values, reverse=True)


def choose_max_f1(probabilities, targets):
    """Brute force over the candidates: the highest F1, then 0.5, then the highest."""
    best, best_f1 = None, -1.0
    for threshold in candidate_thresholds(probabilities):
        predicted = probabilities >= np.float32(threshold)
        f1 = metrics.f1_score(targets, predicted, zero_division=0.0)
        if f1 > best_f1 + 1e-15 or (abs(f1 - best_f1) <= 1e-15 and threshold == 0.5):
            best, best_f1 = threshold, f1
    return best


def choose_target_recall(probabilities, targets):
    """Brute force: the highest candidate reaching the target recall, or 0.5
    when 0.5 predicts the same images."""
    for threshold in candidate_thresholds(probabilities):
        predicted = probabilities >= np.float32(threshold)
        if metrics.recall_score(targets, predicted) >= TARGET_RECALL:
            half = probabilities >= np.float32(0.5)
            return 0.5 if np.array_equal(half, predicted) else threshold
    raise AssertionError("the lowest probability always reaches the target")


def label_reference(dataset, label, threshold):
    probabilities, targets = DATASETS[dataset][1]
    known = targets[:, label] >= 0
    p32 = probabilities[known, label]
    p = p32.astype(np.float64)
    y = targets[known, label].astype(int)
    predicted = (p32 >= np.float32(threshold)).astype(int)
    tn, fp, fn, tp = metrics.confusion_matrix(y, predicted, labels=[0, 1]).ravel()
    return {
        "dataset": dataset,
        "label": label,
        "threshold": threshold,
        "true_positive": int(tp),
        "false_positive": int(fp),
        "true_negative": int(tn),
        "false_negative": int(fn),
        "unknown": int((~known).sum()),
        "accuracy": metrics.accuracy_score(y, predicted),
        "balanced_accuracy": metrics.balanced_accuracy_score(y, predicted),
        "precision": metrics.precision_score(y, predicted),
        "recall": metrics.recall_score(y, predicted),
        "specificity": metrics.recall_score(y, predicted, pos_label=0),
        "f1": metrics.f1_score(y, predicted),
        "roc_auc": metrics.roc_auc_score(y, p),
        "pr_auc": metrics.average_precision_score(y, p),
        "brier": metrics.brier_score_loss(y, p),
        "ece": calibration_error(p, y),
        "max_f1_threshold": choose_max_f1(p32, y),
        "target_recall_threshold": choose_target_recall(p32, y),
    }


def wilson_reference(successes, trials, level):
    lower, upper = proportion_confint(successes, trials, alpha=1.0 - level, method="wilson")
    return successes, trials, level, float(lower), float(upper)


def mcnemar_reference(b, c):
    # statsmodels puts b at table[0, 1] and c at table[1, 0].
    table = [[0, b], [c, 0]]
    exact = mcnemar(table, exact=True)
    n = b + c
    has_chi_square = n > 0 and b != c
    if has_chi_square:
        corrected = mcnemar(table, exact=False, correction=True)
        chi_statistic, chi_p = float(corrected.statistic), float(corrected.pvalue)
    else:
        chi_statistic, chi_p = float("nan"), float("nan")
    greater_p = stats.binomtest(b, n, 0.5, alternative="greater").pvalue if n > 0 else 1.0
    normal_statistic = (b - c - 1) / math.sqrt(n) if n > 0 else 0.0
    normal_p = float(stats.norm.sf(normal_statistic)) if n > 0 else 1.0
    return (b, c, float(exact.statistic), float(exact.pvalue), int(has_chi_square),
            chi_statistic, chi_p, float(greater_p), normal_statistic, normal_p)


def c_float(value):
    """The shortest decimal that reads back as the same float32."""
    text = str(np.float32(value))
    return text + ("f" if ("." in text or "e" in text) else ".0f")


def c_double(value):
    if isinstance(value, float) and math.isnan(value):
        return "NAN"
    return "%.17g" % value


def c_array(kind, name, values, formatter, per_line=8):
    lines = ["static const %s %s[] = {" % (kind, name)]
    for start in range(0, len(values), per_line):
        chunk = ", ".join(formatter(v) for v in values[start:start + per_line])
        lines.append("    %s," % chunk)
    lines.append("};")
    return "\n".join(lines)


HEADER_TYPES = """
typedef struct {
    const char *name;
    size_t count;
    int label_count;
    const float *probabilities; /* count x label_count, row-major */
    const int8_t *targets;      /* count x label_count: 1, 0, -1 unknown */
} ref_dataset;

typedef struct {
    int dataset;
    int label;
    float threshold;
    long true_positive, false_positive, true_negative, false_negative, unknown;
    double accuracy, balanced_accuracy, precision, recall, specificity, f1;
    double roc_auc, pr_auc, brier, ece;
    float max_f1_threshold;        /* brute force over the candidates */
    float target_recall_threshold; /* target recall REF_TARGET_RECALL */
} ref_label_case;

typedef struct {
    long successes, trials;
    double level, lower, upper;
} ref_wilson_case;

typedef struct {
    long b, c;
    double exact_statistic, exact_p;
    int has_chi_square; /* 0 where statsmodels divides by zero or b equals c */
    double chi_square_statistic, chi_square_p;
    double exact_greater_p; /* scipy binomtest, alternative "greater" */
    double normal_greater_statistic, normal_greater_p;
} ref_mcnemar_case;
"""


def render():
    parts = [
        "/* Generated by tests/reference/make_metric_reference.py with scikit-learn %s,"
        % sklearn.__version__,
        " * SciPy %s, statsmodels %s and NumPy %s. Do not edit; rerun the script. */"
        % (scipy.__version__, statsmodels.__version__, np.__version__),
        "",
        "#ifndef APIARY_TESTS_METRICS_REFERENCE_H",
        "#define APIARY_TESTS_METRICS_REFERENCE_H",
        "",
        "#include <math.h>",
        "#include <stddef.h>",
        "#include <stdint.h>",
        "",
        "#define REF_ECE_BINS %d" % ECE_BINS,
        "#define REF_TARGET_RECALL %s" % c_double(TARGET_RECALL),
        HEADER_TYPES,
    ]
    for name, (probabilities, targets) in DATASETS:
        parts.append(c_array("float", "ref_%s_probabilities" % name,
                             list(probabilities.ravel()), c_float, 6))
        parts.append(c_array("int8_t", "ref_%s_targets" % name, list(targets.ravel()),
                             lambda v: "%d" % v, 20))
        parts.append("")
    parts.append("static const ref_dataset ref_datasets[] = {")
    for name, (probabilities, _) in DATASETS:
        parts.append('    {"%s", %d, %d, ref_%s_probabilities, ref_%s_targets},'
                     % (name, probabilities.shape[0], probabilities.shape[1], name, name))
    parts.append("};\n")

    parts.append("static const ref_label_case ref_label_cases[] = {")
    for case in LABEL_CASES:
        r = label_reference(*case)
        rates = [c_double(r[k]) for k in RATE_KEYS]
        rate_lines = ",\n     ".join(", ".join(rates[i:i + 3]) for i in range(0, len(rates), 3))
        parts.append(
            "    {%d, %d, %s, %d, %d, %d, %d, %d,\n     %s,\n     %s, %s},"
            % (r["dataset"], r["label"], c_float(r["threshold"]), r["true_positive"],
               r["false_positive"], r["true_negative"], r["false_negative"], r["unknown"],
               rate_lines, c_float(r["max_f1_threshold"]),
               c_float(r["target_recall_threshold"])))
    parts.append("};\n")

    parts.append("static const ref_wilson_case ref_wilson_cases[] = {")
    for case in WILSON_CASES:
        s, n, level, lower, upper = wilson_reference(*case)
        parts.append("    {%d, %d, %s, %s, %s}," % (s, n, c_double(level), c_double(lower),
                                                    c_double(upper)))
    parts.append("};\n")

    parts.append("static const ref_mcnemar_case ref_mcnemar_cases[] = {")
    for case in MCNEMAR_CASES:
        v = mcnemar_reference(*case)
        parts.append("    {%d, %d, %s, %s,\n     %d, %s, %s,\n     %s, %s, %s},"
                     % (v[0], v[1], c_double(v[2]), c_double(v[3]), v[4], c_double(v[5]),
                        c_double(v[6]), c_double(v[7]), c_double(v[8]), c_double(v[9])))
    parts.append("};\n")
    parts.append("#endif")
    return "\n".join(parts) + "\n"


def main():
    OUTPUT.write_text(render())
    print("wrote %s" % OUTPUT)


if __name__ == "__main__":
    main()
