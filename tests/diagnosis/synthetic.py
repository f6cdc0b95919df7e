"""A synthetic ``data/prepared`` folder: labels decide where bright squares are drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ekagen.observations import OBSERVATIONS

#: class index -> (row, col) quadrant of the square that signals it
SIGNALS = {1: (0, 0), 9: (1, 1), 7: (0, 1)}


def make_prepared(root: Path, n: int = 24, size: int = 32, views: int = 2,
                  seed: int = 0) -> Path:
    """Studies with random labels for a few classes; each positive class draws a bright
    square in its quadrant of every view. Splits 60/20/20."""
    rng = np.random.default_rng(seed)
    labels = np.full((n, len(OBSERVATIONS)), np.nan)
    images = rng.integers(0, 60, size=(n, views, size, size)).astype(np.uint8)
    half, side = size // 2, size // 4
    for i in range(n):
        for c, (qr, qc) in SIGNALS.items():
            value = 1.0 if rng.random() < 0.5 else rng.choice([0.0, np.nan, -1.0])
            labels[i, c] = value
            if value == 1.0:
                r0 = qr * half + (half - side) // 2
                c0 = qc * half + (half - side) // 2
                images[i, :, r0 : r0 + side, c0 : c0 + side] = 230
        labels[i, 8] = 1.0 if np.all(np.nan_to_num(labels[i, list(SIGNALS)]) != 1) else np.nan
    split = np.array(["train"] * n, dtype=object)
    split[int(0.6 * n) : int(0.8 * n)] = "val"
    split[int(0.8 * n) :] = "test"
    table = pd.DataFrame({
        "id": [f"S{i:03d}" for i in range(n)], "split": split,
        "report": ["the lungs are clear ." for _ in range(n)],
        "image_paths": [[f"phantom:S{i:03d}:{v}" for v in range(views)] for i in range(n)],
        "image_root": ["" for _ in range(n)], "label_source": ["synthetic"] * n,
        **{name: labels[:, c] for c, name in enumerate(OBSERVATIONS)},
    })
    root.mkdir(parents=True, exist_ok=True)
    table.to_parquet(root / "studies.parquet", index=False)
    np.save(root / "images.npy", images)
    return root
