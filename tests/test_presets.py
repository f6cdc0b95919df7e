"""The paper preset is one command away, and it builds the published model."""

from __future__ import annotations

import shlex
import subprocess
import sys

import pytest
import torch
import yaml

from ekagen.config import validate_params
from ekagen.presets import apply_preset, load_preset, names, set_arguments
from tests.conftest import REPO


def _preset_params(name: str) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    return validate_params(apply_preset(params, load_preset(name)))


def test_every_preset_is_valid_against_the_schema():
    assert {"paper", "paper-mimic"} <= set(names())
    for name in names():
        _preset_params(name)


def test_paper_preset_builds_the_published_generator():
    from ekagen.models.generator import build_generator

    sections = _preset_params("paper")
    model_cfg, data = sections["model"], sections["data"]
    assert data.image_size == 300
    assert sections["classifier"].backbone == "resnet34"
    assert sections["classifier"].momentum == 0.9  # SGD, Nesterov
    assert sections["train"].schedule.every == 20 and sections["train"].lr == 1e-4
    assert sections["train"].backbone_lr == 1e-5 and sections["train"].epochs == 50
    assert sections["iek"].rule == "threshold" and sections["decode"].eos_threshold == 0
    model = build_generator(model_cfg, vocab_size=50, views=2, state_follows=True).eval()
    assert len(model.encoder) == 6 and len(model.decoder) == 6
    for layer in [*model.encoder, *model.decoder]:
        widths = {m.out_features for m in layer.ffn.modules() if isinstance(m, torch.nn.Linear)}
        assert widths == {2048, 256}
    assert model.backbone.channels == 2048
    norms = {type(m).__name__ for m in model.backbone.modules() if "BatchNorm" in type(m).__name__}
    assert norms == {"FrozenBatchNorm2d"}
    assert len(model.backbone.body[6]) == 23  # ResNet-101's third stage
    with torch.no_grad():
        features = model.backbone_features(torch.rand(1, 2, 300, 300))
    assert features.shape[-2:] == (19, 19)  # dilated last stage: output stride 16, not 32
    assert model.cfg.fusion == "paper" and model.fuses_per_layer


def test_mimic_preset_inherits_the_paper_and_changes_what_mimic_needs():
    mimic, paper = load_preset("paper-mimic"), load_preset("paper")
    assert {k: v for k, v in mimic.items() if paper.get(k) != v} == {
        "data.dataset": "mimic_cxr", "data.views": [0], "data.min_freq": 10,
        "train.batch_size": 32}


def test_cli_prints_dvc_set_arguments():
    done = subprocess.run([sys.executable, "-m", "ekagen.cli", "preset", "paper"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    args = shlex.split(done.stdout)
    assert args == set_arguments(load_preset("paper"))
    pairs = dict(a.split("=", 1) for a in args[1::2])
    assert args[::2] == ["-S"] * len(pairs)
    assert pairs["model.backbone"] == "resnet101" and pairs["model.dilation"] == "true"
    # DVC parses each value as YAML, as params.yaml would hold it
    assert yaml.safe_load(pairs["train.backbone_lr"]) == 1e-5
    assert yaml.safe_load(pairs["train.scheduler"]) == "step:20:0.1"
    bad = subprocess.run([sys.executable, "-m", "ekagen.cli", "preset", "nope"],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "no preset 'nope'" in bad.stderr


def test_unknown_preset_key_is_an_error():
    with pytest.raises(ValueError, match="no key 'layers'"):
        apply_preset(yaml.safe_load((REPO / "params.yaml").read_text()), {"model.layers": 6})
