"""The three data sources: the embedded IU phantom set, R2Gen annotation files, OpenI XML.

Each loader returns :class:`StudyRecord` objects with raw report text; cleaning, labelling,
splitting and image caching are shared by all sources (see ``ekagen.data.prepare``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ekagen.config import DataConfig
from ekagen.data.openi import iter_openi_records
from ekagen.data.records import SPLITS, Rejections, StudyRecord
from ekagen.observations import OBSERVATIONS

#: The R2Gen IU X-Ray selection keeps studies with FINDINGS and at least this many images.
IU_MIN_IMAGES = 2


def phantom_ref(study_id: str, view: int) -> str:
    return f"phantom:{study_id}:{view}"


def _in_r2gen_iu_selection(findings: str, image_ids: list[str], rejections: Rejections) -> bool:
    """R2Gen's IU X-Ray selection; studies outside it are counted, not rejected."""
    if not findings.strip():
        rejections.exclude("no FINDINGS section (R2Gen IU selection)")
        return False
    if len(image_ids) < IU_MIN_IMAGES:
        rejections.exclude(f"fewer than {IU_MIN_IMAGES} images (R2Gen IU selection)")
        return False
    return True


def load_iu_phantom(cfg: DataConfig, rejections: Rejections) -> list[StudyRecord]:
    """The OpenI reports bundled in torchxrayvision, each paired with phantom radiographs."""
    studies = []
    for rec in iter_openi_records(cfg.reports or None):
        if not _in_r2gen_iu_selection(rec.findings, rec.image_ids, rejections):
            continue
        studies.append(StudyRecord(id=rec.uid, report=rec.findings, file=rec.source,
                                   images=[phantom_ref(rec.uid, v) for v in cfg.views]))
    return studies


def load_openi(cfg: DataConfig, rejections: Rejections) -> list[StudyRecord]:
    """OpenI XML reports plus the user's folder of OpenI PNGs named ``<image id>.png``."""
    root = Path(cfg.image_dir)  # DataConfig requires it for this source
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: OpenI image folder not found (data.image_dir)")
    studies = []
    for rec in iter_openi_records(cfg.reports or None):
        if not _in_r2gen_iu_selection(rec.findings, rec.image_ids, rejections):
            continue
        images = [f"{image_id}.png" for image_id in rec.image_ids]
        chosen = _select_views(images, cfg.views, rec.source, rec.uid, rejections)
        if chosen is not None:
            studies.append(StudyRecord(id=rec.uid, report=rec.findings, file=rec.source,
                                       images=chosen, image_root=str(root)))
    return studies


def _select_views(images: list[str], views: list[int], file: str, record: str,
                  rejections: Rejections) -> list[str] | None:
    missing = [v for v in views if v >= len(images)]
    if missing:
        rejections.reject(file, record, f"has {len(images)} image(s); data.views asks for view "
                                        f"{missing[0]}", kind="too_few_images")
        return None
    return [images[v] for v in views]


def _read_annotation(path: Path) -> dict:
    try:
        payload = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: annotation file not found (data.annotation)") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(payload, dict):
        raise ValueError(f"{path}: expected an object with train/val/test lists, "
                         f"got {type(payload).__name__}")
    unknown = sorted(set(payload) - set(SPLITS))
    if unknown:
        raise ValueError(f"{path}: unknown split(s) {unknown}; R2Gen annotations hold {SPLITS}")
    for split, entries in payload.items():
        if not isinstance(entries, list):
            raise ValueError(f"{path}: split {split!r} must be a list of entries")
    return payload


def _read_chexpert_csv(path: Path) -> dict[tuple[str, str], dict[str, float]]:
    try:
        table = pd.read_csv(path)
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{path}: CheXpert label CSV not found (data.chexpert_csv)") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: unreadable CSV ({exc})") from exc
    missing = [c for c in ("subject_id", "study_id", *OBSERVATIONS) if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    try:
        values = table[list(OBSERVATIONS)].to_numpy(dtype=float)
    except ValueError as exc:
        raise ValueError(f"{path}: non-numeric label value ({exc})") from exc
    keys = zip(table["subject_id"].astype(str), table["study_id"].astype(str), strict=True)
    labels = {(subject, study): dict(zip(OBSERVATIONS, row.tolist(), strict=True))
              for (subject, study), row in zip(keys, values, strict=True)}
    bad = {v for values in labels.values() for v in values.values() if v == v} - {1.0, 0.0, -1.0}
    if bad:
        raise ValueError(f"{path}: label values must be 1, 0, -1 or blank; found {sorted(bad)}")
    return labels


def _strip_prefix(value: str) -> str:
    """MIMIC ids appear as ``10000032`` or ``p10000032`` / ``s50414267``."""
    return value[1:] if value[:1] in ("p", "s") and value[1:].isdigit() else value


def load_r2gen(cfg: DataConfig, rejections: Rejections) -> list[StudyRecord]:
    """A user's R2Gen ``annotation.json`` (IU X-Ray or MIMIC-CXR) and image folder."""
    path, root = Path(cfg.annotation), Path(cfg.image_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found (data.image_dir)")
    payload = _read_annotation(path)
    chexpert = _read_chexpert_csv(Path(cfg.chexpert_csv)) if cfg.chexpert_csv else None
    root_resolved = root.resolve()
    studies = []
    for split, entries in payload.items():
        for i, entry in enumerate(entries):
            record = _r2gen_entry(entry, split, f"{split}[{i}]", str(path), root_resolved, cfg,
                                  chexpert, rejections)
            if record is not None:
                studies.append(record)
    return studies


def _r2gen_entry(entry: object, split: str, where: str, file: str, root: Path, cfg: DataConfig,
                 chexpert: dict | None, rejections: Rejections) -> StudyRecord | None:
    if not isinstance(entry, dict):
        rejections.reject(file, where, f"entry must be an object, got {type(entry).__name__}",
                          kind="bad_entry")
        return None
    study_id = entry.get("id")
    if not isinstance(study_id, str | int) or str(study_id).strip() == "":
        rejections.reject(file, where, "missing or empty 'id'", kind="missing_id")
        return None
    record = f"{where} (id {study_id})"
    report, images = entry.get("report"), entry.get("image_path")
    if not isinstance(report, str):
        rejections.reject(file, record, "missing or non-string 'report'", kind="bad_report")
        return None
    if not isinstance(images, list) or not images or not all(isinstance(p, str) for p in images):
        rejections.reject(file, record, "'image_path' must be a non-empty list of strings",
                          kind="bad_image_path")
        return None
    declared = entry.get("split", split)
    if declared not in SPLITS:
        rejections.reject(file, record, f"unknown split {declared!r} (expected one of {SPLITS})",
                          kind="bad_split")
        return None
    if declared != split:
        rejections.reject(file, record, f"listed under {split!r} but says split {declared!r}",
                          kind="split_mismatch")
        return None
    chosen = _select_views(images, cfg.views, file, record, rejections)
    if chosen is None:
        return None
    for image in chosen:
        target = (root / image).resolve()
        if not target.is_relative_to(root):
            rejections.reject(file, record, f"image path {image!r} escapes the image folder",
                              kind="image_outside_folder")
            return None
        if not target.is_file():
            rejections.reject(file, record, f"image {target} does not exist",
                              kind="missing_image")
            return None
    labels, source = None, "labeler"
    if chexpert is not None:
        key = (_strip_prefix(str(entry.get("subject_id", ""))),
               _strip_prefix(str(entry.get("study_id", ""))))
        if key not in chexpert:
            rejections.reject(file, record, f"no CheXpert labels for subject/study {key} in "
                                            f"{cfg.chexpert_csv}", kind="missing_labels")
            return None
        labels, source = chexpert[key], "chexpert_csv"
    return StudyRecord(id=str(study_id), report=report, images=chosen, file=file, split=split,
                       labels=labels, label_source=source, image_root=str(root), where=where)


LOADERS = {"iu_phantom": load_iu_phantom, "r2gen": load_r2gen, "openi": load_openi}


def load_studies(cfg: DataConfig, rejections: Rejections) -> list[StudyRecord]:
    if cfg.source not in LOADERS:
        raise ValueError(f"params.yaml data.source: unknown source {cfg.source!r}; "
                         f"choose one of {sorted(LOADERS)}")
    return LOADERS[cfg.source](cfg, rejections)
