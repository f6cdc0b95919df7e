from __future__ import annotations

import math

import numpy as np
import pytest

from ekagen.diagnosis.data import encode_targets
from ekagen.diagnosis.metrics import (
    auroc_per_class,
    choose_thresholds,
    classification_metrics,
    f1_threshold,
    mean_auroc,
    parse_method,
    youden_threshold,
)

# Sorted by score: .9(+) .6(+) .55(-) .5(+) .35(+) .3(-) .2(-) .1(-); 4 positives, 4 negatives.
# Threshold -> (TPR, FPR, J): .9 (.25, 0, .25)  .6 (.5, 0, .5)  .55 (.5, .25, .25)
# .5 (.75, .25, .5)  .35 (1, .25, .75)  .3 (1, .5, .5)  .2 (1, .75, .25)  .1 (1, 1, 0)
Y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
S = np.array([0.1, 0.2, 0.3, 0.35, 0.5, 0.6, 0.55, 0.9])


def test_youden_threshold_on_a_hand_computed_roc():
    assert youden_threshold(Y, S) == pytest.approx(0.35)
    predicted = S >= youden_threshold(Y, S)
    tpr = np.sum(predicted & (Y == 1)) / 4
    fpr = np.sum(predicted & (Y == 0)) / 4
    assert tpr - fpr == pytest.approx(0.75)


def test_youden_ties_go_to_the_highest_threshold():
    # .9(+) .8(+) .4(-) .35(+) .2(-) .1(-): J = 2/3 at both .8 and .35
    y = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    assert youden_threshold(y, s) == pytest.approx(0.8)


def test_f1_threshold_by_hand():
    # at .35: P = 4/5, R = 1, F1 = .889 (best); at .5: .75; at .3: .8
    assert f1_threshold(Y, S) == pytest.approx(0.35)
    y = np.array([1, 0, 1, 1, 0])
    s = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    # .9: F1 .5; .8: .4; .7: .667; .2: 6/7 = .857 (best); .1: .75
    assert f1_threshold(y, s) == pytest.approx(0.2)


def test_choose_thresholds_methods_and_fallback():
    targets = np.stack([Y, np.zeros_like(Y)], axis=1)
    scores = np.stack([S, S], axis=1)
    thresholds, used = choose_thresholds(targets, scores, method="youden")
    assert thresholds[0] == pytest.approx(0.35) and used[0] == "youden"
    assert thresholds[1] == 0.5 and "fallback" in used[1]
    fixed, used = choose_thresholds(targets, scores, method="fixed:0.3")
    assert list(fixed) == [0.3, 0.3] and used == ["fixed:0.3", "fixed:0.3"]
    # weights: masking the two highest-scored positives changes the ROC
    weights = np.ones_like(targets, dtype=float)
    weights[[5, 7], 0] = 0
    masked, _ = choose_thresholds(targets, scores, weights, "youden")
    assert masked[0] == pytest.approx(0.35)


@pytest.mark.parametrize("spec", ["otsu", "fixed:2", "fixed:x"])
def test_bad_threshold_method(spec):
    with pytest.raises(ValueError):
        parse_method(spec)


def test_auroc_excludes_single_valued_classes():
    targets = np.stack([Y, np.zeros_like(Y), 1 - Y], axis=1)
    scores = np.stack([S, S, S], axis=1)
    per_class = auroc_per_class(targets, scores)
    assert per_class[0] == pytest.approx(14 / 16)  # 14 of 16 (pos, neg) pairs ordered
    assert math.isnan(per_class[1])
    assert per_class[2] == pytest.approx(2 / 16)
    assert mean_auroc(targets, scores) == pytest.approx((14 / 16 + 2 / 16) / 2)
    assert math.isnan(mean_auroc(targets[:, 1:2], scores[:, 1:2]))


def test_classification_metrics_by_hand():
    targets = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.1, 0.9]])
    out = classification_metrics(targets, scores, np.array([0.5, 0.5]), names=["a", "b"])
    # a: TP 1 FP 1 FN 1 -> P .5 R .5 F1 .5 ; b: TP 2 -> F1 1
    assert out["per_class"]["a"]["f1"] == pytest.approx(0.5)
    assert out["per_class"]["b"]["f1"] == pytest.approx(1.0)
    assert out["micro_f1"] == pytest.approx(2 * 0.75 * 0.75 / 1.5)  # TP 3, FP 1, FN 1
    assert out["macro_f1"] == pytest.approx(0.75)
    assert out["auroc_excluded"] == []


def test_encode_targets_uncertain_policies():
    labels = np.array([[1.0, 0.0, -1.0, np.nan]])
    t, w = encode_targets(labels, "zeros")
    assert t.tolist() == [[1, 0, 0, 0]] and w.tolist() == [[1, 1, 1, 1]]
    t, w = encode_targets(labels, "ones")
    assert t.tolist() == [[1, 0, 1, 0]] and w.tolist() == [[1, 1, 1, 1]]
    t, w = encode_targets(labels, "ignore")
    assert t.tolist() == [[1, 0, 0, 0]] and w.tolist() == [[1, 1, 0, 1]]
    with pytest.raises(ValueError, match="uncertain_as"):
        encode_targets(labels, "maybe")
