"""Classifier metrics and per-class decision thresholds.

* AUROC per class; a class whose evaluated labels take a single value has no ROC curve: it is
  excluded from the mean (``NaN`` in the per-class table) and listed as excluded.
* Thresholds per class, chosen on validation only. A class is predicted positive when its
  probability is ``>= threshold``.

  - ``youden`` (default, as the authors): maximise Youden's J = TPR - FPR over the ROC
    operating points; ties go to the highest threshold (fewest positives).
  - ``f1``: maximise F1 over the precision-recall operating points.
  - ``fixed:<t>``: the same ``t`` for every class.

  A class that cannot be tuned (a single label value on validation) falls back to the fixed
  value (0.5), recorded as ``fixed (fallback)``.
* F1, precision and recall per class at the thresholds; micro (pooled over classes), macro
  (mean over classes with at least one positive) averages.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_auc_score, roc_curve

from ekagen.evaluation.ce import precision_recall_f1
from ekagen.observations import OBSERVATIONS

FALLBACK_THRESHOLD = 0.5


def parse_method(spec: str) -> tuple[str, float]:
    """``"youden"`` -> ("youden", 0.5); ``"fixed:0.3"`` -> ("fixed", 0.3)."""
    spec = (spec or "").strip().lower()
    if spec in ("youden", "f1"):
        return spec, FALLBACK_THRESHOLD
    if spec.startswith("fixed"):
        _, _, value = spec.partition(":")
        try:
            threshold = float(value) if value else FALLBACK_THRESHOLD
        except ValueError:
            threshold = float("nan")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold method {spec!r}: fixed:<t> needs 0 <= t <= 1")
        return "fixed", threshold
    raise ValueError(f"unknown threshold method {spec!r}: expected youden, f1 or fixed:<t>")


def _valid(y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    return np.ones(len(y), bool) if w is None else np.asarray(w) > 0


def has_both_classes(y: np.ndarray) -> bool:
    return len(y) > 0 and 0 < np.sum(y > 0.5) < len(y)


def youden_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The score that maximises TPR - FPR (positive iff score >= threshold)."""
    fpr, tpr, thresholds = roc_curve(y, scores, drop_intermediate=False)
    j = (tpr - fpr)[1:]  # skip the (inf) point that predicts nothing
    best = int(np.flatnonzero(j >= j.max() - 1e-12)[0]) + 1  # ties (up to rounding): highest
    return float(thresholds[best])


def f1_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The score that maximises F1 (positive iff score >= threshold)."""
    precision, recall, thresholds = precision_recall_curve(y, scores)
    precision, recall = precision[:-1], recall[:-1]
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(denom), where=denom > 0)
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)[-1]  # ties: the highest threshold
    return float(thresholds[best])


def choose_thresholds(targets: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None,
                      method: str = "youden") -> tuple[np.ndarray, list[str]]:
    """Per-class thresholds (n_classes,) and the method actually used for each class."""
    name, fixed = parse_method(method)
    targets, scores = np.asarray(targets), np.asarray(scores)
    out = np.full(targets.shape[1], fixed, dtype=np.float64)
    used = []
    for c in range(targets.shape[1]):
        keep = _valid(targets[:, c], None if weights is None else weights[:, c])
        y, s = targets[keep, c], scores[keep, c]
        if name == "fixed":
            used.append(f"fixed:{fixed:g}")
        elif not has_both_classes(y):
            used.append(f"fixed:{FALLBACK_THRESHOLD:g} (fallback)")
            out[c] = FALLBACK_THRESHOLD
        else:
            out[c] = youden_threshold(y, s) if name == "youden" else f1_threshold(y, s)
            used.append(name)
    return out, used


def auroc_per_class(targets: np.ndarray, scores: np.ndarray,
                    weights: np.ndarray | None = None) -> np.ndarray:
    """AUROC per class; NaN where the (unmasked) labels have a single value."""
    targets, scores = np.asarray(targets), np.asarray(scores)
    out = np.full(targets.shape[1], np.nan)
    for c in range(targets.shape[1]):
        keep = _valid(targets[:, c], None if weights is None else weights[:, c])
        y = targets[keep, c]
        if has_both_classes(y):
            out[c] = roc_auc_score(y > 0.5, scores[keep, c])
    return out


def mean_auroc(targets: np.ndarray, scores: np.ndarray,
               weights: np.ndarray | None = None) -> float:
    """Mean AUROC over the classes that have one (NaN when none has)."""
    per_class = auroc_per_class(targets, scores, weights)
    return float(np.nanmean(per_class)) if np.isfinite(per_class).any() else float("nan")


def classification_metrics(targets: np.ndarray, scores: np.ndarray, thresholds: np.ndarray,
                           weights: np.ndarray | None = None,
                           names: Sequence[str] = OBSERVATIONS) -> dict:
    """Per-class AUROC, F1, precision, recall and support, plus means and exclusions."""
    targets, scores = np.asarray(targets), np.asarray(scores)
    weights = np.ones_like(targets) if weights is None else np.asarray(weights)
    predicted = scores >= np.asarray(thresholds)[None, :]
    aurocs = auroc_per_class(targets, scores, weights)
    per_class: dict[str, dict] = {}
    totals = np.zeros(3)
    macro = []
    for c, name in enumerate(names):
        keep = weights[:, c] > 0
        y, p = targets[keep, c] > 0.5, predicted[keep, c]
        tp, fp, fn = float(np.sum(y & p)), float(np.sum(~y & p)), float(np.sum(y & ~p))
        totals += (tp, fp, fn)
        precision, recall, f1 = precision_recall_f1(tp, fp, fn)
        if y.any():
            macro.append(f1)
        per_class[name] = {
            "auroc": None if np.isnan(aurocs[c]) else round(float(aurocs[c]), 6),
            "f1": round(f1, 6), "precision": round(precision, 6), "recall": round(recall, 6),
            "positives": int(y.sum()), "evaluated": int(keep.sum()),
            "threshold": round(float(thresholds[c]), 6),
        }
    micro = precision_recall_f1(*totals)
    excluded = [name for c, name in enumerate(names) if np.isnan(aurocs[c])]
    return {
        "mean_auroc": (round(float(np.nanmean(aurocs)), 6) if np.isfinite(aurocs).any()
                       else None),
        "auroc_classes": len(names) - len(excluded),
        "auroc_excluded": excluded,
        "micro_f1": round(micro[2], 6), "micro_precision": round(micro[0], 6),
        "micro_recall": round(micro[1], 6),
        "macro_f1": round(float(np.mean(macro)), 6) if macro else None,
        "samples": int(len(targets)),
        "per_class": per_class,
    }
