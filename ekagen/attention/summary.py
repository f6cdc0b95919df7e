"""What the ``adm`` stage reports about its masks: coverage, prediction rates, the phantom
region check, and which images the gallery shows."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ekagen.attention.adm import (
    AdmResult,
    coverage_summary,
    phantom_regions,
    region_overlap,
    unpack_masks,
)
from ekagen.attention.gallery import save_gallery, short_labels
from ekagen.config import AdmConfig
from ekagen.observations import OBSERVATIONS


def adm_metrics(result: AdmResult, table: pd.DataFrame, cfg: AdmConfig, seed: int,
                phantom_views: Sequence[int] | None = None,
                phantom_uncertain: str = "faint") -> dict:
    """``metrics/adm.json``. With ``phantom_views`` (the data.views of phantom data) the masks
    are also compared with where the renderer drew each finding, against chance."""
    splits = table["split"].to_numpy()
    metrics: dict = {
        "cam_threshold": cfg.cam_threshold, "dilation": cfg.dilation,
        "skip_classes": list(cfg.skip_classes),
        "coverage": coverage_summary(result.coverage),
        "coverage_by_split": {s: coverage_summary(result.coverage[splits == s])
                              for s in ("train", "val", "test")},
        "images_with_prediction": round(float(result.predicted.any(-1).mean()), 6),
        "predicted_rate": {name: round(float(result.predicted[..., c].mean()), 6)
                           for c, name in enumerate(OBSERVATIONS)},
    }
    if phantom_views is not None:
        n, views = result.coverage.shape
        rows = np.repeat(np.arange(n), views)
        view_ids = np.tile(np.arange(views), n)
        regions = phantom_regions(table, rows, [phantom_views[v] for v in view_ids],
                                  result.image_size, seed, phantom_uncertain)
        masks = unpack_masks(result.packed.reshape(n * views, -1), result.image_size)
        metrics["in_region"] = region_overlap(masks, regions, seed)
        test = splits[rows] == "test"
        metrics["in_region_test"] = region_overlap(masks[test], regions[test], seed)
    return metrics


def gallery_choice(splits: np.ndarray, cover: np.ndarray, count: int, seed: int) -> list:
    """(study, view) pairs for the gallery: test images first, attended ones preferred."""
    rng = np.random.default_rng(seed)
    pairs = [(s, v) for s in range(cover.shape[0]) for v in range(cover.shape[1])]
    order = rng.permutation(len(pairs))
    pairs = [pairs[i] for i in order]
    pairs.sort(key=lambda p: (splits[p[0]] != "test", cover[p] == 0))
    return pairs[:count]


def write_adm_gallery(path: str, table: pd.DataFrame, images: np.ndarray, result: AdmResult,
                      count: int, seed: int) -> None:
    """The gallery PNG: chosen images with their masks, predicted and true labels."""
    splits = table["split"].to_numpy()
    picks = gallery_choice(splits, result.coverage, count, seed)
    labels = table[list(OBSERVATIONS)].to_numpy()
    captions = []
    for s, v in picks:
        pred = [o for c, o in enumerate(OBSERVATIONS) if result.predicted[s, v, c]]
        true = [o for c, o in enumerate(OBSERVATIONS) if labels[s, c] == 1]
        captions.append(f"{table['id'].iloc[s]} v{v} ({splits[s]})\n"
                        f"pred: {short_labels(pred)}\ntrue: {short_labels(true)}")
    save_gallery(path, np.stack([images[s, v] for s, v in picks]),
                 np.stack([unpack_masks(result.packed[s, v], result.image_size)
                           for s, v in picks]), captions)
