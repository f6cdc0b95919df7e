"""Generator training throughput on this CPU, and how much of the CPU's matmul rate it uses.

Prints JSON: studies (and images) per second for one training step of the default model
(params.yaml ``model``/``train``, ADM on, knowledge on), with the backbone trained and frozen,
with and without a teacher; the model's FLOPs per study (forward + backward, counted by
``torch.utils.flop_counter``); this CPU's measured fp32 matmul rate; and the utilisation.

    python benchmarks/train.py [--batch 16] [--steps 4] [--image-size 128]
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from ekagen.config import AdmConfig, GeneratorConfig, GidConfig, TrainConfig, replace, section
from ekagen.generation.train import GenerationStep
from ekagen.models.generator import build_generator


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(n: int = 1024, repeats: int = 20, device: torch.device | None = None,
                dtype: torch.dtype = torch.float32) -> float:
    """Measured GFLOP/s of square ``dtype`` matmuls on ``device`` (default: this CPU, fp32),
    the best the device does on dense work."""
    device = device or torch.device("cpu")
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def batch_for(cfg: GeneratorConfig, batch: int, views: int, size: int, vocab: int,
              length: int) -> dict:
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, vocab, (batch, length), generator=g)
    tokens[:, 0] = 1
    return {"images": torch.rand(batch, views, size, size, generator=g),
            "masks": torch.rand(batch, views, size, size, generator=g) > 0.4,
            "tokens": tokens, "knowledge": torch.randint(4, vocab, (batch, cfg.max_length),
                                                         generator=g)}


def one_step(step: GenerationStep, model: torch.nn.Module, opt: torch.optim.Optimizer,
             batch: dict) -> None:
    loss, _ = step(model, batch)
    opt.zero_grad()
    loss.backward()
    opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=760)
    parser.add_argument("--tokens", type=int, default=45, help="report length incl. bos/eos")
    args = parser.parse_args()
    params = yaml.safe_load(open("params.yaml"))
    cfg = section(params, "model", GeneratorConfig)
    cfg = replace(cfg, backbone_weights="", frozen_bn=False)
    train_cfg, gid = section(params, "train", TrainConfig), section(params, "gid", GidConfig)
    adm = section(params, "adm", AdmConfig)
    batch = batch_for(cfg, args.batch, args.views, args.image_size, args.vocab, args.tokens)
    out = {"batch": args.batch, "image_size": args.image_size, "views": args.views,
           "threads": torch.get_num_threads(), "model": cfg.to_dict()}
    out["cpu_matmul_gflops"] = round(matmul_rate(), 1)
    for name, frozen, with_teacher in (("backbone_trained", False, False),
                                       ("backbone_frozen", True, False),
                                       ("backbone_frozen_with_teacher", True, True)):
        torch.manual_seed(0)
        model = build_generator(cfg, args.vocab, args.views)
        teacher = build_generator(cfg, args.vocab, args.views).eval() if with_teacher else None
        if frozen:
            model.backbone.requires_grad_(False)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)
        step = GenerationStep(train_cfg, gid, adm, 0, teacher)

        with FlopCounterMode(display=False) as counter:
            one_step(step, model, opt, batch)
        flops = counter.get_total_flops()
        one_step(step, model, opt, batch)  # warm-up
        start = time.perf_counter()
        for _ in range(args.steps):
            one_step(step, model, opt, batch)
        seconds = (time.perf_counter() - start) / args.steps
        achieved = flops / seconds / 1e9
        out[name] = {"studies_per_second": round(args.batch / seconds, 2),
                     "images_per_second": round(args.batch * args.views / seconds, 2),
                     "gflops_per_study": round(flops / args.batch / 1e9, 3),
                     "achieved_gflops": round(achieved, 1),
                     "utilisation_of_matmul_rate": round(achieved / out["cpu_matmul_gflops"], 3)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
