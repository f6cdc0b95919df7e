"""DVC stage ``embed``: training reports -> sentence embeddings and a FAISS index over them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ekagen.config import EmbedConfig, as_flat_dict
from ekagen.data.artifacts import dump_json, load_studies_table
from ekagen.knowledge.embedding import embed_texts, resolve_device
from ekagen.knowledge.index import build_configured_index, save_index
from ekagen.knowledge.store import EMBEDDINGS_FILE, INDEX_FILE, write_embeddings
from ekagen.tracking import log_metrics_flat, stage_run
from stages.common import parse, stage_parser

PARAMS = ("seed", "embed")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = stage_parser(__doc__)
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--out", default="data/knowledge")
    parser.add_argument("--metrics", default="metrics/embed.json")
    args, params = parse(parser, argv, PARAMS)
    cfg = params.section("embed", EmbedConfig)
    runtime = params.runtime
    studies = load_studies_table(Path(args.prepared))
    train = studies[studies["split"] == "train"].reset_index(drop=True)
    out = Path(args.out)
    with stage_run("embed", as_flat_dict(cfg, "embed.")) as mlflow:
        start = time.perf_counter()
        vectors = embed_texts(train["report"].tolist(), cfg.model, runtime.batch_size,
                              resolve_device(runtime.device))
        embed_seconds = time.perf_counter() - start
        start = time.perf_counter()
        index = build_configured_index(vectors, cfg, runtime.faiss_gpu, seed=params.seed)
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
