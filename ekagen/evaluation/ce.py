"""Clinical efficacy: label generated and reference reports alike, then compare positives.

Convention (README, "Metric conventions"): an observation counts as positive only when
labelled 1; 0 (negative), -1 (uncertain) and blank (not mentioned) all count as not positive.
Reported three ways, each named: micro (pool every study-observation pair; what the MIMIC
literature reports), macro (mean of per-observation scores, observations with no reference and
no predicted positive excluded) and example-based (per study, then averaged).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ekagen.observations import OBSERVATIONS


def positives(reports: Sequence[str]) -> np.ndarray:
    """(n, 14) bool: which observations the labeler marks positive (1) in each report."""
    from ekagen.labeler import label_reports

    if not len(reports):
        return np.zeros((0, len(OBSERVATIONS)), dtype=bool)
    return label_reports(list(reports))[list(OBSERVATIONS)].to_numpy() == 1


def precision_recall_f1(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts; each is 0 when its denominator is 0."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def ce_scores(predicted: np.ndarray, reference: np.ndarray) -> dict:
    """CE metrics from two (n, 14) bool arrays; see the module docstring for conventions."""
    pred, ref = np.asarray(predicted, bool), np.asarray(reference, bool)
    if pred.shape != ref.shape:
        raise ValueError(f"predicted {pred.shape} and reference {ref.shape} labels differ")
    tp = (pred & ref).sum(0).astype(float)
    fp = (pred & ~ref).sum(0).astype(float)
    fn = (~pred & ref).sum(0).astype(float)
    out: dict = {}
    p, r, f = precision_recall_f1(tp.sum(), fp.sum(), fn.sum())
    out.update({"ce_micro_precision": p, "ce_micro_recall": r, "ce_micro_f1": f})
    per_class = {}
    used = []
    for c, name in enumerate(OBSERVATIONS):
        pc, rc, fc = precision_recall_f1(tp[c], fp[c], fn[c])
        support = int(ref[:, c].sum())
        per_class[name] = {"precision": pc, "recall": rc, "f1": fc, "support": support,
                           "predicted": int(pred[:, c].sum())}
        if support or pred[:, c].any():
            used.append((pc, rc, fc))
    macro = np.mean(used, axis=0) if used else np.zeros(3)
    out.update({"ce_macro_precision": float(macro[0]), "ce_macro_recall": float(macro[1]),
                "ce_macro_f1": float(macro[2])})
    example = [precision_recall_f1(float((a & b).sum()), float((a & ~b).sum()),
                                   float((~a & b).sum()))
               for a, b in zip(pred, ref, strict=True)]
    ex = np.mean(example, axis=0) if example else np.zeros(3)
    out.update({"ce_example_precision": float(ex[0]), "ce_example_recall": float(ex[1]),
                "ce_example_f1": float(ex[2])})
    out = {k: round(float(v), 6) for k, v in out.items()}
    out["per_class"] = per_class
    return out
