from pathlib import Path

import numpy as np
import pytest

from ekagen.config import GidConfig
from ekagen.evaluation.run import score_systems
from stages.train import round_teacher


def test_round_teacher_rules():
    gid = GidConfig(rounds={"r0": {"teacher": "none", "after": "x"},
                            "r1": {"teacher": "r0", "after": "data/gid/r0"},
                            "r2": {"teacher": "r1", "after": "data/gid/r0"},
                            "r3": {"teacher": "r9"}})
    assert round_teacher(gid, "r0", Path("data/gid")) is None
    assert round_teacher(gid, "r1", Path("data/gid")) == "r0"
    with pytest.raises(ValueError, match="after must be 'data/gid/r1'"):
        round_teacher(gid, "r2", Path("data/gid"))
    with pytest.raises(ValueError, match="is not another round"):
        round_teacher(gid, "r3", Path("data/gid"))
    with pytest.raises(ValueError, match="no round 'r7'"):
        round_teacher(gid, "r7", Path("data/gid"))


def test_evaluation_fails_loudly_when_a_study_is_missing():
    refs = ["the heart is normal .", "no effusion .", "the lungs are clear ."]
    with pytest.raises(RuntimeError, match="2 reports for 3 test studies"):
        score_systems({"ekagen": refs[:2]}, refs, meteor=False)
    flat, per_class, labels = score_systems({"ekagen": refs}, refs, meteor=False)
    assert flat["test_studies"] == 3 and flat["ekagen.bleu4"] == pytest.approx(1.0, abs=1e-6)
    assert np.array_equal(labels["ekagen"], labels["reference"])
