"""IEK lookup: every branch of the rule, batching, determinism, never a KeyError."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ekagen.data.vocab import Vocabulary
from ekagen.knowledge.iek import KnowledgeBase
from ekagen.observations import OBSERVATIONS

CARDIO, EFFUSION, NORMAL = 1, 9, 8  # column numbers in OBSERVATIONS order


def key(*positives: int) -> str:
    return "".join("1" if j in positives else "0" for j in range(14))


def labels(*positives: int) -> np.ndarray:
    row = np.zeros(14, dtype=np.int64)
    row[list(positives)] = 1
    return row


def rks_table(combos: list[tuple[str, int, list[int]]],
              observations: list[tuple[int, list[int]]]) -> pd.DataFrame:
    """RKS rows like build_rks writes: (key, support, content tokens) / (observation, tokens)."""
    rows = []
    for k, support, tokens in combos:
        rows.append({"key": k, "level": "combination", "observation": None, "sub": 0, "rank": 0,
                     "report_id": f"c:{k}", "token_ids": [1, *tokens, 2], "support": support})
        rows.append({"key": k, "level": "combination", "observation": None, "sub": 0, "rank": 1,
                     "report_id": "second", "token_ids": [1, 99, 2], "support": support})
    for j, tokens in observations:
        name = OBSERVATIONS[j]
        rows.append({"key": name, "level": "observation", "observation": name, "sub": 0,
                     "rank": 0, "report_id": f"o:{name}", "token_ids": [1, *tokens, 2],
                     "support": 5})
        rows.append({"key": name, "level": "observation", "observation": name, "sub": 1,
                     "rank": 0, "report_id": "sub1", "token_ids": [1, 98, 2], "support": 1})
    return pd.DataFrame(rows)


@pytest.fixture
def kb() -> KnowledgeBase:
    combos = [(key(CARDIO), 10, [10, 11]), (key(EFFUSION), 30, [20, 21]),
              (key(NORMAL), 50, [30]), (key(CARDIO, EFFUSION, 3), 2, [40])]
    observations = [(CARDIO, [10]), (EFFUSION, [20, 21, 22]), (NORMAL, [30]), (3, [50])]
    return KnowledgeBase.from_rks(rks_table(combos, observations), 8, max_hamming=1)


def used_keys(kb: KnowledgeBase, batch: np.ndarray) -> list[str]:
    """The key :meth:`KnowledgeBase.lookup` used per row (``""`` for the empty fallback)."""
    return [m.key for m in kb.lookup_details(batch)]


def seq(*tokens: int, length: int = 8) -> list[int]:
    return [1, *tokens, 2] + [0] * (length - len(tokens) - 2)


def test_exact_combination(kb) -> None:
    out = kb.lookup(labels(CARDIO)[None])
    assert out.dtype == np.int64 and out.shape == (1, 8)
    assert out[0].tolist() == seq(10, 11)
    (match,) = kb.lookup_details(labels(CARDIO)[None])
    assert (match.rule, match.key, match.hamming, match.report_ids) == (
        "exact", key(CARDIO), 0, (f"c:{key(CARDIO)}",))


def test_nearest_hamming_tie_broken_by_support(kb) -> None:
    # Cardio+Effusion is 1 away from Cardio (support 10) and Effusion (support 30)
    query = labels(CARDIO, EFFUSION)[None]
    assert used_keys(kb, query) == [key(EFFUSION)]
    assert kb.lookup(query)[0].tolist() == seq(20, 21)
    assert kb.lookup_details(query)[0].rule == "nearest"


def test_tie_on_support_broken_by_key_string() -> None:
    combos = [(key(EFFUSION), 5, [20]), (key(CARDIO), 5, [10])]
    kb = KnowledgeBase.from_rks(rks_table(combos, []), 8)
    assert used_keys(kb, labels(CARDIO, EFFUSION)[None]) == [min(key(CARDIO), key(EFFUSION))]


def test_join_when_too_far_truncated_to_max_len(kb) -> None:
    # 3 bits away from every known key, beyond max_hamming=1
    query = labels(CARDIO, EFFUSION, 12, 0)[None]  # Atelectasis(0) is unknown: left out
    (match,) = kb.lookup_details(query)
    assert match.rule == "join"
    assert match.key == "Cardiomegaly+Pleural Effusion"
    assert match.report_ids == ("o:Cardiomegaly", "o:Pleural Effusion")
    # [bos, 10, 20, 21, 22, eos] fits in 8; a shorter max_len truncates and keeps eos
    assert kb.lookup(query)[0].tolist() == seq(10, 20, 21, 22)
    short = KnowledgeBase.from_rks(
        rks_table([(key(NORMAL), 1, [30])], [(CARDIO, [10]), (EFFUSION, [20, 21, 22])]),
        4, max_hamming=0)
    assert short.lookup(labels(CARDIO, EFFUSION)[None])[0].tolist() == [1, 10, 20, 2]


def test_no_finding_skipped_in_join_unless_alone() -> None:
    kb = KnowledgeBase.from_rks(rks_table([], [(CARDIO, [10]), (NORMAL, [30])]), 8)
    assert used_keys(kb, labels(NORMAL, CARDIO)[None]) == ["Cardiomegaly"]
    assert used_keys(kb, labels(NORMAL)[None]) == ["No Finding"]


def test_all_zero_uses_no_finding(kb) -> None:
    zero = np.zeros((1, 14))
    assert used_keys(kb, zero) == [key(NORMAL)]
    assert kb.lookup(zero)[0].tolist() == seq(30)
    only_obs = KnowledgeBase.from_rks(rks_table([], [(NORMAL, [31])]), 8)
    assert only_obs.lookup(zero)[0].tolist() == seq(31)


def test_nearest_unbounded_when_join_finds_nothing(kb) -> None:
    # Fracture(5) + Pneumothorax(12) + Lung Lesion(6): far from every key, no observation RKS
    (match,) = kb.lookup_details(labels(5, 12, 6)[None])
    assert match.rule == "nearest_unbounded" and match.key == key(NORMAL)  # tie: support 50


def test_empty_knowledge_base_never_raises() -> None:
    for empty in (KnowledgeBase.from_rks(pd.DataFrame(), 5),
                  KnowledgeBase.from_rks(rks_table([], []), 5)):
        out = empty.lookup(np.stack([labels(CARDIO), labels()]))
        assert out.tolist() == [[1, 2, 0, 0, 0]] * 2
        assert used_keys(empty, labels()[None]) == [""]
        assert len(empty) == 0


def test_batch_equals_row_by_row_and_is_deterministic(kb) -> None:
    rng = np.random.default_rng(0)
    batch = (rng.random((64, 14)) < 0.15).astype(np.float32)
    batch[:3] = [labels(CARDIO), labels(), labels(CARDIO, EFFUSION)]
    out = kb.lookup(batch)
    rows = np.concatenate([kb.lookup(batch[i : i + 1]) for i in range(len(batch))])
    np.testing.assert_array_equal(out, rows)
    np.testing.assert_array_equal(out, kb.lookup(batch))
    assert used_keys(kb, batch) == [k for i in range(64) for k in used_keys(kb, batch[i:i + 1])]
    assert {m.rule for m in kb.lookup_details(batch)} >= {"exact", "nearest", "join"}
    assert kb.lookup(batch[:0]).shape == (0, 8)


def test_unbounded_hamming_and_vocabulary(kb) -> None:
    vocab = Vocabulary(["<pad>", "<bos>", "<eos>", "<unk>"], 1, max_length=6)
    table = rks_table([(key(NORMAL), 3, [30])], [(CARDIO, [10])])
    unbounded = KnowledgeBase.from_rks(table, vocab)
    assert unbounded.max_len == 6
    assert used_keys(unbounded, labels(5, 6, 7, CARDIO)[None]) == [key(NORMAL)]
    with pytest.raises(ValueError, match="shape"):
        kb.lookup(np.zeros(14))
    with pytest.raises(ValueError):
        KnowledgeBase.from_rks(table, 1)


def test_from_rks_parquet_written_by_build_rks(tmp_path) -> None:
    from ekagen.knowledge.pks import build_pks
    from ekagen.knowledge.rks import build_rks

    rng = np.random.default_rng(2)
    x = rng.standard_normal((30, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    frame = pd.DataFrame(rng.choice([1.0, 0.0], size=(30, 14), p=[0.2, 0.8]),
                         columns=list(OBSERVATIONS))
    reports = [f"report {'x ' * (i % 5)}number {i} ." for i in range(30)]
    vocab = Vocabulary.build(reports, 1, 10)
    rks = build_rks(build_pks(x, frame).table, x, [str(i) for i in range(30)], reports, vocab)
    rks.to_parquet(tmp_path / "rks.parquet")
    fresh = KnowledgeBase.from_rks(rks, vocab, max_hamming=2)
    loaded = KnowledgeBase.from_rks(pd.read_parquet(tmp_path / "rks.parquet"), vocab,
                                    max_hamming=2)
    batch = frame.to_numpy() == 1
    np.testing.assert_array_equal(fresh.lookup(batch), loaded.lookup(batch))
    # a training row's own combination is known: an exact match (all-zero rows -> No Finding)
    some = batch[batch.any(axis=1)]
    assert {m.rule for m in loaded.lookup_details(some)} == {"exact"}
    assert vocab.decode(loaded.lookup(batch[:1])[0]).startswith("report")


def _bernoulli_log_likelihood(p: np.ndarray, bits: np.ndarray) -> float:
    return float(np.sum(bits * np.log(p) + (1 - bits) * np.log(1 - p)))


def test_likelihood_picks_the_known_combination_the_probabilities_favour(kb) -> None:
    """Three findings just under 0.5: thresholding sees nothing (-> No Finding), while the
    likelihood prefers Cardiomegaly alone (hand-computed below) over the other known keys."""
    p = np.full(14, 0.02)
    p[[CARDIO, EFFUSION, 3]] = [0.48, 0.45, 0.45]
    p[NORMAL] = 0.1
    scores = {k: _bernoulli_log_likelihood(p, labels(*c).astype(float)) for k, c in
              {"cardio": (CARDIO,), "effusion": (EFFUSION,), "normal": (NORMAL,),
               "triple": (CARDIO, EFFUSION, 3)}.items()}
    assert max(scores, key=scores.get) == "cardio"
    chosen = kb.most_likely_labels(p[None])
    assert chosen.dtype == np.float32 and chosen[0].tolist() == labels(CARDIO).tolist()
    assert kb.lookup(chosen)[0].tolist() == seq(10, 11)
    assert kb.lookup((p >= 0.5)[None].astype(float))[0].tolist() == seq(30)  # threshold rule


def test_likelihood_agrees_with_confident_probabilities_and_breaks_ties_by_support(kb) -> None:
    confident = np.full((2, 14), 0.01)
    confident[0, [CARDIO, EFFUSION, 3]] = 0.99
    confident[1, NORMAL] = 0.97
    assert kb.most_likely_labels(confident).tolist() == [
        labels(CARDIO, EFFUSION, 3).tolist(), labels(NORMAL).tolist()]
    # every single-finding key scores the same when its two bits are at 0.5: support decides
    flat = np.full((1, 14), 0.01)
    flat[0, [CARDIO, EFFUSION, NORMAL]] = 0.5
    assert kb.most_likely_labels(flat)[0].tolist() == labels(NORMAL).tolist()  # support 50


def test_likelihood_rejects_bad_probabilities_and_thresholds_without_combinations(kb) -> None:
    with pytest.raises(ValueError, match=r"shape \(B, 14\)"):
        kb.most_likely_labels(np.zeros((2, 13)))
    for bad in (np.nan, 1.5, -0.1):
        row = np.zeros((1, 14))
        row[0, 3] = bad
        with pytest.raises(ValueError, match="within \\[0, 1\\]"):
            kb.most_likely_labels(row)
    empty = KnowledgeBase([], [], [], [], {}, {}, 8)
    p = np.zeros((1, 14))
    p[0, [CARDIO, EFFUSION]] = [0.7, 0.3]
    assert empty.most_likely_labels(p)[0].tolist() == labels(CARDIO).tolist()


def test_diagnosed_knowledge_labels_follow_the_rule(kb) -> None:
    from ekagen.generation.data import diagnosed_knowledge_labels

    diagnosis = pd.DataFrame([labels(), labels(EFFUSION)], columns=list(OBSERVATIONS))
    probs = np.full((2, 14), 0.02)
    probs[0, [CARDIO, NORMAL]] = [0.45, 0.2]  # thresholded: nothing; likelihood: Cardiomegaly
    probs[1, EFFUSION] = 0.9
    for j, name in enumerate(OBSERVATIONS):
        diagnosis[f"prob:{name}"] = probs[:, j]
    threshold = diagnosed_knowledge_labels(diagnosis, kb, "threshold")
    assert threshold.tolist() == [labels().tolist(), labels(EFFUSION).tolist()]
    likely = diagnosed_knowledge_labels(diagnosis, kb, "likelihood")
    assert likely.tolist() == [labels(CARDIO).tolist(), labels(EFFUSION).tolist()]
    with pytest.raises(ValueError, match="iek.rule"):
        diagnosed_knowledge_labels(diagnosis, kb, "vote")
    with pytest.raises(ValueError, match="needs the class probabilities"):
        diagnosed_knowledge_labels(diagnosis[list(OBSERVATIONS)], kb, "likelihood")
