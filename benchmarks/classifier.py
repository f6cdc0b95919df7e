"""Classifier training throughput on CPU: prints JSON with images per second.

    python benchmarks/classifier.py [--backbone resnet18] [--size 128] [--batch 32]
        [--steps 5] [--warmup 2] [--rounds 2] [--prepared data/prepared]

Runs the real training step (DiagnosisBot forward, masked BCE, backward, AdamW step) on
synthetic images, or on the first images of a prepared cache when ``--prepared`` is given,
in fp32 and, where the CPU has native bf16 (what ``amp_cpu: true`` then uses), under bf16
autocast: the two alternate ``--rounds`` times in one run so that both see the same machine
load, and the JSON gives their ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from ekagen.diagnosis.train import classifier_loss
from ekagen.models.classifier import build_classifier
from ekagen.training.engine import bf16_supported


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="alternations of fp32 and bf16")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--prepared", default="", help="use images from this prepared folder")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.prepared:
        cache = np.load(Path(args.prepared) / "images.npy", mmap_mode="r")
        flat = np.array(cache.reshape(-1, *cache.shape[-2:])[: args.batch])
        images = torch.from_numpy(flat).float().div(255).unsqueeze(1)
        source = f"{args.prepared} ({cache.shape[-1]} px)"
    else:
        images = torch.rand(args.batch, 1, args.size, args.size)
        source = "synthetic"
    targets = (torch.rand(len(images), 14) < 0.2).float()
    weights = torch.ones_like(targets)
    model = build_classifier(args.backbone).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(bf16: bool) -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(images)
        classifier_loss(logits, targets, weights).backward()
        optimizer.step()

    modes = [False, True] if bf16_supported(torch.device("cpu")) else [False]
    spent = dict.fromkeys(modes, 0.0)
    for bf16 in modes:
        for _ in range(args.warmup):
            step(bf16)
    for _ in range(args.rounds):
        for bf16 in modes:
            started = time.perf_counter()
            for _ in range(args.steps):
                step(bf16)
            spent[bf16] += time.perf_counter() - started
    done = args.rounds * args.steps * len(images)
    seconds = spent[False] / args.rounds
    with torch.no_grad():
        model.eval()
        started = time.perf_counter()
        for _ in range(args.steps):
            model(images)
        infer = time.perf_counter() - started
    result = {
        "benchmark": "classifier_train", "device": "cpu", "torch_threads": torch.get_num_threads(),
        "backbone": args.backbone, "image_size": int(images.shape[-1]), "batch": len(images),
        "steps": args.steps, "source": source,
        "train_images_per_second": round(done / spent[False], 2),
        "seconds_per_step": round(seconds / args.steps, 4),
        "bf16_native": True in spent,
        "bf16_train_images_per_second": round(done / spent[True], 2) if True in spent else None,
        "bf16_speedup": round(spent[False] / spent[True], 3) if True in spent else None,
        "inference_images_per_second": round(args.steps * len(images) / infer, 2),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
