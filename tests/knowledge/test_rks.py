"""RKS: the nearest real report carrying each key, equal to brute force; metrics."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ekagen.data.vocab import Vocabulary
from ekagen.knowledge.index import build_index
from ekagen.knowledge.pks import build_pks, centres_matrix
from ekagen.knowledge.rks import build_rks, knowledge_metrics, nearest_members
from ekagen.observations import OBSERVATIONS


def unit_vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def random_labels(n: int, seed: int = 0) -> pd.DataFrame:
    values = np.random.default_rng(seed).choice([1.0, 0.0, np.nan], size=(n, 14),
                                                p=[0.2, 0.4, 0.4])
    return pd.DataFrame(values, columns=list(OBSERVATIONS))


def brute_force(x: np.ndarray, centre: np.ndarray, members: np.ndarray, k: int) -> list[int]:
    scores = x[members].astype(np.float64) @ centre.astype(np.float64)
    return [int(members[i]) for i in np.lexsort((members, -scores))[:k]]


REPORTS = ["the heart is normal .", "the heart is enlarged .", "small pleural effusion .",
           "no pneumothorax ."]


@pytest.fixture(scope="module")
def corpus():
    n = 400
    x, labels = unit_vectors(n, seed=5), random_labels(n, seed=6)
    pks = build_pks(x, labels, min_support=2).table
    ids = [f"r{i}" for i in range(n)]
    reports = [REPORTS[i % 4] for i in range(n)]
    vocab = Vocabulary.build(REPORTS, min_freq=1, max_length=6)
    return x, pks, ids, reports, vocab


@pytest.mark.parametrize("kind,candidates", [(None, 0), ("flat", 256), ("flat", 3),
                                             ("ivf", 16), ("hnsw", 400)])
def test_rks_equals_brute_force(corpus, kind, candidates) -> None:
    x, pks, ids, reports, vocab = corpus
    index = None if kind is None else build_index(x, kind, nlist=10, nprobe=10, use_gpu=False)
    rks = build_rks(pks, x, ids, reports, vocab, index=index, k=2, candidates=candidates)
    centres = centres_matrix(pks)
    for i, row in pks.reset_index(drop=True).iterrows():
        got = rks[rks["key"] == row["key"]].sort_values("rank")
        want = brute_force(x, centres[i], np.asarray(row["members"]), 2)
        assert got["row"].tolist() == want
        assert got["report_id"].tolist() == [f"r{w}" for w in want]
        cos = x[want] @ centres[i] / np.linalg.norm(centres[i])
        np.testing.assert_allclose(got["distance"], 1 - cos, atol=1e-5)
        assert (got["support"] == row["support"]).all()


def test_global_nearest_not_carrying_key_is_skipped() -> None:
    # the report closest to the Edema centre is an Effusion report: RKS must not pick it
    x = np.array([[1, 0, 0], [0.6, 0.8, 0], [0.6, -0.8, 0], [0, 0, 1]], dtype=np.float32)
    labels = pd.DataFrame([{"Pleural Effusion": 1.0}, {"Edema": 1.0}, {"Edema": 1.0},
                           {"Pneumothorax": 1.0}]).reindex(columns=list(OBSERVATIONS))
    pks = build_pks(x, labels.astype(float), combinations=False).table
    edema = pks[pks["key"] == "Edema"]
    assert np.argmax(x @ centres_matrix(edema)[0]) == 0  # the global nearest: not Edema
    vocab = Vocabulary.build(REPORTS, min_freq=1, max_length=10)
    index = build_index(x, "flat", use_gpu=False)
    for candidates in (1, 4):
        rks = build_rks(pks, x, list("abcd"), REPORTS, vocab, index=index,
                        candidates=candidates)
        row = rks[rks["key"] == "Edema"].iloc[0]
        assert row["row"] == 1 and row["report_id"] == "b"  # tie 1 vs 2: lower row
        assert row["report"] == REPORTS[1]
        assert list(row["token_ids"]) == vocab.encode(REPORTS[1])


def test_k_clipped_to_support_and_token_length(corpus) -> None:
    x, pks, ids, reports, vocab = corpus
    rks = build_rks(pks, x, ids, reports, vocab, k=1000, max_length=4)
    counts = rks.groupby("key")["rank"].max() + 1
    assert (counts == pks.set_index("key").loc[counts.index, "support"]).all()
    assert all(len(t) <= 4 and t[-1] == vocab.eos_id for t in rks["token_ids"])
    with pytest.raises(ValueError):
        build_rks(pks, x, ids[:-1], reports, vocab)


def test_nearest_members_rejects_mismatched_index() -> None:
    x = unit_vectors(10)
    with pytest.raises(ValueError, match="holds"):
        nearest_members(x, x[:1], [np.arange(3)], index=build_index(x[:5], use_gpu=False))


def test_knowledge_metrics_are_flat_and_json(corpus, tmp_path) -> None:
    x, pks, ids, reports, vocab = corpus
    rks = build_rks(pks, x, ids, reports, vocab)
    rks.to_parquet(tmp_path / "rks.parquet")  # the stage's output format
    metrics = knowledge_metrics(pks, rks, len(x), ["Fracture"])
    json.dumps(metrics)
    assert metrics["reports_embedded"] == 400 and metrics["skipped_observations"] == ["Fracture"]
    assert metrics["keys_observation"] == 14
    assert metrics["keys_combination"] == (pks["level"] == "combination").sum()
    assert metrics["support/Cardiomegaly"] == int(pks.set_index("key").loc["Cardiomegaly",
                                                                           "support"])
    assert 0 <= metrics["mean_distance_pks_rks"] <= 2
    assert all(not isinstance(v, dict) for v in metrics.values())


def test_index_recall_measures_centre_and_report_queries(corpus) -> None:
    from ekagen.knowledge.rks import index_recall

    x, pks, *_ = corpus
    flat = index_recall(build_index(x, "flat", use_gpu=False), x, pks, seed=0, sample=100)
    assert flat["index_type"] == "IndexFlatIP" and flat["index_exact"] is True
    assert flat["index_recall_at_1/centres"] == flat["index_recall_at_1/reports"] == 1.0
    assert flat["index_recall_queries/centres"] == len(pks)
    assert flat["index_recall_queries/reports"] == 100
    coarse = index_recall(build_index(x, "ivf", nlist=40, nprobe=1, use_gpu=False), x, pks,
                          seed=0, sample=100)
    assert coarse["index_exact"] is False
    assert coarse["index_recall_at_1/reports"] < 0.9  # one cell of 40 misses most neighbours
    json.dumps(coarse)


def test_exact_agreement_counts_keys_whose_report_is_as_near_as_the_exact_one(corpus) -> None:
    from ekagen.knowledge.rks import exact_agreement

    x, pks, ids, reports, vocab = corpus
    exact = build_rks(pks, x, ids, reports, vocab, None)
    assert exact_agreement(exact, exact) == 1.0
    worse = exact.copy()
    worse.loc[worse.index[:3], "distance"] += 0.05  # three keys got a farther report
    assert exact_agreement(worse, exact) == pytest.approx(1 - 3 / len(exact))
