"""DVC stage ``classifier``: data/prepared -> data/classifier (DiagnosisBot and thresholds).

Runs in one process (``python -m stages.classifier``) or several
(``torchrun --nproc_per_node=N -m stages.classifier``): only rank 0 writes outputs and logs.
Checkpoints go to ``--checkpoints``, so an interrupted run resumes. That folder is not a DVC
output: a ``persist`` output would stop DVC from keeping this stage in its run cache.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

from ekagen.config import ClassifierConfig, as_flat_dict
from ekagen.data.artifacts import IMAGES_FILE, dump_json, load_images, load_studies_table
from ekagen.diagnosis.plots import plot_roc, write_curve
from ekagen.diagnosis.train import (
    evaluate_classifier,
    fingerprint,
    thresholds_payload,
    train_classifier,
)
from ekagen.models.classifier import save_classifier
from ekagen.tracking import epoch_logger, log_headline, log_metrics_flat, stage_run
from ekagen.training.distributed import env_world, shutdown
from stages.common import parse, stage_parser

PARAMS = ("seed", "classifier")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = stage_parser(__doc__)
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--out", default="data/classifier")
    parser.add_argument("--checkpoints", default="data/classifier_ckpt")
    parser.add_argument("--metrics", default="metrics/classifier.json")
    parser.add_argument("--roc", default="metrics/plots/classifier_roc.png")
    parser.add_argument("--curve", default="metrics/plots/classifier_curve.json")
    parser.add_argument("--no-progress", action="store_true")
    args, params = parse(parser, argv, PARAMS)
    cfg = params.section("classifier", ClassifierConfig)
    seed, runtime = params.seed, params.runtime
    prepared = Path(args.prepared)
    table = load_studies_table(prepared)
    images_shape = load_images(prepared).shape
    main_rank = env_world()[0] == 0
    flat = {"seed": seed, **as_flat_dict(cfg, "classifier.")}
    run = stage_run("classifier", flat) if main_rank else contextlib.nullcontext(None)
    try:
        with run as mlflow:
            log_epoch = epoch_logger(mlflow)
            trained = train_classifier(
                cfg, runtime, table, prepared / IMAGES_FILE, args.checkpoints, seed,
                fingerprint(cfg, seed, prepared, images_shape), on_epoch_end=log_epoch,
                progress=not args.no_progress)
            if not trained.dist.is_main:
                return {}
            for record in trained.fit.history[: trained.fit.resumed_from]:
                log_epoch(record)  # epochs done before an interruption, for a complete curve
            model = trained.model
            evaluated = evaluate_classifier(model, table, prepared / IMAGES_FILE, cfg, runtime,
                                            trained.fit.device)
            out = Path(args.out)
            save_classifier(model, out, image_size=int(images_shape[-1]),
                            extra={"best_epoch": trained.fit.best_epoch,
                                   "val_mean_auroc": trained.fit.best_metric})
            dump_json(thresholds_payload(evaluated["thresholds"], evaluated["methods"],
                                         cfg.threshold), out / "thresholds.json")
            fit = trained.fit
            metrics = {
                "backbone": cfg.backbone,
                "best_epoch": fit.best_epoch,
                "epochs_run": len(fit.history),
                "resumed_from_epoch": fit.resumed_from,
                "stopped_early": fit.stopped_early,
                "threshold_method": cfg.threshold,
                "precision": fit.precision,
                "precision_reason": fit.precision_reason,
                "torch_threads": fit.threads,
                "cpu": fit.cpu,
                "seed": seed,
                "val_mean_auroc": evaluated["metrics"]["val"]["image"]["mean_auroc"],
                "test_mean_auroc": evaluated["metrics"]["test"]["image"]["mean_auroc"],
                "test_micro_f1": evaluated["metrics"]["test"]["image"]["micro_f1"],
                **evaluated["metrics"],
            }
            dump_json(metrics, Path(args.metrics))
            targets, weights, probs = evaluated["curves"]["test"]
            plot_roc(targets, probs, args.roc, weights, title="DiagnosisBot ROC (test images)")
            write_curve(fit.history, args.curve)
            if mlflow is not None:
                log_metrics_flat(mlflow, {k: v for k, v in metrics.items()
                                          if k not in ("val", "test")}, prefix="final")
                log_metrics_flat(mlflow, {"val": metrics["val"], "test": metrics["test"]})
                log_headline(mlflow, {"classifier": {k: metrics[k] for k in (
                    "val_mean_auroc", "test_mean_auroc", "test_micro_f1")}})
                for artifact in (args.metrics, args.roc, args.curve, out / "thresholds.json",
                                 out / "model.json"):
                    mlflow.log_artifact(str(artifact))
    finally:
        shutdown()
    print(f"classifier {cfg.backbone}: best epoch {fit.best_epoch}, val mean AUROC "
          f"{metrics['val_mean_auroc']}, test mean AUROC {metrics['test_mean_auroc']} -> "
          f"{args.out}")
    return metrics


if __name__ == "__main__":
    main()
