"""DVC stage ``evaluate``: the chosen round's model and the reference systems on the test split.

Exports the self-contained model folder (``data/eval/model``) first and scores what that
folder writes, through the same :class:`~ekagen.inference.ReportWriter` as ``ekagen
generate``. Writes metrics/eval.json (flat keys: ``ekagen.bleu4``,
``nearest_neighbour.ce14_micro_f1``..., every CE protocol), metrics/eval_ci.json (paired
bootstrap intervals of every metric, and EKAGen minus each other system with a p-value),
metrics/eval_per_class.json, a per-observation F1 table for ``dvc plots``, the generations,
the per-study scores and an HTML gallery.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ekagen.attention.adm import FEATURES_FILE
from ekagen.config import DecodeConfig, EvaluateConfig, as_flat_dict
from ekagen.data.artifacts import dump_json, load_images, load_studies_table
from ekagen.evaluation.bootstrap import per_study_table
from ekagen.evaluation.evaluate import (
    evaluate_test_split,
    generations_table,
    write_f1_table,
    write_test_gallery,
)
from ekagen.inference import ReportWriter, export_model
from ekagen.knowledge.store import RKS_FILE
from ekagen.labeler.select import build_labeler
from ekagen.tracking import log_headline, log_metrics_flat, stage_run
from ekagen.training.distributed import select_device
from stages.common import parse, stage_parser

PARAMS = ("seed", "decode", "evaluate")
#: what the experiment's parent run shows, with its interval, for EKAGen and against others
HEADLINE_METRICS = ("bleu4", "cider", "ce14_micro_f1", "ce14_macro_f1")


def headline(intervals: dict) -> dict[str, float]:
    """EKAGen's headline test metrics with their 95% intervals, and its paired differences
    from each other system: ``test.ekagen.bleu4``, ``test.ekagen.bleu4.low``, ...,
    ``test.ekagen-nearest_neighbour.bleu4.high``."""
    rows = {"ekagen": intervals["systems"]["ekagen"], **intervals["differences"]}
    out: dict[str, float] = {}
    for name, metrics in rows.items():
        for key in HEADLINE_METRICS:
            ci = metrics[key]
            out[f"test.{name}.{key}"] = ci["value"]
            out[f"test.{name}.{key}.low"], out[f"test.{name}.{key}.high"] = ci["low"], ci["high"]
    return out


def main(argv: Sequence[str] | None = None) -> dict:
    parser = stage_parser(__doc__)
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--knowledge", default="data/knowledge")
    parser.add_argument("--adm", default="data/adm")
    parser.add_argument("--gid-dir", default="data/gid")
    parser.add_argument("--classifier", default="data/classifier")
    parser.add_argument("--out", default="data/eval")
    parser.add_argument("--metrics", default="metrics/eval.json")
    parser.add_argument("--intervals", default="metrics/eval_ci.json")
    parser.add_argument("--per-class", default="metrics/eval_per_class.json")
    parser.add_argument("--f1-table", default="metrics/eval_f1.csv")
    parser.add_argument("--gallery", default="metrics/gallery.html")
    parser.add_argument("--no-progress", action="store_true")
    args, params = parse(parser, argv, PARAMS)
    cfg = params.section("evaluate", EvaluateConfig)
    decode = params.section("decode", DecodeConfig)
    runtime = params.runtime
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = export_model(out / "model", Path(args.gid_dir) / cfg.round, args.classifier,
                             Path(args.knowledge) / RKS_FILE, decode)
    writer = ReportWriter.load(model_dir, select_device(runtime.device), runtime.batch_size)
    studies = load_studies_table(Path(args.prepared))
    images = load_images(Path(args.prepared))
    features = np.load(Path(args.adm) / FEATURES_FILE, mmap_mode="r")
    labeler = build_labeler(cfg.ce_labeler, cfg.chexbert_checkpoint, cfg.chexbert_bert_dir,
                            device=str(writer.device), batch_size=runtime.batch_size,
                            progress=not args.no_progress)
    flat_params = {**as_flat_dict(cfg, "evaluate."), **as_flat_dict(decode, "decode.")}
    with stage_run("evaluate", flat_params) as mlflow:
        result = evaluate_test_split(writer, studies, images, features, cfg.meteor,
                                     progress=not args.no_progress, labeler=labeler)
        intervals = {"ce_labeler": cfg.ce_labeler,
                     **result.scored.bootstrap("ekagen", cfg.bootstrap_resamples, params.seed)}
        dump_json(result.flat, Path(args.metrics))
        dump_json(intervals, Path(args.intervals))
        generations = generations_table(studies, result)
        generations.to_parquet(out / "generations.parquet", index=False)
        per_study_table(result.scored.statistics, generations["id"].astype(str).tolist()
                        ).to_parquet(out / "per_study.parquet", index=False)
        dump_json(result.per_class, Path(args.per_class))
        write_f1_table(result.per_class, Path(args.f1_table))
        picks = np.random.default_rng(params.seed).permutation(len(result.reports))
        write_test_gallery(args.gallery, studies, images, result,
                           picks[: runtime.eval_gallery_size])
        log_metrics_flat(mlflow, result.flat)
        log_headline(mlflow, headline(intervals))
        for artifact in (args.metrics, args.intervals, args.per_class, args.gallery,
                         "params.yaml", "dvc.lock"):
            if Path(artifact).is_file():
                mlflow.log_artifact(artifact)
    flat = result.flat
    print(" | ".join(f"{s}: BLEU-4 {flat[s + '.bleu4']:.3f} CE micro-F1 "
                     f"{flat[s + '.ce14_micro_f1']:.3f}" for s in result.systems))
    return flat


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
