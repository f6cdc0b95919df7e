"""Training throughput of a configuration on one device, against that device's matmul rate.

Measures, on ``--device``: the dense matmul rate (bf16 and fp32), then ``--steps`` training
steps of the generator (params.yaml ``model``/``train``/``gid``/``adm`` with ``--preset``'s
changes, ADM masks and knowledge on, teacher off as in round 0) and of DiagnosisBot
(``classifier.backbone``), each under bf16 autocast where the device has bf16 and in fp32.
FLOPs per study are counted by ``torch.utils.flop_counter`` (forward + backward), so the
utilisation is achieved FLOP/s over the measured bf16 (or fp32) matmul rate.

Under ``torchrun`` with ``--ddp`` the generator is wrapped in DistributedDataParallel over the
launcher's process group (NCCL on a GPU, gloo on a CPU), and the JSON says which backend ran
and the loss after the steps, which equals the plain run's with one process.

    python -m benchmarks.gpu_check --device cuda --preset paper --image-size 300
    torchrun --standalone --nproc_per_node=1 -m benchmarks.gpu_check --device cuda --ddp

Prints one JSON object (rank 0 only). ``benchmarks/gpu_check.sh`` runs it on a lent GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.train import batch_for, matmul_rate, synchronize
from ekagen.config import (
    AdmConfig,
    ClassifierConfig,
    GeneratorConfig,
    GidConfig,
    TrainConfig,
    section,
)
from ekagen.presets import apply_preset, load_preset
from ekagen.training.engine import bf16_supported

REPO = Path(__file__).resolve().parents[1]


def timed(step: Callable[[], float], device: torch.device, steps: int) -> tuple[float, float]:
    """(seconds per step, last loss) after one warm-up step."""
    step()
    synchronize(device)
    start = time.perf_counter()
    loss = 0.0
    for _ in range(steps):
        loss = step()
    synchronize(device)
    return (time.perf_counter() - start) / steps, loss


def counted_flops(step: Callable[[], float]) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def params_for(preset: str, image_size: int) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    if preset:
        params = apply_preset(params, load_preset(preset))
    # random weights, so no file is needed; batch norm then trains (frozen needs loaded
    # statistics), which costs the same FLOPs to within the norm layers' share
    params["model"]["backbone_weights"] = ""
    params["model"]["frozen_bn"] = False
    params["data"]["image_size"] = image_size
    return params


def generator_step(params: dict, device: torch.device, batch_size: int, views: int,
                   vocab: int, tokens: int, amp: bool, ddp: bool):
    from ekagen.generation.train import GenerationStep
    from ekagen.models.generator import build_generator

    cfg = section(params, "model", GeneratorConfig)
    train = section(params, "train", TrainConfig)
    step_fn = GenerationStep(train, section(params, "gid", GidConfig),
                             section(params, "adm", AdmConfig), 0, None)
    torch.manual_seed(0)
    model = build_generator(cfg, vocab, views).to(device).train()
    if ddp:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda"
                                        else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=train.lr)
    batch = {k: v.to(device) for k, v in batch_for(cfg, batch_size, views,
                                                   params["data"]["image_size"], vocab,
                                                   tokens).items()}

    def step() -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext():
            loss, _ = step_fn(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def classifier_step(params: dict, device: torch.device, batch_size: int, amp: bool):
    from ekagen.diagnosis.train import classifier_loss
    from ekagen.models.classifier import build_classifier

    cfg = section(params, "classifier", ClassifierConfig)
    torch.manual_seed(0)
    model = build_classifier(cfg.backbone).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    size = params["data"]["image_size"]
    images = torch.rand(batch_size, 1, size, size, device=device)
    targets = (torch.rand(batch_size, 14, device=device) < 0.2).float()
    weights = torch.ones_like(targets)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16) if amp else nullcontext():
            logits = model(images)
        loss = classifier_loss(logits.float(), targets, weights)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step, cfg.backbone


def measure(make_step: Callable[[bool], Callable[[], float]], device: torch.device,
            batch: int, steps: int, modes: list[bool], rates: dict[bool, float]) -> dict:
    out: dict = {}
    for amp in modes:
        step = make_step(amp)
        flops = counted_flops(step)
        seconds, loss = timed(step, device, steps)
        achieved = flops / seconds / 1e12
        out["bf16" if amp else "fp32"] = {
            "studies_per_second": round(batch / seconds, 2),
            "gflops_per_study": round(flops / batch / 1e9, 2),
            "achieved_tflops": round(achieved, 3),
            "utilisation_of_matmul_rate": round(achieved / rates[amp], 3),
            "loss_after_steps": round(loss, 6)}
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:<i> or cpu")
    parser.add_argument("--preset", default="paper", help="a preset name, or '' for params.yaml")
    parser.add_argument("--image-size", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--vocab", type=int, default=760)
    parser.add_argument("--tokens", type=int, default=60, help="report length incl. bos/eos")
    parser.add_argument("--matmul-size", type=int, default=0, help="0: 8192 on GPU, 1024 on CPU")
    parser.add_argument("--ddp", action="store_true", help="wrap the generator in DDP")
    parser.add_argument("--skip-classifier", action="store_true")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch < 1 or args.image_size < 32:
        parser.error("--steps and --batch must be >= 1 and --image-size >= 32")
    params = params_for(args.preset, args.image_size)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device")
    rank = 0
    if args.ddp:  # a process group even for one process: the point is to exercise NCCL
        import torch.distributed as dist

        from ekagen.training.distributed import env_world

        rank, world, local = env_world()
        if device.type == "cuda":
            device = torch.device("cuda", local)
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo",
                                rank=rank, world_size=world)
    n = args.matmul_size or (8192 if device.type == "cuda" else 1024)
    modes = [True, False] if bf16_supported(device) else [False]
    rates = {amp: matmul_rate(n, 10, device, torch.bfloat16 if amp else torch.float32) / 1e3
             for amp in modes}
    result: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "torch": torch.__version__, "preset": args.preset or "params.yaml",
        "image_size": args.image_size, "batch": args.batch, "views": args.views,
        "steps": args.steps, "matmul_size": n,
        "matmul_tflops": {("bf16" if amp else "fp32"): round(r, 2) for amp, r in rates.items()}}
    result["generator"] = measure(
        lambda amp: generator_step(params, device, args.batch, args.views, args.vocab,
                                   args.tokens, amp, args.ddp),
        device, args.batch, args.steps, modes, rates)
    if not args.skip_classifier:
        backbone = section(params, "classifier", ClassifierConfig).backbone
        result["classifier"] = {"backbone": backbone, **measure(
            lambda amp: classifier_step(params, device, args.batch, amp)[0],
            device, args.batch, args.steps, modes, rates)}
    if args.ddp:
        result["ddp"] = {"world_size": dist.get_world_size(), "backend": dist.get_backend()}
        dist.destroy_process_group()
    if rank == 0:
        print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
