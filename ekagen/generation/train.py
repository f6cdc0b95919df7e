"""One GID round: train the generator (optionally distilling from the previous round).

Round 0 trains with cross-entropy alone. Round k freezes round k-1's best model as the
teacher and adds ``delta * T^2 * KL(teacher/T || student/T)``; the teacher sees the plain
image and the student the ADM image, as in the paper's figure (``gid.swap_views`` reproduces
the authors' code, which swapped them). The student starts from the teacher's weights
(``gid.student_init``, set by the train stage), so the rounds keep improving one model, the
paper's "iteratively optimized". Model selection uses greedy decodes of validation.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch
from torch import nn

from ekagen.attention.adm import adm_views
from ekagen.config import AdmConfig, GidConfig, RuntimeConfig, TrainConfig
from ekagen.evaluation.ce import ce_scores, label_values
from ekagen.evaluation.nlg import bleu4
from ekagen.generation.data import ReportStudies
from ekagen.inference import ReportWriter
from ekagen.models.generator import EKAGenerator
from ekagen.training.distributed import env_world, select_device, unwrap
from ekagen.training.engine import EngineConfig, FitResult, Trainer
from ekagen.training.losses import gid_loss


def trim_batch(tokens: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Drop padding columns every report of the batch has (shorter sequences, same loss)."""
    length = int((tokens != pad_id).sum(1).max())
    return tokens[:, : max(length, 2)]


class GenerationStep:
    """The engine's ``train_step``: student on its view, teacher (if any) on the other."""

    def __init__(self, cfg: TrainConfig, gid: GidConfig, adm: AdmConfig, pad_id: int,
                 teacher: EKAGenerator | None = None,
                 tokens_per_batch: float | None = None) -> None:
        self.cfg, self.gid, self.adm, self.pad_id, self.teacher = cfg, gid, adm, pad_id, teacher
        self.tokens_per_batch = tokens_per_batch  # see ekagen/training/losses.py

    def __call__(self, model: nn.Module, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
        if "features" in batch:  # cached frozen-backbone features, ADM already applied
            images, adm_images = batch["features"], batch["adm_features"]
        else:
            images = batch["images"]
            adm_images = adm_views(images, batch["masks"], self.adm)
        student_in, teacher_in = ((images, adm_images) if self.gid.swap_views
                                  else (adm_images, images))
        tokens = trim_batch(batch["tokens"], self.pad_id)
        inputs, targets = tokens[:, :-1], tokens[:, 1:]
        logits = model(student_in, inputs, batch["knowledge"])
        teacher_logits = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher_logits = self.teacher(teacher_in, inputs, batch["knowledge"])
        return gid_loss(logits, targets, self.pad_id, teacher_logits, self.gid.delta,
                        self.gid.temperature, self.cfg.label_smoothing, self.tokens_per_batch)


def validation_evaluator(writer: ReportWriter, dataset: ReportStudies,
                         references: Sequence[str]) -> Callable[[nn.Module], dict]:
    """Scores of the validation decodes that select the epoch: the test-time decoding
    (:class:`~ekagen.inference.ReportWriter`) of the model being trained."""
    reference_labels = label_values(references)

    def evaluate(model: nn.Module) -> dict[str, float]:
        writer.generator = unwrap(model)
        writer.device = next(model.parameters()).device
        generated = writer.write_dataset(dataset)
        ce = ce_scores(label_values(generated), reference_labels)
        bleu = round(bleu4(generated, references), 6)
        return {"val_bleu4": bleu, "val_ce_micro_f1": ce["ce14_micro_f1"],
                "val_ce_macro_f1": ce["ce14_macro_f1"],
                "val_ce_bleu4": round(ce["ce14_micro_f1"] + bleu, 6),
                "val_mean_length": float(np.mean([len(g.split()) for g in generated])),
                **template_statistics(generated)}

    return evaluate


def template_statistics(reports: Sequence[str]) -> dict[str, float]:
    """How template-like a split's decodes are, to tell what moves the mean length between
    epochs: distinct reports, the share of the commonest one, and the share of reports that
    say one sentence twice (a greedy loop rather than another finding)."""
    counts = Counter(reports)
    repeats = 0
    for report in reports:
        sentences = [s.strip() for s in report.split(" .") if s.strip()]
        repeats += len(set(sentences)) < len(sentences)
    n = max(len(reports), 1)
    return {"val_distinct_reports": float(len(counts)),
            "val_top_report_share": round(max(counts.values(), default=0) / n, 6),
            "val_repeat_share": round(repeats / n, 6)}


def can_cache_features(model: EKAGenerator, cfg: TrainConfig, teacher: EKAGenerator | None,
                       limit_gb: float) -> bool:
    """Backbone features are a fixed function of the image, so they can be computed once,
    when the backbone is frozen (``backbone_lr: 0``) with frozen batch norm, the teacher (if
    any) has the very same backbone, and the cache fits ``runtime.feature_cache_gb``."""
    if cfg.backbone_lr > 0 or not model.cfg.frozen_bn or limit_gb <= 0:
        return False
    if teacher is not None:
        mine, theirs = model.backbone.state_dict(), teacher.backbone.state_dict()
        if any(not torch.equal(mine[k], theirs[k]) for k in mine):
            return False
    return True


@torch.no_grad()
def cache_backbone_features(model: EKAGenerator, images: np.ndarray, packed: np.ndarray | None,
                            rows: np.ndarray, adm: AdmConfig, device: torch.device,
                            limit_gb: float, batch_size: int = 32, progress: bool = True):
    """Run the frozen backbone once over ``rows`` (plain, and with ADM where ADM changes the
    image); returns :class:`CachedFeatures` or None when it would exceed the size limit."""
    from tqdm import tqdm

    from ekagen.attention.adm import unpack_masks
    from ekagen.generation.data import CachedFeatures

    model = model.to(device).eval()
    size = images.shape[-1]
    probe = model.backbone_features(torch.zeros(1, images.shape[1], size, size, device=device))
    gigabytes = 2 * images.shape[0] * probe[0].numel() * 4 / 1e9
    if gigabytes > limit_gb:
        return None
    plain = torch.zeros(images.shape[0], *probe.shape[1:])
    viewed = torch.zeros_like(plain)
    rows = np.sort(np.asarray(rows))
    for start in tqdm(range(0, len(rows), batch_size), desc="cache backbone features",
                      unit="batch", disable=not progress):
        chunk = rows[start : start + batch_size]
        pixels = torch.from_numpy(np.asarray(images[chunk], dtype=np.float32) / 255.0).to(device)
        plain[chunk] = model.backbone_features(pixels).float().cpu()
        viewed[chunk] = plain[chunk]
        if adm.apply and packed is not None:
            masks = torch.from_numpy(np.stack([unpack_masks(np.asarray(packed[r]), size)
                                               for r in chunk])).to(device)
            changed = adm_views(pixels, masks, adm).ne(pixels).flatten(1).any(1)
            if bool(changed.any()):
                index = torch.from_numpy(chunk)[changed.cpu()]
                viewed[index] = model.backbone_features(
                    adm_views(pixels[changed], masks[changed], adm)).float().cpu()
    return CachedFeatures(plain, viewed)


def optimizer_factory(cfg: TrainConfig) -> Callable[[nn.Module], torch.optim.Optimizer]:
    """AdamW with a lower learning rate for the CNN; ``backbone_lr: 0`` freezes it."""

    def make(model: nn.Module) -> torch.optim.Optimizer:
        net = unwrap(model)
        backbone = list(net.backbone.parameters())
        ids = {id(p) for p in backbone}
        rest = [p for p in net.parameters() if id(p) not in ids]
        groups = [{"params": rest, "lr": cfg.lr}]
        if cfg.backbone_lr > 0:
            groups.append({"params": backbone, "lr": cfg.backbone_lr})
        else:
            for p in backbone:
                p.requires_grad_(False)
        return torch.optim.AdamW(groups, weight_decay=cfg.weight_decay,
                                 betas=(0.9, cfg.adam_beta2))

    return make


def scheduler_factory(cfg: TrainConfig, epochs: int) -> tuple[Callable | None, str]:
    """The learning-rate schedule and when it steps: StepLR once per epoch (the paper's
    ``step:20:0.1``), a cosine decay to zero over the round's batches (a short round ends
    converged, not mid-step), or none."""
    schedule = cfg.schedule
    if schedule.kind == "step":
        return (lambda opt, _steps: torch.optim.lr_scheduler.StepLR(
            opt, step_size=schedule.every, gamma=schedule.factor)), "epoch"
    if schedule.kind == "cosine":
        return (lambda opt, steps: torch.optim.lr_scheduler.CosineAnnealingLR(
            opt, T_max=max(steps * epochs, 1))), "step"
    return None, "epoch"


def round_fingerprint(*parts: Any) -> str:
    text = json.dumps([asdict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def report_lengths(dataset: ReportStudies, pad_id: int) -> list[int]:
    """Tokens per training report (what a batch's padded length follows), for length-grouped
    batches (``train.length_pool``)."""
    return (dataset.tokens[dataset.rows] != pad_id).sum(axis=1).tolist()


def train_round(model: EKAGenerator, data: dict[str, ReportStudies], val_references: Sequence[str],
                writer: ReportWriter, cfg: TrainConfig, gid: GidConfig, runtime: RuntimeConfig,
                seed: int, teacher: EKAGenerator | None, checkpoint_dir: str | None,
                fingerprint: str, on_epoch_end: Callable | None = None,
                progress: bool = True) -> FitResult:
    """Fit one round through the shared engine; the returned model holds the best weights.

    ``writer`` holds the knowledge base and the ``adm``, ``iek`` and ``decode`` settings; its
    generator is the model being trained, decoded on validation after every epoch."""
    scheduler, interval = scheduler_factory(cfg, cfg.epochs)
    engine_cfg = EngineConfig(
        scheduler_interval=interval, epochs=cfg.epochs, batch_size=cfg.batch_size,
        monitor=f"val_{cfg.select_metric}", mode="max", patience=cfg.patience,
        max_steps=cfg.max_steps,
        later_ties=True,  # CE of greedy templates plateaus; a tie keeps the more trained model
        grad_clip=cfg.grad_clip, device=runtime.device, amp=cfg.amp, amp_cpu=cfg.amp_cpu,
        ema_decay=cfg.ema_decay, seed=seed,
        num_workers=runtime.loader_workers, checkpoint_dir=checkpoint_dir,
        fingerprint=fingerprint, progress=progress, desc="train generator",
        length_pool=cfg.length_pool)
    lengths = report_lengths(data["train"], writer.vocab.pad_id)
    step = GenerationStep(cfg, gid, writer.adm, writer.vocab.pad_id, teacher)
    if cfg.backbone_lr <= 0:  # frozen before DDP wraps the model, so it never waits for them
        model.backbone.requires_grad_(False)
    if can_cache_features(model, cfg, teacher, runtime.feature_cache_gb):
        rows = np.concatenate([data["train"].rows, data["val"].rows])
        device = select_device(runtime.device, env_world()[2])
        cached = cache_backbone_features(model, data["train"].images, data["train"].packed,
                                         rows, writer.adm, device, runtime.feature_cache_gb,
                                         runtime.batch_size, progress=progress)
        if cached is not None:
            for dataset in data.values():
                dataset.features = cached
    trainer = Trainer(
        model, data["train"], step, optimizer_factory(cfg), engine_cfg, scheduler=scheduler,
        evaluate=validation_evaluator(writer, data["val"], val_references),
        on_epoch_end=on_epoch_end, lengths=lengths)
    if teacher is not None:
        step.teacher = teacher.to(trainer.device).eval().requires_grad_(False)
    if cfg.length_pool > 0:  # grouped batches: weigh every token alike (training/losses.py)
        per_process = cfg.batch_size // trainer.dist.world_size
        step.tokens_per_batch = per_process * (float(np.mean(lengths)) - 1.0)  # targets drop bos
    return trainer.fit()
