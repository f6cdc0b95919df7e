"""Batched Grad-CAM on a model's last stage.

For class c, Grad-CAM weights each channel k of the last feature map A (B, K, h, w) by the
spatial mean of d logit_c / d A_k and sums: ``cam_c = ReLU(sum_k alpha_k^c A_k)``. The map is
upsampled (bilinear) to the image size and min-max normalised to [0, 1] per image and class
(a constant map becomes all zeros).

Batching: one forward pass per batch, then one backward pass *per class* (of the summed logit
over the batch, which in eval mode gives every image its own gradient because images do not
interact), only for classes that some image in the batch asks for. The model must provide
``features_and_logits(images) -> (feature map, logits)`` (see
:class:`ekagen.models.classifier.DiagnosisBot`) and be in eval mode.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class CamBatch:
    probs: torch.Tensor  # (B, C) sigmoid of the logits
    cams: torch.Tensor  # (B, C, H, W) in [0, 1]; zeros where not computed
    computed: torch.Tensor  # (B, C) bool: which (image, class) maps were asked for
    features: torch.Tensor | None = None  # (B, K) last-stage features, spatially averaged


def normalise_maps(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each (..., H, W) map to [0, 1].

    A map that is constant up to rounding (relative spread below 1e-4, e.g. a 1x1 feature map
    upsampled) carries no spatial information and becomes all zeros.
    """
    flat = maps.flatten(-2)
    lo = flat.min(dim=-1, keepdim=True).values
    hi = flat.max(dim=-1, keepdim=True).values
    span = hi - lo
    flat_enough = span <= 1e-4 * torch.maximum(hi.abs(), lo.abs()).clamp_min(1e-8)
    out = torch.where(flat_enough, torch.zeros_like(flat), (flat - lo) / span.clamp_min(1e-12))
    return out.view_as(maps)


def grad_cam(model: nn.Module, images: torch.Tensor,
             which: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | None = None,
             out_size: tuple[int, int] | None = None) -> CamBatch:
    """Grad-CAM maps for the (image, class) pairs selected by ``which``.

    ``which``: a bool (B, C) mask, a function of the probabilities returning one (e.g.
    ``lambda p: p >= thresholds``), or ``None`` for every class.
    """
    if model.training:
        raise ValueError("grad_cam needs the model in eval mode (BatchNorm batch statistics "
                         "would mix images)")
    size = out_size or tuple(images.shape[-2:])
    with torch.enable_grad():
        fmap, logits = model.features_and_logits(images)
        probs = torch.sigmoid(logits.detach().float())
        if which is None:
            mask = torch.ones_like(probs, dtype=torch.bool)
        elif callable(which):
            mask = which(probs).to(torch.bool)
        else:
            mask = which.to(device=probs.device, dtype=torch.bool)
        batch, classes = probs.shape
        cams = torch.zeros(batch, classes, *size, device=images.device)
        wanted = [c for c in range(classes) if bool(mask[:, c].any())]
        for i, c in enumerate(wanted):
            (grads,) = torch.autograd.grad(logits[:, c].sum(), fmap,
                                           retain_graph=i < len(wanted) - 1)
            weights = grads.float().mean(dim=(2, 3), keepdim=True)
            cam = F.relu((weights * fmap.detach().float()).sum(dim=1, keepdim=True))
            cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
            cam = normalise_maps(cam[:, 0])
            cams[:, c] = torch.where(mask[:, c, None, None], cam, torch.zeros_like(cam))
    features = fmap.detach().float().mean(dim=(2, 3))
    return CamBatch(probs=probs, cams=cams, computed=mask, features=features)
