"""The shared training loop: epochs, DDP, bf16, clipping, checkpoints, resume, model selection.

Every trainable part of the project (the DiagnosisBot classifier, the report generator) is
trained through :class:`Trainer`. The caller supplies what is specific to its model as plain
callables; the engine owns everything else::

    trainer = Trainer(
        model, train_dataset,
        train_step=lambda model, batch: loss,          # scalar tensor (or (loss, {name: value}))
        optimizer=lambda model: torch.optim.AdamW(model.parameters(), lr=1e-3),
        scheduler=lambda opt, steps_per_epoch: torch.optim.lr_scheduler.StepLR(opt, 20),
        evaluate=lambda model: {"val_mean_auroc": ...},  # called in eval mode, no grad
        config=EngineConfig(epochs=10, batch_size=32, monitor="val_mean_auroc", mode="max",
                            checkpoint_dir="data/classifier_ckpt", fingerprint=...),
        on_epoch_end=lambda record: ...,              # rank 0 only, after the checkpoint
    )
    result = trainer.fit()   # the model now holds the best weights on validation

Behaviour, in short:

* **Device**: ``config.device`` (``auto`` = this rank's GPU if CUDA is available, else CPU).
  bf16 autocast (``config.amp``) wraps ``train_step`` and ``evaluate`` on a GPU that supports
  bf16. A CPU runs fp32 unless ``config.amp_cpu`` opts in, and then only where oneDNN has
  native bf16 kernels (AVX512-BF16 or AMX): otherwise a run's numbers would depend on which
  CPU it landed on. The precision used and why is in ``FitResult``.
* **Weight averaging**: ``config.ema_decay`` > 0 keeps a moving average of the weights after
  every optimiser step; validation, model selection, ``best.pt`` and the returned model use
  the average, training continues from the raw weights (both are in ``last.pt``).
* **DDP**: when launched by ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in
  ``DistributedDataParallel`` (gloo on CPU, NCCL on GPU); ``train_step`` receives the wrapped
  model and must call it (``model(...)``, i.e. ``forward``) for gradients to be averaged.
  ``config.batch_size`` is the *global* batch: each of W processes draws ``batch_size / W``
  samples per step through a ``DistributedSampler`` (also used, with one replica, in a single
  process; :class:`~ekagen.training.batching.LengthGroupedSampler` instead when
  ``length_pool`` > 0 and the caller gives sample lengths), so a global step sees the same
  samples whatever W is and DDP's gradient averaging reproduces the single-process step
  (exactly for losses that are means over equally sized per-process batches; BatchNorm
  statistics are per process unless ``sync_batchnorm`` on GPU). Only rank 0 writes
  checkpoints, shows progress and runs ``on_epoch_end``. ``evaluate`` runs on rank 0 and its
  result is broadcast (``eval_all_ranks=True`` calls it everywhere, for sharded evaluation
  that reduces itself).
* **Checkpoints**: after every epoch ``last.pt`` (model, optimiser, scheduler, epoch, best
  metric, history, each rank's RNG states as tensors, a configuration fingerprint) and, on
  improvement of ``monitor``, ``best.pt`` (model weights). Plain tensors and containers only;
  they load with ``weights_only=True``.
* **Resume**: a new ``fit`` with the same ``fingerprint`` finds an unfinished ``last.pt`` and
  continues after its last completed epoch, reproducing an uninterrupted run (same data order,
  same RNG streams). A checkpoint from another configuration, or from a run that finished, is
  ignored: the run starts from scratch, so a changed parameter never inherits stale weights.
* **Errors**: a NaN/inf loss stops training with :class:`NonFiniteLossError` naming the epoch
  and step (checked on the loss averaged over ranks, so every rank stops together).
"""

from __future__ import annotations

import math
import platform
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from ekagen.training import checkpoint as ckpt
from ekagen.training.averaging import WeightAverage, precision_plan
from ekagen.training.batching import LengthGroupedSampler
from ekagen.training.distributed import (
    DistInfo,
    all_gather_object,
    all_reduce_mean,
    barrier,
    broadcast_object,
    init_distributed,
)

CHECKPOINT_FORMAT = 1

TrainStep = Callable[[nn.Module, Any], "torch.Tensor | tuple[torch.Tensor, Mapping[str, Any]]"]
OptimizerFactory = Callable[[nn.Module], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer, int], Any]
Evaluate = Callable[[nn.Module], Mapping[str, Any]]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


@dataclass
class EngineConfig:
    """What the engine needs to know besides the model and the callables."""

    epochs: int
    batch_size: int = 32  # global batch, split evenly over DDP processes
    monitor: str = "train_loss"  # a key of the epoch record (train_loss or from evaluate)
    mode: str = "min"  # min | max: which direction of ``monitor`` is better
    patience: int = 0  # stop after this many epochs without improvement; 0 = never
    max_steps: int = 0  # optimiser steps per epoch at most (the rest of the epoch's batches
    # are not drawn); 0 = every batch
    later_ties: bool = False  # a tie with the best goes to the later (more trained) epoch
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    device: str = "auto"  # auto | cpu | cuda | cuda:<i>
    amp: bool = True  # bf16 autocast on a GPU with bf16 (see precision_plan)
    amp_cpu: bool = False  # also on a CPU with native bf16 (AMX/AVX512-BF16); off: CPUs run fp32
    # > 0: evaluate, select and return the exponential moving average of the weights
    # (ekagen/training/averaging.py) instead of the weights after the last step
    ema_decay: float = 0.0
    seed: int = 42  # data order and DataLoader worker seeds
    num_workers: int = 0
    shuffle: bool = True
    drop_last: bool = False  # drop a short last batch
    # > 0 (with ``lengths`` given to Trainer): batches of similar length, drawn from pools of
    # this many batches (ekagen/training/batching.py); 0: DistributedSampler's plain shuffle
    length_pool: int = 0
    scheduler_interval: str = "epoch"  # epoch | step: when scheduler.step() is called
    checkpoint_dir: str | Path | None = None  # None: no checkpoints, best weights in memory
    resume: bool = True
    fingerprint: str = ""  # identifies the configuration; a mismatching checkpoint is ignored
    restore_best: bool = True  # load the best weights into the model when fit returns
    eval_all_ranks: bool = False
    sync_batchnorm: bool = True  # convert BatchNorm to SyncBatchNorm under DDP on GPU
    find_unused_parameters: bool = False  # DDP: some parameters get no gradient in a step
    progress: bool = True
    desc: str = "train"


@dataclass
class FitResult:
    model: nn.Module  # the trained model (unwrapped), holding the best weights
    history: list[dict[str, Any]]  # one record per completed epoch (resumed ones included)
    best_epoch: int
    best_metric: float
    resumed_from: int  # the last completed epoch found in a checkpoint; 0 = fresh start
    stopped_early: bool = False
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    #: what the training steps actually ran in, "bf16 autocast" or "fp32" (record it: the two
    #: differ numerically), and why (``precision_plan``)
    precision: str = "fp32"
    precision_reason: str = ""
    #: intra-op threads and CPU the steps ran on: both change results in the last digits
    #: (the README measures a thread-count change), so a comparison needs them equal
    threads: int = 1
    cpu: str = ""


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast pays off on ``device``.

    On CPU only oneDNN's native bf16 kernels (AVX512-BF16 or AMX) make it faster; without them
    bf16 is emulated and slower than fp32, so autocast stays off.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside nested dicts/lists/tuples to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=device.type == "cuda")
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def _seed_worker(worker_id: int) -> None:
    """DataLoader workers: seed NumPy and ``random`` from the worker's torch seed."""
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _is_better(value: float, best: float | None, mode: str, later_ties: bool = False) -> bool:
    if best is None:
        return True
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    if later_ties and value == best:
        return True
    return value > best if mode == "max" else value < best


def _scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool):
            out[key] = float(value)
        elif isinstance(value, int | float):
            out[key] = float(value)
        elif isinstance(value, torch.Tensor) and value.numel() == 1:
            out[key] = float(value.item())
    return out


class Trainer:
    """Trains ``model`` on ``train_data``; see the module docstring for the contract."""

    def __init__(
        self,
        model: nn.Module,
        train_data: Dataset,
        train_step: TrainStep,
        optimizer: OptimizerFactory,
        config: EngineConfig,
        *,
        scheduler: SchedulerFactory | None = None,
        evaluate: Evaluate | None = None,
        collate_fn: Callable | None = None,
        on_epoch_end: Callable[[dict[str, Any]], None] | Sequence[Callable] | None = None,
        dist_info: DistInfo | None = None,
        lengths: Sequence[int] | None = None,
    ) -> None:
        if config.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {config.epochs}")
        if config.mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {config.mode!r}")
        if config.scheduler_interval not in ("epoch", "step"):
            raise ValueError(f"scheduler_interval must be 'epoch' or 'step', "
                             f"got {config.scheduler_interval!r}")
        self.config = config
        self.dist = dist_info or init_distributed(config.device)
        world = self.dist.world_size
        if config.batch_size < world or config.batch_size % world:
            raise ValueError(f"global batch_size {config.batch_size} must be a multiple of the "
                             f"{world} processes")
        self.device = self.dist.device
        model = model.to(self.device)
        if self.dist.distributed and config.sync_batchnorm and self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model
        if self.dist.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped: nn.Module = nn.parallel.DistributedDataParallel(
                model, device_ids=ids, find_unused_parameters=config.find_unused_parameters)
        else:
            self.wrapped = model
        self.train_step = train_step
        self.evaluate = evaluate
        if on_epoch_end is None:
            self.callbacks: list[Callable] = []
        elif callable(on_epoch_end):
            self.callbacks = [on_epoch_end]
        else:
            self.callbacks = list(on_epoch_end)
        if config.length_pool > 0 and lengths is not None:
            if len(lengths) != len(train_data):
                raise ValueError(f"{len(lengths)} lengths for {len(train_data)} samples")
            self.sampler: LengthGroupedSampler | DistributedSampler = LengthGroupedSampler(
                lengths, config.batch_size // world, world, self.dist.rank, config.seed,
                config.length_pool, config.shuffle)
        else:
            self.sampler = DistributedSampler(train_data, num_replicas=world,
                                              rank=self.dist.rank, shuffle=config.shuffle,
                                              seed=config.seed)
        self.loader_generator = torch.Generator()
        self.loader = DataLoader(
            train_data, batch_size=config.batch_size // world, sampler=self.sampler,
            num_workers=config.num_workers, collate_fn=collate_fn, drop_last=config.drop_last,
            pin_memory=self.device.type == "cuda", worker_init_fn=_seed_worker,
            generator=self.loader_generator)
        self.steps_per_epoch = len(self.loader)
        if config.max_steps > 0:
            self.steps_per_epoch = min(self.steps_per_epoch, config.max_steps)
        if self.steps_per_epoch == 0:
            raise ValueError(f"no training batch: {len(train_data)} samples, global batch "
                             f"{config.batch_size}, drop_last={config.drop_last}")
        self.optimizer = optimizer(model)
        self.scheduler = scheduler(self.optimizer, self.steps_per_epoch) if scheduler else None
        self.use_amp, self.precision_reason = precision_plan(
            self.device, config.amp, config.amp_cpu, bf16_supported(self.device))
        self.average = WeightAverage(model, config.ema_decay) if config.ema_decay > 0 else None
        self.ckpt_dir = Path(config.checkpoint_dir) if config.checkpoint_dir else None
        self.history: list[dict[str, Any]] = []
        self.best_metric: float | None = None
        self.best_epoch = 0
        self._best_state: dict[str, torch.Tensor] | None = None
        self.start_epoch = 0

    # ----------------------------------------------------------------- checkpoints
    def _autocast(self):
        if self.use_amp:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _log(self, message: str) -> None:
        if self.dist.is_main and self.config.progress:
            tqdm.write(message)

    def _try_resume(self) -> None:
        if not (self.ckpt_dir and self.config.resume and (self.ckpt_dir / ckpt.LAST).is_file()):
            return
        state = ckpt.load_checkpoint(self.ckpt_dir / ckpt.LAST, map_location="cpu")
        if state.get("fingerprint", "") != self.config.fingerprint:
            self._log(f"{self.ckpt_dir / ckpt.LAST}: written for another configuration; "
                      "starting from scratch")
            return
        if state.get("finished"):
            self._log(f"{self.ckpt_dir / ckpt.LAST}: that run finished; starting from scratch")
            return
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{self.ckpt_dir / ckpt.LAST}: checkpoint format "
                             f"{state.get('format')!r}, expected {CHECKPOINT_FORMAT}")
        self.model.load_state_dict(state["model"])
        if self.average is not None:
            if not state.get("ema"):
                raise ValueError(
                    f"{self.ckpt_dir / ckpt.LAST}: matches this configuration but holds no "
                    f"weight average, which ema_decay={self.config.ema_decay} needs to resume; "
                    "delete the checkpoint folder to start this run afresh")
            self.average.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler"):
            self.scheduler.load_state_dict(state["scheduler"])
        self.start_epoch = int(state["epoch"])
        self.history = [dict(r) for r in state["history"]]
        best = state.get("best_metric")
        self.best_metric = None if best is None else float(best)
        self.best_epoch = int(state.get("best_epoch", 0))
        if self.best_epoch and (self.ckpt_dir / ckpt.BEST).is_file():
            self._best_state = None  # read from disk when needed
        rng = state.get("rng") or []
        if rng:
            own = rng[self.dist.rank] if self.dist.rank < len(rng) else rng[0]
            ckpt.restore_rng(own)
        self._log(f"resuming after epoch {self.start_epoch}/{self.config.epochs} "
                  f"from {self.ckpt_dir / ckpt.LAST}")

    def _save(self, epoch: int, finished: bool) -> None:
        rng = all_gather_object(ckpt.capture_rng())  # every rank's streams, gathered to all
        if self.ckpt_dir is None or not self.dist.is_main:
            return
        scheduler_state = self.scheduler.state_dict() if self.scheduler is not None else {}
        ckpt.save_checkpoint({
            "format": CHECKPOINT_FORMAT,
            "fingerprint": self.config.fingerprint,
            "epoch": epoch,
            "epochs": self.config.epochs,
            "finished": finished,
            "world_size": self.dist.world_size,
            "model": ckpt.cpu_state_dict(self.model),
            "ema": self.average.state_dict() if self.average is not None else {},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": scheduler_state,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "monitor": self.config.monitor,
            "mode": self.config.mode,
            "history": self.history,
            "rng": rng,
        }, self.ckpt_dir / ckpt.LAST)

    def _averaged(self):
        """The weights evaluated and kept: the moving average where ``ema_decay`` > 0."""
        return self.average.applied(self.model) if self.average is not None else nullcontext()

    def _keep_best(self, epoch: int) -> None:
        with self._averaged():
            state = ckpt.cpu_state_dict(self.model)
        if self.ckpt_dir is None:
            self._best_state = state
        elif self.dist.is_main:
            ckpt.save_checkpoint({"model": state, "epoch": epoch, "metric": self.best_metric,
                                  "monitor": self.config.monitor,
                                  "fingerprint": self.config.fingerprint},
                                 self.ckpt_dir / ckpt.BEST)

    def _load_best(self) -> None:
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        elif self.ckpt_dir is not None and (self.ckpt_dir / ckpt.BEST).is_file():
            state = ckpt.load_checkpoint(self.ckpt_dir / ckpt.BEST, map_location="cpu")
            self.model.load_state_dict(state["model"])

    # ----------------------------------------------------------------- the loop
    def _train_epoch(self, epoch: int) -> dict[str, float]:
        cfg = self.config
        self.sampler.set_epoch(epoch)
        self.loader_generator.manual_seed(
            (cfg.seed * 1_000_003 + epoch * 7919 + self.dist.rank) % (2**63 - 1))
        self.wrapped.train()
        sums: dict[str, float] = {}
        steps = 0
        bar = tqdm(self.loader, total=self.steps_per_epoch, unit="batch", dynamic_ncols=True,
                   desc=f"{cfg.desc} {epoch}/{cfg.epochs}", leave=False,
                   disable=not (cfg.progress and self.dist.is_main))
        for step, batch in enumerate(bar, start=1):
            batch = to_device(batch, self.device)
            self.optimizer.zero_grad(set_to_none=True)
            with self._autocast():
                out = self.train_step(self.wrapped, batch)
            loss, extras = (out if isinstance(out, tuple) else (out, {}))
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise TypeError("train_step must return a scalar loss tensor "
                                "(or (loss, {name: value}))")
            names = ["loss", *extras]
            values = torch.stack([loss.detach().float().reshape(())] + [
                torch.as_tensor(v, dtype=torch.float32, device=self.device).detach().reshape(())
                for v in extras.values()])
            values = all_reduce_mean(values).cpu().tolist()
            if not math.isfinite(values[0]):
                raise NonFiniteLossError(
                    f"non-finite training loss ({values[0]}) at epoch {epoch}, step "
                    f"{step}/{self.steps_per_epoch}: lower the learning rate, set grad_clip, "
                    "or check the inputs")
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            if self.average is not None:
                self.average.update(self.model)
            if self.scheduler is not None and cfg.scheduler_interval == "step":
                self.scheduler.step()
            for name, value in zip(names, values, strict=True):
                sums[name] = sums.get(name, 0.0) + value
            steps += 1
            bar.set_postfix(loss=f"{sums['loss'] / steps:.4f}")
            if steps == self.steps_per_epoch:
                break
        bar.close()
        if self.scheduler is not None and cfg.scheduler_interval == "epoch":
            self.scheduler.step()
        return {f"train_{k}": v / max(steps, 1) for k, v in sums.items()}

    def _evaluate(self) -> dict[str, Any]:
        if self.evaluate is None:
            return {}
        metrics: dict[str, Any] = {}
        if self.config.eval_all_ranks or self.dist.is_main:
            self.model.eval()
            with torch.no_grad(), self._autocast(), self._averaged():
                metrics = dict(self.evaluate(self.model))
            self.model.train()
        if not self.config.eval_all_ranks:
            metrics = broadcast_object(metrics)
        return metrics

    def fit(self) -> FitResult:
        cfg = self.config
        self._try_resume()
        resumed_from = self.start_epoch
        stopped = False
        if cfg.patience > 0 and self.best_epoch and self.start_epoch - self.best_epoch >= \
                cfg.patience:
            stopped = True
        epoch = self.start_epoch
        while not stopped and epoch < cfg.epochs:
            epoch += 1
            started = time.perf_counter()
            record: dict[str, Any] = {"epoch": epoch}
            lr = float(self.optimizer.param_groups[0]["lr"])  # the rate this epoch starts with
            record.update(self._train_epoch(epoch))
            record["lr"] = lr
            record.update(_scalars(self._evaluate()))
            record["seconds"] = round(time.perf_counter() - started, 3)
            if cfg.monitor not in record:
                raise KeyError(f"monitor {cfg.monitor!r} is not in the epoch record; available: "
                               f"{sorted(record)}")
            value = float(record[cfg.monitor])
            if _is_better(value, self.best_metric, cfg.mode, cfg.later_ties):
                self.best_metric, self.best_epoch = value, epoch
                self._keep_best(epoch)
            record["best_epoch"] = self.best_epoch
            self.history.append(record)
            if cfg.patience > 0 and epoch - self.best_epoch >= cfg.patience:
                stopped = True
            self._save(epoch, finished=stopped or epoch == cfg.epochs)
            barrier()
            self._log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in record.items()))
            if self.dist.is_main:
                for callback in self.callbacks:
                    callback(record)
        if epoch == self.start_epoch and self.start_epoch >= cfg.epochs:
            warnings.warn("checkpoint already covers every epoch; nothing trained", stacklevel=2)
        barrier()
        if cfg.restore_best and self.best_epoch:
            self._load_best()
        elif self.average is not None:
            self.model.load_state_dict(self.average.shadow)
        return FitResult(model=self.model, history=list(self.history),
                         best_epoch=self.best_epoch,
                         best_metric=math.nan if self.best_metric is None else self.best_metric,
                         resumed_from=resumed_from, stopped_early=stopped, device=self.device,
                         precision="bf16 autocast" if self.use_amp else "fp32",
                         precision_reason=self.precision_reason,
                         threads=torch.get_num_threads(), cpu=cpu_name())


def fit(model: nn.Module, train_data: Dataset, train_step: TrainStep,
        optimizer: OptimizerFactory, config: EngineConfig, **kwargs: Any) -> FitResult:
    """One-call form of ``Trainer(...).fit()``."""
    return Trainer(model, train_data, train_step, optimizer, config, **kwargs).fit()
