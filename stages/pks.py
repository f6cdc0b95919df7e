"""DVC stage ``pks``: Preliminary Knowledge Support, centres per observation and combination."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ekagen.config import PksConfig, as_flat_dict
from ekagen.data.artifacts import dump_json
from ekagen.knowledge.pks import build_pks
from ekagen.knowledge.store import EMBEDDINGS_FILE, PKS_FILE, read_embeddings, write_table
from ekagen.observations import OBSERVATIONS
from ekagen.tracking import log_metrics_flat, stage_run
from stages.common import parse, stage_parser

PARAMS = ("seed", "pks")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = stage_parser(__doc__)
    parser.add_argument("--knowledge", default="data/knowledge")
    parser.add_argument("--metrics", default="metrics/pks.json")
    args, params = parse(parser, argv, PARAMS)
    cfg = params.section("pks", PksConfig)
    folder = Path(args.knowledge)
    table, vectors = read_embeddings(folder / EMBEDDINGS_FILE)
    with stage_run("pks", as_flat_dict(cfg, "pks.")) as mlflow:
        result = build_pks(vectors, table[list(OBSERVATIONS)], cfg.k, cfg.min_support,
                           cfg.combinations, params.seed, cfg.kmeans_iterations)
        write_table(folder / PKS_FILE, result.table, vector_columns=("centre",))
        levels = result.table["level"].value_counts().to_dict()
        metrics = {"keys": int(len(result.table)),
                   "keys_per_level": {k: int(v) for k, v in levels.items()},
                   "skipped_observations": result.skipped}
        dump_json(metrics, Path(args.metrics))
        log_metrics_flat(mlflow, metrics)
    print(f"PKS: {len(result.table)} keys, skipped {result.skipped or 'none'}")
    return metrics


if __name__ == "__main__":
    main()
