"""Reading the pixels of figures the code saves, for tests that check what a picture shows."""

from __future__ import annotations

import numpy as np


def rgb_pixels(path) -> np.ndarray:
    """A saved image as (H, W, 3) int16, so that colour differences can go negative."""
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def pixels_of(rgb: np.ndarray, colour: np.ndarray, tol: int = 3) -> np.ndarray:
    """Where ``rgb`` is ``colour`` within ``tol`` on every channel."""
    return np.abs(rgb - colour).max(axis=-1) <= tol


def axes_box(rgb: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) pixel rows/columns of the axes frame (its black spines)."""
    dark = rgb.max(axis=-1) < 80
    rows = np.flatnonzero(dark.mean(axis=1) > 0.5)
    cols = np.flatnonzero(dark.mean(axis=0) > 0.5)
    assert len(rows) >= 2 and len(cols) >= 2, "no axes frame in the figure"
    return rows.min(), rows.max(), cols.min(), cols.max()
