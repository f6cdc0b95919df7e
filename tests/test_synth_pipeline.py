"""The whole DAG on a synthetic MIMIC-CXR written by ``ekagen synth``, run with the ``dvc exp run``
arguments the command prints, as the README shows (tiny profile)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_checked


@pytest.mark.slow
def test_dvc_exp_run_on_a_synthetic_mimic_set(tiny_repo, tmp_path):
    root, env = tiny_repo
    ekagen = str(Path(sys.executable).parent / "ekagen")
    out = run_checked([ekagen, "synth", "--studies", "50", "--out", str(tmp_path / "mimic"),
                       "--image-size", "64", "--split", "0.6,0.2,0.2"], root, env)
    line = next(li.strip() for li in out.splitlines() if li.strip().startswith("dvc exp run"))
    arguments = shlex.split(line)[3:]
    run_checked([sys.executable, "-m", "dvc", "exp", "run", *arguments,
                 "-S", "data.max_studies=0"], root, env)
    prepared = json.loads((root / "metrics/prepare.json").read_text())
    assert prepared["studies"] == 50 and prepared["splits"] == {"train": 30, "val": 10,
                                                                 "test": 10}
    evaluation = json.loads((root / "metrics/eval.json").read_text())
    assert evaluation["test_studies"] == 10
    table = pd.read_parquet(root / "data/prepared/studies.parquet")
    assert (table["label_source"] == "chexpert_csv").all()
    assert table["image_paths"].map(lambda paths: paths[0].endswith(".jpg")).all()
