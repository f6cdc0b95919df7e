"""The shared training engine (loop, DDP, checkpoints, resume) used by every trained model."""

from ekagen.training.engine import (
    EngineConfig,
    FitResult,
    NonFiniteLossError,
    Trainer,
    fit,
    to_device,
)

__all__ = ["EngineConfig", "FitResult", "NonFiniteLossError", "Trainer", "fit", "to_device"]
