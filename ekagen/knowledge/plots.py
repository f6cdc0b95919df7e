"""Figure of the knowledge base: reports, PKS centres and their RKS reports in 2-D.

In the spirit of the paper's illustration of feature disruption: each training report is a dot
coloured by its diagnosis, each observation-level PKS centre an ``X``, and the RKS report that
rectifies it a circled dot of the same colour. The gap between an ``X`` and its circle is what
RKS corrects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ekagen.knowledge.pks import centres_matrix, positive_mask
from ekagen.observations import OBSERVATIONS


def report_groups(labels: pd.DataFrame | np.ndarray) -> np.ndarray:
    """Colour group of each report: its first positive observation other than No Finding,
    else ``"No Finding"`` (also for reports with no positive at all)."""
    positive = positive_mask(labels).copy()
    positive[:, OBSERVATIONS.index("No Finding")] = False
    first = positive.argmax(axis=1)
    names = np.asarray(OBSERVATIONS, dtype=object)[first]
    names[~positive.any(axis=1)] = "No Finding"
    return names


def project_2d(
    embeddings: np.ndarray,
    extra: np.ndarray | None = None,
    method: Literal["pca", "tsne"] = "pca",
    seed: int = 42,
) -> tuple[np.ndarray, np.ndarray]:
    """2-D coordinates of ``embeddings`` and of ``extra`` points (e.g. centres) in one space.

    PCA (default) is fit on the embeddings only and signs are fixed (largest loading positive),
    so the figure is deterministic; a centre, being a mean, lands on the mean of its members'
    projections. t-SNE is fit on embeddings and extra points together (slow; off by default).
    """
    x = np.asarray(embeddings, dtype=np.float64)
    e = np.zeros((0, x.shape[1])) if extra is None else np.asarray(extra, dtype=np.float64)
    if method == "pca":
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        axes = vt[:2]
        if len(axes) < 2:
            axes = np.vstack([axes, np.zeros((2 - len(axes), x.shape[1]))])
        signs = np.sign(axes[np.arange(2), np.abs(axes).argmax(axis=1)])
        axes = axes * np.where(signs == 0, 1, signs)[:, None]
        return (x - mean) @ axes.T, (e - mean) @ axes.T
    if method == "tsne":
        from sklearn.manifold import TSNE

        both = np.vstack([x, e])
        perplexity = float(min(30, max(2, (len(both) - 1) // 3)))
        coords = TSNE(2, init="pca", random_state=seed, perplexity=perplexity).fit_transform(both)
        return coords[: len(x)], coords[len(x) :]
    raise ValueError(f"unknown projection {method!r} (pca, tsne)")


def plot_embedding_projection(
    embeddings: np.ndarray,
    labels: pd.DataFrame | np.ndarray,
    pks: pd.DataFrame,
    rks: pd.DataFrame,
    path: str | Path,
    method: Literal["pca", "tsne"] = "pca",
    max_points: int = 20000,
    seed: int = 42,
) -> Path:
    """Write the projection figure as a PNG at ``path`` and return the path.

    ``embeddings`` and ``labels`` are the training reports row for row (the rows PKS and RKS
    refer to). At most ``max_points`` reports are drawn (a seeded sample; every RKS report is
    always drawn circled). Only observation-level keys are marked, sub-centre 0 of each.
    """
    # The object API (no pyplot) draws off-screen without touching the global backend.
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    x = np.asarray(embeddings, dtype=np.float32)
    groups = report_groups(labels)
    obs = pks[(pks["level"] == "observation") & (pks["sub"] == 0)] if len(pks) else pks
    top = (rks[(rks["level"] == "observation") & (rks["sub"] == 0) & (rks["rank"] == 0)]
           if len(rks) else rks)
    rng = np.random.default_rng(seed)
    shown = np.sort(rng.choice(len(x), size=max_points, replace=False)) if len(x) > max_points \
        else np.arange(len(x))
    centres = centres_matrix(obs) if len(obs) else np.zeros((0, x.shape[1]), np.float32)
    rks_rows = top["row"].to_numpy(dtype=np.int64) if len(top) else np.zeros(0, np.int64)
    coords, extra = project_2d(x[shown], np.vstack([centres, x[rks_rows]]), method, seed)
    centre_xy, rks_xy = extra[: len(centres)], extra[len(centres) :]

    cmap = colormaps["tab20"]
    colour = {name: cmap(i % 20) for i, name in enumerate(OBSERVATIONS)}
    fig = Figure(figsize=(9, 7), dpi=120)
    ax = fig.subplots()
    for name in OBSERVATIONS:
        sel = groups[shown] == name
        if sel.any():
            ax.scatter(coords[sel, 0], coords[sel, 1], s=6, alpha=0.35, color=colour[name],
                       label=f"{name} ({int((groups == name).sum())})", linewidths=0)
    for name, xy in zip(obs.get("observation", []), centre_xy, strict=True):
        ax.scatter(*xy, marker="X", s=120, color=colour[name], edgecolors="black", linewidths=0.8)
    for name, xy in zip(top.get("observation", []), rks_xy, strict=True):
        ax.scatter(*xy, marker="o", s=140, facecolors="none", edgecolors=colour[name],
                   linewidths=2.0)
        ax.scatter(*xy, marker="o", s=10, color="black")
    ax.scatter([], [], marker="X", s=80, color="grey", edgecolors="black", label="PKS centre")
    ax.scatter([], [], marker="o", s=80, facecolors="none", edgecolors="grey", linewidths=2,
               label="RKS report")
    ax.set_title(f"Report embeddings ({method.upper()}), PKS centres and RKS reports")
    ax.set_xlabel("component 1")
    ax.set_ylabel("component 2")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7, markerscale=1.5,
              frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
