"""Length-grouped batches: shuffled training order with little padding.

A batch of reports is as long as its longest report (shorter ones are padded and then
ignored by the loss), so random batches waste compute: report lengths vary widely (short
normal reports, long abnormal ones), and every short report batched with a long one is padded
to its length (README, "Length-grouped batches", for how much on the default data).
:class:`LengthGroupedSampler` shuffles, cuts the order into pools of ``pool`` global batches,
sorts each pool by length, cuts it into batches and shuffles the batches again. Each step
still sees a random set of studies (within a pool), and every study is drawn exactly once per
epoch, as with a plain shuffle; only which studies share a batch changes.
``benchmarks/batching.py`` measures the time it saves.

It also replaces ``DistributedSampler`` under ``torchrun``: every process builds the same
global batches (the order depends on ``seed`` and the epoch only) and takes its own slice of
each, so a global step holds the same studies whatever the number of processes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthGroupedSampler(Sampler[int]):
    """Indices for one process; each run of ``batch_size`` of them is one batch.

    ``lengths[i]`` is the cost of sample i (e.g. its report's token count); ``batch_size``
    is the per-process batch, so a global batch holds ``batch_size * num_replicas`` samples.
    Like ``DistributedSampler`` (``drop_last=False``), an epoch is padded with its own first
    samples to a multiple of ``num_replicas``: only the short final batch (always last) is,
    so every other global batch is the one a single process would draw.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, num_replicas: int = 1,
                 rank: int = 0, seed: int = 42, pool: int = 50, shuffle: bool = True) -> None:
        if batch_size < 1 or pool < 1:
            raise ValueError(f"batch_size and pool must be >= 1, got {batch_size}, {pool}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        if len(lengths) == 0:
            raise ValueError("no samples to draw")
        self.lengths = [int(n) for n in lengths]
        self.batch_size, self.num_replicas, self.rank = batch_size, num_replicas, rank
        self.seed, self.pool, self.shuffle = seed, pool, shuffle
        self.epoch = 0
        self.num_samples = math.ceil(len(self.lengths) / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def global_batches(self) -> list[list[int]]:
        """This epoch's global batches, identical on every process, and, but for the padding
        of the last one, identical for any number of processes."""
        n = len(self.lengths)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(n, generator=generator).tolist() if self.shuffle else list(range(n))
        size = self.batch_size * self.num_replicas
        batches: list[list[int]] = []
        for start in range(0, n, size * self.pool):
            pool = sorted(order[start : start + size * self.pool],
                          key=lambda i: self.lengths[i], reverse=True)
            batches += [pool[i : i + size] for i in range(0, len(pool), size)]
        full = [b for b in batches if len(b) == size]
        short = [b for b in batches if len(b) < size]  # at most one: the last pool's tail
        if self.shuffle:
            full = [full[i] for i in torch.randperm(len(full), generator=generator).tolist()]
        if short and len(short[0]) % self.num_replicas:  # pad as DistributedSampler does
            missing = self.num_replicas - len(short[0]) % self.num_replicas
            short[0] = short[0] + (order * missing)[:missing]
        return full + short

    def __iter__(self) -> Iterator[int]:
        indices: list[int] = []
        for batch in self.global_batches():
            share = len(batch) // self.num_replicas
            indices += batch[self.rank * share : (self.rank + 1) * share]
        return iter(indices)
