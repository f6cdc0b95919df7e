"""Two reference systems scored beside EKAGen in the same run.

* most frequent: every test study gets the training report seen most often (ties: the
  shortest, then alphabetical) — what a generator that ignores the image degenerates to;
* nearest neighbour: the report of the training study whose image is closest (cosine) in the
  DiagnosisBot's pooled feature space — retrieval with the same vision model EKAGen uses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


def most_frequent_report(train_reports: Sequence[str]) -> str:
    if not len(train_reports):
        raise ValueError("no training reports for the most-frequent baseline")
    counts = Counter(train_reports)
    return min(counts, key=lambda r: (-counts[r], len(r), r))


def nearest_neighbour_reports(train_features: np.ndarray, train_reports: Sequence[str],
                              query_features: np.ndarray, batch: int = 1024) -> list[str]:
    """For each query row, the report of the most similar training row (cosine)."""
    train = _unit(train_features)
    if len(train) != len(train_reports):
        raise ValueError(f"{len(train)} training feature rows for {len(train_reports)} reports")
    out: list[str] = []
    for start in range(0, len(query_features), batch):
        sims = _unit(query_features[start : start + batch]) @ train.T
        out.extend(train_reports[i] for i in sims.argmax(1))
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)
