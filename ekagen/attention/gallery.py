"""A contact sheet of radiographs with their ADM overlaid and predicted/true labels below."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ABBREVIATIONS = {
    "Atelectasis": "Atel", "Cardiomegaly": "Cardio", "Consolidation": "Consol",
    "Edema": "Edema", "Enlarged Cardiomediastinum": "EnlCM", "Fracture": "Fract",
    "Lung Lesion": "Lesion", "Lung Opacity": "Opac", "No Finding": "NoFind",
    "Pleural Effusion": "Effus", "Pleural Other": "PlOth", "Pneumonia": "Pneum",
    "Pneumothorax": "PTX", "Support Devices": "Device",
}


def short_labels(names: Sequence[str]) -> str:
    return ", ".join(ABBREVIATIONS.get(n, n) for n in names) or "-"


def save_gallery(path: str | Path, images: np.ndarray, masks: np.ndarray,
                 captions: Sequence[str], columns: int = 4,
                 title: str = "ADM (red) over the classifier's input") -> Path:
    """``images`` uint8 (N, H, W), ``masks`` bool (N, H, W), one caption per image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(images)
    columns = max(1, min(columns, n))
    rows = max(1, int(np.ceil(n / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 4.0 * rows), dpi=100,
                             squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for i in range(n):
        ax = axes.ravel()[i]
        ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
        overlay = np.zeros((*masks[i].shape, 4))
        overlay[masks[i]] = (1.0, 0.1, 0.1, 0.35)
        ax.imshow(overlay)
        if masks[i].any() and not masks[i].all():
            ax.contour(masks[i].astype(float), levels=[0.5], colors="red", linewidths=0.8)
        lines = [textwrap.fill(line, 48, subsequent_indent="  ")
                 for line in captions[i].splitlines()]
        ax.set_title("\n".join(lines), fontsize=7, loc="left")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
