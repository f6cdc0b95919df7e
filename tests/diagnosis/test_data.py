from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import torch

from ekagen.diagnosis.data import split_dataset
from ekagen.observations import OBSERVATIONS
from tests.diagnosis.synthetic import make_prepared


def test_each_view_is_an_item_with_the_study_labels(tmp_path):
    root = make_prepared(tmp_path, n=10, size=32, views=2)
    table = pd.read_parquet(root / "studies.parquet")
    images = np.load(root / "images.npy")
    dataset = split_dataset(table, root / "images.npy", "train", "ignore")
    train_rows = np.flatnonzero(table["split"] == "train")
    assert len(dataset) == 2 * len(train_rows)
    item = dataset[3]
    row, view = train_rows[1], 1
    assert (item["study"], item["view"]) == (row, view)
    assert item["image"].shape == (1, 32, 32) and item["image"].dtype == torch.float32
    torch.testing.assert_close(item["image"][0], torch.from_numpy(images[row, view]) / 255.0)
    labels = table.loc[row, list(OBSERVATIONS)].to_numpy(dtype=float)
    assert item["target"].tolist() == (labels == 1).astype(float).tolist()
    assert item["weight"].tolist() == (labels != -1).astype(float).tolist()
    # lazily memory-mapped: pickling (for DataLoader workers) carries no pixels
    assert len(pickle.dumps(dataset)) < images.nbytes / 2
    assert torch.equal(pickle.loads(pickle.dumps(dataset))[3]["image"], item["image"])


def test_augmentation_keeps_shape_and_changes_pixels(tmp_path):
    root = make_prepared(tmp_path, n=10, size=32)
    table = pd.read_parquet(root / "studies.parquet")
    plain = split_dataset(table, root / "images.npy", "train")
    augmented = split_dataset(table, root / "images.npy", "train", augment=True)
    torch.manual_seed(0)
    a, b = plain[0]["image"], augmented[0]["image"]
    assert a.shape == b.shape and not torch.equal(a, b)
    assert 0.0 <= float(b.min()) and float(b.max()) <= 1.0
