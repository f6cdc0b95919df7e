"""DVC stage ``adm``: data/classifier + data/prepared -> data/adm (masks and diagnosis).

For every image of every split: the classifier's probabilities, its diagnosis (per-class
validation thresholds) and the Aggregate Discriminative Attention mask (Grad-CAM of the
predicted classes, thresholded, OR-ed, dilated). On phantom data the masks are also checked
against where the renderer drew each finding.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ekagen.attention.adm import (
    compute_adm,
    coverage_summary,
    diagnosis_table,
    phantom_regions,
    region_overlap,
    unpack_masks,
    write_adm,
)
from ekagen.attention.gallery import save_gallery, short_labels
from ekagen.config import AdmConfig, DataConfig, as_flat_dict, section
from ekagen.data.prepare import dump_json, load_images, load_studies_table
from ekagen.diagnosis.train import load_thresholds
from ekagen.models.classifier import load_classifier
from ekagen.observations import OBSERVATIONS
from ekagen.tracking import log_metrics_flat, stage_run
from ekagen.training.distributed import select_device
from stages.common import parse, stage_parser


def gallery_choice(splits: np.ndarray, cover: np.ndarray, count: int, seed: int) -> list:
    """(study, view) pairs for the gallery: test images first, attended ones preferred."""
    rng = np.random.default_rng(seed)
    pairs = [(s, v) for s in range(cover.shape[0]) for v in range(cover.shape[1])]
    order = rng.permutation(len(pairs))
    pairs = [pairs[i] for i in order]
    pairs.sort(key=lambda p: (splits[p[0]] != "test", cover[p] == 0))
    return pairs[:count]


def main(argv: Sequence[str] | None = None) -> dict:
    parser = stage_parser(__doc__)
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--classifier", default="data/classifier")
    parser.add_argument("--out", default="data/adm")
    parser.add_argument("--metrics", default="metrics/adm.json")
    parser.add_argument("--gallery", default="metrics/plots/adm_gallery.png")
    parser.add_argument("--no-progress", action="store_true")
    args, params = parse(parser, argv)
    cfg = section(params, "adm", AdmConfig)
    data = section(params, "data", DataConfig)
    seed = params.get("seed", 42)
    flat = {"seed": seed, **as_flat_dict(cfg, "adm."), "data.source": data.source}
    with stage_run("adm", flat) as mlflow:
        table = load_studies_table(Path(args.prepared))
        images = load_images(Path(args.prepared))
        model, model_cfg = load_classifier(args.classifier)
        thresholds = load_thresholds(Path(args.classifier) / "thresholds.json")
        if int(model_cfg["image_size"]) != images.shape[-1]:
            raise ValueError(f"classifier trained at {model_cfg['image_size']} px but the "
                             f"image cache is {images.shape[-1]} px; rerun the classifier stage")
        unknown = sorted(set(cfg.skip_classes) - set(OBSERVATIONS))
        if unknown:
            raise ValueError(f"adm.skip_classes: unknown observation(s) {unknown}")
        device = select_device(cfg.device)
        result = compute_adm(model, images, thresholds, cfg.cam_threshold, cfg.dilation,
                             cfg.batch_size, device, progress=not args.no_progress,
                             skip_classes=[OBSERVATIONS.index(c) for c in cfg.skip_classes])
        diagnosis = diagnosis_table(table, result)
        write_adm(result, diagnosis, args.out, meta={
            "cam_threshold": cfg.cam_threshold, "dilation": cfg.dilation,
            "skip_classes": list(cfg.skip_classes),
            "thresholds": [float(t) for t in thresholds]})
        splits = table["split"].to_numpy()
        metrics: dict = {
            "cam_threshold": cfg.cam_threshold, "dilation": cfg.dilation,
            "skip_classes": list(cfg.skip_classes),
            "coverage": coverage_summary(result.coverage),
            "coverage_by_split": {s: coverage_summary(result.coverage[splits == s])
                                  for s in ("train", "val", "test")},
            "images_with_prediction": round(float(result.predicted.any(-1).mean()), 6),
            "predicted_rate": {name: round(float(result.predicted[..., c].mean()), 6)
                               for c, name in enumerate(OBSERVATIONS)},
        }
        if data.source == "iu_phantom" and cfg.region_check:
            n, views = result.coverage.shape
            rows = np.repeat(np.arange(n), views)
            view_ids = np.tile(np.arange(views), n)
            regions = phantom_regions(table, rows, [data.views[v] for v in view_ids],
                                      images.shape[-1], seed, data.phantom.uncertain)
            masks = unpack_masks(result.packed.reshape(n * views, -1), images.shape[-1])
            metrics["in_region"] = region_overlap(masks, regions, seed)
            test = splits[rows] == "test"
            metrics["in_region_test"] = region_overlap(masks[test], regions[test], seed)
        dump_json(metrics, Path(args.metrics))
        picks = gallery_choice(splits, result.coverage, cfg.gallery_size, seed)
        labels = table[list(OBSERVATIONS)].to_numpy()
        captions = []
        for s, v in picks:
            pred = [o for c, o in enumerate(OBSERVATIONS) if result.predicted[s, v, c]]
            true = [o for c, o in enumerate(OBSERVATIONS) if labels[s, c] == 1]
            captions.append(f"{table['id'].iloc[s]} v{v} ({splits[s]})\n"
                            f"pred: {short_labels(pred)}\ntrue: {short_labels(true)}")
        save_gallery(args.gallery, np.stack([images[s, v] for s, v in picks]),
                     np.stack([unpack_masks(result.packed[s, v], images.shape[-1])
                               for s, v in picks]), captions)
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
