"""FAISS inner-product index over report embeddings.

Embeddings are L2-normalised (:func:`ekagen.knowledge.embedding.embed_texts`), so inner
product is cosine similarity; every index here uses ``METRIC_INNER_PRODUCT`` and vectors are
*not* re-normalised on the way in. Three kinds:

- ``"flat"`` (default): exact search, right for IU X-Ray (a few thousand reports) and fine for
  MIMIC-CXR's 270k on a GPU.
- ``"ivf"``: IVF-flat, trained k-means coarse quantiser; approximate unless ``nprobe == nlist``.
  The MIMIC-scale choice on CPU.
- ``"hnsw"``: graph index, CPU only.

GPU use follows ``use_gpu``: ``"auto"`` uses a GPU when the installed faiss was built with GPU
support and sees one, ``True`` demands it (clear error otherwise), ``False`` stays on the CPU.
Saved indexes are always CPU indexes, so a file written on a GPU machine loads anywhere.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import faiss
import numpy as np

if TYPE_CHECKING:
    from ekagen.config import EmbedConfig

IndexKind = Literal["flat", "ivf", "hnsw"]
GPU_MAX_K = 2048
"""Largest ``k`` FAISS GPU indexes accept in one search."""


def gpu_available() -> bool:
    """True when this faiss build has GPU support and sees at least one GPU."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def _want_gpu(use_gpu: bool | str, kind: str) -> bool:
    if use_gpu not in (True, False, "auto"):
        raise ValueError(f"use_gpu must be True, False or 'auto', got {use_gpu!r}")
    if use_gpu is False:
        return False
    if use_gpu is True:
        if not gpu_available():
            raise RuntimeError(
                "use_gpu=True but the installed faiss has no GPU support or sees no GPU "
                "(install faiss-gpu, e.g. the 'gpu' extra, or set use_gpu to 'auto'/false)"
            )
        if kind == "hnsw":
            raise ValueError("FAISS has no GPU HNSW index; use kind='flat' or 'ivf' on a GPU")
        return True
    return gpu_available() and kind != "hnsw"


def _as_matrix(vectors: np.ndarray, name: str = "vectors") -> np.ndarray:
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, dim) array, got shape {array.shape}")
    return array


def default_nlist(n: int) -> int:
    """IVF list count: about ``4 * sqrt(n)`` (FAISS's rule of thumb), between 1 and ``n``."""
    return max(1, min(n, int(round(4 * math.sqrt(max(n, 1))))))


def build_index(
    vectors: np.ndarray,
    kind: IndexKind = "flat",
    nlist: int | None = None,
    nprobe: int = 16,
    m: int = 32,
    ef_search: int = 128,
    use_gpu: bool | str = "auto",
    seed: int = 42,
) -> faiss.Index:
    """Build an inner-product index over the rows of ``vectors`` (ids = row numbers).

    ``nlist`` (IVF lists, default :func:`default_nlist`) is clipped to the corpus size because
    k-means cannot make more clusters than points; ``nprobe`` is clipped to ``nlist`` and
    ``nprobe == nlist`` makes IVF exact. ``m`` and ``ef_search`` are the HNSW graph degree and
    search breadth. ``seed`` fixes the IVF k-means so rebuilding gives the same index.
    """
    x = _as_matrix(vectors)
    n, dim = x.shape
    if dim == 0:
        raise ValueError("cannot index zero-width vectors")
    gpu = _want_gpu(use_gpu, kind)
    if kind == "flat":
        index: faiss.Index = faiss.IndexFlatIP(dim)
    elif kind == "ivf":
        if n == 0:
            raise ValueError("an IVF index needs at least one vector to train on")
        lists = default_nlist(n) if nlist is None else max(1, min(int(nlist), n))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = max(1, min(int(nprobe), lists))
        index.referenced_objects = [quantizer]  # keep the quantizer alive with the index
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, int(m), faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = int(ef_search)
    else:
        raise ValueError(f"unknown index kind {kind!r} (flat, ivf, hnsw)")
    if gpu:
        index = to_gpu(index)
    if kind == "ivf":
        if hasattr(index, "cp"):  # the GPU IVF index has its own clustering parameters
            index.cp.seed = seed
            index.cp.min_points_per_centroid = 1  # small corpora: no "too few points" warning
        index.train(x)
    if n:
        index.add(x)
    return index


def build_configured_index(vectors: np.ndarray, cfg: EmbedConfig, use_gpu: bool | str = "auto",
                           seed: int = 42) -> faiss.Index:
    """:func:`build_index` with the ``embed`` section's kind and settings (``nlist: 0`` = the
    default list count), as the embed stage builds it."""
    return build_index(vectors, cfg.index, cfg.nlist or None, cfg.nprobe, cfg.hnsw_m,
                       cfg.ef_search, use_gpu, seed=seed)


def to_gpu(index: faiss.Index, device: int = 0) -> faiss.Index:
    """Copy a CPU index to GPU ``device``; the GPU resources stay attached to the result."""
    if not gpu_available():
        raise RuntimeError("faiss has no GPU support or sees no GPU")
    resources = faiss.StandardGpuResources()
    gpu_index = faiss.index_cpu_to_gpu(resources, device, index)
    gpu_index.referenced_objects = [resources]  # freed with the index, not before
    return gpu_index


def is_gpu_index(index: faiss.Index) -> bool:
    """True for a FAISS GPU index."""
    return hasattr(faiss, "GpuIndex") and isinstance(index, faiss.GpuIndex)


def to_cpu(index: faiss.Index) -> faiss.Index:
    """The CPU version of ``index`` (itself if it already is one)."""
    return faiss.index_gpu_to_cpu(index) if is_gpu_index(index) else index


def is_exact(index: faiss.Index) -> bool:
    """True when a search of ``index`` returns the exact nearest neighbours.

    Flat indexes are exact; IVF is exact when it probes every list.
    """
    if is_gpu_index(index):
        if isinstance(index, faiss.GpuIndexFlat):
            return True
        if isinstance(index, faiss.GpuIndexIVF):
            nlist = index.nlist if hasattr(index, "nlist") else index.getNumLists()
            nprobe = index.nprobe if hasattr(index, "nprobe") else index.getNumProbes()
            return nprobe >= nlist
        return False
    cpu = faiss.downcast_index(index)
    if isinstance(cpu, faiss.IndexFlat):
        return True
    if isinstance(cpu, faiss.IndexIVF):
        return cpu.nprobe >= cpu.nlist
    return False


def save_index(index: faiss.Index, path: str | Path) -> None:
    """Write ``index`` as a CPU index (a GPU index is copied to the CPU first)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    faiss.write_index(to_cpu(index), str(path))


def load_index(path: str | Path, use_gpu: bool | str = False) -> faiss.Index:
    """Read an index written by :func:`save_index`, optionally moving it to a GPU.

    Search settings (IVF ``nprobe``, HNSW ``efSearch``) are stored in the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no FAISS index here")
    index = faiss.read_index(str(path))
    kind = "hnsw" if isinstance(faiss.downcast_index(index), faiss.IndexHNSW) else "flat"
    return to_gpu(index) if _want_gpu(use_gpu, kind) else index


def recall_at_1(index: faiss.Index, vectors: np.ndarray, queries: np.ndarray,
                exclude: np.ndarray | None = None, tolerance: float = 1e-5,
                exact: faiss.Index | None = None) -> float:
    """Share of ``queries`` whose top hit in ``index`` is a true nearest row of ``vectors``.

    The truth is an exact float32 inner-product scan (FAISS flat). A hit whose score is
    within ``tolerance`` of the best counts: duplicate reports tie, and either is right.
    ``exclude[i]`` (a row, or -1) is left out of query ``i``'s candidates, for
    leave-one-out queries drawn from the indexed rows themselves. ``exact``, a flat index over
    ``vectors``, saves building one when several query sets are measured.
    """
    x, q = _as_matrix(vectors), _as_matrix(queries, "queries")
    if len(q) == 0 or len(x) == 0:
        raise ValueError("recall needs at least one query and one indexed vector")
    if index.ntotal != len(x):
        raise ValueError(f"the index holds {index.ntotal} vectors, the corpus {len(x)} rows")
    skip = np.full(len(q), -1, np.int64) if exclude is None else np.asarray(exclude, np.int64)
    depth = 1 if exclude is None else 2
    if exact is None:
        exact = build_index(x, "flat", use_gpu=False)
    true_scores, true_ids = exact.search(q, depth)
    found_scores, found_ids = search(index, q, depth)

    def first_kept(scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
        kept = (ids != skip[:, None]) & (ids >= 0)
        pick = np.argmax(kept, axis=1)
        best = scores[np.arange(len(q)), pick]
        return np.where(kept.any(axis=1), best, -np.inf)

    truth = first_kept(true_scores, true_ids)
    found = first_kept(found_scores, found_ids)
    return float(np.mean(found >= truth - tolerance))


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best rows for each query: ``(scores float32 (q, k), ids int64 (q, k))``.

    Scores are inner products (cosine similarity for unit-norm rows), best first. ``k`` is
    clipped to the index size (and to FAISS's GPU limit); an approximate index may return fewer
    hits, padded with id ``-1`` and score ``-inf``.
    """
    q = _as_matrix(queries, "queries")
    if q.shape[1] != index.d:
        raise ValueError(f"queries have width {q.shape[1]}, the index {index.d}")
    k = min(int(k), int(index.ntotal))
    if is_gpu_index(index):
        k = min(k, GPU_MAX_K)
    if k <= 0 or len(q) == 0:
        return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
    scores, ids = index.search(q, k)
    scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
    return scores, ids.astype(np.int64)
