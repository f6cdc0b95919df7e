"""Length-grouped against plainly shuffled batches: generator training time, side by side.

Prints JSON: for the training reports' real token lengths (``data/prepared`` after
``dvc repro prepare``; otherwise lengths drawn like the default data's), the share of padded
decoder positions under each order, and the seconds per study of generator training steps
(default model, cached backbone features, bf16 where native) timed on the same batches of
both kinds, alternating, so machine noise hits both alike.

    python benchmarks/batching.py [--batch 8] [--batches 40] [--pool 50]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from ekagen.config import AdmConfig, GeneratorConfig, GidConfig, TrainConfig, replace, section
from ekagen.generation.train import GenerationStep
from ekagen.models.generator import build_generator
from ekagen.training.averaging import precision_plan
from ekagen.training.batching import LengthGroupedSampler
from ekagen.training.engine import bf16_supported


def report_lengths(prepared: Path, max_length: int) -> tuple[list[int], str]:
    """Token counts (bos/eos included) of the training reports, or a stand-in."""
    if (prepared / "studies.parquet").is_file() and (prepared / "vocab.json").is_file():
        import pandas as pd

        from ekagen.data.vocab import Vocabulary

        studies = pd.read_parquet(prepared / "studies.parquet")
        vocab = Vocabulary.load(prepared / "vocab.json")
        reports = studies.loc[studies["split"] == "train", "report"]
        return [len(vocab.encode(r, max_length)) for r in reports], str(prepared)
    rng = np.random.default_rng(0)  # log-normal around the default data's mean of 37 tokens
    lengths = np.clip(rng.lognormal(np.log(34), 0.4, 2068).round(), 8, max_length)
    return lengths.astype(int).tolist(), "synthetic (no data/prepared)"


def batches_of(order: list[int], size: int) -> list[list[int]]:
    return [order[i : i + size] for i in range(0, len(order) - size + 1, size)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--batches", type=int, default=40, help="timed batches of each kind")
    parser.add_argument("--pool", type=int, default=50)
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--vocab", type=int, default=760)
    args = parser.parse_args()
    params = yaml.safe_load(open("params.yaml"))
    cfg = section(params, "model", GeneratorConfig)
    cfg = replace(cfg, backbone_weights="", frozen_bn=False)
    train_cfg, gid = section(params, "train", TrainConfig), section(params, "gid", GidConfig)
    adm = section(params, "adm", AdmConfig)
    lengths, source = report_lengths(Path(args.prepared), cfg.max_length)

    plain_order = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0))
    plain = batches_of(plain_order.tolist(), args.batch)
    grouped = batches_of(list(LengthGroupedSampler(lengths, args.batch, pool=args.pool,
                                                   seed=0)), args.batch)

    def padding(batches: list[list[int]]) -> float:
        real = sum(lengths[i] for b in batches for i in b)
        return 1.0 - real / sum(max(lengths[i] for i in b) * len(b) for b in batches)

    torch.manual_seed(0)
    model = build_generator(cfg, args.vocab, 2)
    model.backbone.requires_grad_(False)
    features = model.backbone_features(torch.rand(1, 2, 128, 128)).detach()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], 1e-4)
    step = GenerationStep(train_cfg, gid, adm, 0)
    g = torch.Generator().manual_seed(1)
    knowledge = torch.randint(4, args.vocab, (args.batch, 40), generator=g)
    cpu = torch.device("cpu")
    amp, _ = precision_plan(cpu, train_cfg.amp, train_cfg.amp_cpu, bf16_supported(cpu))

    def run(batch: list[int]) -> float:
        tokens = torch.zeros(len(batch), cfg.max_length, dtype=torch.long)
        for row, i in enumerate(batch):
            tokens[row, : lengths[i]] = torch.randint(4, args.vocab, (lengths[i],), generator=g)
        feats = features.expand(len(batch), *features.shape[1:]).clone()
        data = {"features": feats, "adm_features": feats, "tokens": tokens,
                "knowledge": knowledge[: len(batch)]}
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            loss, _ = step(model, data)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return time.perf_counter() - start

    for batch in plain[:3]:
        run(batch)  # warm-up
    seconds = {"plain": 0.0, "grouped": 0.0}
    count = min(args.batches, len(plain), len(grouped))
    for a, b in zip(plain[:count], grouped[:count], strict=True):
        seconds["plain"] += run(a)
        seconds["grouped"] += run(b)
    studies = count * args.batch
    print(json.dumps({
        "lengths": source, "reports": len(lengths), "batch": args.batch, "pool": args.pool,
        "timed_batches_each": count, "bf16": amp, "threads": torch.get_num_threads(),
        "padding_share": {"plain": round(padding(plain), 3),
                          "grouped": round(padding(grouped), 3)},
        "ms_per_study": {k: round(1000 * v / studies, 2) for k, v in seconds.items()},
        "speedup_grouped_over_plain": round(seconds["plain"] / seconds["grouped"], 3),
    }, indent=2))


if __name__ == "__main__":
    main()
