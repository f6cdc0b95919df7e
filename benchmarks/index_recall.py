"""Approximate FAISS indexes against the exact one: recall@1, build and query time, by size.

The corpus is real report embeddings (``data/knowledge/embeddings.parquet`` after
``dvc repro embed``, else the IU report pool embedded here) grown to each ``--sizes`` N by
drawing rows with replacement, as ``ekagen synth`` draws reports. Two corpora per N:

- ``duplicates``: the rows as drawn; many reports repeat, as in the synthetic set, which makes
  the nearest neighbour an exact copy and recall easy;
- ``jitter=<s>``: each drawn row plus Gaussian noise (``s`` per coordinate, then
  re-normalised), so no two reports coincide, as in real MIMIC-CXR text. At s = 0.02 a
  report's nearest neighbour has about the cosine that unique IU reports have to theirs
  (.88 against .90); larger ``s`` flattens the clusters, the harder case for IVF.

Each corpus records ``nn_cosine``, the mean cosine of a query to its nearest other row.

Queries are ``--queries`` indexed rows, each searched for its nearest *other* row
(:func:`ekagen.knowledge.index.recall_at_1`), the measure the rks stage reports.

    python benchmarks/index_recall.py [--sizes 30000] [--nprobe 4 8 16 32] [--ef 32 64 128]

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from ekagen.knowledge.index import build_index, default_nlist, recall_at_1, search


def base_embeddings(path: Path) -> tuple[np.ndarray, str]:
    if path.is_file():
        from ekagen.knowledge.store import read_embeddings

        return np.asarray(read_embeddings(path)[1], np.float32), str(path)
    from ekagen.data.synth import iu_report_pool
    from ekagen.knowledge.embedding import embed_texts

    reports, _ = iu_report_pool()
    return embed_texts(list(dict.fromkeys(reports)), progress=False), "IU report pool"


def corpus(base: np.ndarray, n: int, jitter: float, rng: np.random.Generator) -> np.ndarray:
    x = base[rng.integers(len(base), size=n)]
    if jitter > 0:
        x = x + jitter * rng.standard_normal(x.shape).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x, np.float32)


def sweep(x: np.ndarray, rows: np.ndarray, kind: str, settings: list[dict]) -> list[dict]:
    """One build, then a search per setting: nprobe and efSearch are search-time knobs."""
    start = time.perf_counter()
    index = build_index(x, kind, use_gpu=False, **settings[0])
    built = time.perf_counter() - start
    runs = []
    for setting in settings:
        if "nprobe" in setting:
            index.nprobe = setting["nprobe"]
        if "ef_search" in setting:
            index.hnsw.efSearch = setting["ef_search"]
        start = time.perf_counter()
        search(index, x[rows], 2)
        queried = time.perf_counter() - start
        recall = recall_at_1(index, x, x[rows], exclude=rows)
        runs.append({"kind": kind, **setting, "recall_at_1": round(recall, 4),
                     "build_s": round(built, 3),
                     "query_ms": round(1e3 * queried / len(rows), 4)})
    return runs


def nearest_other_cosine(x: np.ndarray, rows: np.ndarray) -> float:
    scores, ids = search(build_index(x, "flat", use_gpu=False), x[rows], 2)
    other = np.where(ids[:, 0] == rows, scores[:, 1], scores[:, 0])
    return round(float(other.mean()), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[30000])
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--ef", type=int, nargs="+", default=[32, 64, 128, 256])
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--jitter", type=float, nargs="+", default=[0.02, 0.04])
    parser.add_argument("--embeddings", default="data/knowledge/embeddings.parquet")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    base, source = base_embeddings(Path(args.embeddings))
    rng = np.random.default_rng(args.seed)
    result: dict = {"source": source, "base_rows": int(len(base)), "dim": int(base.shape[1]),
                    "jitter": args.jitter, "queries": args.queries, "runs": []}
    for n in args.sizes:
        for name, jitter in [("duplicates", 0.0), *((f"jitter={j}", j) for j in args.jitter)]:
            x = corpus(base, n, jitter, rng)
            rows = np.sort(rng.choice(n, min(args.queries, n), replace=False))
            runs = sweep(x, rows, "flat", [{}])
            nn_cosine = nearest_other_cosine(x, rows)
            runs += sweep(x, rows, "ivf", [{"nlist": default_nlist(n), "nprobe": p}
                                          for p in args.nprobe])
            runs += sweep(x, rows, "hnsw", [{"m": args.hnsw_m, "ef_search": ef}
                                           for ef in args.ef])
            result["runs"] += [{"n": n, "corpus": name, "nn_cosine": nn_cosine, **run}
                               for run in runs]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
