"""Losses of the generator: token cross-entropy and GID's knowledge distillation term.

Both are means over the batch's non-padding tokens, unless ``tokens_per_batch`` is given:
then they are sums divided by that constant, so every token weighs the same whichever batch
it lands in. Length-grouped batches need this: with per-batch means, a batch of short (on
IU X-Ray: normal) reports would give each of its tokens about twice the weight of a token in
a batch of long reports, which are the ones that state findings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, pad_id: int,
                        label_smoothing: float = 0.0,
                        tokens_per_batch: float | None = None) -> torch.Tensor:
    """Cross-entropy over non-padding target tokens (padding never counts): their mean, or
    their sum / ``tokens_per_batch``."""
    flat_logits, flat_targets = logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1)
    if tokens_per_batch is None:
        return F.cross_entropy(flat_logits, flat_targets, ignore_index=pad_id,
                               label_smoothing=label_smoothing)
    return F.cross_entropy(flat_logits, flat_targets, ignore_index=pad_id,
                           label_smoothing=label_smoothing, reduction="sum") / tokens_per_batch


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                    targets: torch.Tensor, pad_id: int, temperature: float,
                    tokens_per_batch: float | None = None) -> torch.Tensor:
    """T^2 * KL(teacher/T || student/T), averaged over non-padding positions (or summed and
    divided by ``tokens_per_batch``).

    The T^2 factor keeps the gradient scale of the soft targets comparable to the hard-label
    term as T changes (Hinton et al.); GID weights this term by delta.
    """
    keep = targets != pad_id
    if not bool(keep.any()):
        return student_logits.sum() * 0.0
    s = F.log_softmax(student_logits[keep].float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits[keep].float() / temperature, dim=-1)
    per_token = (t.exp() * (t - s)).sum(-1)
    kl = per_token.mean() if tokens_per_batch is None else per_token.sum() / tokens_per_batch
    return kl * temperature**2


def gid_loss(student_logits: torch.Tensor, targets: torch.Tensor, pad_id: int,
             teacher_logits: torch.Tensor | None = None, delta: float = 0.01,
             temperature: float = 4.0, label_smoothing: float = 0.0,
             tokens_per_batch: float | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Cross-entropy plus ``delta * T^2 * KL`` when a teacher is given; returns parts too."""
    ce = token_cross_entropy(student_logits, targets, pad_id, label_smoothing, tokens_per_batch)
    if teacher_logits is None:
        return ce, {"ce": float(ce.detach())}
    kd = distillation_kl(student_logits, teacher_logits, targets, pad_id, temperature,
                         tokens_per_batch)
    return ce + delta * kd, {"ce": float(ce.detach()), "kd": float(kd.detach())}
