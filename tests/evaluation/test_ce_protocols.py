"""Every CE protocol against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ekagen.evaluation.ce import FIVE_OBSERVATIONS, PROTOCOLS, ce_scores, study_counts
from ekagen.observations import OBSERVATIONS

NAN = math.nan


def _values(rows: list[dict[str, float]]) -> np.ndarray:
    out = np.full((len(rows), len(OBSERVATIONS)), NAN)
    for i, row in enumerate(rows):
        for name, value in row.items():
            out[i, OBSERVATIONS.index(name)] = value
    return out


PRED = _values([{"Cardiomegaly": 1, "Edema": 1},
                {"Cardiomegaly": 1, "Atelectasis": -1, "Pneumothorax": 0},
                {}])
REF = _values([{"Cardiomegaly": 1},
               {"Edema": 1, "Atelectasis": 1},
               {"Edema": -1}])


def test_fourteen_observations_uncertain_negative_by_hand() -> None:
    s = ce_scores(PRED, REF)
    # tp: study 0 Cardiomegaly; fp: study 0 Edema, study 1 Cardiomegaly; fn: study 1 Edema and
    # Atelectasis (the -1 prediction is not positive)
    for key in ("precision", "recall", "f1"):
        assert s[f"ce14_micro_{key}"] == pytest.approx(1 / 3, abs=1e-6)
    # macro over all 14 (zero_division=0): only Cardiomegaly scores, P .5 R 1 F1 2/3
    assert s["ce14_macro_precision"] == pytest.approx(0.5 / 14, abs=1e-6)
    assert s["ce14_macro_recall"] == pytest.approx(1 / 14, abs=1e-6)
    assert s["ce14_macro_f1"] == pytest.approx((2 / 3) / 14, abs=1e-6)
    # example-based: study 0 F1 2/3, study 1 0, study 2 (nothing on either side) 0
    assert s["ce14_example_f1"] == pytest.approx((2 / 3) / 3, abs=1e-6)
    assert s["ce14_example_precision"] == pytest.approx(0.5 / 3, abs=1e-6)
    assert s["per_class"]["Cardiomegaly"] == {"precision": 0.5, "recall": 1.0, "f1": 0.666667,
                                              "support": 1, "predicted": 2}


def test_uncertain_as_positive_by_hand() -> None:
    s = ce_scores(PRED, REF)
    # tp: study 0 Cardiomegaly, study 1 Atelectasis; fp: study 0 Edema, study 1 Cardiomegaly;
    # fn: study 1 Edema, study 2 Edema (-1 reference)
    assert s["ce14u_micro_f1"] == pytest.approx(0.5, abs=1e-6)
    # five observations: Atelectasis F1 1, Cardiomegaly 2/3, Edema, Consolidation, Effusion 0
    assert s["ce5u_macro_f1"] == pytest.approx((1 + 2 / 3) / 5, abs=1e-6)
    assert s["ce5u_micro_recall"] == pytest.approx(0.5, abs=1e-6)


def test_five_observations_leave_the_others_out() -> None:
    pred = _values([{"No Finding": 1, "Cardiomegaly": 1}, {"Support Devices": 1}])
    ref = _values([{"No Finding": 1}, {"Support Devices": 1, "Edema": 1}])
    s = ce_scores(pred, ref)
    # ce14 counts No Finding and Support Devices: tp 2, fp 1, fn 1
    assert s["ce14_micro_f1"] == pytest.approx(2 / 3, abs=1e-6)
    # ce5 sees only Cardiomegaly (fp) and Edema (fn)
    assert s["ce5_micro_f1"] == 0.0 and s["ce5_micro_precision"] == 0.0
    assert s["ce5_macro_f1"] == 0.0


def test_every_protocol_key_is_present_once() -> None:
    s = ce_scores(PRED, REF)
    expected = {f"{p.name}_{a}_{m}" for p in PROTOCOLS for a in p.averages
                for m in ("precision", "recall", "f1")}
    assert set(s) - {"per_class"} == expected
    assert len(expected) == 3 * (3 + 2 + 3 + 2)
    assert {p.name for p in PROTOCOLS} == {"ce14", "ce5", "ce14u", "ce5u"}
    assert FIVE_OBSERVATIONS == ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema",
                                 "Pleural Effusion")


def test_weighted_counts_equal_the_materialised_resample() -> None:
    rng = np.random.default_rng(3)
    pred = rng.choice([1.0, 0.0, -1.0, NAN], size=(30, 14))
    ref = rng.choice([1.0, 0.0, -1.0, NAN], size=(30, 14))
    draw = rng.integers(0, 30, size=30)
    weights = np.bincount(draw, minlength=30)[None, :]
    direct = ce_scores(pred[draw], ref[draw])
    for counts in study_counts(pred, ref):
        for key, value in counts.scores(weights).items():
            assert value[0] == pytest.approx(direct[key], abs=1e-6), key


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="differ"):
        ce_scores(PRED[:2], REF)
