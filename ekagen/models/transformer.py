"""Pre-norm transformer encoder and decoder with EKAGen's IEK fusion and a KV cache.

Written out rather than taken from ``nn.Transformer`` for two reasons: the paper's decoder
fuses the instance-level expert knowledge after *every* layer (h <- W3 [W1 h ; W2 K], separate
projections per layer), and generation needs an incremental key/value cache so that decoding a
report costs one new position per step instead of re-running the whole prefix. Cross-attention
takes a key mask because the ``memory`` form of fusion appends the (padded) knowledge tokens to
the image memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention on ``(B, T, d)`` tensors via ``scaled_dot_product_attention``."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model {d_model} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(d_model, d_model)
        self.k = nn.Linear(d_model, d_model)
        self.v = nn.Linear(d_model, d_model)
        self.out = nn.Linear(d_model, d_model)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
               mask: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        """``q``, ``k``, ``v`` already split into heads; returns merged ``(B, T, d)``."""
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop,
                                           is_causal=causal and mask is None)
        b, h, t, dh = y.shape
        return self.out(y.transpose(1, 2).reshape(b, t, h * dh))


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, hidden: int, dropout: float) -> None:
        super().__init__(nn.Linear(d_model, hidden), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(hidden, d_model))


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = Attention(d_model, heads, dropout)
        self.ffn = FeedForward(d_model, ffn, dropout)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        qk = h + pos  # positions enter queries and keys, not values (DETR)
        a = self.attn.attend(self.attn.split(self.attn.q(qk)), self.attn.split(self.attn.k(qk)),
                             self.attn.split(self.attn.v(h)))
        x = x + self.drop(a)
        return x + self.drop(self.ffn(self.norm2(x)))


class KnowledgeFusion(nn.Module):
    """EKAGen's per-layer fusion of decoder state h and knowledge K: W3 [W1 h ; W2 K]."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.w_hidden = nn.Linear(d_model, d_model)
        self.w_knowledge = nn.Linear(d_model, d_model)
        self.w_out = nn.Linear(2 * d_model, d_model)

    def forward(self, h: torch.Tensor, knowledge: torch.Tensor) -> torch.Tensor:
        return self.w_out(torch.cat([self.w_hidden(h), self.w_knowledge(knowledge)], dim=-1))


@dataclass
class LayerCache:
    """Keys/values of one decoder layer: self-attention grows, cross-attention is fixed."""

    self_k: torch.Tensor | None = None
    self_v: torch.Tensor | None = None
    cross_k: torch.Tensor | None = None
    cross_v: torch.Tensor | None = None


@dataclass
class DecoderCache:
    layers: list[LayerCache] = field(default_factory=list)

    def reorder(self, index: torch.Tensor) -> None:
        """Follow beam search's reordering of hypotheses (index into the batch dim)."""
        for layer in self.layers:
            for name in ("self_k", "self_v", "cross_k", "cross_v"):
                value = getattr(layer, name)
                if value is not None:
                    setattr(layer, name, value.index_select(0, index))


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, heads: int, ffn: int, dropout: float,
                 knowledge: bool) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.self_attn = Attention(d_model, heads, dropout)
        self.cross_attn = Attention(d_model, heads, dropout)
        self.ffn = FeedForward(d_model, ffn, dropout)
        self.drop = nn.Dropout(dropout)
        self.fusion = KnowledgeFusion(d_model) if knowledge else None

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_pos: torch.Tensor,
                memory_mask: torch.Tensor | None, knowledge: torch.Tensor | None,
                pad_mask: torch.Tensor | None, cache: LayerCache | None = None) -> torch.Tensor:
        """``memory_mask`` (B, M) True = attend; ``knowledge`` (B, T, d) position-aligned
        knowledge for the paper's fusion (None in the ``memory`` form or without knowledge)."""
        sa = self.self_attn
        h = self.norm1(x)
        q, k, v = sa.split(sa.q(h)), sa.split(sa.k(h)), sa.split(sa.v(h))
        if cache is not None:  # incremental: x holds only the newest position(s)
            if cache.self_k is not None:
                k = torch.cat([cache.self_k, k], dim=2)
                v = torch.cat([cache.self_v, v], dim=2)
            cache.self_k, cache.self_v = k, v
            x = x + self.drop(sa.attend(q, k, v))
        else:
            x = x + self.drop(sa.attend(q, k, v, mask=_causal_mask(pad_mask, x.shape[1]),
                                        causal=True))
        ca = self.cross_attn
        h = self.norm2(x)
        if cache is not None and cache.cross_k is not None:
            mk, mv = cache.cross_k, cache.cross_v
        else:
            mk, mv = ca.split(ca.k(memory + memory_pos)), ca.split(ca.v(memory))
            if cache is not None:
                cache.cross_k, cache.cross_v = mk, mv
        cross_mask = None if memory_mask is None else memory_mask[:, None, None, :]
        x = x + self.drop(ca.attend(ca.split(ca.q(h)), mk, mv, mask=cross_mask))
        x = x + self.drop(self.ffn(self.norm3(x)))
        if self.fusion is not None and knowledge is not None:
            x = self.fusion(x, knowledge)
        return x


def _causal_mask(pad_mask: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """Boolean attention mask (True = attend): causal, and padded keys hidden when given."""
    if pad_mask is None:
        return None
    causal = torch.ones(length, length, dtype=torch.bool, device=pad_mask.device).tril()
    keep = causal[None, None] & ~pad_mask[:, None, None, :]
    # a query at a padded position could see no key at all; let it see itself (its output is
    # ignored by the loss) so softmax never divides by zero
    return keep | torch.eye(length, dtype=torch.bool, device=pad_mask.device)[None, None]
