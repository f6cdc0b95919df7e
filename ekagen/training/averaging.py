"""Exponential moving average of a model's weights (``train.ema_decay``), and the precision plan.

Why an average: at a constant learning rate the generator's weights at an epoch's end follow
that epoch's last batches, so validation flips between short and long reports from one epoch
to the next (README, "What to expect"). Evaluating and keeping the average of the recent
weights instead of the last ones removes that dependence on batch order without lowering the
rate the optimiser trains at.

The average is bias-corrected: after ``t`` optimiser steps it is the weighted mean of the
weights after steps ``1..t`` with weights ``decay ** (t - i)``, normalised to sum to one, so
it never mixes in the weights training started from and needs no warm-up rule. Its horizon is
about ``1 / (1 - decay)`` steps. Integer buffers (BatchNorm's step count) are copied.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn


class WeightAverage:
    """The running average of ``model.state_dict()``'s floating-point entries."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold in the weights after one more optimiser step."""
        self.updates += 1
        # weight of the newest weights in a decay-weighted mean of all `updates` of them
        fresh = (1.0 - self.decay) / (1.0 - self.decay ** self.updates)
        for name, value in model.state_dict().items():
            shadow = self.shadow[name]
            if shadow.is_floating_point():
                shadow.lerp_(value.detach().to(shadow.dtype), fresh)
            else:
                shadow.copy_(value)

    @contextmanager
    def applied(self, model: nn.Module) -> Iterator[None]:
        """``model`` holds the average inside the block and its own weights again after it."""
        raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict(self.shadow)
        try:
            yield
        finally:
            model.load_state_dict(raw)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates,
                "shadow": {k: v.detach().cpu().clone() for k, v in self.shadow.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if float(state["decay"]) != self.decay:
            raise ValueError(f"checkpoint's ema decay {state['decay']} differs from {self.decay}")
        self.updates = int(state["updates"])
        for name, value in state["shadow"].items():
            self.shadow[name].copy_(value)


def precision_plan(device: torch.device, amp: bool, amp_cpu: bool,
                   native_bf16: bool) -> tuple[bool, str]:
    """(use bf16 autocast, the precision with the reason) for a training run.

    A CPU trains in fp32 unless ``amp_cpu`` asks for bf16: a run's numbers then do not depend
    on whether the CPU happens to have AMX or AVX512-BF16 (measured in the README); a GPU with
    bf16 uses it whenever ``amp`` is on."""
    if not amp:
        return False, "fp32: amp is false"
    if device.type == "cpu" and not amp_cpu:
        return False, "fp32: a CPU trains in fp32 unless amp_cpu is true"
    if not native_bf16:
        where = "this CPU has no native bf16 kernels (AMX or AVX512-BF16)" \
            if device.type == "cpu" else f"{device} has no bf16 support"
        return False, f"fp32: {where}"
    if device.type == "cpu":
        return True, "bf16 autocast: amp_cpu is true and this CPU has native bf16 kernels"
    return True, f"bf16 autocast: amp is true and {device} supports bf16"
