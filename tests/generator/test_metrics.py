"""Metric code against hand-computed values."""

import math

import numpy as np
import pytest

from ekagen.evaluation.baselines import most_frequent_report, nearest_neighbour_reports
from ekagen.evaluation.nlg import bleu4, nlg_scores


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
