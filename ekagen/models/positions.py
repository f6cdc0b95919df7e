"""2-D sine position encodings for image feature maps (DETR/CATR style)."""

from __future__ import annotations

import math

import torch


def sine_positions_2d(height: int, width: int, dim: int, temperature: float = 10000.0,
                      device: torch.device | None = None) -> torch.Tensor:
    """``(height * width, dim)`` encodings: half the channels for y, half for x.

    Coordinates are normalised to [0, 2*pi] so a feature map of any size gets the same range,
    which keeps the encoding meaningful when the image size changes between presets.
    """
    if dim % 4:
        raise ValueError(f"position dimension must be divisible by 4, got {dim}")
    quarter = dim // 4
    scale = 2 * math.pi
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height * scale
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * scale
    freqs = temperature ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    y = ys[:, None] / freqs  # (H, quarter)
    x = xs[:, None] / freqs  # (W, quarter)
    y_enc = torch.cat([y.sin(), y.cos()], dim=1)[:, None, :].expand(height, width, 2 * quarter)
    x_enc = torch.cat([x.sin(), x.cos()], dim=1)[None, :, :].expand(height, width, 2 * quarter)
    return torch.cat([y_enc, x_enc], dim=2).reshape(height * width, dim)
