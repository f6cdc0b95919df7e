"""Benchmark: report embedding throughput and FAISS index build time.

Reads the training reports of ``data/prepared/studies.parquet`` when it exists, else the
FINDINGS of the OpenI reports bundled with torchxrayvision (cleaned R2Gen-style), embeds them
with the configured encoder and times flat and IVF index builds over the result. Prints one
JSON object.

    python benchmarks/embed.py [--limit N] [--batch-size 64] [--device cpu|auto] [--model M]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from ekagen.knowledge.embedding import DEFAULT_MODEL, embed_texts, load_encoder, resolve_device
from ekagen.knowledge.index import build_index, default_nlist, gpu_available, search

PREPARED = Path(__file__).resolve().parents[1] / "data" / "prepared" / "studies.parquet"


def load_reports(limit: int | None) -> tuple[str, list[str]]:
    """``(source description, report texts)``: prepared train reports or OpenI findings."""
    if PREPARED.is_file():
        import pandas as pd

        table = pd.read_parquet(PREPARED, columns=["split", "report"])
        reports = table.loc[table["split"] == "train", "report"].astype(str).tolist()
        source = f"{PREPARED} (train split)"
    else:
        from ekagen.data.openi import iter_openi_records
        from ekagen.data.text import clean_report

        reports = [clean_report(r.findings) for r in iter_openi_records() if r.findings.strip()]
        reports = [r for r in reports if r]
        source = "OpenI findings bundled with torchxrayvision (cleaned)"
    return source, reports[:limit] if limit else reports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="embed only the first N reports")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()

    import torch

    source, reports = load_reports(args.limit)
    device = resolve_device(args.device)
    start = time.perf_counter()
    load_encoder(args.model, device)
    load_s = time.perf_counter() - start
    embed_texts(reports[: args.batch_size], args.model, args.batch_size, device, progress=False)
    start = time.perf_counter()
    vectors = embed_texts(reports, args.model, args.batch_size, device, progress=False)
    embed_s = time.perf_counter() - start

    result: dict[str, object] = {
        "source": source,
        "reports": len(reports),
        "mean_words": float(np.mean([len(r.split()) for r in reports])) if reports else 0.0,
        "model": str(args.model),
        "device": device,
        "torch_threads": torch.get_num_threads(),
        "batch_size": args.batch_size,
        "dim": int(vectors.shape[1]),
        "encoder_load_s": round(load_s, 3),
        "embed_s": round(embed_s, 3),
        "reports_per_s": round(len(reports) / embed_s, 1) if embed_s > 0 else None,
        "faiss_gpu": gpu_available(),
        "machine": platform.processor() or platform.machine(),
    }
    queries = vectors[: min(256, len(vectors))]
    for kind in ("flat", "ivf"):
        start = time.perf_counter()
        index = build_index(vectors, kind, use_gpu="auto")
        result[f"index_{kind}_build_s"] = round(time.perf_counter() - start, 4)
        start = time.perf_counter()
        search(index, queries, 10)
        elapsed = time.perf_counter() - start
        result[f"index_{kind}_search_qps"] = round(len(queries) / elapsed, 1) if elapsed else None
    result["ivf_nlist"] = default_nlist(len(vectors))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
