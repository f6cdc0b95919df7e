"""The ``prepare`` stage's outputs as later stages read them, and the JSON metrics writer.

Kept apart from :mod:`ekagen.data.prepare` so that a stage reading prepared data imports (and
so depends on) none of the sources, the phantom renderer or the labeler.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

STUDIES_FILE, VOCAB_FILE, IMAGES_FILE, REJECTED_FILE = (
    "studies.parquet", "vocab.json", "images.npy", "rejected.csv")


def load_studies_table(prepared_dir: Path) -> pd.DataFrame:
    path = Path(prepared_dir) / STUDIES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: prepared studies missing; run `dvc repro prepare`")
    return pd.read_parquet(path)


def load_images(prepared_dir: Path, mmap: bool = True) -> np.ndarray:
    """The image cache, memory-mapped by default so workers share pages instead of copying."""
    return np.load(Path(prepared_dir) / IMAGES_FILE, mmap_mode="r" if mmap else None,
                   allow_pickle=False)


def dump_json(payload: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
