"""DVC stage ``evaluate``: the chosen round's model and two baselines on the whole test split.

A fourth row, ``knowledge``, scores the IEK reports the diagnosis selects, unedited: the text
the decoder reads, so the table shows what decoding adds to its knowledge. Writes
metrics/eval.json (flat keys: ``ekagen.bleu4``, ``nearest_neighbour.ce_micro_f1``...),
metrics/eval_per_class.json, a per-observation F1 table for ``dvc plots``, the generations and
an HTML gallery. Any study that fails to decode fails the stage; nothing is skipped.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ekagen.attention.adm import FEATURES_FILE, load_masks, load_study_diagnosis, unpack_masks
from ekagen.config import AdmConfig, EvaluateConfig, IekConfig, as_flat_dict, section
from ekagen.data.prepare import dump_json, load_images, load_studies_table
from ekagen.decoding import DecodeConfig, beam_decode
from ekagen.evaluation.baselines import most_frequent_report, nearest_neighbour_reports
from ekagen.evaluation.html import overlay_png, write_gallery
from ekagen.evaluation.run import score_systems
from ekagen.generation.checkpoint import load_generator, trained_adm
from ekagen.generation.data import ReportStudies, diagnosed_knowledge_labels, encode_reports
from ekagen.generation.train import generate_reports
from ekagen.inference import export_model
from ekagen.knowledge.iek import KnowledgeBase
from ekagen.knowledge.store import RKS_FILE, read_table
from ekagen.labeler import label_reports
from ekagen.observations import OBSERVATIONS
from ekagen.tracking import log_metrics_flat, stage_run
from ekagen.training.distributed import select_device
from stages.common import parse, stage_parser


def write_f1_table(per_class: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["observation", "system", "f1"])
        for system, classes in per_class.items():
            for name in OBSERVATIONS:
                writer.writerow([name, system, round(classes[name]["f1"], 6)])


def main(argv: Sequence[str] | None = None) -> dict:
    parser = stage_parser(__doc__)
    parser.add_argument("--prepared", default="data/prepared")
    parser.add_argument("--knowledge", default="data/knowledge")
    parser.add_argument("--adm", default="data/adm")
    parser.add_argument("--gid-dir", default="data/gid")
    parser.add_argument("--classifier", default="data/classifier")
    parser.add_argument("--out", default="data/eval")
    parser.add_argument("--metrics", default="metrics/eval.json")
    parser.add_argument("--per-class", default="metrics/eval_per_class.json")
    parser.add_argument("--f1-table", default="metrics/eval_f1.csv")
    parser.add_argument("--gallery", default="metrics/gallery.html")
    args, params = parse(parser, argv)
    cfg = section(params, "evaluate", EvaluateConfig)
    decode = section(params, "decode", DecodeConfig)
    iek = section(params, "iek", IekConfig)
    device = select_device(cfg.device)
    studies = load_studies_table(Path(args.prepared))
    images = load_images(Path(args.prepared))
    packed, size = load_masks(args.adm)
    diagnosis = load_study_diagnosis(args.adm)
    model, vocab, model_config = load_generator(Path(args.gid_dir) / cfg.round, device)
    rks = read_table(Path(args.knowledge) / RKS_FILE, "rks")
    kb = KnowledgeBase.from_rks(rks, model.cfg.max_length,
                                max_hamming=iek.hamming_limit)
    test_rows = np.flatnonzero((studies["split"] == "test").to_numpy())
    train_rows = np.flatnonzero((studies["split"] == "train").to_numpy())
    predicted = diagnosis[list(OBSERVATIONS)].to_numpy().astype(np.float32)
    knowledge_labels = diagnosed_knowledge_labels(diagnosis, kb, iek.rule)
    knowledge = kb.lookup(knowledge_labels)
    tokens = encode_reports(studies["report"].tolist(), vocab, model.cfg.max_length)
    dataset = ReportStudies(images, packed, test_rows, tokens, knowledge)
    adm = trained_adm(model_config)
    flat_params = {"evaluate.round": cfg.round, **as_flat_dict(decode, "decode."),
                   "iek.max_hamming": iek.max_hamming, "iek.rule": iek.rule}
    with stage_run("evaluate", flat_params) as mlflow:
        def run_decode(net, batch_images, batch_knowledge):
            return beam_decode(net, batch_images, batch_knowledge, vocab.bos_id, vocab.eos_id,
                               decode.beam_size, decode.max_length, decode.length_penalty,
                               decode.no_repeat_ngram, decode.eos_threshold)

        generated = generate_reports(model, dataset, vocab, decode.max_length, decode.batch_size,
                                     device, adm.adm, adm, decode=run_decode)
        references = studies["report"].iloc[test_rows].tolist()
        train_reports = studies["report"].iloc[train_rows].tolist()
        features = np.load(Path(args.adm) / FEATURES_FILE, mmap_mode="r")
        study_features = np.asarray(features, dtype=np.float32).mean(axis=1)
        details = kb.lookup_details(knowledge_labels[test_rows])
        rks_text = dict(zip(rks["report_id"], rks["report"], strict=False))
        knowledge_text = [" ".join(rks_text[r] for r in d.report_ids) for d in details]
        systems = {
            "ekagen": generated,
            "most_frequent": [most_frequent_report(train_reports)] * len(test_rows),
            "nearest_neighbour": nearest_neighbour_reports(
                study_features[train_rows], train_reports, study_features[test_rows]),
            # not a baseline: the unedited IEK reports the decoder reads, so the table shows
            # what decoding adds to (or loses from) its knowledge
            "knowledge": knowledge_text,
        }
        flat, per_class, labels = score_systems(systems, references, cfg.meteor)
        if flat["test_studies"] != len(test_rows):
            raise RuntimeError("scored studies differ from the test split")
        dump_json(flat, Path(args.metrics))
        dump_json(per_class, Path(args.per_class))
        write_f1_table(per_class, Path(args.f1_table))
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({
            "id": studies["id"].iloc[test_rows].to_numpy(), "reference": references,
            "generated": generated, "most_frequent": systems["most_frequent"],
            "nearest_neighbour": systems["nearest_neighbour"],
            "knowledge_rule": [d.rule for d in details], "knowledge_key": [d.key for d in details],
            "knowledge_reports": [list(d.report_ids) for d in details],
        }).to_parquet(out / "generations.parquet", index=False)
        gallery_rows = []
        gallery_dir = Path(args.gallery).with_suffix("")
        picks = np.random.default_rng(params.get("seed", 42)).permutation(len(test_rows))
        for i in sorted(picks[: cfg.gallery_size]):
            row = int(test_rows[i])
            sid = str(studies["id"].iloc[row])
            mask = unpack_masks(np.asarray(packed[row, 0]), size)
            overlay_png(images[row, 0], None, gallery_dir / f"{sid}_image.png")
            overlay_png(images[row, 0], mask, gallery_dir / f"{sid}_adm.png")
            both = label_reports([generated[i], references[i]])[list(OBSERVATIONS)].to_numpy()
            gallery_rows.append({
                "id": sid, "image": f"{gallery_dir.name}/{sid}_image.png",
                "adm": f"{gallery_dir.name}/{sid}_adm.png",
                "diagnosis": [o for o, p in zip(OBSERVATIONS, predicted[row], strict=True) if p],
                "knowledge": knowledge_text[i],
                "knowledge_rule": f"{details[i].rule} {details[i].key}",
                "generated": generated[i], "reference": references[i],
                "generated_labels": both[0], "reference_labels": both[1]})
        write_gallery(args.gallery, gallery_rows)
        adm_cfg = section(params, "adm", AdmConfig)
        export_model(out / "model", Path(args.gid_dir) / cfg.round, args.classifier,
                     Path(args.knowledge) / RKS_FILE,
                     {"cam_threshold": adm_cfg.cam_threshold, "dilation": adm_cfg.dilation},
                     as_flat_dict(decode), iek.max_hamming, iek.rule)
        log_metrics_flat(mlflow, flat)
        for artifact in (args.metrics, args.per_class, args.gallery, "params.yaml", "dvc.lock"):
            if Path(artifact).is_file():
                mlflow.log_artifact(artifact)
    print(" | ".join(f"{s}: BLEU-4 {flat[s + '.bleu4']:.3f} CE-F1 {flat[s + '.ce_micro_f1']:.3f}"
                     for s in systems))
    return flat


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
