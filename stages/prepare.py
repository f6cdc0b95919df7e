"""DVC stage ``prepare``: studies -> data/prepared (table, vocabulary, image cache)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ekagen.config import DataConfig, as_flat_dict
from ekagen.data.artifacts import dump_json
from ekagen.data.phantom import save_contact_sheet
from ekagen.data.prepare import prepare, prepare_metrics, write_prepared
from ekagen.tracking import log_metrics_flat, stage_run
from stages.common import parse, stage_parser

PARAMS = ("seed", "data")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = stage_parser(__doc__)
    parser.add_argument("--out", default="data/prepared")
    parser.add_argument("--metrics", default="metrics/prepare.json")
    parser.add_argument("--cache-dir", default="data/cache/prepare",
                        help="where the image cache is built, so a killed run can resume")
    parser.add_argument("--contact-sheet", default="metrics/plots/phantom_contact_sheet.png")
    args, params = parse(parser, argv, PARAMS)
    cfg = params.section("data", DataConfig)
    seed = params.seed
    with stage_run("prepare", {"seed": seed, **as_flat_dict(cfg, "data.")}) as mlflow:
        prepared = prepare(cfg, seed, params.runtime.workers, Path(args.cache_dir))
        write_prepared(prepared, Path(args.out))
        metrics = prepare_metrics(prepared, cfg)
        dump_json(metrics, Path(args.metrics))
        Path(args.contact_sheet).parent.mkdir(parents=True, exist_ok=True)
        save_contact_sheet(args.contact_sheet, size=max(cfg.image_size, 128), seed=seed)
        log_metrics_flat(mlflow, metrics)
        mlflow.log_artifact(args.metrics)
        mlflow.log_artifact(args.contact_sheet)
        mlflow.log_artifact(str(Path(args.out) / "rejected.csv"))
    print(f"prepared {metrics['studies']} studies {metrics['splits']}, "
          f"{metrics['rejected']} rejected -> {args.out}")
    return metrics


if __name__ == "__main__":
    main()
