"""DVC stage ``embed``: training reports -> sentence embeddings and a FAISS index over them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ekagen.config import EmbedConfig, as_flat_dict, section
from ekagen.data.prepare import dump_json, load_studies_table
from ekagen.knowledge import build_index, embed_texts, save_index
from ekagen.knowledge.embedding import resolve_device
from ekagen.knowledge.store import EMBEDDINGS_FILE, INDEX_FILE, write_embeddings
from ekagen.tracking import log_metrics_flat, stage_run
from stages.common import parse, stage_parser


def use_gpu_flag(value: str) -> bool | str:
    if value not in ("auto", "true", "false"):
        raise ValueError(f"params.yaml embed.use_gpu must be auto, true or false, got {value!r}")
    return {"auto": "auto", "true": True, "false": False}[value]


def main(argv: Sequence[str] | None = None) -> dict:
    parser = stage_parser(__doc__)
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--out", default="data/knowledge")
    parser.add_argument("--metrics", default="metrics/embed.json")
    args, params = parse(parser, argv)
    cfg = section(params, "embed", EmbedConfig)
    studies = load_studies_table(Path(args.prepared))
    train = studies[studies["split"] == "train"].reset_index(drop=True)
    out = Path(args.out)
    with stage_run("embed", as_flat_dict(cfg, "embed.")) as mlflow:
        start = time.perf_counter()
        vectors = embed_texts(train["report"].tolist(), cfg.model, cfg.batch_size,
                              resolve_device(cfg.device))
        embed_seconds = time.perf_counter() - start
        start = time.perf_counter()
        index = build_index(vectors, cfg.index, cfg.nlist or None, cfg.nprobe, cfg.hnsw_m,
                            cfg.ef_search, use_gpu_flag(cfg.use_gpu), seed=params.get("seed", 42))
        index_seconds = time.perf_counter() - start
        write_embeddings(out / EMBEDDINGS_FILE, train, vectors)
        save_index(index, out / INDEX_FILE)
        metrics = {"reports_embedded": int(len(train)), "dim": int(vectors.shape[1]),
                   "reports_per_second": round(len(train) / max(embed_seconds, 1e-9), 1),
                   "index_build_seconds": round(index_seconds, 4), "index": cfg.index}
        dump_json(metrics, Path(args.metrics))
        log_metrics_flat(mlflow, metrics)
    print(f"embedded {len(train)} training reports -> {out}")
    return metrics


if __name__ == "__main__":
    main()
