"""Losses of the generator: token cross-entropy and GID's knowledge distillation term."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, pad_id: int,
                        label_smoothing: float = 0.0) -> torch.Tensor:
    """Mean cross-entropy over non-padding target tokens (padding never counts)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                           ignore_index=pad_id, label_smoothing=label_smoothing)


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                    targets: torch.Tensor, pad_id: int, temperature: float) -> torch.Tensor:
    """T^2 * KL(teacher/T || student/T), averaged over non-padding positions.

    The T^2 factor keeps the gradient scale of the soft targets comparable to the hard-label
    term as T changes (Hinton et al.); GID weights this term by delta.
    """
    keep = targets != pad_id
    if not bool(keep.any()):
        return student_logits.sum() * 0.0
    s = F.log_softmax(student_logits[keep].float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits[keep].float() / temperature, dim=-1)
    kl = (t.exp() * (t - s)).sum(-1).mean()
    return kl * temperature**2


def gid_loss(student_logits: torch.Tensor, targets: torch.Tensor, pad_id: int,
             teacher_logits: torch.Tensor | None = None, delta: float = 0.01,
             temperature: float = 4.0,
             label_smoothing: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy plus ``delta * T^2 * KL`` when a teacher is given; returns parts too."""
    ce = token_cross_entropy(student_logits, targets, pad_id, label_smoothing)
    if teacher_logits is None:
        return ce, {"ce": float(ce.detach())}
    kd = distillation_kl(student_logits, teacher_logits, targets, pad_id, temperature)
    return ce + delta * kd, {"ce": float(ce.detach()), "kd": float(kd.detach())}
