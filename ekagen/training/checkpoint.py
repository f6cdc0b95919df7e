"""Checkpoints that load with ``torch.load(weights_only=True)``, and safetensors exports.

A checkpoint holds only state dicts, tensors, strings, ints, floats, lists and dicts: no pickled
Python objects, so loading one never runs code. Random-number-generator states (Python, NumPy,
torch, CUDA) are converted to tensors for that reason. Files are written atomically (a temporary
file renamed over the target) so a run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

LAST, BEST = "last.pt", "best.pt"


def capture_rng() -> dict[str, torch.Tensor]:
    """This process's RNG states (Python, NumPy, torch CPU, CUDA when initialised) as tensors."""
    version, state, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    if np_name != "MT19937":  # pragma: no cover - NumPy's legacy global generator is MT19937
        raise ValueError(f"unsupported NumPy RNG {np_name!r}")
    out = {
        "python_version": torch.tensor(int(version), dtype=torch.int64),
        "python_state": torch.tensor(state, dtype=torch.int64),
        "python_gauss": torch.tensor(math.nan if gauss is None else float(gauss),
                                     dtype=torch.float64),
        "numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64).copy()),
        "numpy_pos": torch.tensor(int(np_pos), dtype=torch.int64),
        "numpy_has_gauss": torch.tensor(int(np_has_gauss), dtype=torch.int64),
        "numpy_gauss": torch.tensor(float(np_gauss), dtype=torch.float64),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.stack(torch.cuda.get_rng_state_all())
    return out


def restore_rng(state: Mapping[str, torch.Tensor]) -> None:
    """Inverse of :func:`capture_rng`."""
    gauss = float(state["python_gauss"])
    random.setstate((int(state["python_version"]),
                     tuple(int(v) for v in state["python_state"].tolist()),
                     None if math.isnan(gauss) else gauss))
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32),
                         int(state["numpy_pos"]), int(state["numpy_has_gauss"]),
                         float(state["numpy_gauss"])))
    torch.set_rng_state(state["torch"].cpu().to(torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        saved = list(state["cuda"].cpu().to(torch.uint8))
        if len(saved) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(saved)


def save_checkpoint(payload: Mapping[str, Any], path: str | Path) -> Path:
    """``torch.save`` to a temporary file next to ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        torch.save(dict(payload), tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise ValueError(f"{path}: not a loadable checkpoint ({exc})") from exc


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached, contiguous CPU copy of ``module``'s state dict."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def export_safetensors(state: Mapping[str, torch.Tensor], path: str | Path,
                       config: Mapping[str, Any] | None = None,
                       config_path: str | Path | None = None) -> Path:
    """Write ``state`` as safetensors and, optionally, ``config`` as JSON next to it."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}
    save_file(tensors, str(path), metadata={"format": "pt"})
    if config is not None:
        target = Path(config_path) if config_path else path.with_suffix(".json")
        target.write_text(json.dumps(dict(config), indent=2) + "\n")
    return path


def read_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or a ``torch.save`` file (``weights_only=True``).

    Common wrappers are unwrapped: ``{"state_dict": ...}``, ``{"model": ...}`` and a
    ``module.`` prefix left by ``DataParallel``/``DistributedDataParallel``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot read weights ({exc})") from exc
    for key in ("state_dict", "model_state", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor)
                                                 for v in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)
