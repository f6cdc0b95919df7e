"""The synthetic MIMIC-CXR writer: R2Gen shape, labels that match the reports, images that show
them, deterministic and resumable output, and the real r2gen/mimic_cxr path reading it."""

from __future__ import annotations

import hashlib
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ekagen.data.images import read_grayscale
from ekagen.data.phantom import render_phantom
from ekagen.data.prepare import prepare
from ekagen.data.synth import (
    MIMIC_SPLIT,
    plan_studies,
    split_counts,
    write_synthetic_mimic,
)
from ekagen.labeler import label_reports
from ekagen.observations import OBSERVATIONS
from tests.data.test_sources import data_cfg

PATH = re.compile(r"^p1\d/p1\d{7}/s5\d{7}/[0-9a-f]{8}(-[0-9a-f]{8}){4}\.jpg$")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth")
    return out, write_synthetic_mimic(out, 14, image_size=64, seed=3,
                                      fractions=(0.5, 0.25, 0.25), progress=False)


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_annotation_has_the_r2gen_mimic_shape(synth):
    out, summary = synth
    annotation = json.loads((out / "annotation.json").read_text())
    assert {k: len(v) for k, v in annotation.items()} == {"train": 8, "val": 3, "test": 3} \
        == summary["splits"]
    entries = [e for split in annotation.values() for e in split]
    assert all(set(e) == {"id", "study_id", "subject_id", "report", "image_path", "split"}
               for e in entries)
    assert all(e["split"] == split for split, es in annotation.items() for e in es)
    assert len({e["id"] for e in entries}) == len({e["study_id"] for e in entries}) == 14
    for e in entries:
        path, = e["image_path"]
        assert PATH.match(path), path
        # the folders name the entry's own subject and study
        assert path.split("/")[1] == f"p{e['subject_id']}"
        assert path.split("/")[2] == f"s{e['study_id']}"
        assert (out / "images" / path).is_file()


def test_csv_labels_are_the_labelers_labels_of_each_report(synth):
    out, _ = synth
    entries = [e for es in json.loads((out / "annotation.json").read_text()).values() for e in es]
    table = pd.read_csv(out / "mimic-cxr-2.0.0-chexpert.csv")
    assert list(table.columns) == ["subject_id", "study_id", *OBSERVATIONS]
    by_study = table.set_index("study_id")
    expected = label_reports([e["report"] for e in entries])[list(OBSERVATIONS)]
    got = by_study.loc[[e["study_id"] for e in entries], list(OBSERVATIONS)]
    np.testing.assert_array_equal(got.to_numpy(dtype=float), expected.to_numpy(dtype=float))
    assert (by_study.loc[[e["study_id"] for e in entries], "subject_id"].tolist()
            == [e["subject_id"] for e in entries])


def test_each_jpg_is_the_phantom_of_its_reports_labels(synth):
    out, _ = synth
    annotation = json.loads((out / "annotation.json").read_text())
    labels = pd.read_csv(out / "mimic-cxr-2.0.0-chexpert.csv").set_index("study_id")
    entries = [e for es in annotation.values() for e in es]
    for index, entry in enumerate(sorted(entries, key=lambda e: e["study_id"])):
        row = labels.loc[entry["study_id"], list(OBSERVATIONS)]
        named = {k: float(v) for k, v in row.items() if not math.isnan(v)}
        rendered = render_phantom(f"synth-3-{index}", named, entry["report"], size=64,
                                  seed=3).image.astype(float)
        decoded = read_grayscale(out / "images" / entry["image_path"][0]).astype(float)
        assert decoded.shape == (64, 64)
        assert np.abs(decoded - rendered).mean() < 3.0  # JPEG at quality 95
        other = render_phantom(f"synth-3-{index + 1}", named, entry["report"], size=64, seed=3)
        assert np.abs(decoded - other.image.astype(float)).mean() > 3.0


def test_rerun_is_identical_and_resumes_from_the_images_present(synth, tmp_path):
    out, _ = synth
    again = tmp_path / "again"
    write_synthetic_mimic(again, 14, image_size=64, seed=3, fractions=(0.5, 0.25, 0.25),
                          progress=False)
    assert _digests(again) == _digests(out)
    jpgs = sorted((again / "images").rglob("*.jpg"))
    for path in jpgs[:5]:
        path.unlink()
    resumed = write_synthetic_mimic(again, 14, image_size=64, seed=3,
                                    fractions=(0.5, 0.25, 0.25), workers=2, progress=False)
    assert (resumed["rendered"], resumed["already_present"]) == (5, 9)
    assert _digests(again) == _digests(out)
    assert not list(again.rglob("*.tmp"))


def test_a_larger_set_extends_a_smaller_one_and_another_size_is_refused(tmp_path):
    small = write_synthetic_mimic(tmp_path, 6, image_size=32, seed=1, progress=False)
    small_entries = {e["study_id"]: e for es in json.loads(
        (tmp_path / "annotation.json").read_text()).values() for e in es}
    large = write_synthetic_mimic(tmp_path, 9, image_size=32, seed=1, progress=False)
    assert (small["rendered"], large["rendered"], large["already_present"]) == (6, 3, 6)
    large_entries = {e["study_id"]: e for es in json.loads(
        (tmp_path / "annotation.json").read_text()).values() for e in es}
    for study, entry in small_entries.items():
        assert {k: v for k, v in large_entries[study].items() if k != "split"} == \
            {k: v for k, v in entry.items() if k != "split"}
    with pytest.raises(ValueError, match=r"synth\.json: this folder holds a set written with"):
        write_synthetic_mimic(tmp_path, 9, image_size=64, seed=1, progress=False)


def test_the_r2gen_mimic_path_prepares_the_set_with_the_csv_labels(synth):
    out, summary = synth
    cfg = data_cfg(source="r2gen", dataset="mimic_cxr", views=[0],
                   annotation=summary["annotation"], image_dir=summary["image_dir"],
                   chexpert_csv=summary["chexpert_csv"])
    prepared = prepare(cfg, seed=0)
    table = prepared.studies
    assert len(table) == 14 and prepared.images.shape == (14, 1, 32, 32)
    assert (table["label_source"] == "chexpert_csv").all()
    assert table["split"].value_counts().to_dict() == {"train": 8, "val": 3, "test": 3}
    assert not prepared.rejections.rows


def test_plan_draws_reports_with_replacement_and_splits_like_mimic():
    reports = [f"report {i}" for i in range(5)]
    labels = np.eye(5, len(OBSERVATIONS))
    studies = plan_studies(200, reports, labels, seed=1)
    assert len({s.report for s in studies}) == 5  # 200 draws from 5: every one repeats
    for s in studies:
        np.testing.assert_array_equal(s.labels, labels[reports.index(s.report)])
    assert split_counts(200, MIMIC_SPLIT) == (197, 1, 2)
    assert split_counts(276778, MIMIC_SPLIT) == (270790, 2130, 3858)
    # several studies per subject, subjects in order, as in MIMIC-CXR
    subjects = [s.subject_id for s in studies]
    assert subjects == sorted(subjects) and 90 < len(set(subjects)) < 150
    assert plan_studies(200, reports, labels, seed=1) == studies
    assert plan_studies(200, reports, labels, seed=2) != studies


def _cli(*args: str) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "ekagen"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=300)


def test_cli_writes_a_set_and_names_the_dvc_arguments(tmp_path):
    done = _cli("synth", "--studies", "6", "--out", str(tmp_path / "s"), "--image-size", "32",
                "--split", "0.5,0.25,0.25")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["splits"] == {"train": 4, "val": 1, "test": 1}
    assert len(list((tmp_path / "s" / "images").rglob("*.jpg"))) == 6
    assert f"data.chexpert_csv={tmp_path / 's'}/mimic-cxr-2.0.0-chexpert.csv" in done.stderr
    bad = _cli("synth", "--studies", "6", "--out", str(tmp_path / "t"), "--split", "0.5,0.6,0.1")
    assert bad.returncode == 2 and "split fractions must be three non-negative" in bad.stderr
    assert not (tmp_path / "t" / "annotation.json").exists()
    unreadable = _cli("synth", "--studies", "6", "--out", str(tmp_path / "u"), "--split", "a,b")
    assert unreadable.returncode == 2 and "expected three comma-separated fractions" in \
        unreadable.stderr
