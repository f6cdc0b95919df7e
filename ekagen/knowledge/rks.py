"""Rectified Knowledge Support (RKS): the real training reports nearest to each PKS centre.

A centre is an average and may resemble no actual report (the paper's "feature disruption"),
so each PKS key is replaced by the ``k`` training reports **that carry the key** (its
``members``) with the highest cosine similarity to the centre. Cosine, not inner product
with the raw centre: for unit-norm reports the two rank identically (the centre's length is a
common factor), but cosine gives a distance that is comparable across keys:
``distance = 1 - cos(report, centre)``, in [0, 2].

Search goes through the FAISS index: each centre fetches ``candidates`` neighbours among all
reports, the ones carrying the key are kept and re-scored exactly (float64). If fewer than
``k`` members are among the candidates, or the cut-off is too close to call, the key falls back
to an exact scan of its members. With an exact index (flat, or IVF probing every list) the
result therefore equals brute force; with an approximate index it is exact whenever the index
returns the true neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np
import pandas as pd

from ekagen.data.vocab import Vocabulary
from ekagen.knowledge.index import (
    GPU_MAX_K,
    build_index,
    is_exact,
    is_gpu_index,
    recall_at_1,
    search,
)
from ekagen.knowledge.pks import centres_matrix

RKS_COLUMNS = ("key", "level", "observation", "sub", "rank", "row", "report_id", "report",
               "token_ids", "distance", "support")
_TIE_MARGIN = 1e-5  # float32 scores this close to the candidate cut-off are re-checked exactly
_SCAN_CHUNK = 16384
RECALL_QUERIES = 1000  # leave-one-out report queries: recall is then known to about +-.006
RECALL_TARGET = 0.99


def _exact_top(
    embeddings: np.ndarray, members: np.ndarray, centre: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` members by float64 inner product with ``centre`` (ties: lower row first)."""
    scores = np.empty(len(members), dtype=np.float64)
    for start in range(0, len(members), _SCAN_CHUNK):
        part = members[start : start + _SCAN_CHUNK]
        scores[start : start + len(part)] = embeddings[part].astype(np.float64) @ centre
    return _rank(members, scores, k)


def _rank(rows: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((rows, -scores))[:k]
    return rows[order], scores[order]


def nearest_members(
    embeddings: np.ndarray,
    centres: np.ndarray,
    members: Sequence[np.ndarray],
    k: int = 1,
    index: faiss.Index | None = None,
    candidates: int = 256,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each centre, its ``k`` best members: ``[(rows, inner products)]``, best first.

    ``index`` must index ``embeddings`` (ids = row numbers); ``None`` scans members exactly.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    c = np.asarray(centres, dtype=np.float32)
    sets = [np.unique(np.asarray(m, dtype=np.int64)) for m in members]
    results: list[tuple[np.ndarray, np.ndarray] | None] = [None] * len(sets)
    if index is not None and len(c) and index.ntotal:
        if index.ntotal != len(x):
            raise ValueError(f"the index holds {index.ntotal} vectors, embeddings {len(x)} rows")
        pool = min(max(int(candidates), k), int(index.ntotal))
        if is_gpu_index(index):
            pool = min(pool, GPU_MAX_K)
        scores, ids = search(index, c, pool)
        exact = is_exact(index)
        for i, member_set in enumerate(sets):
            need = min(k, len(member_set))
            valid = ids[i] >= 0
            hit = valid & np.isin(ids[i], member_set, assume_unique=False)
            if hit.sum() < need or need == 0:
                continue
            if exact and valid.sum() == index.ntotal:
                complete = True  # the pool is the whole corpus
            else:
                cut = scores[i][valid].min() if valid.all() else -np.inf
                kth = np.sort(scores[i][hit])[::-1][need - 1]
                complete = kth > cut + _TIE_MARGIN
            if complete:
                rows = ids[i][hit]
                exact_scores = x[rows].astype(np.float64) @ c[i].astype(np.float64)
                results[i] = _rank(rows, exact_scores, need)
    out = []
    for i, member_set in enumerate(sets):
        found = results[i]
        if found is None:
            found = _exact_top(x, member_set, c[i].astype(np.float64), min(k, len(member_set)))
        out.append(found)
    return out


def build_rks(
    pks: pd.DataFrame,
    embeddings: np.ndarray,
    report_ids: Sequence[str],
    reports: Sequence[str],
    vocab: Vocabulary,
    index: faiss.Index | None = None,
    k: int = 1,
    max_length: int | None = None,
    candidates: int = 256,
) -> pd.DataFrame:
    """Replace every PKS centre with its ``k`` nearest real member reports.

    ``embeddings``, ``report_ids`` and ``reports`` are the training reports, row for row as
    :func:`~ekagen.knowledge.pks.build_pks` saw them. ``token_ids`` is each report encoded by
    ``vocab`` with ``max_length`` (default: the vocabulary's), bos and eos included.

    One output row per (key, rank); ``rank`` 0 is the nearest, ``row`` the report's embedding
    row, ``distance`` = 1 - cosine(report, centre), ``support`` copied from PKS.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    x = np.asarray(embeddings, dtype=np.float32)
    if not len(x) == len(report_ids) == len(reports):
        raise ValueError(
            f"{len(x)} embeddings, {len(report_ids)} report ids and {len(reports)} reports"
        )
    centres = centres_matrix(pks)
    found = nearest_members(x, centres, list(pks["members"]), k, index, candidates)
    records: list[dict[str, Any]] = []
    for (_, key_row), centre, (rows, scores) in zip(pks.iterrows(), centres, found, strict=True):
        norm = float(np.linalg.norm(centre.astype(np.float64)))
        for rank, (row, score) in enumerate(zip(rows, scores, strict=True)):
            cosine = score / norm if norm > 0 else 0.0
            text = str(reports[int(row)])
            records.append(
                {"key": key_row["key"], "level": key_row["level"],
                 "observation": key_row["observation"], "sub": int(key_row["sub"]),
                 "rank": rank, "row": int(row), "report_id": str(report_ids[int(row)]),
                 "report": text, "token_ids": vocab.encode(text, max_length=max_length),
                 "distance": float(1.0 - cosine), "support": int(key_row["support"])}
            )
    table = pd.DataFrame.from_records(records, columns=list(RKS_COLUMNS))
    for column in ("sub", "rank", "row", "support"):
        table[column] = table[column].astype(np.int64)
    table["distance"] = table["distance"].astype(np.float64)
    return table


def index_recall(index: faiss.Index, embeddings: np.ndarray, pks: pd.DataFrame,
                 seed: int, sample: int = RECALL_QUERIES) -> dict[str, Any]:
    """recall@1 of ``index`` against an exact scan, on the queries the pipeline asks it.

    Two query sets: every PKS centre (what RKS searches with) and ``sample`` training
    reports drawn with ``seed``, each searched for its nearest *other* report. An exact index
    measures 1.0; an approximate one measures what its parameters cost.
    """
    x = np.asarray(embeddings, dtype=np.float32)
    rows = np.sort(np.random.default_rng(seed).choice(len(x), min(sample, len(x)),
                                                      replace=False))
    kind = faiss.downcast_index(index).__class__.__name__
    metrics: dict[str, Any] = {"index_type": kind, "index_exact": bool(is_exact(index)),
                               "index_recall_queries/centres": int(len(pks)),
                               "index_recall_queries/reports": int(len(rows))}
    exact = build_index(x, "flat", use_gpu=False)
    if len(pks):
        metrics["index_recall_at_1/centres"] = recall_at_1(index, x, centres_matrix(pks),
                                                           exact=exact)
    if len(x) > 1:
        metrics["index_recall_at_1/reports"] = recall_at_1(index, x, x[rows], exclude=rows,
                                                           exact=exact)
    return metrics


def exact_agreement(rks: pd.DataFrame, exact: pd.DataFrame) -> float:
    """Share of keys whose rank-0 report is as near its centre as the exact scan's (a tie
    between duplicate reports agrees), for RKS run through an approximate index."""
    found = rks[rks["rank"] == 0].set_index("key")["distance"]
    truth = exact[exact["rank"] == 0].set_index("key")["distance"]
    if not len(truth):
        return 1.0
    found = found.reindex(truth.index)
    return float(((found - truth).abs() <= 1e-9).mean())


def knowledge_metrics(
    pks: pd.DataFrame,
    rks: pd.DataFrame,
    n_embedded: int,
    skipped: Sequence[str] = (),
) -> dict[str, Any]:
    """Flat, JSON-serialisable summary of a knowledge base for DVC/MLflow metrics.

    Per-key support is listed for observation-level keys (``support/<key>``); combinations
    can number thousands on MIMIC-CXR, so they are summarised (count, min, median, max).
    Distances are rank-0 PKS -> RKS cosine distances.
    """
    levels = pks["level"] if len(pks) else pd.Series([], dtype=object)
    obs = pks[levels == "observation"]
    combos = pks[levels == "combination"]
    top = rks[rks["rank"] == 0] if len(rks) else rks
    metrics: dict[str, Any] = {
        "reports_embedded": int(n_embedded),
        "keys_observation": int(len(obs)),
        "keys_combination": int(len(combos)),
        "skipped_observations": [str(s) for s in skipped],
        "n_skipped_observations": int(len(skipped)),
    }
    for key, support in zip(obs["key"], obs["support"], strict=True):
        metrics[f"support/{key}"] = int(support)
    if len(combos):
        support = combos["support"].to_numpy()
        metrics.update({"combination_support_min": int(support.min()),
                        "combination_support_median": float(np.median(support)),
                        "combination_support_max": int(support.max()),
                        "combination_reports_covered": int(support.sum())})
    metrics["mean_distance_pks_rks"] = float(top["distance"].mean()) if len(top) else 0.0
    for level in ("observation", "combination"):
        part = top[top["level"] == level] if len(top) else top
        metrics[f"mean_distance_pks_rks/{level}"] = (
            float(part["distance"].mean()) if len(part) else 0.0
        )
    return metrics
