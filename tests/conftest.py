"""Shared fixtures: the real ``params.yaml`` shrunk to a tiny profile, and small datasets.

Tests never touch the user's MLflow store: every session logs to a temporary sqlite file.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

#: Overrides that turn the real parameters into a profile that runs in seconds on 2 cores.
TINY = {
    "data": {"max_studies": 40, "image_size": 64, "min_freq": 1, "max_length": 60},
    "pks": {"min_support": 2},
    "classifier": {"epochs": 1, "batch_size": 16},
    "model": {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "heads": 4, "ffn": 64,
              "max_length": 60},
    "train": {"epochs": 1, "batch_size": 8},
    "decode": {"beam_size": 2, "max_length": 30},
    # METEOR needs Java; tests about METEOR turn it on
    "evaluate": {"meteor": False, "bootstrap_resamples": 200},
    "runtime": {"workers": 1, "batch_size": 16, "adm_gallery_size": 4, "eval_gallery_size": 3},
}


def _merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def tiny_params(**overrides: dict) -> dict:
    """The repository's params.yaml with the tiny profile and ``overrides`` applied."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    return _merge(_merge(params, TINY), overrides)


def config(name: str, **overrides):
    """Section ``name`` of the repository's params.yaml (the pipeline's defaults, not the
    tiny profile) as its schema dataclass, with ``overrides``; checked like a params file."""
    from ekagen.config import SECTIONS, from_dict

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    return from_dict(SECTIONS[name], {**params[name], **overrides}, name)


def model_config(**overrides):
    """The ``model`` section for a generator trained from scratch (no DiagnosisBot file)."""
    return config("model", **{"backbone_weights": "", "frozen_bn": False, **overrides})


#: what a DVC run of the pipeline needs from the repository
PIPELINE_FILES = ["dvc.yaml", "stages", "ekagen", ".dvcignore", ".gitignore"]


def copy_pipeline(root: Path, params: dict) -> Path:
    """The pipeline's code and ``params`` in ``root``, ready for ``git init`` and ``dvc init``."""
    import shutil

    root.mkdir(parents=True, exist_ok=True)
    for name in PIPELINE_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, root / name)
    write_params(root / "params.yaml", params)
    return root


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def run_checked(cmd: list[str], cwd: Path, env: dict, stdout_only: bool = False) -> str:
    """Run a command; its output, or a failure that shows it."""
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout if stdout_only else done.stdout + done.stderr


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The pipeline on the tiny profile in a fresh git + DVC repo, not yet run, and the
    environment to run it in (the stages find ``<repo>/mlflow.db`` on their own)."""
    root = copy_pipeline(tmp_path_factory.mktemp("pipeline"), tiny_params())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    env.pop("MLFLOW_TRACKING_URI")
    run_checked(["git", "init", "-q"], root, env)
    run_checked([sys.executable, "-m", "dvc", "init", "-q"], root, env)
    run_checked(["git", "add", "-A"], root, env)
    run_checked(["git", "commit", "-qm", "tiny"], root, env)
    return root, env


@pytest.fixture(scope="session")
def tiny_dag(tiny_repo: tuple[Path, dict]) -> tuple[Path, dict]:
    """:func:`tiny_repo` after ``dvc repro``: its model folder, gallery and MLflow store."""
    root, env = tiny_repo
    if not (root / "data/eval/model").is_dir():
        run_checked([sys.executable, "-m", "dvc", "repro"], root, env)
    return root, env


@pytest.fixture(autouse=True, scope="session")
def _isolated_mlflow(tmp_path_factory: pytest.TempPathFactory) -> None:
    store = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store}"
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


SENTENCES = [
    ("the heart is normal in size . the lungs are clear . no pleural effusion or pneumothorax .",
     {}),
    ("the heart is enlarged . there is a small right pleural effusion .",
     {"Cardiomegaly": 1.0, "Pleural Effusion": 1.0}),
    ("there is a left lower lobe consolidation . heart size is normal .",
     {"Consolidation": 1.0}),
    ("a right upper lobe nodule is seen . no focal consolidation .", {"Lung Lesion": 1.0}),
]


def make_r2gen(root: Path, dataset: str = "iu_xray", per_split: tuple[int, int, int] = (6, 2, 2),
               size: int = 40) -> dict[str, Path]:
    """Write a tiny R2Gen-format dataset (annotation.json, PNG images, MIMIC label CSV)."""
    images = root / "images"
    rng = np.random.default_rng(0)
    annotation: dict[str, list] = {}
    csv_rows = []
    n = 0
    for split, count in zip(("train", "val", "test"), per_split, strict=True):
        entries = []
        for _ in range(count):
            report, labels = SENTENCES[n % len(SENTENCES)]
            views = 2 if dataset == "iu_xray" else 1
            if dataset == "iu_xray":
                study = f"CXR{n}_IM-{n:04d}"
                paths = [f"{study}/{v}.png" for v in range(views)]
                entry = {"id": study, "report": report.capitalize(), "image_path": paths,
                         "split": split}
            else:
                subject, study_id = 10000000 + n, 50000000 + n
                paths = [f"p10/p{subject}/s{study_id}/img{n}.jpg"]
                entry = {"id": f"dicom{n}", "study_id": study_id, "subject_id": subject,
                         "report": report, "image_path": paths, "split": split}
                csv_rows.append({"subject_id": subject, "study_id": study_id, **labels})
            for p in paths:
                target = images / p
                target.parent.mkdir(parents=True, exist_ok=True)
                pixels = rng.integers(0, 255, (size, size), dtype=np.uint8)
                Image.fromarray(pixels).save(target)
            entries.append(entry)
            n += 1
        annotation[split] = entries
    ann_path = root / "annotation.json"
    ann_path.write_text(json.dumps(annotation))
    out = {"annotation": ann_path, "images": images}
    if dataset == "mimic_cxr":
        import pandas as pd

        from ekagen.observations import OBSERVATIONS

        table = pd.DataFrame(csv_rows).reindex(columns=["subject_id", "study_id",
                                                        *OBSERVATIONS])
        out["chexpert"] = root / "chexpert.csv"
        table.to_csv(out["chexpert"], index=False)
    return out
