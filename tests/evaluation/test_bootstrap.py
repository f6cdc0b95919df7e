"""Paired bootstrap: exact agreement with pycocoevalcap and ce_scores, pairing, p-values."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.rouge.rouge import Rouge

from ekagen.evaluation.bootstrap import (
    paired_bootstrap,
    per_study_table,
    resample_metrics,
    study_statistics,
)
from ekagen.evaluation.ce import PROTOCOLS, ce_scores
from ekagen.evaluation.nlg import _prepare, nlg_scores, nlg_scores_with_studies

SENTENCES = [
    "the heart is normal in size", "the lungs are clear", "no pleural effusion",
    "no pneumothorax", "there is mild cardiomegaly", "small left pleural effusion",
    "the mediastinum is unremarkable", "degenerative changes of the spine",
    "right lower lobe opacity may represent pneumonia", "no focal consolidation",
    "there is a right chest tube", "the aorta is tortuous", "lungs are hyperexpanded",
    "there is no acute cardiopulmonary abnormality", "bibasilar atelectasis",
]
N = 48


def _reports(rng: np.random.Generator, n: int) -> list[str]:
    return [" . ".join(rng.choice(SENTENCES, size=rng.integers(1, 5), replace=True)) + " ."
            for _ in range(n)]


def _labels(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice([1.0, 0.0, -1.0, np.nan], size=(n, 14), p=[0.3, 0.3, 0.1, 0.3])


@pytest.fixture(scope="module")
def corpus() -> dict:
    rng = np.random.default_rng(7)
    references = _reports(rng, N)
    generated = _reports(rng, N)
    generated[3], generated[5] = "", "clear"  # empty (scored as ".") and a single word
    return {"references": references, "generated": generated,
            "ref_values": _labels(rng, N), "gen_values": _labels(rng, N)}


@pytest.fixture(scope="module")
def stats(corpus):
    return study_statistics(corpus["generated"], corpus["references"], corpus["gen_values"],
                            corpus["ref_values"])


def _coco(generated: list[str], references: list[str]) -> dict[str, float]:
    gts, res = _prepare(references), _prepare(generated)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return {**{f"bleu{k + 1}": b for k, b in enumerate(bleu)},
            "rouge_l": Rouge().compute_score(gts, res)[0],
            "cider": Cider().compute_score(gts, res)[0]}


def _materialise(corpus: dict, counts: np.ndarray) -> dict:
    index = np.repeat(np.arange(N), counts.astype(int))
    return {"generated": [corpus["generated"][i] for i in index],
            "references": [corpus["references"][i] for i in index],
            "gen_values": corpus["gen_values"][index], "ref_values": corpus["ref_values"][index]}


def test_unit_weights_equal_pycocoevalcap(corpus, stats):
    expected = _coco(corpus["generated"], corpus["references"])
    got = resample_metrics(stats)
    for key, value in expected.items():
        assert got[key].shape == (1,)
        assert got[key][0] == pytest.approx(value, abs=1e-9), key
    assert expected["cider"] > 0.1 and expected["bleu4"] > 0.01  # a non-trivial corpus


def test_materialised_resamples_equal_pycocoevalcap(corpus, stats):
    rng = np.random.default_rng(3)
    weights = rng.multinomial(N, np.full(N, 1 / N), size=3).astype(float)
    uneven = np.zeros(N)
    uneven[:10] = [3, 1, 0, 2, 5, 1, 1, 0, 4, 1]  # few studies, heavy duplication
    weights = np.vstack([weights, uneven])
    got = resample_metrics(stats, weights)
    for r, counts in enumerate(weights):
        sample = _materialise(corpus, counts)
        for key, value in _coco(sample["generated"], sample["references"]).items():
            assert got[key][r] == pytest.approx(value, abs=1e-9), (key, r)
    assert len(set(np.round(got["cider"], 9))) == 4  # the resamples really differ


def test_unit_weights_equal_nlg_and_ce_scores(corpus, stats):
    got = {k: round(float(v[0]), 6) for k, v in resample_metrics(stats).items()}
    nlg = nlg_scores(corpus["generated"], corpus["references"], meteor=False)
    ce = ce_scores(corpus["gen_values"], corpus["ref_values"])
    ce.pop("per_class")
    assert {k: got[k] for k in nlg} == nlg
    assert {k: got[k] for k in ce} == ce
    assert set(got) == set(nlg) | set(ce)


def test_ce_of_resample_equals_ce_scores_of_materialised_resample(corpus, stats):
    weights = np.random.default_rng(11).multinomial(N, np.full(N, 1 / N), size=3)
    got = resample_metrics(stats, weights)
    for r, counts in enumerate(weights):
        sample = _materialise(corpus, counts)
        expected = ce_scores(sample["gen_values"], sample["ref_values"])
        for key in (k for k in expected if k != "per_class"):
            assert round(float(got[key][r]), 6) == expected[key], (key, r)


def test_nlg_scores_with_studies_is_one_pass_of_both(corpus, stats):
    scores, studies = nlg_scores_with_studies(corpus["generated"], corpus["references"],
                                              meteor=False)
    assert scores == nlg_scores(corpus["generated"], corpus["references"], meteor=False)
    gts, res = _prepare(corpus["references"]), _prepare(corpus["generated"])
    assert studies["bleu4"].tolist() == Bleu(4).compute_score(gts, res, verbose=0)[1][3]
    assert studies["rouge_l"].tolist() == Rouge().compute_score(gts, res)[1].tolist()
    assert set(studies) == {"bleu4", "rouge_l"}
    reused = study_statistics(corpus["generated"], corpus["references"], corpus["gen_values"],
                              corpus["ref_values"], per_study=studies)
    np.testing.assert_allclose(reused.sentence_bleu4, stats.sentence_bleu4, rtol=0, atol=1e-12)
    assert reused.rouge_l.tolist() == stats.rouge_l.tolist()


def test_per_study_table(corpus, stats):
    other = study_statistics(corpus["references"], corpus["references"],
                             corpus["ref_values"], corpus["ref_values"])
    ids = [f"CXR{i}" for i in range(N)]
    table = per_study_table({"ekagen": stats, "oracle": other}, ids)
    assert list(table.columns) == ["system", "id", "bleu4", "rouge_l", "ce14_example_f1"]
    assert table.system.tolist() == ["ekagen"] * N + ["oracle"] * N
    assert table.id.tolist() == ids + ids
    gts, res = _prepare(corpus["references"]), _prepare(corpus["generated"])
    sentence = Bleu(4).compute_score(gts, res, verbose=0)[1][3]
    np.testing.assert_allclose(table.bleu4[:N], sentence, rtol=0, atol=1e-12)
    assert table.rouge_l[:N].tolist() == Rouge().compute_score(gts, res)[1].tolist()
    assert table.rouge_l[N:].tolist() == [1.0] * N
    pred, ref = corpus["gen_values"][0] == 1, corpus["ref_values"][0] == 1
    tp, fp, fn = (pred & ref).sum(), (pred & ~ref).sum(), (~pred & ref).sum()
    assert table.ce14_example_f1[0] == pytest.approx(2 * tp / (2 * tp + fp + fn), abs=1e-12)
    with pytest.raises(ValueError, match="ids"):
        per_study_table({"ekagen": stats}, ids[:-1])


def test_identical_systems_differ_by_exactly_zero(corpus, stats):
    twin = study_statistics(corpus["generated"], corpus["references"], corpus["gen_values"],
                            corpus["ref_values"])
    out = paired_bootstrap({"ekagen": stats, "twin": twin}, resamples=50, seed=1)
    differences = out["differences"]["ekagen-twin"]
    assert set(differences) == set(out["systems"]["ekagen"])
    for cell in differences.values():
        assert cell == {"value": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}
    assert out["systems"]["ekagen"] == out["systems"]["twin"]


def test_better_system_is_significant(corpus, stats):
    rng = np.random.default_rng(5)
    # the references with one sentence dropped and the reference labels: much better
    better = [" . ".join(r.split(" . ")[1:]) or r for r in corpus["references"]]
    noisy = corpus["ref_values"].copy()
    noisy[rng.random(noisy.shape) < 0.05] = 0.0
    good = study_statistics(better, corpus["references"], noisy, corpus["ref_values"])
    out = paired_bootstrap({"ekagen": good, "weak": stats}, resamples=400, seed=0)
    for key in ("bleu4", "cider", "rouge_l", "ce14_micro_f1", "ce5_macro_f1"):
        cell = out["differences"]["ekagen-weak"][key]
        assert cell["p_value"] < 0.05, key
        assert 0 < cell["low"] < cell["value"] < cell["high"], key


def test_matches_independent_resamples_and_p_value_formula(corpus, stats):
    other = study_statistics(list(reversed(corpus["generated"])), corpus["references"],
                             corpus["gen_values"][::-1], corpus["ref_values"])
    out = paired_bootstrap({"other": other, "ekagen": stats}, resamples=120, seed=9,
                           confidence=0.9, chunk=7)
    weights = np.random.default_rng(9).multinomial(N, np.full(N, 1 / N), size=120)
    mine, theirs = resample_metrics(stats, weights), resample_metrics(other, weights)
    full = resample_metrics(stats)
    assert out["studies"] == N and out["resamples"] == 120 and out["confidence"] == 0.9
    assert list(out["differences"]) == ["ekagen-other"]
    for key in ("bleu2", "cider", "rouge_l", "ce14u_example_f1"):
        cell = out["systems"]["ekagen"][key]
        low, high = np.quantile(mine[key], [0.05, 0.95])
        assert (cell["low"], cell["high"]) == (round(low, 6), round(high, 6))
        assert cell["value"] == round(float(full[key][0]), 6)
        d = mine[key] - theirs[key]
        p = min(1, 2 * min(((d <= 0).sum() + 1) / 121, ((d >= 0).sum() + 1) / 121))
        assert out["differences"]["ekagen-other"][key]["p_value"] == round(p, 6)


def test_seed_reproducibility_and_chunk_independence(corpus, stats):
    other = study_statistics(corpus["references"], corpus["references"],
                             corpus["ref_values"], corpus["ref_values"])
    systems = {"ekagen": stats, "oracle": other}
    first = paired_bootstrap(systems, resamples=60, seed=4)
    assert paired_bootstrap(systems, resamples=60, seed=4, chunk=13) == first
    different = paired_bootstrap(systems, resamples=60, seed=5)
    assert different["systems"]["ekagen"]["cider"] != first["systems"]["ekagen"]["cider"]
    assert different["systems"]["ekagen"]["cider"]["value"] == \
        first["systems"]["ekagen"]["cider"]["value"]


def test_keys_and_json_types(stats):
    out = paired_bootstrap({"ekagen": stats}, resamples=5)
    expected = ["bleu1", "bleu2", "bleu3", "bleu4", "rouge_l", "cider"]
    ce_keys = [k for k in resample_metrics(stats) if k not in expected]
    assert len(ce_keys) == 3 * 3 * 2 + 3 * 2 * 2 and ce_keys[0].startswith(PROTOCOLS[0].name)
    assert list(out["systems"]["ekagen"]) == expected + ce_keys
    assert out["differences"] == {}
    cell = out["systems"]["ekagen"]["bleu4"]
    assert [type(v) for v in cell.values()] == [float, float, float]


def test_validation_errors(corpus, stats):
    short = study_statistics(corpus["generated"][:10], corpus["references"][:10],
                             corpus["gen_values"][:10], corpus["ref_values"][:10])
    with pytest.raises(ValueError, match="study count"):
        paired_bootstrap({"ekagen": stats, "short": short})
    with pytest.raises(ValueError, match="resamples"):
        paired_bootstrap({"ekagen": stats}, resamples=0)
    with pytest.raises(ValueError, match="primary system 'ekagen'"):
        paired_bootstrap({"other": stats})
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap({"ekagen": stats}, confidence=1.0)
    with pytest.raises(ValueError, match="weights"):
        resample_metrics(stats, np.ones((2, N - 1)))
    with pytest.raises(ValueError, match="label rows"):
        study_statistics(corpus["generated"], corpus["references"], corpus["gen_values"][:5],
                         corpus["ref_values"][:5])
    with pytest.raises(ValueError, match="generated reports"):
        study_statistics(corpus["generated"][:5], corpus["references"], corpus["gen_values"],
                         corpus["ref_values"])


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="METEOR needs Java")
def test_meteor_segments(corpus):
    scores, studies = nlg_scores_with_studies(corpus["generated"][:12],
                                              corpus["references"][:12], meteor=True)
    s = study_statistics(corpus["generated"][:12], corpus["references"][:12],
                         corpus["gen_values"][:12], corpus["ref_values"][:12], meteor=True)
    assert s.meteor.tolist() == studies["meteor"].tolist()
    mean = resample_metrics(s)["meteor_segment_mean"][0]
    assert mean == pytest.approx(studies["meteor"].mean(), 1e-12)
    assert 0 < scores["meteor"] < 1
    table = per_study_table({"ekagen": s}, [str(i) for i in range(12)])
    assert list(table.columns) == ["system", "id", "bleu4", "meteor", "rouge_l",
                                   "ce14_example_f1"]
    out = paired_bootstrap({"ekagen": s}, resamples=20)
    assert list(out["systems"]["ekagen"])[4] == "meteor_segment_mean"
