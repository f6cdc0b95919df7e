"""FAISS index: exact by default, IVF exact at nprobe == nlist, CPU round trips, GPU rules."""

from __future__ import annotations

import numpy as np
import pytest

from ekagen.knowledge import index as idx


def unit_vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def corpus() -> tuple[np.ndarray, np.ndarray]:
    return unit_vectors(300, seed=1), unit_vectors(7, seed=2)


def brute_force(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(q @ x.T), axis=1, kind="stable")[:, :k]


def test_flat_is_exact(corpus) -> None:
    x, q = corpus
    index = idx.build_index(x, "flat", use_gpu=False)
    scores, ids = idx.search(index, q, 5)
    np.testing.assert_array_equal(ids, brute_force(x, q, 5))
    np.testing.assert_allclose(scores, np.take_along_axis(q @ x.T, ids, 1), atol=1e-5)
    assert idx.is_exact(index)


def test_ivf_exact_when_probing_every_list(corpus) -> None:
    x, q = corpus
    index = idx.build_index(x, "ivf", nlist=8, nprobe=8, use_gpu=False)
    assert idx.is_exact(index)
    np.testing.assert_array_equal(idx.search(index, q, 5)[1], brute_force(x, q, 5))
    assert not idx.is_exact(idx.build_index(x, "ivf", nlist=8, nprobe=2, use_gpu=False))


def test_nlist_clipped_to_corpus_size() -> None:
    x = unit_vectors(5)
    index = idx.build_index(x, "ivf", nlist=100, nprobe=100, use_gpu=False)
    assert index.nlist == 5 and index.nprobe == 5
    assert idx.default_nlist(10_000) == 400 and idx.default_nlist(1) == 1


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_save_load_round_trip(tmp_path, corpus, kind) -> None:
    x, q = corpus
    index = idx.build_index(x, kind, nlist=8, nprobe=3, use_gpu=False)
    path = tmp_path / "deep" / f"{kind}.faiss"
    idx.save_index(index, path)
    loaded = idx.load_index(path)
    for a, b in zip(idx.search(index, q, 4), idx.search(loaded, q, 4), strict=True):
        np.testing.assert_array_equal(a, b)


def test_search_clips_k_and_handles_empty(corpus) -> None:
    x, q = corpus
    index = idx.build_index(x[:3], "flat", use_gpu=False)
    scores, ids = idx.search(index, q, 10)
    assert ids.shape == (7, 3) and scores.dtype == np.float32 and ids.dtype == np.int64
    empty = idx.build_index(np.zeros((0, 16), np.float32), "flat", use_gpu=False)
    assert idx.search(empty, q, 3)[1].shape == (7, 0)
    with pytest.raises(ValueError, match="width"):
        idx.search(index, q[:, :4], 1)


def test_bad_arguments(corpus) -> None:
    x, _ = corpus
    with pytest.raises(ValueError, match="kind"):
        idx.build_index(x, "lsh", use_gpu=False)
    with pytest.raises(ValueError, match="use_gpu"):
        idx.build_index(x, use_gpu="yes")
    with pytest.raises(FileNotFoundError):
        idx.load_index("/nonexistent/index.faiss")


@pytest.mark.skipif(idx.gpu_available(), reason="checks the no-GPU error")
def test_use_gpu_true_without_gpu_is_a_clear_error(corpus) -> None:
    with pytest.raises(RuntimeError, match="no GPU"):
        idx.build_index(corpus[0], use_gpu=True)
    assert idx.build_index(corpus[0], use_gpu="auto").ntotal == 300  # auto falls back to CPU


@pytest.mark.skipif(not idx.gpu_available(), reason="needs faiss with GPU support and a GPU")
@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_gpu_index_matches_cpu_and_saves_as_cpu(tmp_path, corpus, kind) -> None:
    x, q = corpus
    gpu = idx.build_index(x, kind, nlist=8, nprobe=8, use_gpu=True)
    assert idx.is_gpu_index(gpu) and idx.is_exact(gpu)
    np.testing.assert_array_equal(idx.search(gpu, q, 5)[1], brute_force(x, q, 5))
    idx.save_index(gpu, tmp_path / "gpu.faiss")
    assert not idx.is_gpu_index(idx.load_index(tmp_path / "gpu.faiss"))


def clustered(n: int, dim: int = 16, clusters: int = 40, seed: int = 0) -> np.ndarray:
    """Points around a few centres, like report embeddings: IVF's cells then matter."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    x = centres[rng.integers(clusters, size=n)] + 0.35 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_recall_is_one_for_exact_indexes_and_drops_when_ivf_probes_one_cell() -> None:
    x, q = clustered(2000), clustered(300, seed=5)
    assert idx.recall_at_1(idx.build_index(x, "flat", use_gpu=False), x, q) == 1.0
    every = idx.build_index(x, "ivf", nlist=64, nprobe=64, use_gpu=False)
    assert idx.recall_at_1(every, x, q) == 1.0
    one = idx.build_index(x, "ivf", nlist=64, nprobe=1, use_gpu=False)
    truth = brute_force(x, q, 1)[:, 0]
    _, ids = idx.search(one, q, 1)
    assert idx.recall_at_1(one, x, q) == pytest.approx(np.mean(ids[:, 0] == truth))
    assert idx.recall_at_1(one, x, q) < 0.95


def test_recall_counts_a_tied_duplicate_and_leaves_the_query_row_out() -> None:
    x = unit_vectors(50, seed=3)
    x[7] = x[3]  # a duplicate report: either row is a right answer
    rows = np.array([3, 7, 10])
    flat = idx.build_index(x, "flat", use_gpu=False)
    assert idx.recall_at_1(flat, x, x[rows], exclude=rows) == 1.0

    class WrongSecond:  # returns the query row, then the worst row, as a broken index would
        ntotal, d = len(x), x.shape[1]

        def search(self, q, k):
            worst = np.argmin(q @ x.T, axis=1)
            ids = np.stack([rows, worst], axis=1)[:, :k]
            return np.take_along_axis(q @ x.T, ids, 1).astype(np.float32), ids

    # rows 3 and 7 are each other's truth; the broken index misses all three
    assert idx.recall_at_1(WrongSecond(), x, x[rows], exclude=rows) == 0.0
    with pytest.raises(ValueError, match="holds 50 vectors, the corpus 49"):
        idx.recall_at_1(flat, x[:49], x[:2])
