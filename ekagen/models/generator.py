"""The EKAGen report generator: CNN -> transformer encoder -> knowledge-fused decoder -> vocab.

``build_generator`` is the one factory; every size is a field of the ``model`` section
(:class:`~ekagen.config.GeneratorConfig`), so the CPU default and the paper preset
(``presets/paper.yaml``) are the same code.

Knowledge reaches the decoder in one of two forms (``model.fusion``):

* ``paper``: after every decoder layer h_t <- W3 [W1 h_t ; W2 K_t], the knowledge token at the
  same position t. Under the causal mask position t never sees knowledge beyond t, so a
  finding the knowledge report states late cannot shape the start of the generated report;
* ``memory``: the knowledge report's tokens (word + position + a "knowledge" source
  embedding) join the image features as cross-attention memory, so every position reads the
  whole knowledge report.

With ``model.copy`` (pointer-generator, See et al. 2017) the output distribution is a learned
mixture g_t p_vocab + (1 - g_t) p_copy, where p_copy spreads a single-head attention over the
knowledge report's tokens onto their vocabulary ids. The knowledge report is a fluent report
of the diagnosed findings, and copying a token of it is one decision instead of a phrase the
decoder must first learn to produce. (On the default data it has not yet measured better; see
the README.) The model then returns log-probabilities, still valid logits for every
consumer: softmax, argmax, cross-entropy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import nn

from ekagen.config import GeneratorConfig
from ekagen.models.backbone import build_backbone
from ekagen.models.positions import sine_positions_2d
from ekagen.models.transformer import DecoderCache, DecoderLayer, EncoderLayer, LayerCache


@dataclass
class DecoderContext:
    """Everything the decoder reads besides its own tokens, computed once per image batch.

    ``memory`` (B, M, d) with key positions ``pos``; ``mask`` (B, M) True = attend (None: all
    of it); ``aligned`` (B, L, d) the position-aligned knowledge of the paper's fusion;
    ``copy_ids`` (B, K) the knowledge tokens the copy mechanism points at, ``copy_keys``
    (B, K, d) their pointer keys and ``copy_mask`` (B, K) True = a real token (not padding).
    """

    memory: torch.Tensor
    pos: torch.Tensor
    mask: torch.Tensor | None = None
    aligned: torch.Tensor | None = None
    copy_ids: torch.Tensor | None = None
    copy_keys: torch.Tensor | None = None
    copy_mask: torch.Tensor | None = None

    def select(self, index: torch.Tensor) -> DecoderContext:
        """Rows ``index`` of the batch (finished reports leave; beams repeat a study)."""
        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.index_select(0, index)

        return replace(self, memory=pick(self.memory), pos=pick(self.pos), mask=pick(self.mask),
                       aligned=pick(self.aligned), copy_ids=pick(self.copy_ids),
                       copy_keys=pick(self.copy_keys), copy_mask=pick(self.copy_mask))


class EKAGenerator(nn.Module):
    """Images ``(B, V, H, W)`` plus IEK token ids -> next-token logits."""

    def __init__(self, cfg: GeneratorConfig, vocab_size: int, views: int, pad_id: int = 0,
                 state_follows: bool = False) -> None:
        super().__init__()
        self.cfg, self.vocab_size, self.views, self.pad_id = cfg, vocab_size, views, pad_id
        d = cfg.d_model
        self.backbone = build_backbone(cfg.backbone, cfg.dilation, cfg.frozen_bn,
                                       cfg.backbone_weights, state_follows)
        self.project = nn.Conv2d(self.backbone.channels, d, kernel_size=1)
        self.view_embedding = nn.Embedding(max(views, 1), d)
        self.encoder = nn.ModuleList(EncoderLayer(d, cfg.heads, cfg.ffn, cfg.dropout)
                                     for _ in range(cfg.encoder_layers))
        self.encoder_norm = nn.LayerNorm(d)
        self.word_embedding = nn.Embedding(vocab_size, d, padding_idx=pad_id)
        self.position_embedding = nn.Embedding(cfg.max_length, d)
        self.decoder = nn.ModuleList(
            DecoderLayer(d, cfg.heads, cfg.ffn, cfg.dropout, self.fuses_per_layer)
            for _ in range(cfg.decoder_layers))
        # tells knowledge tokens from image features in the memory form of fusion
        self.knowledge_source = (nn.Parameter(torch.zeros(d)) if self.knowledge_in_memory
                                 else None)
        self.decoder_norm = nn.LayerNorm(d)
        self.head = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, vocab_size))
        if self.copies:
            self.copy_query = nn.Linear(d, d)
            self.copy_key = nn.Linear(d, d)
            self.copy_gate = nn.Linear(d, 1)  # g_t: probability of generating from the vocab
        self.embedding_dropout = nn.Dropout(cfg.dropout)

    # -- encoder ---------------------------------------------------------------------------
    def backbone_features(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, V, H, W)`` images in [0, 1] -> CNN features ``(B, V, C, h, w)``.

        Callers feed intensities in [0, 1], so that ADM's scaling darkens pixels as the paper
        does; the trunk normalises its input itself, exactly as DiagnosisBot does.
        """
        b, v, h, w = images.shape
        feats = self.backbone(images.reshape(b * v, 1, h, w))
        return feats.view(b, v, *feats.shape[1:])

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``(B, V, H, W)`` in [0, 1], or CNN features ``(B, V, C, h, w)`` computed
        earlier by :meth:`backbone_features` (a frozen backbone's output can be cached) ->
        memory ``(B, V*h*w, d)`` and its positions."""
        if images.shape[1] != self.views:
            raise ValueError(f"model expects {self.views} view(s) per study, "
                             f"got {images.shape[1]}")
        cnn = images if images.dim() == 5 else self.backbone_features(images)
        b, v = cnn.shape[:2]
        feats = self.project(cnn.flatten(0, 1).to(self.project.weight.dtype))
        _, d, fh, fw = feats.shape
        feats = feats.flatten(2).transpose(1, 2).reshape(b, v * fh * fw, d)
        spatial = sine_positions_2d(fh, fw, d, device=feats.device).to(feats.dtype)
        views = self.view_embedding.weight[:v].to(feats.dtype)
        pos = (spatial[None] + views[:, None]).reshape(1, v * fh * fw, d).expand(b, -1, -1)
        x = feats
        for layer in self.encoder:
            x = layer(x, pos)
        return self.encoder_norm(x), pos

    # -- knowledge -------------------------------------------------------------------------
    @property
    def fuses_per_layer(self) -> bool:
        return self.cfg.knowledge and self.cfg.fusion == "paper"

    @property
    def knowledge_in_memory(self) -> bool:
        return self.cfg.knowledge and self.cfg.fusion == "memory"

    @property
    def copies(self) -> bool:
        return self.cfg.knowledge and self.cfg.copy

    def embed_knowledge(self, knowledge: torch.Tensor | None, length: int) -> torch.Tensor | None:
        """IEK token ids ``(B, Lk)`` embedded with the generator's own word embedding, aligned
        with report positions for the paper's fusion (None in the memory form).

        The fusion combines h_t with K_t, so knowledge is padded or cut to ``length``;
        padding embeds to zeros.
        """
        if not self.fuses_per_layer or knowledge is None:
            return None
        lk = knowledge.shape[1]
        if lk < length:
            knowledge = torch.nn.functional.pad(knowledge, (0, length - lk), value=self.pad_id)
        return self.word_embedding(knowledge[:, :length])

    def context(self, images: torch.Tensor, knowledge: torch.Tensor | None,
                length: int) -> DecoderContext:
        """Encode the images once and attach the knowledge in the configured form; ``length``
        is the number of report positions the paper's fusion must cover."""
        memory, pos = self.encode(images)
        if knowledge is None or not self.cfg.knowledge:
            return DecoderContext(memory, pos)
        context = DecoderContext(memory, pos, aligned=self.embed_knowledge(knowledge, length))
        if not (self.copies or self.knowledge_in_memory):
            return context
        keep = knowledge != self.pad_id
        columns = keep.any(0).nonzero()  # columns after the batch's last real token dropped
        used = int(columns.max()) + 1 if len(columns) else 1
        knowledge, keep = knowledge[:, :used], keep[:, :used]
        k_pos = self.position_embedding(torch.arange(used, device=knowledge.device))
        k_words = self.word_embedding(knowledge)
        if self.copies:
            context = replace(context, copy_ids=knowledge, copy_mask=keep,
                              copy_keys=self.copy_key(k_words + k_pos[None]))
        if not self.knowledge_in_memory:
            return context
        k_pos = (k_pos + self.knowledge_source)[None].expand(knowledge.shape[0], -1, -1)
        image_keep = torch.ones(memory.shape[:2], dtype=torch.bool, device=memory.device)
        return replace(context, memory=torch.cat([memory, k_words.to(memory.dtype)], 1),
                       pos=torch.cat([pos, k_pos.to(pos.dtype)], 1),
                       mask=torch.cat([image_keep, keep], 1))

    def output(self, hidden: torch.Tensor, context: DecoderContext) -> torch.Tensor:
        """Decoder states ``(B, T, d)`` -> scores over the vocabulary ``(B, T, V)``: logits,
        or with the copy mechanism the log of g p_vocab + (1 - g) p_copy (fp32)."""
        logits = self.head(hidden)
        if context.copy_ids is None or context.copy_keys is None or context.copy_mask is None:
            return logits
        scores = self.copy_query(hidden) @ context.copy_keys.transpose(1, 2)
        scores = scores.float() / math.sqrt(hidden.shape[-1])
        valid = context.copy_mask[:, None, :]
        pointer = torch.softmax(scores.masked_fill(~valid, float("-inf")), dim=-1)
        has_knowledge = valid.any(-1, keepdim=True)  # (B, 1, 1): a row may hold only padding
        pointer = torch.where(has_knowledge, pointer, torch.zeros_like(pointer))
        ids = context.copy_ids[:, None, :].expand(-1, hidden.shape[1], -1)
        p_copy = torch.zeros(logits.shape, dtype=torch.float32, device=logits.device)
        p_copy.scatter_add_(2, ids, pointer)
        gate = torch.sigmoid(self.copy_gate(hidden).float())
        gate = torch.where(has_knowledge, gate, torch.ones_like(gate))
        mixed = gate * torch.softmax(logits.float(), dim=-1) + (1.0 - gate) * p_copy
        return torch.log(mixed.clamp_min(1e-12))

    # -- decoder ---------------------------------------------------------------------------
    def _embed_tokens(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        positions = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        if positions[-1] >= self.cfg.max_length:
            raise ValueError(f"sequence longer than model.max_length={self.cfg.max_length}")
        return self.embedding_dropout(self.word_embedding(tokens)
                                      + self.position_embedding(positions)[None])

    def forward(self, images: torch.Tensor, tokens: torch.Tensor,
                knowledge: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher forcing: logits ``(B, T, vocab)`` for every position of ``tokens``."""
        return self.decode(self.context(images, knowledge, tokens.shape[1]), tokens)

    def decode(self, context: DecoderContext, tokens: torch.Tensor) -> torch.Tensor:
        """Logits for every position of ``tokens`` (the whole prefix, no cache)."""
        k = None if context.aligned is None else context.aligned[:, : tokens.shape[1]]
        x = self._embed_tokens(tokens, 0)
        pad_mask = tokens == self.pad_id
        for layer in self.decoder:
            x = layer(x, context.memory, context.pos, context.mask, k, pad_mask)
        return self.output(self.decoder_norm(x), context)

    def new_cache(self) -> DecoderCache:
        return DecoderCache([LayerCache() for _ in self.decoder])

    def step(self, context: DecoderContext, token: torch.Tensor, position: int,
             cache: DecoderCache) -> torch.Tensor:
        """One incremental decoding step: ``token (B,)`` at ``position`` -> logits ``(B, V)``."""
        x = self._embed_tokens(token[:, None], position)
        k = None
        if context.aligned is not None:
            k = context.aligned[:, position : position + 1]
        for layer, layer_cache in zip(self.decoder, cache.layers, strict=True):
            x = layer(x, context.memory, context.pos, context.mask, k, None, layer_cache)
        return self.output(self.decoder_norm(x), context)[:, 0]


def build_generator(cfg: GeneratorConfig, vocab_size: int, views: int, pad_id: int = 0,
                    state_follows: bool = False) -> EKAGenerator:
    """The generator; ``state_follows=True`` when a saved state dict is loaded right after
    (the backbone's own initial weights are then neither needed nor read)."""
    return EKAGenerator(cfg, vocab_size, views, pad_id, state_follows)
