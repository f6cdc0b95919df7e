"""The classifier and adm stages in-process on a tiny synthetic prepared folder."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from ekagen.attention.adm import load_masks, load_study_diagnosis, unpack_masks
from ekagen.models.classifier import load_classifier
from ekagen.observations import OBSERVATIONS
from tests.diagnosis.synthetic import make_prepared

PARAMS = {
    "seed": 3,
    "data": {"source": "iu_phantom", "views": [0, 1], "image_size": 64},
    "classifier": {"backbone": "resnet18", "epochs": 2, "batch_size": 8, "workers": 0,
                   "augment": False, "lr": 0.001, "eval_batch_size": 32},
    "adm": {"batch_size": 16, "gallery_size": 6, "dilation": 2},
}


@pytest.fixture(scope="module")
def stage_outputs(tmp_path_factory):
    from stages import adm, classifier

    root = tmp_path_factory.mktemp("stages")
    make_prepared(root / "data/prepared", n=20, size=64, views=2)
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
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
    for split in ("val", "test"):
        image = metrics[split]["image"]
        assert set(image["per_class"]) == set(OBSERVATIONS)
        assert image["auroc_classes"] + len(image["auroc_excluded"]) == 14
    thresholds = json.loads((root / "data/classifier/thresholds.json").read_text())
    assert thresholds["method"] == "youden" and len(thresholds["vector"]) == 14
    curve = json.loads((root / "metrics/plots/curve.json").read_text())
    assert [row["epoch"] for row in curve] == [1, 2] and "val_mean_auroc" in curve[0]
    assert (root / "metrics/plots/roc.png").stat().st_size > 5000
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
    assert metrics["coverage"]["images"] == 40
    assert 0.0 <= metrics["coverage"]["fraction_empty"] <= 1.0
    assert "in_region" in metrics  # data.source iu_phantom: checked against rendered masks
    assert (root / "metrics/plots/gallery.png").stat().st_size > 5000


def test_rerun_after_a_finished_run_trains_afresh(stage_outputs, tmp_path):
    from stages import classifier

    root, _, _ = stage_outputs
    params = {**PARAMS, "classifier": {**PARAMS["classifier"], "epochs": 1}}
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

    make_prepared(tmp_path / "prepared", n=20, size=64, views=2)
    params = {**PARAMS, "classifier": {**PARAMS["classifier"], "device": "cpu"}}
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
