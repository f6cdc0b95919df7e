"""The classifier and adm stages in-process on a tiny synthetic prepared folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from ekagen.attention.adm import load_masks, load_study_diagnosis, unpack_masks
from ekagen.diagnosis.plots import plot_roc
from ekagen.models.classifier import load_classifier
from ekagen.observations import OBSERVATIONS
from tests.conftest import tiny_params
from tests.diagnosis.synthetic import make_prepared
from tests.pictures import axes_box, pixels_of, rgb_pixels

N_STUDIES, VIEWS, GALLERY = 20, 2, 6


def stage_params(**classifier: object) -> dict:
    """The repository's params (tiny profile) for this synthetic folder."""
    params = tiny_params(
        data={"source": "iu_phantom", "views": [0, 1], "image_size": 64},
        classifier={"backbone": "resnet18", "pretrained": "", "epochs": 2, "batch_size": 8,
                    "augment": False, "lr": 0.001, "threshold": "youden", **classifier},
        adm={"dilation": 2, "region_check": True},
        runtime={"batch_size": 16, "loader_workers": 0, "adm_gallery_size": GALLERY})
    params["seed"] = 3
    return params




def _tab20(c: int) -> np.ndarray:
    from matplotlib import colormaps

    return np.asarray(colormaps["tab20"](c % 20)[:3]) * 255






def test_roc_plot_draws_a_curve_above_the_diagonal_for_a_good_classifier(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat([0.0, 1.0], 30)
    targets = np.stack([y, np.zeros_like(y)], axis=1)  # class 1: no positive, no ROC curve
    scores = np.stack([y + rng.normal(0, 0.6, len(y)), rng.random(len(y))], axis=1)
    path = plot_roc(targets, scores, tmp_path / "roc.png", names=["A", "B"])
    rgb = rgb_pixels(path)
    assert rgb.shape == (6 * 110, 7 * 110, 3)  # figsize (7, 6) at 110 dpi
    top, bottom, left, right = axes_box(rgb)
    curve = np.argwhere(pixels_of(rgb[top + 2 : bottom - 1, left + 2 : right - 1], _tab20(0)))
    assert len(curve) > 300  # the curve of class A
    # pixel -> (false positive rate, true positive rate); the axes span x 0..1, y 0..1.01
    fpr = (curve[:, 1] + 2) / (right - left)
    tpr = 1.01 * (bottom - top - 2 - curve[:, 0]) / (bottom - top)
    assert np.mean(tpr > fpr + 0.02) > 0.9  # above chance (the rest: its legend sample)
    assert pixels_of(rgb, _tab20(1)).sum() < 5  # class B has one label value: not drawn


@pytest.fixture(scope="module")
def stage_outputs(tmp_path_factory):
    from stages import adm, classifier

    root = tmp_path_factory.mktemp("stages")
    make_prepared(root / "data/prepared", n=N_STUDIES, size=64, views=VIEWS)
    (root / "params.yaml").write_text(yaml.safe_dump(stage_params()))
    common = ["--params", str(root / "params.yaml"), "--prepared", str(root / "data/prepared"),
              "--no-progress"]
    m = root / "metrics"
    classifier_metrics = classifier.main([
        *common, "--out", str(root / "data/classifier"),
        "--checkpoints", str(root / "data/classifier_ckpt"),
        "--metrics", str(m / "classifier.json"), "--roc", str(m / "plots/roc.png"),
        "--curve", str(m / "plots/curve.json")])
    adm_metrics = adm.main([
        *common, "--classifier", str(root / "data/classifier"), "--out", str(root / "data/adm"),
        "--metrics", str(m / "adm.json"), "--gallery", str(m / "plots/gallery.png")])
    return root, classifier_metrics, adm_metrics


def test_classifier_stage_outputs(stage_outputs):
    root, metrics, _ = stage_outputs
    assert json.loads((root / "metrics/classifier.json").read_text()) == metrics
    assert metrics["epochs_run"] == 2 and 1 <= metrics["best_epoch"] <= 2
    studies = pd.read_parquet(root / "data/prepared/studies.parquet")
    for split in ("val", "test"):
        image = metrics[split]["image"]
        labels = studies.loc[studies["split"] == split, list(OBSERVATIONS)]
        assert image["samples"] == VIEWS * len(labels)  # every image of the split, once
        assert metrics[split]["study"]["samples"] == len(labels)
        assert set(image["per_class"]) == set(OBSERVATIONS)
        for name, row in image["per_class"].items():
            assert row["positives"] == VIEWS * int((labels[name] == 1).sum()), name
            # a class gets an AUROC exactly when its evaluated labels take both values
            assert (row["auroc"] is None) == (row["positives"] in (0, row["evaluated"])), name
        assert image["auroc_classes"] + len(image["auroc_excluded"]) == 14
    # bright squares mark the classes: the toy problem is separable
    assert metrics["val_mean_auroc"] > 0.9 and metrics["test_mean_auroc"] > 0.75
    thresholds = json.loads((root / "data/classifier/thresholds.json").read_text())
    assert thresholds["method"] == "youden" and len(thresholds["vector"]) == 14
    curve = json.loads((root / "metrics/plots/curve.json").read_text())
    assert [row["epoch"] for row in curve] == [1, 2]
    assert curve[1]["train_loss"] < curve[0]["train_loss"]  # it learns
    assert all(row["val_loss"] > 0 and 0 <= row["val_mean_auroc"] <= 1 for row in curve)
    # the saved model is the best epoch's: the stage's own evaluation scores what training did
    best = curve[metrics["best_epoch"] - 1]
    assert best["val_mean_auroc"] == max(row["val_mean_auroc"] for row in curve)
    assert best["val_mean_auroc"] == pytest.approx(metrics["val_mean_auroc"], abs=1e-5)
    # the ROC figure draws (curve and legend line, in tab20) exactly the classes with an AUROC
    roc = rgb_pixels(root / "metrics/plots/roc.png")
    assert roc.shape == (6 * 110, 7 * 110, 3)
    per_class = metrics["test"]["image"]["per_class"]
    assert any(row["auroc"] is not None for row in per_class.values())
    for c, name in enumerate(OBSERVATIONS):
        drawn = pixels_of(roc, _tab20(c)).sum()
        if per_class[name]["auroc"] is None:
            assert drawn < 5, name
        else:
            assert drawn > 15, name
    model, config = load_classifier(root / "data/classifier")
    assert config["image_size"] == 64 and config["backbone"] == "resnet18"
    state = torch.load(root / "data/classifier_ckpt/last.pt", weights_only=True)
    assert state["finished"] and state["epoch"] == 2


def test_adm_stage_outputs(stage_outputs):
    root, _, metrics = stage_outputs
    images = np.load(root / "data/prepared/images.npy")
    packed, size = load_masks(root / "data/adm")
    assert packed.shape == (20, 2, 64 * 64 // 8) and size == 64
    masks = unpack_masks(packed, size)
    table = pd.read_parquet(root / "data/adm/diagnosis.parquet")
    assert len(table) == 40 and list(table["view"][:2]) == [0, 1]
    np.testing.assert_allclose(table["coverage"], masks.reshape(40, -1).mean(1), atol=1e-6)
    preds = table[[f"pred:{o}" for o in OBSERVATIONS]].to_numpy().reshape(20, 2, 14)
    # an image without a predicted class has an empty mask
    assert not masks[~preds.any(-1)].any()
    study = load_study_diagnosis(root / "data/adm")
    assert len(study) == 20 and list(study["id"]) == [f"S{i:03d}" for i in range(20)]
    np.testing.assert_array_equal(study[list(OBSERVATIONS)].to_numpy(), preds.any(1))
    probs = table[[f"prob:{o}" for o in OBSERVATIONS]].to_numpy().reshape(20, 2, 14)
    np.testing.assert_allclose(study[[f"prob:{o}" for o in OBSERVATIONS]], probs.max(1))
    # predictions agree with running the saved classifier and thresholds directly
    model, _ = load_classifier(root / "data/classifier")
    thr = json.loads((root / "data/classifier/thresholds.json").read_text())["vector"]
    with torch.no_grad():
        direct = torch.sigmoid(model(torch.from_numpy(images[:4, 0]).float()[:, None] / 255))
    np.testing.assert_allclose(probs[:4, 0], direct.numpy(), atol=1e-5)
    np.testing.assert_array_equal(preds[:4, 0], direct.numpy() >= np.array(thr))
    flat = masks.reshape(40, -1)
    assert metrics["coverage"]["images"] == 40
    assert metrics["coverage"]["fraction_empty"] == pytest.approx((~flat.any(1)).mean(), abs=1e-6)
    assert metrics["coverage"]["mean"] == pytest.approx(flat.mean(), abs=1e-6)
    # data.source iu_phantom: every non-empty mask is checked against the rendered findings
    region = metrics["in_region"]
    assert region["images_compared"] + region["images_mask_without_region"] == flat.any(1).sum()
    _assert_gallery_shows_the_masks(root, masks, table)


def _assert_gallery_shows_the_masks(root, masks: np.ndarray, table: pd.DataFrame) -> None:
    """The gallery has one panel per chosen image, each with its own ADM in red."""
    from scipy import ndimage

    from ekagen.attention.summary import gallery_choice

    rgb = rgb_pixels(root / "metrics/plots/gallery.png")
    assert rgb.shape == (2 * 400, 4 * 320, 3)  # 6 panels: 2 rows of 4, 3.2 x 4.0 in, 100 dpi
    splits = pd.read_parquet(root / "data/prepared/studies.parquet")["split"].to_numpy()
    cover = table["coverage"].to_numpy().reshape(N_STUDIES, VIEWS)
    picks = gallery_choice(splits, cover, GALLERY, seed=3)
    assert any(cover[p] > 0 for p in picks)
    # panels: the large non-white regions (captions are thin text), in reading order
    blobs, _ = ndimage.label(rgb.min(axis=-1) < 245)
    boxes = [b for b in ndimage.find_objects(blobs)
             if b[0].stop - b[0].start > 100 and b[1].stop - b[1].start > 100]
    assert len(boxes) == len(picks)
    boxes.sort(key=lambda b: (b[0].start // 50, b[1].start))
    red = (rgb[..., 0] - rgb[..., 1:].max(axis=-1)) > 40  # the overlay over any grey
    for (s, v), (rows, cols) in zip(picks, boxes, strict=True):
        panel = red[rows, cols]
        assert panel.mean() == pytest.approx(cover[s, v], abs=0.02), (s, v)
        # sampled at the centre of each image pixel, the red area is that image's mask
        h, w = panel.shape
        centres = panel[((np.arange(64) + 0.5) * h / 64).astype(int)][
            :, ((np.arange(64) + 0.5) * w / 64).astype(int)]
        assert (centres == masks[s, v]).mean() > 0.97, (s, v)


def test_rerun_after_a_finished_run_trains_afresh(stage_outputs, tmp_path):
    from stages import classifier

    root, _, _ = stage_outputs
    params = stage_params(epochs=1)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = classifier.main(["--params", str(tmp_path / "params.yaml"),
                           "--prepared", str(root / "data/prepared"), "--no-progress",
                           "--out", str(tmp_path / "c"), "--checkpoints",
                           str(root / "data/classifier_ckpt"), "--metrics",
                           str(tmp_path / "c.json"), "--roc", str(tmp_path / "roc.png"),
                           "--curve", str(tmp_path / "curve.json")])
    assert out["resumed_from_epoch"] == 0 and out["epochs_run"] == 1


@pytest.mark.slow
def test_classifier_stage_under_torchrun_two_processes(tmp_path):
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    make_prepared(tmp_path / "prepared", n=N_STUDIES, size=64, views=VIEWS)
    params = stage_params()
    params["runtime"]["device"] = "cpu"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "stages.classifier", "--params",
           str(tmp_path / "params.yaml"), "--prepared", str(tmp_path / "prepared"),
           "--out", str(tmp_path / "classifier"), "--checkpoints", str(tmp_path / "ckpt"),
           "--metrics", str(tmp_path / "classifier.json"), "--roc", str(tmp_path / "roc.png"),
           "--curve", str(tmp_path / "curve.json"), "--no-progress"]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("classifier resnet18: best epoch") == 1  # rank 0 only
    metrics = json.loads((tmp_path / "classifier.json").read_text())
    assert metrics["epochs_run"] == 2
    state = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    load_classifier(tmp_path / "classifier")
