from __future__ import annotations

import pytest
import torch
from torch import nn

from ekagen.training import engine
from ekagen.training.averaging import WeightAverage, precision_plan
from ekagen.training.checkpoint import load_checkpoint
from ekagen.training.engine import EngineConfig, Trainer, fit
from tests.training.toy import ToyData, mse_step, sgd, step_lr, toy_model


def _config(tmp, **kw) -> EngineConfig:
    base = dict(epochs=3, batch_size=8, device="cpu", progress=False, seed=7,
                checkpoint_dir=tmp, fingerprint="toy", amp=False, ema_decay=0.9)
    base.update(kw)
    return EngineConfig(**base)


def _flat(state: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([v.detach().float().reshape(-1) for v in state.values()])


def test_average_is_the_decay_weighted_mean_of_the_weights_after_each_step():
    model = nn.Linear(3, 2)
    average = WeightAverage(model, decay=0.8)
    snapshots = []
    for step in range(6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * (step + 1))
        snapshots.append(_flat(model.state_dict()))
        average.update(model)
    weights = torch.tensor([0.8 ** (5 - i) for i in range(6)])
    expected = (torch.stack(snapshots) * weights[:, None]).sum(0) / weights.sum()
    torch.testing.assert_close(_flat(average.shadow), expected)
    # the first update is the weights themselves: nothing of the initial weights is mixed in
    first = WeightAverage(nn.Linear(3, 2), decay=0.99)
    changed = nn.Linear(3, 2)
    first.update(changed)
    torch.testing.assert_close(_flat(first.shadow), _flat(changed.state_dict()))


def test_applied_swaps_the_average_in_and_restores_the_raw_weights():
    model = nn.Linear(2, 1)
    average = WeightAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(4.0)
    average.update(model)
    with torch.no_grad():
        model.weight.fill_(10.0)
    average.update(model)  # (0.5 * 4 + 10) / 1.5 = 8
    with average.applied(model):
        assert torch.allclose(model.weight, torch.full_like(model.weight, 8.0))
    assert torch.allclose(model.weight, torch.full_like(model.weight, 10.0))


def test_decay_outside_the_open_unit_interval_is_an_error():
    for decay in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="ema decay"):
            WeightAverage(nn.Linear(1, 1), decay)


def test_engine_validates_selects_and_returns_the_average():
    evaluated: list[torch.Tensor] = []

    def evaluate(model):
        evaluated.append(_flat(model.state_dict()))
        return {"val_score": float(len(evaluated) == 2)}  # epoch 2 is the best

    trainer = Trainer(toy_model(), ToyData(), mse_step, sgd,
                      _config(None, monitor="val_score", mode="max"), evaluate=evaluate)
    result = trainer.fit()
    assert result.best_epoch == 2
    # validation saw the average, then training went on from the raw weights: the last
    # evaluation is the average after the last step
    torch.testing.assert_close(evaluated[-1], _flat(trainer.average.shadow))
    # what validation saw at epoch 2 is what was kept and returned
    torch.testing.assert_close(_flat(result.model.state_dict()), evaluated[1])


def test_average_differs_from_the_raw_weights_and_training_is_unchanged():
    plain = fit(toy_model(), ToyData(), mse_step, sgd, _config(None, ema_decay=0.0,
                                                               restore_best=False))
    averaged = Trainer(toy_model(), ToyData(), mse_step, sgd, _config(None, restore_best=False))
    result = averaged.fit()
    # the average does not touch the optimisation: the same losses, step for step
    assert [r["train_loss"] for r in plain.history] == \
        [r["train_loss"] for r in averaged.history]
    # without restore_best the returned model holds the average, not the raw weights
    torch.testing.assert_close(_flat(result.model.state_dict()), _flat(averaged.average.shadow))
    assert not torch.allclose(_flat(result.model.state_dict()),
                              _flat(plain.model.state_dict()))


class Interrupt(RuntimeError):
    pass


def test_resume_restores_the_average(tmp_path):
    full = fit(toy_model(dropout=0.2), ToyData(), mse_step, sgd,
               _config(tmp_path / "a", restore_best=False), scheduler=step_lr)

    def boom(record):
        if record["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(toy_model(dropout=0.2), ToyData(), mse_step, sgd,
            _config(tmp_path / "b", restore_best=False), scheduler=step_lr, on_epoch_end=boom)
    state = load_checkpoint(tmp_path / "b" / "last.pt")
    assert state["ema"]["updates"] == 4 and state["ema"]["decay"] == 0.9
    resumed = fit(toy_model(seed=5, dropout=0.2), ToyData(), mse_step, sgd,
                  _config(tmp_path / "b", restore_best=False), scheduler=step_lr)
    assert resumed.resumed_from == 1
    torch.testing.assert_close(_flat(resumed.model.state_dict()),
                               _flat(full.model.state_dict()), rtol=0, atol=1e-7)


def test_resuming_with_averaging_from_a_checkpoint_without_the_average_is_a_clear_error(
        tmp_path):
    def boom(record):
        if record["epoch"] == 1:
            raise Interrupt

    with pytest.raises(Interrupt):
        fit(toy_model(), ToyData(), mse_step, sgd, _config(tmp_path, ema_decay=0.0),
            on_epoch_end=boom)
    # the same fingerprint (here by construction) but a run that kept no average
    with pytest.raises(ValueError, match=r"last\.pt: .*no weight average.*ema_decay=0\.9"):
        fit(toy_model(), ToyData(), mse_step, sgd, _config(tmp_path))


def test_fit_records_the_threads_and_cpu_it_ran_on():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        result = fit(toy_model(), ToyData(), mse_step, sgd, _config(None, epochs=1))
        assert result.threads == 1
    finally:
        torch.set_num_threads(threads)
    assert result.cpu and result.cpu == engine.cpu_name()


@pytest.mark.parametrize("device, amp, amp_cpu, native, use, reason", [
    ("cpu", True, False, True, False, "a CPU trains in fp32 unless amp_cpu"),
    ("cpu", True, True, True, True, "amp_cpu is true and this CPU has native bf16"),
    ("cpu", True, True, False, False, "no native bf16 kernels"),
    ("cpu", False, True, True, False, "amp is false"),
    ("cuda", True, False, True, True, "amp is true and cuda supports bf16"),
    ("cuda", True, False, False, False, "cuda has no bf16 support"),
])
def test_precision_plan_says_what_ran_and_why(device, amp, amp_cpu, native, use, reason):
    used, text = precision_plan(torch.device(device), amp, amp_cpu, native)
    assert used is use
    assert text.startswith("bf16 autocast" if use else "fp32") and reason in text
