"""End to end: the real ``dvc.yaml`` run by DVC on the tiny profile in a temporary git repo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import REPO, tiny_params, write_params

COPIED = ["dvc.yaml", "stages", "ekagen", ".dvcignore"]


def _run(cmd: list[str], cwd: Path, env: dict) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("pipeline")
    for name in COPIED:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, root / name)
    write_params(root / "params.yaml", tiny_params())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    env.pop("MLFLOW_TRACKING_URI")  # the stages must find <repo>/mlflow.db on their own
    _run(["git", "init", "-q"], root, env)
    _run([sys.executable, "-m", "dvc", "init", "-q"], root, env)
    _run(["git", "add", "-A"], root, env)
    _run(["git", "commit", "-qm", "tiny"], root, env)
    return root, env


def test_dvc_repro_runs_the_whole_dag_on_the_tiny_profile(tiny_repo):
    root, env = tiny_repo
    _run([sys.executable, "-m", "dvc", "repro"], root, env)
    studies = pd.read_parquet(root / "data/prepared/studies.parquet")
    prepared = json.loads((root / "metrics/prepare.json").read_text())
    assert len(studies) == 40 == prepared["studies"]
    assert prepared["splits"] == {"train": 28, "val": 4, "test": 8}
    assert prepared["excluded_by_rule"]["outside the data.max_studies subset"] == 2955 - 40
    assert (root / "metrics/plots/phantom_contact_sheet.png").stat().st_size > 1000
    knowledge = json.loads((root / "metrics/knowledge.json").read_text())
    assert knowledge["reports_embedded"] == 28
    r1 = json.loads((root / "metrics/train/r1.json").read_text())
    assert r1["teacher"] == "r0" and r1["epochs"] == 1
    evaluation = json.loads((root / "metrics/eval.json").read_text())
    assert evaluation["test_studies"] == 8
    for system in ("ekagen", "most_frequent", "nearest_neighbour"):
        for metric in ("bleu4", "meteor", "rouge_l", "cider", "ce_micro_f1", "ce_macro_f1",
                       "ce_example_f1"):
            assert 0.0 <= evaluation[f"{system}.{metric}"] <= 10.0
    generations = pd.read_parquet(root / "data/eval/generations.parquet")
    assert len(generations) == 8 and set(generations["id"]) == set(
        studies.loc[studies["split"] == "test", "id"])
    assert "<table>" in (root / "metrics/gallery.html").read_text()
    assert (root / "data/eval/model/classifier/thresholds.json").is_file()
    assert (root / "mlflow.db").is_file()
    again = _run([sys.executable, "-m", "dvc", "repro"], root, env)
    assert "didn't change" in again or "skipping" in again.lower()
