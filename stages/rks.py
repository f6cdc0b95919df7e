"""DVC stage ``rks``: Rectified Knowledge Support, the real report nearest each PKS centre."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ekagen.config import RksConfig, as_flat_dict
from ekagen.data.artifacts import dump_json
from ekagen.data.vocab import Vocabulary
from ekagen.knowledge.index import load_index
from ekagen.knowledge.plots import plot_embedding_projection
from ekagen.knowledge.rks import (
    RECALL_TARGET,
    build_rks,
    exact_agreement,
    index_recall,
    knowledge_metrics,
)
from ekagen.knowledge.store import (
    EMBEDDINGS_FILE,
    INDEX_FILE,
    PKS_FILE,
    RKS_FILE,
    read_embeddings,
    read_table,
    write_table,
)
from ekagen.observations import OBSERVATIONS
from ekagen.tracking import log_metrics_flat, stage_run
from stages.common import parse, stage_parser

PARAMS = ("seed", "data.max_length", "rks")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = stage_parser(__doc__)
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--knowledge", default="data/knowledge")
    parser.add_argument("--metrics", default="metrics/knowledge.json")
    parser.add_argument("--plot", default="metrics/plots/knowledge_projection.png")
    args, params = parse(parser, argv, PARAMS)
    cfg = params.section("rks", RksConfig)
    max_length = params.value("data.max_length")
    folder = Path(args.knowledge)
    table, vectors = read_embeddings(folder / EMBEDDINGS_FILE)
    pks = read_table(folder / PKS_FILE, "pks")
    vocab = Vocabulary.load(Path(args.prepared) / "vocab.json")
    index = load_index(folder / INDEX_FILE)
    with stage_run("rks", as_flat_dict(cfg, "rks.")) as mlflow:
        rks = build_rks(pks, vectors, table["id"].tolist(), table["report"].tolist(), vocab,
                        index if cfg.search == "index" else None, 1, max_length,
                        cfg.candidates)
        write_table(folder / RKS_FILE, rks)
        skipped = [name for name in OBSERVATIONS if name not in set(pks["observation"])]
        metrics = {**knowledge_metrics(pks, rks, len(table), skipped),
                   **index_recall(index, vectors, pks, params.seed)}
        exact = rks if cfg.search == "exact" else build_rks(
            pks, vectors, table["id"].tolist(), table["report"].tolist(), vocab, None, 1,
            max_length, cfg.candidates)
        metrics["rks_exact_agreement"] = exact_agreement(rks, exact)
        low = {k: v for k, v in metrics.items() if (
            k.startswith("index_recall_at_1/") or k == "rks_exact_agreement")
            and v < RECALL_TARGET}
        if low:
            print(f"WARNING: the {metrics['index_type']} index finds the true nearest "
                  f"neighbour (or RKS the exact report) less often than {RECALL_TARGET}: "
                  f"{low}; raise embed.nprobe "
                  "(ivf) or embed.ef_search (hnsw)")
        dump_json(metrics, Path(args.metrics))
        plot_embedding_projection(vectors, table[list(OBSERVATIONS)], pks, rks, args.plot,
                                  method=cfg.projection, seed=params.seed)
        log_metrics_flat(mlflow, {k: v for k, v in metrics.items() if not isinstance(v, list)})
        mlflow.log_artifact(args.plot)
        mlflow.log_artifact(args.metrics)
    print(f"RKS: {len(rks)} reports for {rks['key'].nunique()} keys -> {folder / RKS_FILE}")
    return metrics


if __name__ == "__main__":
    main()
