"""DVC stage ``train@<round>``: one GID round of the generator -> data/gid/<round>.

The round and its teacher come from ``gid.rounds`` in params.yaml (see
:mod:`ekagen.generation.rounds`). Under ``torchrun`` every process trains, rank 0 alone
writes outputs and logs.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

from ekagen.attention.adm import load_masks, load_study_diagnosis
from ekagen.config import (
    AdmConfig,
    DecodeConfig,
    GeneratorConfig,
    GidConfig,
    IekConfig,
    TrainConfig,
    as_flat_dict,
)
from ekagen.data.artifacts import dump_json, load_images, load_studies_table
from ekagen.data.vocab import Vocabulary
from ekagen.generation.checkpoint import load_generator, save_generator
from ekagen.generation.data import build_datasets
from ekagen.generation.rounds import (
    NO_TEACHER,
    resolve_backbone_weights,
    round_teacher,
    start_from_teacher,
)
from ekagen.generation.train import round_fingerprint, train_round
from ekagen.inference import ReportWriter
from ekagen.knowledge.iek import KnowledgeBase
from ekagen.knowledge.store import RKS_FILE, read_table
from ekagen.models.generator import build_generator
from ekagen.tracking import epoch_logger, log_metrics_flat, stage_run
from stages.common import parse, stage_parser

PARAMS = ("seed", "model", "train", "iek", "adm", "decode", "gid.delta", "gid.temperature",
          "gid.swap_views", "gid.student_init", "gid.rounds.${key}")
CURVE_COLUMNS = ["epoch", "train_loss", "val_bleu4", "val_ce_micro_f1", "val_ce_macro_f1",
                 "val_ce_bleu4", "val_mean_length", "val_distinct_reports",
                 "val_top_report_share", "val_repeat_share", "lr"]


def write_curve(history: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CURVE_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = stage_parser(__doc__)
    parser.add_argument("--round", required=True, dest="round_key")
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--knowledge", default="data/knowledge")
    parser.add_argument("--classifier", default="data/classifier")
    parser.add_argument("--adm", default="data/adm")
    parser.add_argument("--gid-dir", default="data/gid")
    parser.add_argument("--ckpt-dir", default="data/gid_ckpt")
    parser.add_argument("--metrics-dir", default="metrics/train")
    parser.add_argument("--no-progress", action="store_true")
    args, params = parse(parser, argv, PARAMS)
    seed, runtime = params.seed, params.runtime
    cfg = params.section("train", TrainConfig)
    gid = params.section("gid", GidConfig)
    iek = params.section("iek", IekConfig)
    adm = params.section("adm", AdmConfig)
    decode = params.section("decode", DecodeConfig)
    model_cfg = resolve_backbone_weights(params.section("model", GeneratorConfig),
                                         Path(args.classifier))
    gid_dir = Path(args.gid_dir)
    teacher_key = round_teacher(gid, args.round_key, gid_dir)
    is_main = int(os.environ.get("RANK", "0")) == 0

    studies = load_studies_table(Path(args.prepared))
    images = load_images(Path(args.prepared))
    vocab = Vocabulary.load(Path(args.prepared) / "vocab.json")
    packed, size = load_masks(args.adm)
    if size != images.shape[-1]:
        raise ValueError(f"ADM masks are {size} px but the image cache is {images.shape[-1]} px")
    diagnosis = load_study_diagnosis(args.adm)
    rks = read_table(Path(args.knowledge) / RKS_FILE, "rks")
    kb = KnowledgeBase.from_rks(rks, model_cfg.max_length, max_hamming=iek.hamming_limit)
    data = build_datasets(studies, images, packed, diagnosis, kb, vocab, model_cfg.max_length,
                          cfg.knowledge_gt_fraction, seed, findings_repeat=cfg.findings_repeat,
                          iek_rule=iek.rule)
    val_refs = studies["report"].iloc[data["val"].rows].tolist()
    teacher = load_generator(gid_dir / teacher_key)[0] if teacher_key else None
    import torch

    torch.manual_seed(seed)
    model = build_generator(model_cfg, len(vocab), images.shape[1], vocab.pad_id)
    if teacher is not None and gid.student_init == "teacher":
        start_from_teacher(model, teacher, gid_dir / teacher_key)
    writer = ReportWriter(model, vocab, kb, iek, adm, decode, batch_size=runtime.batch_size)
    fingerprint = round_fingerprint(model_cfg, cfg, gid, iek, adm, decode, args.round_key,
                                    teacher_key, seed, len(studies), len(vocab))
    flat = {"seed": seed, "round": args.round_key, "teacher": teacher_key or NO_TEACHER,
            **as_flat_dict(model_cfg, "model."), **as_flat_dict(cfg, "train."),
            **as_flat_dict(adm, "adm."), **as_flat_dict(decode, "decode."),
            "gid.delta": gid.delta, "gid.temperature": gid.temperature,
            "gid.swap_views": gid.swap_views, "gid.student_init": gid.student_init}
    tracking = stage_run("train", flat, round_key=args.round_key) if is_main else nullcontext()
    with tracking as mlflow:
        log_epoch = epoch_logger(mlflow)
        start = time.perf_counter()
        result = train_round(model, data, val_refs, writer, cfg, gid, runtime, seed, teacher,
                             str(Path(args.ckpt_dir) / args.round_key), fingerprint, log_epoch,
                             progress=not args.no_progress)
        seconds = time.perf_counter() - start
        if not is_main:
            return {}
        for record in result.history[: result.resumed_from]:
            log_epoch(record)  # epochs done before an interruption, for a complete curve
        out_dir = gid_dir / args.round_key
        save_generator(result.model, out_dir, vocab, adm, iek, {
            "round": args.round_key, "teacher": teacher_key, "image_size": int(images.shape[-1]),
            "best_epoch": result.best_epoch})
        best = next(r for r in result.history if r["epoch"] == result.best_epoch)
        epochs_run = len(result.history) - result.resumed_from
        metrics = {"round": args.round_key, "teacher": teacher_key or NO_TEACHER,
                   "best_epoch": result.best_epoch, "epochs": len(result.history),
                   "resumed_from": result.resumed_from, "stopped_early": result.stopped_early,
                   "select_metric": cfg.select_metric, "precision": result.precision,
                   "precision_reason": result.precision_reason,
                   "torch_threads": result.threads, "cpu": result.cpu,
                   "torch": torch.__version__, "seed": seed, "best": {
                       k: v for k, v in best.items() if k.startswith("val_") or k == "train_loss"},
                   "seconds": round(seconds, 1),
                   "studies_per_second": round(len(data["train"]) * max(epochs_run, 0)
                                               / max(seconds, 1e-9), 2)}
        metrics_dir = Path(args.metrics_dir)
        dump_json(metrics, metrics_dir / f"{args.round_key}.json")
        write_curve(result.history, metrics_dir / f"{args.round_key}_curve.csv")
        log_metrics_flat(mlflow, {"best": metrics["best"], "best_epoch": result.best_epoch})
        mlflow.log_artifacts(str(out_dir), artifact_path="model")
    print(f"round {args.round_key}: best epoch {result.best_epoch} "
          f"{cfg.select_metric}={best.get('val_' + cfg.select_metric)} ({result.precision}) "
          f"-> {out_dir}")
    return metrics


if __name__ == "__main__":
    main()
