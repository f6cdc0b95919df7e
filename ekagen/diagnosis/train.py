"""Training and evaluating DiagnosisBot: the ``classifier`` stage's logic.

The model is trained on image-level labels (every view of a study gets the study's labels)
with BCE over the 14 observations through the shared engine (:mod:`ekagen.training`), model
selection on the validation mean AUROC. Per-class thresholds are then chosen on validation
(:mod:`ekagen.diagnosis.metrics`) and applied to validation and test; the test split is never
used to select anything.

Metrics are computed per image (the unit the classifier sees) and per study (probability =
max over the study's views, i.e. a study is positive when any view is, the same rule the ADM
stage uses for the per-study diagnosis).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from ekagen.config import ClassifierConfig, RuntimeConfig
from ekagen.diagnosis.data import StudyImages, label_matrix, split_dataset
from ekagen.diagnosis.metrics import (
    choose_thresholds,
    classification_metrics,
    mean_auroc,
    parse_method,
)
from ekagen.models.classifier import DiagnosisBot, build_classifier
from ekagen.observations import OBSERVATIONS
from ekagen.training.distributed import DistInfo
from ekagen.training.engine import EngineConfig, FitResult, Trainer

MONITOR = "val_mean_auroc"


def classifier_loss(logits: torch.Tensor, target: torch.Tensor,
                    weight: torch.Tensor) -> torch.Tensor:
    """BCE over the observations, averaged over the (image, class) pairs with weight > 0."""
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    return (bce * weight).sum() / weight.sum().clamp_min(1.0)


def train_step(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return classifier_loss(model(batch["image"]), batch["target"], batch["weight"])


@torch.no_grad()
def predict(model: torch.nn.Module, dataset: StudyImages, batch_size: int = 64,
            device: torch.device | str = "cpu", workers: int = 0) -> np.ndarray:
    """Sigmoid probabilities (items, classes) in dataset order."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    out = []
    for batch in loader:
        out.append(torch.sigmoid(model(batch["image"].to(device)).float()).cpu())
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, model.num_classes), np.float32)


def optimizer_factory(cfg: ClassifierConfig) -> Callable[[torch.nn.Module], torch.optim.Optimizer]:
    def make(model: torch.nn.Module) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        momentum = cfg.momentum
        if momentum is None:
            return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        return torch.optim.SGD(params, lr=cfg.lr, momentum=momentum, nesterov=momentum > 0,
                               weight_decay=cfg.weight_decay)
    return make


def scheduler_factory(cfg: ClassifierConfig) -> Callable[[torch.optim.Optimizer, int], Any]:
    schedule = cfg.schedule

    def make(optimizer: torch.optim.Optimizer, steps_per_epoch: int) -> Any:
        if schedule.kind == "cosine":  # per epoch, to 0 at the last
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
        if schedule.kind == "step":
            return torch.optim.lr_scheduler.StepLR(optimizer, step_size=schedule.every,
                                                   gamma=schedule.factor)
        return None
    return make


def fingerprint(cfg: ClassifierConfig, seed: int, prepared_dir: str | Path,
                image_shape: tuple[int, ...]) -> str:
    """Identifies (configuration, data): a checkpoint with another fingerprint is not resumed."""
    digest = hashlib.sha256()
    settings = dataclasses.asdict(cfg)
    digest.update(json.dumps({"cfg": settings, "seed": seed, "images": list(image_shape)},
                             sort_keys=True).encode())
    studies = Path(prepared_dir) / "studies.parquet"
    if studies.is_file():
        with studies.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


@dataclass
class TrainedClassifier:
    model: DiagnosisBot
    fit: FitResult
    dist: DistInfo


def train_classifier(cfg: ClassifierConfig, runtime: RuntimeConfig, table: pd.DataFrame,
                     images_path: str | Path,
                     checkpoint_dir: str | Path | None, seed: int, fingerprint_: str = "",
                     on_epoch_end: Callable[[dict], None] | None = None,
                     progress: bool = True) -> TrainedClassifier:
    """Train DiagnosisBot on the train split, selecting the epoch by validation mean AUROC."""
    parse_method(cfg.threshold)  # fail before training on a bad threshold method
    torch.manual_seed(seed)
    model = build_classifier(cfg.backbone, len(OBSERVATIONS), cfg.pretrained)
    train_set = split_dataset(table, images_path, "train", cfg.uncertain_as, cfg.augment)
    val_set = split_dataset(table, images_path, "val", cfg.uncertain_as, augment=False)
    if len(train_set) == 0 or len(val_set) == 0:
        raise ValueError(f"classifier needs train and val images, got {len(train_set)} and "
                         f"{len(val_set)}")
    val_targets, val_weights = val_set.item_targets()

    def evaluate(net: torch.nn.Module) -> dict[str, float]:
        device = next(net.parameters()).device
        probs = predict(net, val_set, runtime.batch_size, device, runtime.loader_workers)
        p = np.clip(probs, 1e-7, 1 - 1e-7)
        bce = -(val_targets * np.log(p) + (1 - val_targets) * np.log(1 - p))
        loss = float((bce * val_weights).sum() / max(val_weights.sum(), 1.0))
        return {"val_loss": loss, MONITOR: mean_auroc(val_targets, probs, val_weights)}

    engine = EngineConfig(
        epochs=cfg.epochs, batch_size=cfg.batch_size, monitor=MONITOR, mode="max",
        patience=cfg.patience, max_steps=cfg.max_steps, grad_clip=cfg.grad_clip,
        device=runtime.device, amp=cfg.amp,
        amp_cpu=cfg.amp_cpu, seed=seed, num_workers=runtime.loader_workers,
        checkpoint_dir=checkpoint_dir, fingerprint=fingerprint_, progress=progress,
        desc="classifier")
    trainer = Trainer(model, train_set, train_step, optimizer_factory(cfg), engine,
                      scheduler=scheduler_factory(cfg), evaluate=evaluate,
                      on_epoch_end=on_epoch_end)
    result = trainer.fit()
    return TrainedClassifier(model=result.model, fit=result, dist=trainer.dist)


def _study_level(dataset: StudyImages, probs: np.ndarray,
                 table: pd.DataFrame, uncertain_as: str) -> tuple[np.ndarray, ...]:
    """Per-study (targets, weights, probs = max over views) for a dataset's items."""
    from ekagen.diagnosis.data import encode_targets

    studies = np.array([s for s, _ in dataset.items])
    order, inverse = np.unique(studies, return_inverse=True)
    study_probs = np.full((len(order), probs.shape[1]), -np.inf)
    np.maximum.at(study_probs, inverse, probs)
    targets, weights = encode_targets(label_matrix(table)[order], uncertain_as)
    return targets, weights, study_probs


def evaluate_classifier(model: DiagnosisBot, table: pd.DataFrame, images_path: str | Path,
                        cfg: ClassifierConfig, runtime: RuntimeConfig,
                        device: torch.device | str = "cpu") -> dict:
    """Thresholds chosen on validation, then metrics on validation and test.

    Returns ``{"thresholds": array, "methods": [...], "metrics": {...}, "curves": {split:
    (targets, weights, probs)}}``.
    """
    splits = {}
    for split in ("val", "test"):
        dataset = split_dataset(table, images_path, split, cfg.uncertain_as)
        probs = predict(model, dataset, runtime.batch_size, device, runtime.loader_workers)
        targets, weights = dataset.item_targets()
        splits[split] = (dataset, targets, weights, probs)
    _, val_t, val_w, val_p = splits["val"]
    thresholds, methods = choose_thresholds(val_t, val_p, val_w, cfg.threshold)
    metrics: dict[str, Any] = {}
    for split, (dataset, targets, weights, probs) in splits.items():
        image = classification_metrics(targets, probs, thresholds, weights)
        if len(dataset):
            st, sw, sp = _study_level(dataset, probs, table, cfg.uncertain_as)
            study = classification_metrics(st, sp, thresholds, sw)
            study.pop("per_class")
        else:
            study = {}
        metrics[split] = {"image": image, "study": study}
    return {"thresholds": thresholds, "methods": methods, "metrics": metrics,
            "curves": {s: (t, w, p) for s, (_, t, w, p) in splits.items()}}


def thresholds_payload(thresholds: np.ndarray, methods: list[str], method: str) -> dict:
    """The ``thresholds.json`` document."""
    return {
        "method": method,
        "chosen_on": "val (image level)",
        "rule": "positive when probability >= threshold",
        "observations": list(OBSERVATIONS),
        "vector": [round(float(t), 8) for t in thresholds],
        "classes": {name: {"threshold": round(float(t), 8), "method": m}
                    for name, t, m in zip(OBSERVATIONS, thresholds, methods, strict=True)},
    }


def load_thresholds(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: thresholds missing; run `dvc repro classifier`")
    payload = json.loads(path.read_text())
    if payload.get("observations") != list(OBSERVATIONS):
        raise ValueError(f"{path}: observations differ from ekagen.observations.OBSERVATIONS")
    return np.asarray(payload["vector"], dtype=np.float32)
