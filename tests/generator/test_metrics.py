"""Metric code against hand-computed values."""

import math

import numpy as np
import pytest

from ekagen.evaluation.baselines import most_frequent_report, nearest_neighbour_reports
from ekagen.evaluation.ce import ce_scores
from ekagen.evaluation.nlg import bleu4, nlg_scores
from ekagen.observations import OBSERVATIONS


def _labels(rows):
    out = np.zeros((len(rows), len(OBSERVATIONS)), bool)
    for i, names in enumerate(rows):
        for name in names:
            out[i, OBSERVATIONS.index(name)] = True
    return out


def test_ce_micro_macro_example_by_hand():
    pred = _labels([["Cardiomegaly", "Edema"], ["Cardiomegaly"], []])
    ref = _labels([["Cardiomegaly"], ["Edema"], ["Edema"]])
    s = ce_scores(pred, ref)
    # micro: tp=1 (cardiomegaly in study 0), fp=2, fn=2
    assert s["ce_micro_precision"] == pytest.approx(1 / 3, abs=1e-6)
    assert s["ce_micro_recall"] == pytest.approx(1 / 3, abs=1e-6)
    assert s["ce_micro_f1"] == pytest.approx(1 / 3, abs=1e-6)
    # macro over the two observations involved: cardiomegaly P=.5 R=1 F1=2/3; edema all 0
    assert s["ce_macro_precision"] == pytest.approx(0.25, abs=1e-6)
    assert s["ce_macro_recall"] == pytest.approx(0.5, abs=1e-6)
    assert s["ce_macro_f1"] == pytest.approx(1 / 3, abs=1e-6)
    # example-based: study 0 P=.5 R=1 F1=2/3, study 1 zeros, study 2 zeros
    assert s["ce_example_precision"] == pytest.approx(0.5 / 3, abs=1e-6)
    assert s["ce_example_f1"] == pytest.approx((2 / 3) / 3, abs=1e-6)
    assert s["per_class"]["Edema"]["support"] == 2


def test_bleu_perfect_and_disjoint():
    refs = ["the heart is normal in size .", "no pleural effusion is seen ."]
    assert bleu4(refs, refs) == pytest.approx(1.0, abs=1e-6)
    assert bleu4(["x y z w v u", "q r s t u v"], refs) < 1e-6


def test_nlg_scores_have_every_metric_and_bleu1_by_hand():
    gen, ref = ["a b c d"], ["a b c e"]
    scores = nlg_scores(gen, ref, meteor=False)
    # unigram precision 3/4, no brevity penalty (equal length)
    assert scores["bleu1"] == pytest.approx(0.75, abs=1e-4)
    assert scores["rouge_l"] == pytest.approx(0.75, abs=1e-3)  # LCS 3/4 both ways, beta 1.2
    assert set(scores) == {"bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"}
    with pytest.raises(ValueError, match="2 generated"):
        nlg_scores(["a", "b"], ["a"])


def test_baselines():
    assert most_frequent_report(["b .", "a .", "b .", "a .", "c ."]) == "a ."
    feats = np.array([[1.0, 0.0], [0.0, 1.0]])
    out = nearest_neighbour_reports(feats, ["left", "right"], np.array([[0.1, 0.9], [2, 0.1]]))
    assert out == ["right", "left"]
    assert math.isfinite(bleu4(["a b c d e"], ["a b c d e"]))
