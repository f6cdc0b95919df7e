"""The ``prepare`` stage's logic: studies -> cleaned, labelled, split table, vocabulary, images.

Everything later stages read comes from here: ``studies.parquet`` (one row per study, its
14 labels and split), ``vocab.json`` and ``images.npy``, a uint8 array (study, view, H, W)
aligned row for row with the table, decoded and resized once so no epoch re-decodes files.
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ekagen.config import DataConfig
from ekagen.data.artifacts import IMAGES_FILE, REJECTED_FILE, STUDIES_FILE, VOCAB_FILE
from ekagen.data.image_cache import build_image_cache
from ekagen.data.records import REJECTED_COLUMNS, SPLITS, RecordError, Rejections, StudyRecord
from ekagen.data.sources import load_studies
from ekagen.data.text import clean_report
from ekagen.data.vocab import Vocabulary
from ekagen.observations import OBSERVATIONS


@dataclass
class Prepared:
    studies: pd.DataFrame
    vocab: Vocabulary
    images: np.ndarray  # a memory map of the finished cache when prepare had a cache_dir
    rejections: Rejections


def _dedupe_and_clean(studies: list[StudyRecord], dataset: str,
                      rejections: Rejections) -> list[tuple[StudyRecord, str]]:
    seen: dict[str, StudyRecord] = {}
    kept = []
    for study in studies:
        first = seen.setdefault(study.id, study)
        if first is not study:  # both places named: either copy may be the one to fix
            rejections.reject(study.file, study.id, f"duplicate id {study.id}: first "
                              f"{first.place()}, again {study.place(beside=first)}",
                              kind="duplicate_id")
            continue
        cleaned = clean_report(study.report, dataset)
        if not cleaned:
            rejections.reject(study.file, study.id, "empty report after cleaning",
                              kind="empty_report")
            continue
        kept.append((study, cleaned))
    return kept


def _assign_splits(n: int, fractions: list[float], seed: int) -> list[str]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"params.yaml data.split_fractions must be three non-negative numbers "
                         f"summing to 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    splits = np.empty(n, dtype=object)
    splits[order[:n_train]] = "train"
    splits[order[n_train : n_train + n_val]] = "val"
    splits[order[n_train + n_val :]] = "test"
    return splits.tolist()


def _image_tasks(table: pd.DataFrame, cfg: DataConfig, seed: int,
                 raw_reports: list[str]) -> list[tuple]:
    tasks = []
    for row, raw in zip(table.itertuples(index=False), raw_reports, strict=True):
        if cfg.source == "iu_phantom":
            labels = {name: float(getattr(row, f"label_{i}")) for i, name in
                      enumerate(OBSERVATIONS)}
            tasks.append(("phantom", (row.id, labels, raw, seed, list(cfg.views),
                                      cfg.phantom.uncertain), cfg.image_size))
        else:
            tasks.append(("file", (row.image_root, list(row.image_paths)), cfg.image_size))
    return tasks


def prepare(cfg: DataConfig, seed: int, workers: int = 1,
            cache_dir: Path | None = None) -> Prepared:
    """Load, clean, label, split and cache the studies named by ``cfg``.

    With ``cache_dir`` the image cache is written there incrementally and a killed run
    resumes from it (:mod:`ekagen.data.image_cache`); without, it is built in memory.
    """
    from ekagen.labeler import label_reports

    rejections = Rejections(allow=cfg.skip_bad_records)
    records = load_studies(cfg, rejections)
    kept = _dedupe_and_clean(records, cfg.dataset, rejections)
    if cfg.max_studies > 0 and len(kept) > cfg.max_studies:
        chosen = np.sort(np.random.default_rng(seed).choice(len(kept), cfg.max_studies,
                                                             replace=False))
        rejections.exclude("outside the data.max_studies subset", len(kept) - cfg.max_studies)
        kept = [kept[i] for i in chosen]
    if not kept:
        raise ValueError(f"data source {cfg.source!r} produced no usable study")
    studies = [s for s, _ in kept]
    splits = [s.split for s in studies]
    if any(s is None for s in splits):
        splits = _assign_splits(len(studies), cfg.split_fractions, seed)
    to_label = [i for i, s in enumerate(studies) if s.labels is None]
    labels = np.full((len(studies), len(OBSERVATIONS)), np.nan)
    if to_label:
        labelled = label_reports([studies[i].report for i in to_label])
        labels[to_label] = labelled[list(OBSERVATIONS)].to_numpy(dtype=float)
    for i, s in enumerate(studies):
        if s.labels is not None:
            labels[i] = [s.labels[name] for name in OBSERVATIONS]
    table = pd.DataFrame({
        "id": [s.id for s in studies], "split": splits, "report": [c for _, c in kept],
        "raw_report": [s.report for s in studies],
        "image_paths": [list(s.images) for s in studies],
        "image_root": [s.image_root for s in studies],
        "label_source": [s.label_source for s in studies],
        **{f"label_{i}": labels[:, i] for i in range(len(OBSERVATIONS))},
    })
    tasks = _image_tasks(table, cfg, seed, [s.report for s in studies])
    images, failed = build_image_cache(tasks, workers, table["id"].tolist(),
                                       [s.file for s in studies], rejections, cache_dir)
    table = table.drop(index=failed).reset_index(drop=True)
    table = table.rename(columns={f"label_{i}": n for i, n in enumerate(OBSERVATIONS)})
    for split in SPLITS:
        if not (table["split"] == split).any():
            raise ValueError(f"split {split!r} is empty after preparation ({len(table)} studies); "
                             "every split needs at least one study")
    vocab = Vocabulary.build(table.loc[table["split"] == "train", "report"], cfg.min_freq,
                             cfg.max_length)
    return Prepared(table, vocab, images, rejections)


def prepare_metrics(prepared: Prepared, cfg: DataConfig) -> dict:
    """Counts per split, label prevalence and rejections, for ``metrics/prepare.json``."""
    table = prepared.studies
    counts = Counter(table["split"])
    prevalence = {}
    for name in OBSERVATIONS:
        column = table[name]
        prevalence[name] = {"positive": round(float((column == 1).mean()), 4),
                            "uncertain": round(float((column == -1).mean()), 4),
                            "negative": round(float((column == 0).mean()), 4)}
    # keyed by kind, never by problem text: that holds paths, which MLflow refuses as names
    reasons = Counter(row["kind"] for row in prepared.rejections.rows)
    return {
        "source": cfg.source,
        "studies": int(len(table)),
        "splits": {split: int(counts.get(split, 0)) for split in SPLITS},
        "images_per_study": int(prepared.images.shape[1]),
        "image_size": int(prepared.images.shape[-1]),
        "vocab_size": len(prepared.vocab),
        "mean_report_tokens": round(float(table["report"].str.split().str.len().mean()), 2),
        "label_prevalence": prevalence,
        "rejected": int(len(prepared.rejections)),
        "rejected_by_problem": dict(sorted(reasons.items())),
        "excluded_by_rule": dict(prepared.rejections.excluded),
    }


def write_prepared(prepared: Prepared, out_dir: Path) -> None:
    """Write the prepared folder; a memory-mapped cache is moved in, not copied, and its
    resume folder removed, since the finished cache now lives in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    prepared.studies.to_parquet(out_dir / STUDIES_FILE, index=False)
    prepared.vocab.save(out_dir / VOCAB_FILE)
    images = prepared.images
    if isinstance(images, np.memmap) and images.filename is not None:
        images.flush()
        source = Path(images.filename)
        shutil.move(source, out_dir / IMAGES_FILE)  # a rename on the same file system
        shutil.rmtree(source.parent)
        prepared.images = np.load(out_dir / IMAGES_FILE, mmap_mode="r")
    else:
        np.save(out_dir / IMAGES_FILE, images, allow_pickle=False)
    pd.DataFrame(prepared.rejections.rows, columns=list(REJECTED_COLUMNS)).to_csv(
        out_dir / REJECTED_FILE, index=False)


__all__ = ["prepare", "prepare_metrics", "write_prepared", "RecordError"]
