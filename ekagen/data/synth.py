"""A synthetic MIMIC-CXR in R2Gen format, at any size, for scale tests of the real r2gen path.

MIMIC-CXR itself needs a credentialed download; what a scale test needs is its *shape*: an
R2Gen ``annotation.json`` (``id``, ``study_id``, ``subject_id``, one ``image_path`` of the form
``p10/p10000032/s50414267/<dicom id>.jpg``, ``report``, ``split``), a JPG per study and
MIMIC-CXR-JPG's ``mimic-cxr-2.0.0-chexpert.csv``. Reports are IU X-Ray FINDINGS (the R2Gen
selection bundled with torchxrayvision) drawn with replacement; each keeps the labels the
project's labeler gives it, and its radiograph is a phantom rendered from those labels, so the
image shows what the report says and ``data.source: r2gen, data.dataset: mimic_cxr`` with
``data.chexpert_csv`` runs on it unchanged.

Everything is a function of ``seed`` and the study's index: a second run writes byte-identical
files, a larger set extends a smaller one, and a run killed midway resumes by skipping the
images already written (each is written to a temporary name and renamed, so a present file is
a complete one; ``synth.json`` refuses a folder written with another seed or image size).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from ekagen.observations import OBSERVATIONS

#: MIMIC-CXR's R2Gen split: 270,790 / 2,130 / 3,858 studies.
MIMIC_SPLIT = (270790 / 276778, 2130 / 276778, 3858 / 276778)
ANNOTATION, CHEXPERT_CSV, IMAGE_DIR = "annotation.json", "mimic-cxr-2.0.0-chexpert.csv", "images"
MANIFEST = "synth.json"  # seed and image size: images written for others are never reused
JPEG_QUALITY = 95


@dataclass(frozen=True)
class SynthStudy:
    index: int
    subject_id: int
    study_id: int
    dicom_id: str
    split: str
    report: str
    labels: tuple[float, ...]  # in OBSERVATIONS order, NaN = not mentioned

    @property
    def image_path(self) -> str:
        subject = f"p{self.subject_id}"
        return f"{subject[:3]}/{subject}/s{self.study_id}/{self.dicom_id}.jpg"


def iu_report_pool() -> tuple[list[str], np.ndarray]:
    """The R2Gen IU X-Ray FINDINGS bundled with torchxrayvision and their labeler labels."""
    from ekagen.data.openi import iter_openi_records
    from ekagen.data.records import Rejections
    from ekagen.data.sources import _in_r2gen_iu_selection
    from ekagen.labeler import label_reports

    rejections = Rejections(allow=True)
    reports = [r.findings for r in iter_openi_records()
               if _in_r2gen_iu_selection(r.findings, r.image_ids, rejections)]
    if not reports:
        raise RuntimeError("no IU X-Ray report found in the installed torchxrayvision")
    labels = label_reports(reports)[list(OBSERVATIONS)].to_numpy(dtype=float)
    return reports, labels


def split_counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Studies per split; val and test get at least one study each when n >= 3."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, "
                         f"got {list(fractions)}")
    val = max(math.floor(n * fractions[1] + 1e-9), 1 if n >= 3 and fractions[1] > 0 else 0)
    test = max(math.floor(n * fractions[2] + 1e-9), 1 if n >= 3 and fractions[2] > 0 else 0)
    return n - val - test, val, test


def plan_studies(n: int, reports: Sequence[str], labels: np.ndarray, seed: int = 0,
                 fractions: Sequence[float] = MIMIC_SPLIT) -> list[SynthStudy]:
    """``n`` studies: reports drawn with replacement, MIMIC-shaped ids, splits in order."""
    if n < 1:
        raise ValueError(f"the number of studies must be >= 1, got {n}")
    # one generator per study: a larger set extends a smaller one with the same seed (same
    # reports, ids and images for the studies they share; only the split boundaries move)
    draws = [np.random.default_rng([seed, i]) for i in range(n)]
    drawn = [int(r.integers(0, len(reports))) for r in draws]
    # about 1.7 studies per subject, as in MIMIC-CXR (65k subjects, 228k studies)
    subjects = np.cumsum([r.random() < 1 / 1.7 for r in draws])
    train, val, _ = split_counts(n, fractions)
    studies = []
    for i, pick in enumerate(drawn):
        split = "train" if i < train else "val" if i < train + val else "test"
        digest = hashlib.sha1(f"{seed}:{i}".encode()).hexdigest()
        dicom = "-".join(digest[j:j + 8] for j in range(0, 40, 8))
        studies.append(SynthStudy(index=i, subject_id=10000000 + int(subjects[i]),
                                  study_id=50000000 + i, dicom_id=dicom, split=split,
                                  report=reports[pick], labels=tuple(labels[pick].tolist())))
    return studies


def _render(task: tuple[str, str, tuple[float, ...], str, int, int]) -> None:
    from ekagen.data.phantom import render_phantom

    target, key, labels, report, size, seed = task
    named = {name: v for name, v in zip(OBSERVATIONS, labels, strict=True) if not math.isnan(v)}
    image = render_phantom(key, named, report, size=size, seed=seed).image
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    Image.fromarray(image).save(tmp, format="JPEG", quality=JPEG_QUALITY)
    os.replace(tmp, path)


def write_synthetic_mimic(out: str | Path, n: int, *, image_size: int = 256, seed: int = 0,
                          fractions: Sequence[float] = MIMIC_SPLIT, workers: int = 1,
                          progress: bool = True) -> dict:
    """Write annotation.json, mimic-cxr-2.0.0-chexpert.csv and images/ under ``out``.

    Returns a summary (paths, counts per split, images rendered and skipped)."""
    if not 16 <= image_size <= 2048:
        raise ValueError(f"image size must be between 16 and 2048, got {image_size}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    reports, labels = iu_report_pool()
    studies = plan_studies(n, reports, labels, seed, fractions)  # checks n and fractions
    out = Path(out)
    manifest = {"format": "ekagen synthetic mimic_cxr 1", "seed": seed, "image_size": image_size}
    if (out / MANIFEST).is_file():
        written = json.loads((out / MANIFEST).read_text())
        if written != manifest:
            raise ValueError(f"{out / MANIFEST}: this folder holds a set written with {written}; "
                             f"its images cannot be reused for {manifest}; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps(manifest) + "\n")
    image_dir = out / IMAGE_DIR
    targets = [image_dir / s.image_path for s in studies]
    tasks = [(str(target), f"synth-{seed}-{s.index}", s.labels, s.report, image_size, seed)
             for s, target in zip(studies, targets, strict=True) if not target.is_file()]
    bar = tqdm(total=len(tasks), desc="render images", unit="image", disable=not progress)
    if workers == 1:
        for task in tasks:
            _render(task)
            bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_render, tasks, chunksize=16):
                bar.update()
    bar.close()
    annotation: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for s in studies:
        annotation[s.split].append({"id": s.dicom_id, "study_id": s.study_id,
                                    "subject_id": s.subject_id, "report": s.report,
                                    "image_path": [s.image_path], "split": s.split})
    (out / ANNOTATION).write_text(json.dumps(annotation) + "\n")
    table = pd.DataFrame([{"subject_id": s.subject_id, "study_id": s.study_id,
                           **dict(zip(OBSERVATIONS, s.labels, strict=True))} for s in studies])
    table.to_csv(out / CHEXPERT_CSV, index=False)
    return {"out": str(out), "annotation": str(out / ANNOTATION),
            "chexpert_csv": str(out / CHEXPERT_CSV), "image_dir": str(image_dir),
            "studies": n, "splits": {k: len(v) for k, v in annotation.items()},
            "rendered": len(tasks), "already_present": n - len(tasks),
            "image_size": image_size, "seed": seed}


def dvc_arguments(summary: dict) -> list[str]:
    """The ``dvc exp run -S`` arguments that point the pipeline at a written set."""
    return ["-S", "data.source=r2gen", "-S", "data.dataset=mimic_cxr", "-S", "data.views=[0]",
            "-S", f"data.annotation={summary['annotation']}",
            "-S", f"data.image_dir={summary['image_dir']}",
            "-S", f"data.chexpert_csv={summary['chexpert_csv']}"]
