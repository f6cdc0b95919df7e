"""Clinical efficacy: label generated and reference reports alike, then compare positives.

Every published CE protocol is computed, each under its own key (README, "CE protocols"):

* the observation set: all 14 CheXpert observations (``ce14``) or the five of RGRG and MLRG
  (``ce5``: Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion);
* what counts as positive: 1 only, with 0, -1 and blank not positive (``ce14``, ``ce5``), or
  1 and -1 (uncertain as positive: ``ce14u``, ``ce5u``);
* the average: micro (pool every study-observation pair), macro (mean of the per-observation
  scores over the whole set) and, for the 14, example-based (per study, then the mean).

A precision, recall or F1 whose denominator is 0 is 0, for an observation (macro) and for a
study (example-based) alike: scikit-learn's ``zero_division=0``, which is what f1chexbert's
numbers use. The same per-study counts feed the bootstrap (:mod:`ekagen.evaluation.bootstrap`),
so every interval is of exactly the metric in ``metrics/eval.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ekagen.observations import OBSERVATIONS

FIVE_OBSERVATIONS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema",
                     "Pleural Effusion")


@dataclass(frozen=True)
class Protocol:
    """One way of turning label values into CE scores."""

    name: str
    observations: tuple[str, ...]
    uncertain_positive: bool
    averages: tuple[str, ...]

    @property
    def columns(self) -> list[int]:
        return [OBSERVATIONS.index(o) for o in self.observations]


PROTOCOLS: tuple[Protocol, ...] = (
    Protocol("ce14", OBSERVATIONS, False, ("micro", "macro", "example")),
    Protocol("ce5", FIVE_OBSERVATIONS, False, ("micro", "macro")),
    Protocol("ce14u", OBSERVATIONS, True, ("micro", "macro", "example")),
    Protocol("ce5u", FIVE_OBSERVATIONS, True, ("micro", "macro")),
)
PRIMARY = PROTOCOLS[0]
"""The protocol of the tables and of model selection: 14 observations, only 1 is positive."""


def label_values(reports: Sequence[str], labeler=None) -> np.ndarray:
    """(n, 14) float label values (1, 0, -1, NaN) of ``reports``, OBSERVATIONS order.

    ``labeler`` maps a list of texts to a frame with the 14 observation columns; the default
    is the rule labeler.
    """
    if not len(reports):
        return np.zeros((0, len(OBSERVATIONS)), dtype=float)
    if labeler is None:
        from ekagen.labeler import label_reports as labeler
    frame = labeler(list(reports))
    return frame[list(OBSERVATIONS)].to_numpy(dtype=float)


def positive_mask(values: np.ndarray, uncertain_positive: bool = False) -> np.ndarray:
    """Which label values count as positive: 1, or 1 and -1."""
    values = np.asarray(values, dtype=float)
    return (values == 1) | (values == -1) if uncertain_positive else values == 1


def positives(reports: Sequence[str]) -> np.ndarray:
    """(n, 14) bool: which observations the rule labeler marks positive (1) in each report."""
    return positive_mask(label_values(reports))


def precision_recall_f1(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts; each is 0 when its denominator is 0."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def prf_arrays(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Element-wise :func:`precision_recall_f1` over arrays of counts (any shape)."""
    tp, fp, fn = (np.asarray(a, dtype=float) for a in (tp, fp, fn))
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(precision + recall > 0,
                      2 * precision * recall / (precision + recall), 0.0)
    return precision, recall, f1


@dataclass(frozen=True)
class StudyCounts:
    """Per-study, per-observation true/false positives and false negatives of one protocol:
    everything any of its averages needs, also on a bootstrap resample."""

    protocol: Protocol
    tp: np.ndarray  # (n, k) int
    fp: np.ndarray
    fn: np.ndarray

    @classmethod
    def of(cls, protocol: Protocol, predicted: np.ndarray, reference: np.ndarray
           ) -> StudyCounts:
        pred = positive_mask(predicted, protocol.uncertain_positive)[:, protocol.columns]
        ref = positive_mask(reference, protocol.uncertain_positive)[:, protocol.columns]
        return cls(protocol, (pred & ref).astype(np.int32), (pred & ~ref).astype(np.int32),
                   (~pred & ref).astype(np.int32))

    def example_scores(self) -> np.ndarray:
        """(n, 3) precision, recall and F1 of each study over the protocol's observations."""
        return np.stack(prf_arrays(self.tp.sum(1), self.fp.sum(1), self.fn.sum(1)), axis=1)

    def scores(self, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Every average of the protocol; ``weights`` (r, n) counts how often each study is
        drawn in each of r resamples (None: the study set itself). Values have shape (r,)."""
        n = len(self.tp)
        w = np.ones((1, n)) if weights is None else np.asarray(weights, dtype=float)
        tp, fp, fn = w @ self.tp, w @ self.fp, w @ self.fn  # (r, k)
        out: dict[str, np.ndarray] = {}
        for average in self.protocol.averages:
            if average == "micro":
                p, r, f = prf_arrays(tp.sum(1), fp.sum(1), fn.sum(1))
            elif average == "macro":
                p, r, f = (a.mean(1) for a in prf_arrays(tp, fp, fn))
            else:
                per_study = w @ self.example_scores() / np.maximum(w.sum(1, keepdims=True), 1)
                p, r, f = per_study[:, 0], per_study[:, 1], per_study[:, 2]
            out.update({f"{self.protocol.name}_{average}_precision": p,
                        f"{self.protocol.name}_{average}_recall": r,
                        f"{self.protocol.name}_{average}_f1": f})
        return out


def study_counts(predicted: np.ndarray, reference: np.ndarray) -> list[StudyCounts]:
    """The counts of every protocol from two (n, 14) label-value arrays."""
    predicted, reference = np.asarray(predicted, float), np.asarray(reference, float)
    if predicted.shape != reference.shape:
        raise ValueError(f"predicted {predicted.shape} and reference {reference.shape} "
                         "labels differ")
    return [StudyCounts.of(p, predicted, reference) for p in PROTOCOLS]


def ce_scores(predicted: np.ndarray, reference: np.ndarray) -> dict:
    """Every protocol's CE metrics from two (n, 14) label-value arrays (1, 0, -1, NaN), and
    ``per_class``: the primary protocol's precision, recall and F1 per observation."""
    out: dict = {}
    for counts in study_counts(predicted, reference):
        out.update({k: round(float(v[0]), 6) for k, v in counts.scores().items()})
    pred, ref = positive_mask(predicted), positive_mask(reference)
    per_class = {}
    for c, name in enumerate(OBSERVATIONS):
        tp, fp = int((pred[:, c] & ref[:, c]).sum()), int((pred[:, c] & ~ref[:, c]).sum())
        fn = int((~pred[:, c] & ref[:, c]).sum())
        pc, rc, fc = precision_recall_f1(tp, fp, fn)
        per_class[name] = {"precision": round(pc, 6), "recall": round(rc, 6),
                           "f1": round(fc, 6), "support": tp + fn, "predicted": tp + fp}
    out["per_class"] = per_class
    return out
