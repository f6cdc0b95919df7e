"""CNN backbone of the generator: a torchvision ResNet trunk with optional dilation and frozen BN.

The paper uses ResNet-101 with a dilated last stage (stride 16 instead of 32, so small
findings keep their own feature cells) and frozen batch norm (batch statistics of 8 X-rays are
too noisy to learn). Both are parameters here; the CPU default is a small ResNet.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RadiographInput(nn.Module):
    """Grey radiographs in [0, 1] (B, 1, H, W) -> the normalised RGB input of a torchvision
    trunk: the channel repeated, then each channel standardised with ImageNet statistics.

    Every CNN of the project (DiagnosisBot and the generator's trunk, which is initialised
    from it) takes its input through this one module, so a trunk whose frozen batch norm
    learned DiagnosisBot's input statistics sees exactly those statistics again, and an
    ImageNet state dict applies unchanged.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images (B, 1 or 3, H, W), got {tuple(images.shape)}")
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        return (images - self.mean.to(images.dtype)) / self.std.to(images.dtype)


class Backbone(nn.Module):
    """ResNet trunk without pooling and classifier: radiographs (B, 1, H, W) in [0, 1] ->
    features (B, C, h, w); the input normalisation is the trunk's own (:class:`RadiographInput`).
    """

    def __init__(self, name: str, dilation: bool, frozen_bn: bool, weights: str = "",
                 state_follows: bool = False) -> None:
        super().__init__()
        if name not in RESNETS:
            raise ValueError(f"unknown generator backbone {name!r}; choose one of {RESNETS}")
        norm = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
        dilate = [False, False, dilation]
        net = getattr(torchvision.models, name)(
            weights=None, norm_layer=norm,
            **({"replace_stride_with_dilation": dilate} if name in ("resnet50", "resnet101")
               else {}))
        if weights and not state_follows:
            load_backbone_weights(net, weights)
        self.normalise = RadiographInput()
        self.body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool,
                                  net.layer1, net.layer2, net.layer3, net.layer4)
        self.channels = 512 if name in ("resnet18", "resnet34") else 2048

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalise(images))


def load_backbone_weights(net: nn.Module, path: str) -> None:
    """Load a local ResNet state dict (safetensors or torch file); the fc head is ignored.

    The pipeline's own DiagnosisBot (``data/classifier/model.safetensors``) qualifies: its
    trunk has learned these very radiographs, which spares the generator learning vision from
    nothing on a CPU budget.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{file}: backbone weights not found (no download is attempted)")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(file))
    else:
        state = torch.load(file, map_location="cpu", weights_only=True)
    if state and all(k.startswith("net.") for k in state):  # a DiagnosisBot checkpoint
        state = {k[len("net."):]: v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(f"{file}: not a matching ResNet state dict (missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]})")


def build_backbone(name: str = "resnet18", dilation: bool = False, frozen_bn: bool = False,
                   weights: str = "", state_follows: bool = False) -> Backbone:
    """``state_follows``: a whole saved model is loaded next, so ``weights`` are skipped."""
    return Backbone(name, dilation, frozen_bn, weights, state_follows)
