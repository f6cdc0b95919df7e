"""The generator's saved form: safetensors weights plus a JSON config, no pickled objects.

A model folder (``data/gid/<round>``) is loadable by the CLI without the training code's
objects: ``model.json`` names every architecture field and the ``adm`` and ``iek`` sections
the round was trained with (the student's view and the knowledge lookup belong to the model),
and the vocabulary is copied beside it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ekagen.config import AdmConfig, GeneratorConfig, IekConfig, from_dict
from ekagen.data.vocab import Vocabulary
from ekagen.models.generator import EKAGenerator, build_generator
from ekagen.training.checkpoint import export_safetensors
from ekagen.training.distributed import unwrap

MODEL_FILE, CONFIG_FILE, VOCAB_FILE = "model.safetensors", "model.json", "vocab.json"


def save_generator(model: EKAGenerator, out_dir: str | Path, vocab: Vocabulary,
                   adm: AdmConfig, iek: IekConfig, extra: dict[str, Any]) -> Path:
    out_dir = Path(out_dir)
    model = unwrap(model)
    config = {"kind": "ekagen-generator", "model": model.cfg.to_dict(),
              "vocab_size": model.vocab_size, "views": model.views, "pad_id": model.pad_id,
              "weights": MODEL_FILE, "adm": asdict(adm), "iek": asdict(iek), **extra}
    export_safetensors(model.state_dict(), out_dir / MODEL_FILE, config, out_dir / CONFIG_FILE)
    vocab.save(out_dir / VOCAB_FILE)
    return out_dir


def load_generator(model_dir: str | Path, map_location: str | torch.device = "cpu",
                   ) -> tuple[EKAGenerator, Vocabulary, dict[str, Any]]:
    """Model (eval mode), vocabulary and config of a folder written by :func:`save_generator`."""
    from safetensors.torch import load_file

    model_dir = Path(model_dir)
    for name in (CONFIG_FILE, VOCAB_FILE):
        if not (model_dir / name).is_file():
            raise FileNotFoundError(f"{model_dir}: incomplete generator folder, {name} missing")
    config = json.loads((model_dir / CONFIG_FILE).read_text())
    if config.get("kind") != "ekagen-generator":
        raise ValueError(f"{model_dir / CONFIG_FILE}: not an ekagen generator config")
    weights = model_dir / config.get("weights", MODEL_FILE)
    if not weights.is_file():
        raise FileNotFoundError(f"{model_dir}: incomplete generator folder, {weights.name} missing")
    cfg = from_dict(GeneratorConfig, config["model"], f"{model_dir / CONFIG_FILE} model")
    model = build_generator(cfg, int(config["vocab_size"]), int(config["views"]),
                            int(config["pad_id"]), state_follows=True)
    model.load_state_dict(load_file(str(weights)))
    vocab = Vocabulary.load(model_dir / VOCAB_FILE)
    if len(vocab) != model.vocab_size:
        raise ValueError(f"{model_dir}: vocabulary has {len(vocab)} words, model "
                         f"{model.vocab_size}")
    return model.to(map_location).eval(), vocab, config


def trained_settings(config: dict[str, Any], where: str) -> tuple[AdmConfig, IekConfig]:
    """The ``adm`` and ``iek`` sections a saved generator was trained with."""
    for key in ("adm", "iek"):
        if not isinstance(config.get(key), dict):
            raise ValueError(f"{where}: no {key!r} settings; a folder from an older ekagen "
                             "(rerun its round)")
    return (from_dict(AdmConfig, config["adm"], f"{where} adm"),
            from_dict(IekConfig, config["iek"], f"{where} iek"))
