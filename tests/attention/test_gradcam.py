from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from ekagen.attention.gradcam import grad_cam, normalise_maps
from ekagen.models.classifier import build_classifier


class QuadrantNet(nn.Module):
    """Hand-set CNN: feature channel q responds to bright pixels in quadrant q (as if it had
    learned position-specific detectors); class q's logit is driven by channel q only."""

    def __init__(self, size: int = 32) -> None:
        super().__init__()
        self.detect = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        with torch.no_grad():
            self.detect.weight.fill_(1.0 / 9)
            self.detect.bias.fill_(-0.5)
        gate = torch.zeros(4, size // 4, size // 4)
        half = size // 8
        for q, (r, c) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
            gate[q, r * half : (r + 1) * half, c * half : (c + 1) * half] = 1
        self.register_buffer("gate", gate)
        self.head = nn.Linear(4, 4)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(4) * 200)
            self.head.bias.fill_(-1.0)

    def features_and_logits(self, x):
        fmap = F.avg_pool2d(F.relu(self.detect(x)), 4) * self.gate
        return fmap, self.head(fmap.mean(dim=(2, 3)))


def _square(image: torch.Tensor, quadrant: int, size: int = 32) -> None:
    r, c = divmod(quadrant, 2)
    half, side = size // 2, size // 4
    r0, c0 = r * half + (half - side) // 2, c * half + (half - side) // 2
    image[0, r0 : r0 + side, c0 : c0 + side] = 1.0


def _quadrant_mass(cam: torch.Tensor, quadrant: int) -> float:
    r, c = divmod(quadrant, 2)
    h, w = cam.shape[-2] // 2, cam.shape[-1] // 2
    return float(cam[r * h : (r + 1) * h, c * w : (c + 1) * w].sum() / cam.sum())


def test_cam_mass_concentrates_in_the_deciding_quadrant():
    net = QuadrantNet().eval()
    images = torch.zeros(3, 1, 32, 32)
    _square(images[0], 0)
    _square(images[0], 3)  # image 0: squares in quadrants 0 and 3
    _square(images[1], 2)  # image 1: quadrant 2
    _square(images[2], 1)
    out = grad_cam(net, images, which=lambda p: p >= 0.5)
    assert out.computed.tolist() == [[True, False, False, True], [False, False, True, False],
                                     [False, True, False, False]]
    assert _quadrant_mass(out.cams[0, 0], 0) > 0.95
    assert _quadrant_mass(out.cams[0, 3], 3) > 0.95
    assert _quadrant_mass(out.cams[1, 2], 2) > 0.95
    assert _quadrant_mass(out.cams[2, 1], 1) > 0.95
    assert out.cams[1, 0].sum() == 0  # not asked for: left empty
    assert out.cams.max() == pytest.approx(1.0) and out.cams.min() >= 0


def test_batched_maps_equal_one_image_at_a_time():
    torch.manual_seed(0)
    model = build_classifier("resnet18").eval()
    images = torch.rand(3, 1, 64, 64)
    batched = grad_cam(model, images)
    for i in range(3):
        single = grad_cam(model, images[i : i + 1])
        torch.testing.assert_close(batched.cams[i], single.cams[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(batched.probs[i], single.probs[0], atol=1e-5, rtol=1e-5)
    assert batched.cams.shape == (3, 14, 64, 64)


def test_grad_cam_refuses_training_mode():
    with pytest.raises(ValueError, match="eval mode"):
        grad_cam(QuadrantNet().train(), torch.zeros(1, 1, 32, 32))


def test_normalise_maps():
    maps = torch.tensor([[[1.0, 3.0], [2.0, 5.0]], [[2.0, 2.0], [2.0, 2.0]]])
    out = normalise_maps(maps)
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))
    assert out[1].abs().sum() == 0  # constant: no spatial information
