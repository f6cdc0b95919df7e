"""Report decoding: batched greedy and beam search over the generator's KV cache.

The authors decoded greedily for a fixed 127 steps, recomputing the whole prefix (and
re-running the classifier) at every step. Here the image is encoded once, each step feeds
only the newest token through cached keys/values, and finished reports leave the batch, so
decoding stops as soon as every report has produced its end token.

Greedy search compares the end token with the single best *other* token, so a report ends as
soon as ending is likelier than any one continuation, even when continuing is far likelier
overall (the continuations split their mass over many words). On the default data this cut
findings: the decoder wrote the normal sentences of its knowledge report and stopped before
the abnormal one. ``eos_threshold`` asks instead whether ending itself is likely enough.
"""

from __future__ import annotations

import torch

from ekagen.models.generator import EKAGenerator


def _banned_tokens(history: list[int], n: int) -> set[int]:
    """Tokens that would complete an n-gram already present in ``history``."""
    if n <= 0 or len(history) < n - 1:
        return set()
    prefix = tuple(history[len(history) - n + 1 :]) if n > 1 else ()
    return {history[i + n - 1] for i in range(len(history) - n + 1)
            if tuple(history[i : i + n - 1]) == prefix}


def _apply_no_repeat(logits: torch.Tensor, histories: list[list[int]], n: int) -> torch.Tensor:
    if n <= 0:
        return logits
    for row, history in enumerate(histories):
        banned = _banned_tokens(history, n)
        if banned:
            logits[row, list(banned)] = float("-inf")
    return logits


def _eos_probability(logits: torch.Tensor, eos: int, threshold: float) -> torch.Tensor | None:
    """P(eos) under the model's own distribution (before any n-gram ban), when gated."""
    return torch.softmax(logits.float(), dim=-1)[:, eos] if threshold > 0 else None


def _gate_eos(scores: torch.Tensor, p_eos: torch.Tensor | None, eos: int,
              threshold: float) -> torch.Tensor:
    """Forbid the end token where the model gives it less than ``threshold``, unless the
    n-gram bans left that row nothing else to write."""
    if p_eos is None:
        return scores
    others = scores.clone()
    others[:, eos] = float("-inf")
    block = (p_eos < threshold) & torch.isfinite(others).any(-1)
    scores[block, eos] = float("-inf")
    return scores


def _steps(model: EKAGenerator, max_length: int) -> int:
    return min(max_length, model.cfg.max_length - 1)


@torch.no_grad()
def greedy_decode(model: EKAGenerator, images: torch.Tensor, knowledge: torch.Tensor | None,
                  bos: int, eos: int, max_length: int = 100,
                  no_repeat_ngram: int = 0, eos_threshold: float = 0.0) -> list[list[int]]:
    """Token ids per report (without bos; eos included when produced)."""
    steps = _steps(model, max_length)
    context = model.context(images, knowledge, steps)
    cache = model.new_cache()
    batch = images.shape[0]
    outputs: list[list[int]] = [[] for _ in range(batch)]
    active = torch.arange(batch, device=images.device)  # rows of the original batch still open
    token = torch.full((batch,), bos, dtype=torch.long, device=images.device)
    for position in range(steps):
        logits = model.step(context, token, position, cache)
        rows = active.tolist()
        p_eos = _eos_probability(logits, eos, eos_threshold)
        logits = _apply_no_repeat(logits, [outputs[r] for r in rows], no_repeat_ngram)
        token = _gate_eos(logits, p_eos, eos, eos_threshold).argmax(-1)
        for r, t in zip(rows, token.tolist(), strict=True):
            outputs[r].append(t)
        open_rows = token != eos
        if not bool(open_rows.any()):
            break
        if not bool(open_rows.all()):  # finished reports leave the batch and the cache
            keep = open_rows.nonzero().squeeze(1)
            active, token = active[keep], token[keep]
            context = context.select(keep)
            cache.reorder(keep)
    return outputs


@torch.no_grad()
def beam_decode(model: EKAGenerator, images: torch.Tensor, knowledge: torch.Tensor | None,
                bos: int, eos: int, beam_size: int = 3, max_length: int = 100,
                length_penalty: float = 0.0, no_repeat_ngram: int = 0,
                eos_threshold: float = 0.0) -> list[list[int]]:
    """Beam search; ``beam_size=1`` gives exactly the greedy result."""
    if beam_size <= 1:
        return greedy_decode(model, images, knowledge, bos, eos, max_length, no_repeat_ngram,
                             eos_threshold)
    batch, device = images.shape[0], images.device
    steps = _steps(model, max_length)
    expand = torch.arange(batch, device=device).repeat_interleave(beam_size)
    context = model.context(images, knowledge, steps).select(expand)
    cache = model.new_cache()
    scores = torch.full((batch, beam_size), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: keep one so they do not duplicate
    histories: list[list[int]] = [[] for _ in range(batch * beam_size)]
    finished = torch.zeros(batch * beam_size, dtype=torch.bool, device=device)
    token = torch.full((batch * beam_size,), bos, dtype=torch.long, device=device)
    for position in range(steps):
        logits = model.step(context, token, position, cache)
        logp = torch.log_softmax(logits.float(), dim=-1)
        p_eos = logp[:, eos].exp() if eos_threshold > 0 else None
        logp = _apply_no_repeat(logp, histories, no_repeat_ngram)
        logp = _gate_eos(logp, p_eos, eos, eos_threshold)
        logp[finished] = float("-inf")
        logp[finished, eos] = 0.0  # a finished hypothesis only repeats eos, at no cost
        vocab = logp.shape[-1]
        total = (scores.view(-1, 1) + logp).view(batch, beam_size * vocab)
        scores, flat = total.topk(beam_size, dim=-1)
        origin = flat // vocab + torch.arange(batch, device=device)[:, None] * beam_size
        origin, token = origin.view(-1), (flat % vocab).view(-1)
        was_finished = finished[origin]
        histories = [histories[o] if f else histories[o] + [t] for o, t, f in
                     zip(origin.tolist(), token.tolist(), was_finished.tolist(), strict=True)]
        finished = was_finished | (token == eos)
        cache.reorder(origin)
        if bool(finished.all()):
            break
    lengths = torch.tensor([max(len(h), 1) for h in histories], device=device, dtype=torch.float)
    final = scores.view(-1) / lengths.pow(length_penalty)
    best = final.view(batch, beam_size).argmax(-1) + torch.arange(batch, device=device) * beam_size
    return [histories[i] for i in best.tolist()]


@torch.no_grad()
def greedy_decode_uncached(model: EKAGenerator, images: torch.Tensor,
                           knowledge: torch.Tensor | None, bos: int, eos: int,
                           max_length: int = 100, early_stop: bool = True,
                           eos_threshold: float = 0.0) -> list[list[int]]:
    """Reference decoder that re-runs the whole prefix at every step (no cache).

    With ``early_stop=False`` it runs the full ``max_length`` steps, the authors' scheme; used
    by tests (cached and uncached give the same tokens) and by the decoding benchmark.
    """
    steps = _steps(model, max_length)
    context = model.context(images, knowledge, steps)
    batch = images.shape[0]
    tokens = torch.full((batch, 1), bos, dtype=torch.long, device=images.device)
    done = torch.zeros(batch, dtype=torch.bool, device=images.device)
    for _ in range(steps):
        logits = model.decode(context, tokens)[:, -1]
        nxt = _gate_eos(logits, _eos_probability(logits, eos, eos_threshold), eos,
                        eos_threshold).argmax(-1)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt == eos
        if early_stop and bool(done.all()):
            break
    outputs = []
    for row in tokens[:, 1:].tolist():
        out = []
        for t in row:
            out.append(t)
            if t == eos:
                break
        outputs.append(out)
    return outputs
