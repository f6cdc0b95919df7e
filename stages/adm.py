"""DVC stage ``adm``: data/classifier + data/prepared -> data/adm (masks and diagnosis).

For every image of every split: the classifier's probabilities, its diagnosis (per-class
validation thresholds) and the Aggregate Discriminative Attention mask (Grad-CAM of the
predicted classes, thresholded, OR-ed, dilated). On phantom data the masks are also checked
against where the renderer drew each finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ekagen.attention.adm import compute_adm, diagnosis_table, write_adm
from ekagen.attention.summary import adm_metrics, write_adm_gallery
from ekagen.config import AdmConfig
from ekagen.data.artifacts import dump_json, load_images, load_studies_table
from ekagen.diagnosis.train import load_thresholds
from ekagen.models.classifier import load_classifier
from ekagen.observations import OBSERVATIONS
from ekagen.tracking import log_metrics_flat, stage_run
from ekagen.training.distributed import select_device
from stages.common import parse, stage_parser

PARAMS = ("seed", "adm.cam_threshold", "adm.dilation", "adm.region_check",
          "adm.skip_classes", "data.source", "data.views", "data.phantom")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = stage_parser(__doc__)
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--classifier", default="data/classifier")
    parser.add_argument("--out", default="data/adm")
    parser.add_argument("--metrics", default="metrics/adm.json")
    parser.add_argument("--gallery", default="metrics/plots/adm_gallery.png")
    parser.add_argument("--no-progress", action="store_true")
    args, params = parse(parser, argv, PARAMS)
    cfg = params.section("adm", AdmConfig)
    source, data_views = params.value("data.source"), params.value("data.views")
    seed, runtime = params.seed, params.runtime
    flat = {"seed": seed, "adm.cam_threshold": cfg.cam_threshold, "adm.dilation": cfg.dilation,
            "adm.skip_classes": cfg.skip_classes, "data.source": source}
    with stage_run("adm", flat) as mlflow:
        table = load_studies_table(Path(args.prepared))
        images = load_images(Path(args.prepared))
        model, model_cfg = load_classifier(args.classifier)
        thresholds = load_thresholds(Path(args.classifier) / "thresholds.json")
        if int(model_cfg["image_size"]) != images.shape[-1]:
            raise ValueError(f"classifier trained at {model_cfg['image_size']} px but the "
                             f"image cache is {images.shape[-1]} px; rerun the classifier stage")
        device = select_device(runtime.device)
        result = compute_adm(model, images, thresholds, cfg.cam_threshold, cfg.dilation,
                             runtime.batch_size, device, progress=not args.no_progress,
                             skip_classes=[OBSERVATIONS.index(c) for c in cfg.skip_classes])
        diagnosis = diagnosis_table(table, result)
        write_adm(result, diagnosis, args.out, meta={
            "cam_threshold": cfg.cam_threshold, "dilation": cfg.dilation,
            "skip_classes": list(cfg.skip_classes),
            "thresholds": [float(t) for t in thresholds]})
        phantom = source == "iu_phantom" and cfg.region_check
        metrics = adm_metrics(result, table, cfg, seed, data_views if phantom else None,
                              params.value("data.phantom.uncertain"))
        dump_json(metrics, Path(args.metrics))
        write_adm_gallery(args.gallery, table, images, result, runtime.adm_gallery_size, seed)
        log_metrics_flat(mlflow, metrics)
        mlflow.log_artifact(args.metrics)
        mlflow.log_artifact(args.gallery)
    cov = metrics["coverage"]
    print(f"adm: {cov['images']} masks, mean coverage {cov['mean']}, empty "
          f"{cov['fraction_empty']}" + (f", in-region {metrics['in_region'].get('adm_inside')} "
                                        f"vs random {metrics['in_region'].get('expected_random')}"
                                        if "in_region" in metrics else "") + f" -> {args.out}")
    return metrics


if __name__ == "__main__":
    main()
