from __future__ import annotations

import json
import math
import os
import random
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

from ekagen.training.checkpoint import capture_rng, load_checkpoint, restore_rng
from ekagen.training.engine import EngineConfig, NonFiniteLossError, Trainer, bf16_supported, fit
from tests.training.toy import ToyData, mse_step, sgd, step_lr, toy_model


def _config(tmp: Path | None, **kw) -> EngineConfig:
    # fp32: these tests compare runs numerically; bf16 autocast has its own test
    base = dict(epochs=3, batch_size=8, device="cpu", progress=False, seed=7,
                checkpoint_dir=tmp, fingerprint="toy", amp=False)
    base.update(kw)
    return EngineConfig(**base)


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.state_dict().values()]


class Interrupt(RuntimeError):
    pass


def test_training_reduces_loss_and_records_history():
    result = fit(toy_model(), ToyData(), mse_step, sgd, _config(None, epochs=4))
    losses = [r["train_loss"] for r in result.history]
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert losses[-1] < 0.5 * losses[0]
    assert result.best_epoch == 4 and result.resumed_from == 0


def test_resume_after_interruption_continues_and_matches_uninterrupted_run(tmp_path):
    # dropout and a scheduler make the check sensitive to RNG and scheduler state
    full = fit(toy_model(dropout=0.2), ToyData(), mse_step, sgd,
               _config(tmp_path / "a", restore_best=False), scheduler=step_lr)

    def boom(record):
        if record["epoch"] == 1:
            raise Interrupt("killed after epoch 1")

    with pytest.raises(Interrupt):
        fit(toy_model(dropout=0.2), ToyData(), mse_step, sgd,
            _config(tmp_path / "b", restore_best=False), scheduler=step_lr, on_epoch_end=boom)
    assert load_checkpoint(tmp_path / "b" / "last.pt")["epoch"] == 1

    calls = []

    def counting_step(model, batch):
        calls.append(1)
        return mse_step(model, batch)

    # a different initialisation: resuming must overwrite it with the checkpoint
    resumed = fit(toy_model(seed=123, dropout=0.2), ToyData(), counting_step, sgd,
                  _config(tmp_path / "b", restore_best=False), scheduler=step_lr)
    assert resumed.resumed_from == 1
    assert len(calls) == 2 * 4  # epochs 2 and 3 only, 32 samples / batch 8
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    for a, b in zip(full.history, resumed.history, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-7)
        assert a["lr"] == pytest.approx(b["lr"])
    for a, b in zip(_params(full.model), _params(resumed.model), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-7)


def test_finished_or_foreign_checkpoint_starts_fresh(tmp_path):
    fit(toy_model(), ToyData(), mse_step, sgd, _config(tmp_path, epochs=1))
    assert load_checkpoint(tmp_path / "last.pt")["finished"] is True
    again = fit(toy_model(), ToyData(), mse_step, sgd, _config(tmp_path, epochs=2))
    assert again.resumed_from == 0  # the finished run is not continued

    def boom(record):
        raise Interrupt

    with pytest.raises(Interrupt):
        fit(toy_model(), ToyData(), mse_step, sgd, _config(tmp_path, epochs=2),
            on_epoch_end=boom)
    other = fit(toy_model(), ToyData(), mse_step, sgd,
                _config(tmp_path, epochs=2, fingerprint="changed-params"))
    assert other.resumed_from == 0


def test_checkpoint_is_plain_and_loads_weights_only(tmp_path):
    fit(toy_model(), ToyData(), mse_step, sgd, _config(tmp_path, epochs=2), scheduler=step_lr)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and state["fingerprint"] == "toy"
    assert set(state) >= {"model", "optimizer", "scheduler", "history", "rng", "best_metric"}
    assert isinstance(state["rng"][0]["torch"], torch.Tensor)
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["epoch"] == state["best_epoch"]


def test_rng_state_round_trip():
    saved = capture_rng()
    first = (random.random(), np.random.rand(), torch.rand(1).item(), random.gauss(0, 1))
    restore_rng(saved)
    second = (random.random(), np.random.rand(), torch.rand(1).item(), random.gauss(0, 1))
    assert first == second


def test_best_epoch_selected_and_restored(tmp_path):
    scores = iter([0.5, 0.9, 0.7])
    snapshots = {}

    def evaluate(model):
        return {"val_score": next(scores)}

    trainer = Trainer(toy_model(), ToyData(), mse_step, sgd,
                      _config(tmp_path, monitor="val_score", mode="max"), evaluate=evaluate)

    def snap(record):
        snapshots[record["epoch"]] = _params(trainer.model)

    trainer.callbacks.append(snap)
    result = trainer.fit()
    assert result.best_epoch == 2 and result.best_metric == 0.9
    for a, b in zip(_params(result.model), snapshots[2], strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("later_ties, best", [(False, 1), (True, 3)])
def test_ties_go_to_the_earlier_epoch_unless_later_ties(later_ties, best):
    scores = iter([0.7, 0.7, 0.7])
    result = fit(toy_model(), ToyData(), mse_step, sgd,
                 _config(None, monitor="val_score", mode="max", later_ties=later_ties),
                 evaluate=lambda model: {"val_score": next(scores)})
    assert result.best_epoch == best


def test_early_stopping(tmp_path):
    result = fit(toy_model(), ToyData(), mse_step, sgd,
                 _config(None, epochs=10, monitor="val_score", mode="max", patience=2),
                 evaluate=lambda model: {"val_score": 1.0})
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1


def test_nan_loss_raises_naming_epoch_and_step():
    seen = []

    def bad_step(model, batch):
        seen.append(1)
        loss = mse_step(model, batch)
        return loss * float("nan") if len(seen) == 6 else loss

    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 2/4"):
        fit(toy_model(), ToyData(), bad_step, sgd, _config(None))


def test_unknown_monitor_and_bad_batch_are_errors():
    with pytest.raises(KeyError, match="val_nope"):
        fit(toy_model(), ToyData(), mse_step, sgd, _config(None, monitor="val_nope"))
    with pytest.raises(ValueError, match="no training batch"):
        fit(toy_model(), ToyData(n=4), mse_step, sgd, _config(None, drop_last=True))


@pytest.mark.parametrize("amp, amp_cpu", [(True, True), (True, False), (False, True)])
def test_cpu_autocasts_only_when_amp_cpu_opts_in_and_bf16_is_native(amp, amp_cpu):
    seen: list[tuple[bool, torch.dtype]] = []

    def step(model, batch):
        seen.append((torch.is_autocast_enabled("cpu"), model(batch["x"]).dtype))
        return mse_step(model, batch)

    result = fit(toy_model(), ToyData(), step, sgd,
                 _config(None, epochs=1, amp=amp, amp_cpu=amp_cpu))
    native = amp and amp_cpu and bf16_supported(torch.device("cpu"))
    assert seen and all(s == (native, torch.bfloat16 if native else torch.float32)
                        for s in seen)
    assert result.precision == ("bf16 autocast" if native else "fp32")
    assert result.precision_reason.startswith(result.precision)
    assert math.isfinite(result.history[0]["train_loss"])
    # the weights themselves stay fp32 either way
    assert all(p.dtype == torch.float32 for p in result.model.parameters())


def test_bf16_support_by_device():
    assert bf16_supported(torch.device("meta")) is False
    cpu = bf16_supported(torch.device("cpu"))
    assert cpu == bool(torch.backends.mkldnn.is_available()
                       and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def test_grad_clip_limits_update():
    model = toy_model()
    before = _params(model)
    fit(model, ToyData(), lambda m, b: 1e6 * mse_step(m, b),
        lambda m: torch.optim.SGD(m.parameters(), lr=1.0),
        _config(None, epochs=1, batch_size=32, grad_clip=0.01, shuffle=False))
    change = torch.sqrt(sum(((a - b) ** 2).sum() for a, b in zip(before, _params(model),
                                                                  strict=True)))
    assert change.item() <= 0.01 + 1e-6


# ----------------------------------------------------------------------------- DDP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    from ekagen.training.distributed import shutdown

    try:
        result = fit(toy_model(), ToyData(), mse_step, sgd,
                     _config(Path(out) / "ckpt", epochs=3, batch_size=8), scheduler=step_lr)
        if rank == 0:
            weights = [p.tolist() for p in _params(result.model)]
            Path(out, "ddp.json").write_text(json.dumps({"history": result.history,
                                                         "weights": weights}))
    finally:
        shutdown()


@pytest.mark.slow
def test_two_process_ddp_matches_single_process(tmp_path):
    import torch.multiprocessing as mp

    single = fit(toy_model(), ToyData(), mse_step, sgd,
                 _config(tmp_path / "single", epochs=3, batch_size=8), scheduler=step_lr)
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ddp = json.loads((tmp_path / "ddp.json").read_text())
    assert len(ddp["history"]) == 3
    for a, b in zip(single.history, ddp["history"], strict=True):
        assert math.isclose(a["train_loss"], b["train_loss"], rel_tol=1e-5, abs_tol=1e-6)
    for a, b in zip(_params(single.model), ddp["weights"], strict=True):
        torch.testing.assert_close(a, torch.tensor(b), rtol=1e-4, atol=1e-5)
    assert (tmp_path / "ckpt" / "last.pt").is_file()


def test_max_steps_caps_the_optimiser_steps_of_every_epoch_and_the_schedule():
    calls: list[int] = []

    def counting_step(model, batch):
        calls.append(len(batch["x"]))
        return mse_step(model, batch)

    seen = {}

    def per_batch(optimizer, steps_per_epoch):
        seen["steps_per_epoch"] = steps_per_epoch
        return torch.optim.lr_scheduler.StepLR(optimizer, 1000)

    # 32 samples in batches of 8: 4 batches an epoch, capped at 3
    fit(toy_model(), ToyData(), counting_step, sgd, _config(None, epochs=2, max_steps=3),
        scheduler=per_batch)
    assert calls == [8] * 6 and seen["steps_per_epoch"] == 3
    calls.clear()
    fit(toy_model(), ToyData(), counting_step, sgd, _config(None, epochs=2, max_steps=0))
    assert calls == [8] * 8
