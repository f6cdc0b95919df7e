"""Figures and curve files of the classifier stage (ROC curves, per-epoch training curve)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ekagen.diagnosis.metrics import has_both_classes
from ekagen.observations import OBSERVATIONS


def plot_roc(targets: np.ndarray, scores: np.ndarray, path: str | Path,
             weights: np.ndarray | None = None, names: Sequence[str] = OBSERVATIONS,
             title: str = "DiagnosisBot ROC") -> Path:
    """One ROC curve per class that has both label values, AUROC in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 6), dpi=110)
    cmap = plt.get_cmap("tab20")
    aucs = []
    for c, name in enumerate(names):
        keep = np.ones(len(targets), bool) if weights is None else weights[:, c] > 0
        y, s = targets[keep, c] > 0.5, scores[keep, c]
        if not has_both_classes(y):
            continue
        fpr, tpr, _ = roc_curve(y, s)
        auc = roc_auc_score(y, s)
        aucs.append(auc)
        ax.plot(fpr, tpr, color=cmap(c % 20), lw=1.3, label=f"{name} ({auc:.3f}, n+={y.sum()})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    mean = f"mean AUROC {np.mean(aucs):.3f} over {len(aucs)} classes" if aucs else "no ROC"
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1),
           ylim=(0, 1.01), title=f"{title}\n{mean}")
    if aucs:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def write_curve(history: Sequence[dict[str, Any]], path: str | Path,
                keys: Sequence[str] = ("train_loss", "val_loss", "val_mean_auroc")) -> Path:
    """Per-epoch records as a JSON list of ``{epoch, <keys>}`` (a ``dvc plots`` data file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for record in history:
        row: dict[str, Any] = {"epoch": int(record["epoch"])}
        for key in keys:
            value = record.get(key)
            if isinstance(value, int | float) and value == value:
                row[key] = round(float(value), 6)
        rows.append(row)
    path.write_text(json.dumps(rows, indent=1) + "\n")
    return path
