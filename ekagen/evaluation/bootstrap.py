"""Paired bootstrap over test studies: a confidence interval for every metric of every system,
and for the difference between the primary system and each other one.

Why paired: every system is scored on the same test studies, so the studies' difficulty is
shared. Drawing the *same* resamples of studies for every system (one (resamples, n) matrix of
multinomial draw counts, a study drawn twice counting twice) keeps that pairing, and the
interval of a difference is much narrower, and honest, compared with two independent intervals.

What is resampled: test studies (generated report, reference report and their labels travel
together). Nothing is re-scored per resample; each study's sufficient statistics are computed
once (:func:`study_statistics`) and every resample is a weighted sum of them
(:func:`resample_metrics`), vectorised over resamples:

* recomputed per resample as corpus metrics: BLEU-1..4 (pycocoevalcap's formula on the summed
  clipped matches, guesses, hypothesis and "closest" reference lengths, its smoothing constants
  and brevity penalty), CIDEr-D (n = 1..4, sigma 6, clipping, x10, with the document frequency
  and the log corpus size *of the resample*, as pycocoevalcap would compute them on the
  duplicated list; sparse term-frequency matrices times the resample's dense idf^2) and the CE
  micro and macro averages (:class:`ekagen.evaluation.ce.StudyCounts`);
* averaged per study (the weighted mean of per-study scores): ROUGE-L (pycocoevalcap's corpus
  score is the mean of its per-study scores), CE example-based averages, and
  ``meteor_segment_mean``.

``meteor_segment_mean`` is the mean of METEOR 1.5 segment scores from one jar run. That is *not*
pycocoevalcap's aggregate METEOR (the jar pools its statistics over all segments before
scoring), so it is named apart from the ``meteor`` of ``metrics/eval.json``,
which keeps the aggregate; this module never computes the aggregate.

With unit weights (``weights=None``) every other metric equals
:func:`ekagen.evaluation.nlg.nlg_scores` and :func:`ekagen.evaluation.ce.ce_scores`.
Intervals are percentile intervals; the two-sided p-value of a difference d is
``min(1, 2 min((#(d <= 0) + 1) / (R + 1), (#(d >= 0) + 1) / (R + 1)))`` over R resamples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import sparse

from ekagen.evaluation.ce import StudyCounts, study_counts
from ekagen.evaluation.nlg import _check, _prepare, meteor_studies, rouge_l_studies

ORDERS = 4  # BLEU and CIDEr n-gram orders 1..4
SIGMA = 6.0  # CIDEr-D length penalty
TINY, SMALL = 1e-15, 1e-9  # pycocoevalcap BLEU's smoothing constants
_BLOCK_FLOATS = 1 << 22  # dense (vocabulary, resamples) arrays stay under 32 MiB each
METHOD = ("paired bootstrap over test studies: the same multinomial resamples for every "
          "system; BLEU, CIDEr-D (resample idf) and CE micro/macro recomputed per resample, "
          "ROUGE-L, METEOR segment scores and CE example scores averaged per study; "
          "percentile intervals, two-sided bootstrap p-values of the differences")

Ngrams = Counter  # Counter[tuple[str, ...]]


def _ngrams(words: list[str]) -> Ngrams:
    counts: Ngrams = Counter()
    for k in range(1, ORDERS + 1):
        counts.update(tuple(words[i:i + k]) for i in range(len(words) - k + 1))
    return counts


@dataclass(frozen=True, eq=False)
class References:
    """The reference side, shared by every system scored against the same references."""

    counts: tuple[Ngrams, ...]
    lengths: np.ndarray  # (n,) words
    vocabulary: dict[tuple[str, ...], int]  # every reference n-gram -> column
    presence_t: sparse.csr_matrix  # (V, n): n-gram in the study's reference
    squared: sparse.csr_matrix  # (4n, V): row 4i + k - 1 holds tf^2 of study i's k-grams
    bigrams: np.ndarray  # (n,) CIDEr's "length" (pycocoevalcap counts bigrams)


@lru_cache(maxsize=2)
def _references(texts: tuple[str, ...]) -> References:
    vocabulary: dict[tuple[str, ...], int] = {}
    counts = tuple(_ngrams(t.split()) for t in texts)
    rows, cols, sq_rows, sq_vals = [], [], [], []
    for i, study in enumerate(counts):
        for gram, c in study.items():
            col = vocabulary.setdefault(gram, len(vocabulary))
            rows.append(i)
            cols.append(col)
            sq_rows.append(ORDERS * i + len(gram) - 1)
            sq_vals.append(float(c * c))
    n, v = len(texts), len(vocabulary)
    presence = sparse.csr_matrix((np.ones(len(rows)), (cols, rows)), shape=(v, n))
    squared = sparse.csr_matrix((sq_vals, (sq_rows, cols)), shape=(ORDERS * n, v))
    lengths = np.array([len(t.split()) for t in texts], dtype=float)
    return References(counts, lengths, vocabulary, presence, squared,
                      np.maximum(lengths - 1, 0))


@dataclass(frozen=True, eq=False)
class StudyStatistics:
    """Everything any resample of one system needs, per test study (n studies)."""

    bleu: np.ndarray  # (n, 10): hypothesis length, closest reference length, correct_1..4,
    #                   guess_1..4
    sentence_bleu4: np.ndarray  # (n,) pycocoevalcap's sentence BLEU-4
    rouge_l: np.ndarray  # (n,)
    meteor: np.ndarray | None  # (n,) segment scores, or None when not computed
    references: References
    clipped: sparse.csr_matrix  # (4n, V) CIDEr numerator terms min(tf_h, tf_r) * tf_r
    hyp_squared: sparse.csr_matrix  # (4n, V) tf_h^2 of hypothesis n-grams some reference has
    hyp_outside: np.ndarray  # (4n,) summed tf_h^2 of n-grams no reference has (idf log N)
    penalty: np.ndarray  # (n,) CIDEr-D's Gaussian length penalty
    ce: list[StudyCounts]

    @property
    def studies(self) -> int:
        return len(self.bleu)


def study_statistics(generated: Sequence[str], references: Sequence[str],
                     predicted_values: np.ndarray, reference_values: np.ndarray,
                     meteor: bool = False,
                     per_study: Mapping[str, np.ndarray] | None = None) -> StudyStatistics:
    """Per-study statistics of one system against the references (texts as in
    :func:`ekagen.evaluation.nlg.nlg_scores`, label values as in
    :func:`ekagen.evaluation.ce.ce_scores`).

    ``per_study`` reuses the per-study scores of
    :func:`ekagen.evaluation.nlg.nlg_scores_with_studies` (so nothing is scored twice); then
    METEOR is included exactly when it holds ``meteor`` and the ``meteor`` flag is ignored.
    Without it, ROUGE-L (and, with ``meteor``, one METEOR run) are scored here.
    """
    _check(generated, references)
    n = len(generated)
    hyp_texts = [v[0] for v in _prepare(generated).values()]
    refs = _references(tuple(v[0] for v in _prepare(references).values()))
    if per_study is None:
        gts, res = _prepare(references), _prepare(generated)
        per_study = {"rouge_l": rouge_l_studies(gts, res)[1]}
        if meteor:
            per_study["meteor"] = meteor_studies(gts, res)[1]
    for key, values in per_study.items():
        if len(values) != n:
            raise ValueError(f"per-study {key!r} has {len(values)} scores for {n} studies")
    ce = study_counts(predicted_values, reference_values)
    if len(ce[0].tp) != n:
        raise ValueError(f"{len(ce[0].tp)} label rows for {n} studies")

    bleu = np.zeros((n, 2 + 2 * ORDERS))
    clip_r, clip_c, clip_v, sq_r, sq_c, sq_v = [], [], [], [], [], []
    outside = np.zeros(ORDERS * n)
    for i, text in enumerate(hyp_texts):
        words, ref = text.split(), refs.counts[i]
        bleu[i, 0], bleu[i, 1] = len(words), refs.lengths[i]  # one reference: it is closest
        bleu[i, 2 + ORDERS:] = [max(0, len(words) - k + 1) for k in range(1, ORDERS + 1)]
        for gram, c in _ngrams(words).items():
            row = ORDERS * i + len(gram) - 1
            rc = ref.get(gram, 0)
            bleu[i, 1 + len(gram)] += min(c, rc)
            col = refs.vocabulary.get(gram)
            if col is None:
                outside[row] += c * c
                continue
            sq_r.append(row)
            sq_c.append(col)
            sq_v.append(float(c * c))
            if rc:
                clip_r.append(row)
                clip_c.append(col)
                clip_v.append(float(min(c, rc) * rc))
    shape = (ORDERS * n, len(refs.vocabulary))
    delta = np.maximum(bleu[:, 0] - 1, 0) - refs.bigrams
    return StudyStatistics(
        bleu=bleu, sentence_bleu4=per_study.get("bleu4", _bleu(bleu)[:, ORDERS - 1]),
        rouge_l=np.asarray(per_study["rouge_l"], dtype=float),
        meteor=None if "meteor" not in per_study else np.asarray(per_study["meteor"], float),
        references=refs,
        clipped=sparse.csr_matrix((clip_v, (clip_r, clip_c)), shape=shape),
        hyp_squared=sparse.csr_matrix((sq_v, (sq_r, sq_c)), shape=shape),
        hyp_outside=outside, penalty=np.e ** (-(delta ** 2) / (2 * SIGMA ** 2)), ce=ce)


def _bleu(sums: np.ndarray) -> np.ndarray:
    """(r, 4) BLEU-1..4 from (r, 10) summed statistics, exactly pycocoevalcap's formula."""
    correct, guess = sums[:, 2:2 + ORDERS], sums[:, 2 + ORDERS:]
    product = np.cumprod((correct + TINY) / (guess + SMALL), axis=1)
    bleus = product ** (1.0 / np.arange(1, ORDERS + 1))
    ratio = (sums[:, 0] + TINY) / (sums[:, 1] + SMALL)
    with np.errstate(over="ignore"):
        brevity = np.where(ratio < 1, np.exp(1 - 1 / ratio), 1.0)
    return bleus * brevity[:, None]


def _reference_side(refs: References, w: np.ndarray) -> tuple[np.ndarray, ...]:
    """idf^2 (V, r), log(N)^2 (r,) and reference norms (4n, r) of the resamples ``w``."""
    frequency = refs.presence_t @ np.ascontiguousarray(w.T)  # document frequency (V, r)
    log_n = np.log(w.sum(1))
    idf = log_n[None, :] - np.log(np.maximum(frequency, 1.0))
    idf2 = idf * idf
    return idf2, log_n * log_n, np.sqrt(refs.squared @ idf2)


def _cider(s: StudyStatistics, w: np.ndarray, side: tuple[np.ndarray, ...]) -> np.ndarray:
    idf2, log_n2, ref_norm = side
    numerator = s.clipped @ idf2
    hyp_norm = np.sqrt(s.hyp_squared @ idf2 + s.hyp_outside[:, None] * log_n2[None, :])
    denominator = hyp_norm * ref_norm
    cosine = np.divide(numerator, denominator, out=np.zeros_like(numerator),
                       where=denominator != 0)
    cosine *= np.repeat(s.penalty, ORDERS)[:, None]
    per_study = cosine.reshape(s.studies, ORDERS, -1).mean(1) * 10.0  # (n, r)
    return np.einsum("rn,nr->r", w, per_study) / w.sum(1)


def _block(systems: Sequence[StudyStatistics], w: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Every metric of every system on the resamples ``w`` (r, n), the reference side computed
    once per distinct reference set."""
    sides: dict[int, tuple[np.ndarray, ...]] = {}
    total = w.sum(1)
    out = []
    for s in systems:
        side = sides.get(id(s.references))
        if side is None:
            side = sides[id(s.references)] = _reference_side(s.references, w)
        bleu = _bleu(w @ s.bleu)
        metrics = {f"bleu{k + 1}": bleu[:, k] for k in range(ORDERS)}
        if s.meteor is not None:
            metrics["meteor_segment_mean"] = w @ s.meteor / total
        metrics["rouge_l"] = w @ s.rouge_l / total
        metrics["cider"] = _cider(s, w, side)
        for counts in s.ce:
            metrics.update(counts.scores(w))
        out.append(metrics)
    return out


def _one_blas_thread() -> AbstractContextManager:
    """The matrix products here are small: threaded BLAS only spins (and, on busy shared cores,
    runs several times slower), so they run on one thread."""
    try:
        from threadpoolctl import threadpool_limits  # installed with scikit-learn
    except ImportError:  # pragma: no cover
        return nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _block_rows(systems: Sequence[StudyStatistics], limit: int) -> int:
    vocabulary = max(len(s.references.vocabulary) for s in systems)
    return max(1, min(limit, _BLOCK_FLOATS // max(vocabulary, 1)))


def resample_metrics(stats: StudyStatistics, weights: np.ndarray | None = None
                     ) -> dict[str, np.ndarray]:
    """Every metric on each resample: ``weights`` (r, n) counts how often each study is drawn
    (None: the study set itself, r = 1). Values are (r,) arrays."""
    n = stats.studies
    w = np.ones((1, n)) if weights is None else np.atleast_2d(np.asarray(weights, float))
    if w.ndim != 2 or w.shape[1] != n:
        raise ValueError(f"weights of shape {w.shape} for {n} studies")
    if (w < 0).any() or (w.sum(1) <= 0).any():
        raise ValueError("weights must be non-negative with a positive sum per resample")
    rows = _block_rows([stats], len(w))
    with _one_blas_thread():
        blocks = [_block([stats], w[i:i + rows])[0] for i in range(0, len(w), rows)]
    return {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}


def per_study_table(systems: Mapping[str, StudyStatistics], ids: Sequence[str]
                    ) -> pd.DataFrame:
    """Long table of per-study scores: system, id, bleu4 (sentence BLEU-4), meteor (segment
    score; only when some system has it), rouge_l, ce14_example_f1."""
    with_meteor = any(s.meteor is not None for s in systems.values())
    frames = []
    for name, s in systems.items():
        if len(ids) != s.studies:
            raise ValueError(f"{len(ids)} ids for the {s.studies} studies of {name!r}")
        columns = {"system": name, "id": list(ids), "bleu4": s.sentence_bleu4}
        if with_meteor:
            columns["meteor"] = np.full(s.studies, np.nan) if s.meteor is None else s.meteor
        ce14 = next(c for c in s.ce if c.protocol.name == "ce14")
        columns.update(rouge_l=s.rouge_l, ce14_example_f1=ce14.example_scores()[:, 2])
        frames.append(pd.DataFrame(columns))
    return pd.concat(frames, ignore_index=True)


def _interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    low, high = np.quantile(values, [(1 - confidence) / 2, (1 + confidence) / 2])
    return round(float(low), 6), round(float(high), 6)


def paired_bootstrap(systems: Mapping[str, StudyStatistics], primary: str = "ekagen",
                     resamples: int = 1000, seed: int = 0, confidence: float = 0.95,
                     chunk: int = 100) -> dict:
    """Percentile intervals of every metric of every system and of ``primary`` minus each
    other system, over ``resamples`` resamples of the studies shared by all systems (drawn
    ``chunk`` at a time from ``np.random.default_rng(seed)``; the draws do not depend on
    ``chunk``). JSON-ready: plain floats rounded to 6 digits."""
    if primary not in systems:
        raise ValueError(f"primary system {primary!r} is not among {sorted(systems)}")
    counts = {name: s.studies for name, s in systems.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"systems differ in study count: {counts}")
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) \
            or resamples < 1:
        raise ValueError(f"resamples must be an integer >= 1, not {resamples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, not {confidence!r}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, not {chunk!r}")
    names, stats = list(systems), list(systems.values())
    n = stats[0].studies
    rng = np.random.default_rng(seed)
    p = np.full(n, 1.0 / n)
    rows = _block_rows(stats, chunk)
    parts: list[list[dict[str, np.ndarray]]] = []
    with _one_blas_thread():
        for start in range(0, resamples, rows):
            w = rng.multinomial(n, p, size=min(rows, resamples - start)).astype(float)
            parts.append(_block(stats, w))
    drawn = {name: {k: np.concatenate([part[j][k] for part in parts]) for k in parts[0][j]}
             for j, name in enumerate(names)}
    full = {name: {k: float(v[0]) for k, v in resample_metrics(s).items()}
            for name, s in systems.items()}

    out: dict = {"resamples": int(resamples), "seed": int(seed), "confidence": float(confidence),
                 "studies": n, "method": METHOD, "systems": {}, "differences": {}}
    for name in names:
        out["systems"][name] = {
            k: dict(zip(("value", "low", "high"),
                        (round(full[name][k], 6), *_interval(v, confidence)), strict=True))
            for k, v in drawn[name].items()}
    for other in names:
        if other == primary:
            continue
        table = {}
        for k in (k for k in drawn[primary] if k in drawn[other]):
            d = drawn[primary][k] - drawn[other][k]
            below = (int(np.count_nonzero(d <= 0)) + 1) / (resamples + 1)
            above = (int(np.count_nonzero(d >= 0)) + 1) / (resamples + 1)
            low, high = _interval(d, confidence)
            table[k] = {"value": round(full[primary][k] - full[other][k], 6), "low": low,
                        "high": high, "p_value": round(min(1.0, 2 * min(below, above)), 6)}
        out["differences"][f"{primary}-{other}"] = table
    return out
