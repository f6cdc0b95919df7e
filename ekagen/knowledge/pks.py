"""Preliminary Knowledge Support (PKS): the centre of the reports that carry a key.

Two levels of key:

- ``"observation"``: one of the 14 CheXpert observations; its members are the training reports
  positive (== 1) for it. Optionally split into ``n_sub_centres`` sub-centres by k-means, to
  represent an observation whose reports form several modes.
- ``"combination"``: a full 14-label pattern, written as a 14-character string of ``'1'``
  (positive) and ``'0'`` (anything else: negative, uncertain or blank), in
  :data:`~ekagen.observations.OBSERVATIONS` order; its members are the training reports with
  exactly that pattern. Kept when seen in at least ``min_support`` reports.

A centre is the **raw mean** of its members' embeddings, as in the paper, and is *not*
re-normalised: its length (< 1 when members disagree) tells how spread out the members are,
and rescaling a centre would not change which report is nearest to it by cosine, which is all
RKS needs. Sub-centres come from seeded FAISS k-means; each sub-centre is then recomputed as
the exact mean of the members assigned to it, so every centre here is a mean of real reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np
import pandas as pd

from ekagen.observations import NUM_OBSERVATIONS, OBSERVATIONS, POSITIVE

PKS_COLUMNS = ("key", "level", "observation", "sub", "centre", "support", "members")
"""Columns of the PKS table: ``members`` are row numbers into the embedding matrix."""


@dataclass
class PKSResult:
    """The PKS table plus the observations that had no positive training report.

    Skipped observations are not an error (small corpora, e.g. no Pleural Other on a subset):
    the stage reports them in its metrics and the IEK lookup works without them.
    """

    table: pd.DataFrame
    skipped: list[str] = field(default_factory=list)


def positive_mask(labels: pd.DataFrame | np.ndarray) -> np.ndarray:
    """``(n, 14)`` bool: which observations are positive (== 1) in each row.

    ``labels`` is a frame holding the 14 observation columns (other columns are ignored) or an
    ``(n, 14)`` array in :data:`OBSERVATIONS` order. 0, -1 and NaN are all "not positive".
    """
    if isinstance(labels, pd.DataFrame):
        missing = [name for name in OBSERVATIONS if name not in labels.columns]
        if missing:
            raise ValueError(f"label frame lacks observation columns {missing}")
        values = labels[list(OBSERVATIONS)].to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = np.asarray(labels, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != NUM_OBSERVATIONS:
        raise ValueError(f"labels must have shape (n, {NUM_OBSERVATIONS}), got {values.shape}")
    return values == POSITIVE


def combination_key(positive: np.ndarray) -> str:
    """The 14-character key of one positive mask, e.g. ``"00000000100000"`` for No Finding."""
    return "".join("1" if bit else "0" for bit in np.asarray(positive, dtype=bool).ravel())


def key_bits(key: str) -> np.ndarray:
    """Inverse of :func:`combination_key`: a length-14 uint8 vector."""
    if len(key) != NUM_OBSERVATIONS or set(key) - {"0", "1"}:
        raise ValueError(f"{key!r} is not a {NUM_OBSERVATIONS}-character 0/1 combination key")
    return np.frombuffer(key.encode("ascii"), dtype=np.uint8) - ord("0")


def _mean(embeddings: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return embeddings[rows].mean(axis=0, dtype=np.float64).astype(np.float32)


def _sub_centres(
    embeddings: np.ndarray, rows: np.ndarray, k: int, seed: int, niter: int
) -> list[np.ndarray]:
    """Split ``rows`` into at most ``k`` groups by seeded k-means; largest group first."""
    k = min(k, len(rows))
    if k <= 1:
        return [rows]
    x = np.ascontiguousarray(embeddings[rows], dtype=np.float32)
    kmeans = faiss.Kmeans(
        x.shape[1], k, niter=niter, seed=seed, verbose=False, spherical=False,
        min_points_per_centroid=1, max_points_per_centroid=max(len(rows), 256),
    )
    kmeans.train(x)
    _, assign = kmeans.index.search(x, 1)
    assign = assign.ravel()
    groups = [rows[assign == c] for c in np.unique(assign)]
    # deterministic order, independent of k-means's arbitrary cluster numbering
    groups.sort(key=lambda g: (-len(g), int(g[0])))
    return groups


def build_pks(
    embeddings: np.ndarray,
    labels: pd.DataFrame | np.ndarray,
    n_sub_centres: int = 1,
    min_support: int = 1,
    combinations: bool = True,
    seed: int = 42,
    kmeans_iters: int = 20,
) -> PKSResult:
    """Compute the PKS of every observation and every frequent label combination.

    ``embeddings`` (n, dim) are the training reports' embeddings and ``labels`` their 14
    labels, row for row. With ``n_sub_centres == 1`` the observation key is its name and
    ``sub`` is 0; with ``n_sub_centres > 1`` the keys are ``"Name#j"`` (``j`` = ``sub``,
    largest sub-centre first) and ``k`` is clipped to the observation's support. Combinations
    always get one centre and need ``min_support`` members; observations need one.

    Table rows: observations in :data:`OBSERVATIONS` order, then combinations by support
    (largest first, ties by key). ``support`` is the number of reports averaged into the
    centre; ``members`` lists the rows that *carry the key* (for a sub-centre: every report
    positive for the observation, because RKS may pick any of them).
    """
    x = np.asarray(embeddings, dtype=np.float32)
    positive = positive_mask(labels)
    if x.ndim != 2 or len(x) != len(positive):
        raise ValueError(f"{len(positive)} label rows for embeddings of shape {x.shape}")
    if n_sub_centres < 1 or min_support < 1:
        raise ValueError("n_sub_centres and min_support must be at least 1")

    records: list[dict] = []
    skipped: list[str] = []
    for j, name in enumerate(OBSERVATIONS):
        rows = np.flatnonzero(positive[:, j])
        if len(rows) == 0:
            skipped.append(name)
            continue
        if n_sub_centres == 1:
            groups, keys = [rows], [name]
        else:
            groups = _sub_centres(x, rows, n_sub_centres, seed, kmeans_iters)
            keys = [f"{name}#{s}" for s in range(len(groups))]
        for sub, (key, group) in enumerate(zip(keys, groups, strict=True)):
            records.append(
                {"key": key, "level": "observation", "observation": name, "sub": sub,
                 "centre": _mean(x, group), "support": len(group), "members": rows}
            )

    if combinations and len(x):
        weights = 1 << np.arange(NUM_OBSERVATIONS - 1, -1, -1, dtype=np.int64)
        codes = positive.astype(np.int64) @ weights
        uniq, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(counts)])
        combos = []
        for u, code in enumerate(uniq):
            if counts[u] < min_support:
                continue
            rows = np.sort(order[bounds[u] : bounds[u + 1]])
            key = format(int(code), f"0{NUM_OBSERVATIONS}b")
            combos.append({"key": key, "level": "combination", "observation": None, "sub": 0,
                           "centre": _mean(x, rows), "support": len(rows), "members": rows})
        combos.sort(key=lambda r: (-r["support"], r["key"]))
        records.extend(combos)

    table = pd.DataFrame.from_records(records, columns=list(PKS_COLUMNS))
    table["sub"] = table["sub"].astype(np.int64)
    table["support"] = table["support"].astype(np.int64)
    table["centre"] = [np.asarray(c, dtype=np.float32) for c in table["centre"]]
    table["members"] = [np.asarray(m, dtype=np.int64) for m in table["members"]]
    return PKSResult(table=table, skipped=skipped)


def centres_matrix(pks: pd.DataFrame) -> np.ndarray:
    """The ``centre`` column as an ``(n_keys, dim)`` float32 matrix (works after parquet)."""
    if len(pks) == 0:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([np.asarray(c, dtype=np.float32) for c in pks["centre"]])
