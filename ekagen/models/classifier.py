"""DiagnosisBot: a torchvision CNN (or Swin) turned into a 14-way multi-label classifier.

Input convention: a batch of grayscale radiographs as float tensors in [0, 1], shape
(B, 1, H, W). The model replicates the single channel to RGB and applies the ImageNet
normalisation itself, so an ImageNet state dict for the backbone applies unchanged and the
saved model needs nothing but ``x / 255`` from its user (``model.json`` records this).

Backbones: ``resnet18/34/50/101``, ``densenet121`` and ``swin_t`` (all ``weights=None``: never
a download). Pretrained weights come only from a local file; a head of the wrong shape in that
file (e.g. ImageNet's 1000 classes) is dropped and re-initialised, any other mismatch is an
error that names the keys.

:meth:`DiagnosisBot.features_and_logits` exposes the last stage's feature map (B, C, h, w)
next to the logits; Grad-CAM differentiates the logits with respect to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from ekagen.models.backbone import IMAGENET_MEAN, IMAGENET_STD, RadiographInput
from ekagen.observations import OBSERVATIONS
from ekagen.training.checkpoint import export_safetensors, read_state_file
from ekagen.training.distributed import unwrap

BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "densenet121", "swin_t")
HEADS = {"resnet": "fc", "densenet121": "classifier", "swin_t": "head"}
MODEL_FILE, CONFIG_FILE = "model.safetensors", "model.json"


def _family(backbone: str) -> str:
    return "resnet" if backbone.startswith("resnet") else backbone


class DiagnosisBot(nn.Module):
    """Multi-label classifier over ``num_classes`` observations (logits out)."""

    def __init__(self, backbone: str = "resnet18", num_classes: int = len(OBSERVATIONS)) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"unknown classifier backbone {backbone!r}; choose one of "
                             f"{BACKBONES}")
        self.backbone_name = backbone
        self.num_classes = num_classes
        net = getattr(torchvision.models, backbone)(weights=None)
        head = HEADS[_family(backbone)]
        old = getattr(net, head)
        setattr(net, head, nn.Linear(old.in_features, num_classes))
        self.net = net
        self.normalise = RadiographInput()

    @property
    def head(self) -> nn.Linear:
        return getattr(self.net, HEADS[_family(self.backbone_name)])

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(last-stage feature map (B, C, h, w), logits (B, num_classes))."""
        x = self.normalise(images)
        net = self.net
        family = _family(self.backbone_name)
        if family == "resnet":
            x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
            fmap = net.layer4(net.layer3(net.layer2(net.layer1(x))))
            pooled = torch.flatten(net.avgpool(fmap), 1)
        elif family == "densenet121":
            fmap = net.features(x)  # ends with norm5; torchvision applies ReLU after it
            pooled = torch.flatten(F.adaptive_avg_pool2d(F.relu(fmap), 1), 1)
        else:  # swin_t: channels-last stages, then LayerNorm
            fmap = net.norm(net.features(x)).permute(0, 3, 1, 2)
            pooled = torch.flatten(net.avgpool(fmap), 1)
        return fmap, self.head(pooled)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(images)[1]

    def config(self, image_size: int) -> dict[str, Any]:
        """What ``model.json`` records so the model loads without the training code."""
        return {
            "architecture": "DiagnosisBot",
            "backbone": self.backbone_name,
            "num_classes": self.num_classes,
            "classes": list(OBSERVATIONS) if self.num_classes == len(OBSERVATIONS) else [],
            "image_size": int(image_size),
            "input": {"channels": 1, "scale": "pixel / 255", "replicate_to_rgb": True,
                      "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                      "normalised_inside_model": True},
            "output": "logits; sigmoid gives per-class probabilities",
            "weights": MODEL_FILE,
        }


def load_pretrained(model: DiagnosisBot, path: str | Path) -> list[str]:
    """Load a local backbone state dict into ``model``; returns the head keys re-initialised.

    Accepts a torchvision-style state dict (``conv1.weight`` ... ``fc.weight``), one saved from
    a :class:`DiagnosisBot` (``net.`` prefix), wrapped ones (``state_dict``/``model`` keys,
    ``module.`` prefix), as ``.safetensors`` or a ``torch.save`` file read with
    ``weights_only=True``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"classifier.pretrained: {path}: weights file not found "
                                "(give a local state-dict file, or \"\" to train from scratch)")
    state = read_state_file(path)
    if state and all(k.startswith("net.") for k in state):
        state = {k[len("net."):]: v for k, v in state.items()}
    target = model.net.state_dict()
    head = HEADS[_family(model.backbone_name)] + "."
    dropped = [k for k in state if k.startswith(head) and k in target
               and state[k].shape != target[k].shape]
    state = {k: v for k, v in state.items() if k not in dropped}
    bad_shape = [k for k in state if k in target and state[k].shape != target[k].shape]
    missing = [k for k in target if k not in state and not k.startswith(head)]
    unexpected = [k for k in state if k not in target]
    if bad_shape or missing or unexpected:
        def few(keys: list[str]) -> str:
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")

        problems = []
        if bad_shape:
            problems.append(f"shape mismatch: {few(bad_shape)}")
        if missing:
            problems.append(f"missing: {few(missing)}")
        if unexpected:
            problems.append(f"unexpected: {few(unexpected)}")
        raise ValueError(f"classifier.pretrained: {path} does not fit backbone "
                         f"{model.backbone_name!r}: " + "; ".join(problems))
    model.net.load_state_dict(state, strict=False)
    if dropped:  # the file's head had another number of classes: keep a fresh one
        model.head.reset_parameters()
    return dropped


def build_classifier(backbone: str = "resnet18", num_classes: int = len(OBSERVATIONS),
                     pretrained: str | Path = "") -> DiagnosisBot:
    """A :class:`DiagnosisBot`, from scratch or from a local pretrained state dict."""
    model = DiagnosisBot(backbone, num_classes)
    if pretrained:
        load_pretrained(model, pretrained)
    return model


def save_classifier(model: DiagnosisBot, out_dir: str | Path, image_size: int,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """``model.safetensors`` + ``model.json`` in ``out_dir``."""
    out_dir = Path(out_dir)
    config = {**model.config(image_size), **(dict(extra) if extra else {})}
    model = unwrap(model)
    export_safetensors(model.state_dict(), out_dir / MODEL_FILE, config, out_dir / CONFIG_FILE)
    return out_dir / MODEL_FILE


def load_classifier(model_dir: str | Path,
                    map_location: str | torch.device = "cpu") -> tuple[DiagnosisBot, dict]:
    """The model saved by :func:`save_classifier` (eval mode) and its config."""
    model_dir = Path(model_dir)
    config_path = model_dir / CONFIG_FILE
    if not config_path.is_file():
        raise FileNotFoundError(f"{config_path}: classifier config missing; run "
                                "`dvc repro classifier`")
    config = json.loads(config_path.read_text())
    model = DiagnosisBot(config["backbone"], int(config["num_classes"]))
    from safetensors.torch import load_file

    weights = model_dir / config.get("weights", MODEL_FILE)
    if not weights.is_file():
        raise FileNotFoundError(f"{weights}: classifier weights missing")
    model.load_state_dict(load_file(str(weights)))
    return model.to(map_location).eval(), config
