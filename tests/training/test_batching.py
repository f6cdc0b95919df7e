"""Length-grouped batches: a full, shuffled epoch with little padding, the same global batches
for any number of processes, and the engine's use of them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ekagen.training.batching import LengthGroupedSampler
from ekagen.training.engine import EngineConfig, Trainer
from tests.training.toy import ToyData, mse_step, sgd, toy_model


def _lengths(n: int = 203, seed: int = 0) -> list[int]:
    return np.random.default_rng(seed).integers(5, 120, n).tolist()


def _batches(sampler: LengthGroupedSampler) -> list[list[int]]:
    order = list(sampler)
    return [order[i : i + sampler.batch_size] for i in range(0, len(order), sampler.batch_size)]


def test_every_sample_once_per_epoch_with_less_padding_than_a_plain_shuffle():
    lengths = _lengths()
    sampler = LengthGroupedSampler(lengths, batch_size=8, seed=3, pool=10)
    batches = _batches(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(len(b) == 8 for b in batches[:-1]) and len(batches[-1]) == 203 % 8
    grouped = np.mean([max(lengths[i] for i in b) for b in batches])
    order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(3)).tolist()
    plain = np.mean([max(lengths[i] for i in order[s : s + 8]) for s in range(0, 203, 8)])
    assert grouped < 0.8 * plain


def test_order_is_seeded_per_epoch():
    sampler = LengthGroupedSampler(_lengths(), batch_size=8, seed=3)
    first = list(sampler)
    assert list(sampler) == first
    sampler.set_epoch(1)
    assert list(sampler) != first
    again = LengthGroupedSampler(_lengths(), batch_size=8, seed=3)
    assert list(again) == first


@pytest.mark.parametrize("n, world", [(204, 2), (204, 3), (203, 3)])
def test_processes_split_the_same_global_batches(n, world):
    """Each global step holds the same studies whatever the number of processes."""
    lengths, global_batch = _lengths(n), 6
    one = _batches(LengthGroupedSampler(lengths, global_batch, 1, 0, seed=5, pool=4))
    ranks = [_batches(LengthGroupedSampler(lengths, global_batch // world, world, r, seed=5,
                                           pool=4)) for r in range(world)]
    assert len({len(r) for r in ranks}) == 1
    padded = -len(lengths) % world  # padded like DistributedSampler: a few studies twice
    steps = [sorted(i for r in ranks for i in r[s]) for s in range(len(ranks[0]))]
    assert sum(map(len, steps)) == len(lengths) + padded
    assert steps[:-1] == [sorted(b) for b in one[:-1]]
    assert set(steps[-1]) >= set(one[-1]) and len(steps[-1]) == len(one[-1]) + padded


def test_bad_arguments():
    with pytest.raises(ValueError, match="rank 2"):
        LengthGroupedSampler([3, 4], 1, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="no samples"):
        LengthGroupedSampler([], 1)


def test_trainer_uses_lengths_when_length_pool_is_set():
    data = ToyData(n=20)
    cfg = EngineConfig(epochs=1, batch_size=4, device="cpu", progress=False, amp=False,
                       length_pool=2)
    trainer = Trainer(toy_model(), data, mse_step, sgd, cfg, lengths=list(range(20)))
    assert isinstance(trainer.sampler, LengthGroupedSampler)
    seen = [b["x"] for b in trainer.loader]
    assert sum(len(x) for x in seen) == 20
    result = trainer.fit()
    assert len(result.history) == 1
    with pytest.raises(ValueError, match="3 lengths for 20 samples"):
        Trainer(toy_model(), data, mse_step, sgd, cfg, lengths=[1, 2, 3])
    plain = Trainer(toy_model(), data, mse_step, sgd,
                    EngineConfig(epochs=1, batch_size=4, device="cpu", progress=False,
                                 amp=False), lengths=list(range(20)))
    assert not isinstance(plain.sampler, LengthGroupedSampler)
