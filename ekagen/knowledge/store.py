"""Parquet files of the knowledge stages (embeddings, PKS, RKS) and how to read them back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ekagen.observations import OBSERVATIONS

EMBEDDINGS_FILE, INDEX_FILE, PKS_FILE, RKS_FILE = (
    "embeddings.parquet", "index.faiss", "pks.parquet", "rks.parquet")


def write_embeddings(path: Path, studies: pd.DataFrame, vectors: np.ndarray) -> None:
    """One row per training report: id, report, its labels and its vector (list<float32>)."""
    table = studies[["id", "report", *OBSERVATIONS]].reset_index(drop=True).copy()
    table["vector"] = list(np.asarray(vectors, dtype=np.float32))
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(path, index=False)


def read_embeddings(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """The embeddings table and its vectors as an ``(n, dim)`` float32 matrix."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: report embeddings missing; run `dvc repro embed`")
    table = pd.read_parquet(path)
    vectors = np.stack(table["vector"].to_numpy()).astype(np.float32) if len(table) else \
        np.zeros((0, 0), np.float32)
    return table.drop(columns=["vector"]), vectors


def write_table(path: Path, table: pd.DataFrame, vector_columns: tuple[str, ...] = ()) -> None:
    table = table.copy()
    for column in vector_columns:
        table[column] = [np.asarray(v, dtype=np.float32) for v in table[column]]
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(path, index=False)


def read_table(path: Path, stage: str) -> pd.DataFrame:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: missing; run `dvc repro {stage}`")
    table = pd.read_parquet(path)
    for column in ("members", "token_ids"):
        if column in table:
            table[column] = [np.asarray(v, dtype=np.int64) for v in table[column]]
    return table
