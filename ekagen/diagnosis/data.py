"""Image-level dataset over the prepared cache, for training and running DiagnosisBot.

Weak supervision as in the paper: every image of a study carries the study's 14 labels. Labels
become a target and a weight per class: positive 1 -> 1, negative 0 and blank (not mentioned)
-> 0, uncertain -1 -> 0 (``uncertain_as: zeros``), 1 (``ones``) or weight 0 (``ignore``: masked
out of the loss and out of the metrics).

The image cache is read through a memory map opened lazily in each process (and each DataLoader
worker), so workers share pages and nothing large is pickled.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ekagen.observations import OBSERVATIONS

UNCERTAIN_POLICIES = ("zeros", "ones", "ignore")


def label_matrix(table: pd.DataFrame) -> np.ndarray:
    """The 14 label columns of a studies table as a float (n, 14) array (NaN = blank)."""
    missing = [name for name in OBSERVATIONS if name not in table.columns]
    if missing:
        raise ValueError(f"studies table lacks label columns {missing}")
    return table[list(OBSERVATIONS)].to_numpy(dtype=np.float64)


def encode_targets(labels: np.ndarray, uncertain_as: str) -> tuple[np.ndarray, np.ndarray]:
    """(targets, weights), float32 arrays shaped like ``labels``; see the module docstring."""
    if uncertain_as not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain_as must be one of {UNCERTAIN_POLICIES}, got "
                         f"{uncertain_as!r}")
    labels = np.asarray(labels, dtype=np.float64)
    targets = (labels == 1).astype(np.float32)
    weights = np.ones_like(targets)
    uncertain = labels == -1
    if uncertain_as == "ones":
        targets[uncertain] = 1.0
    elif uncertain_as == "ignore":
        weights[uncertain] = 0.0
    return targets, weights


class Augment:
    """Small random affine: rotation +-5 degrees, shift +-4 %, scale 0.95-1.05 (torch RNG)."""

    def __init__(self, degrees: float = 5.0, translate: float = 0.04,
                 scale: tuple[float, float] = (0.95, 1.05)) -> None:
        from torchvision.transforms import v2

        self.transform = v2.RandomAffine(degrees=degrees, translate=(translate, translate),
                                         scale=scale,
                                         interpolation=v2.InterpolationMode.BILINEAR)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.transform(image)


class StudyImages(Dataset):
    """One item per (study, view) of the selected studies.

    Each item is a dict: ``image`` float (1, S, S) in [0, 1], ``target`` and ``weight`` (14,),
    ``study`` (row in the studies table / image cache) and ``view``.
    """

    def __init__(self, images: np.ndarray | str | Path, labels: np.ndarray,
                 rows: Sequence[int] | np.ndarray, uncertain_as: str = "zeros",
                 augment: bool = False, views: Sequence[int] | None = None) -> None:
        if isinstance(images, str | Path):
            self._path: Path | None = Path(images)
            self._images: np.ndarray | None = None
            shape = np.load(self._path, mmap_mode="r").shape
        else:
            self._path, self._images = None, images
            shape = images.shape
        if len(shape) != 4:
            raise ValueError(f"image cache must be (studies, views, H, W), got {shape}")
        labels = np.asarray(labels)
        if len(labels) != shape[0]:
            raise ValueError(f"{len(labels)} label rows for {shape[0]} studies in the image cache")
        self.rows = np.asarray(rows, dtype=np.int64)
        self.views = list(range(shape[1])) if views is None else list(views)
        self.targets, self.weights = encode_targets(labels, uncertain_as)
        self.items = [(int(r), v) for r in self.rows for v in self.views]
        self.image_size = int(shape[-1])
        self.augment = Augment() if augment else None

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            assert self._path is not None
            self._images = np.load(self._path, mmap_mode="r")
        return self._images

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self._path is not None:
            state["_images"] = None  # workers reopen the memory map instead of copying it
        return state

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        row, view = self.items[index]
        pixels = torch.from_numpy(np.array(self.images[row, view], dtype=np.uint8))
        image = pixels.to(torch.float32).div_(255.0).unsqueeze(0)
        if self.augment is not None:
            image = self.augment(image)
        return {"image": image, "target": torch.from_numpy(self.targets[row]),
                "weight": torch.from_numpy(self.weights[row]), "study": row, "view": view}

    def item_targets(self) -> tuple[np.ndarray, np.ndarray]:
        """(targets, weights) per item, in item order (for metrics)."""
        rows = np.asarray([r for r, _ in self.items], dtype=np.int64)
        return self.targets[rows], self.weights[rows]


def split_rows(table: pd.DataFrame, split: str) -> np.ndarray:
    """Row numbers (= image cache indices) of the studies in ``split``."""
    return np.flatnonzero(table["split"].to_numpy() == split)


def split_dataset(table: pd.DataFrame, images: np.ndarray | str | Path, split: str,
                  uncertain_as: str = "zeros", augment: bool = False) -> StudyImages:
    return StudyImages(images, label_matrix(table), split_rows(table, split), uncertain_as,
                       augment)
