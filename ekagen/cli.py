"""The ``ekagen`` command line: label reports, write reports for images, score reports, and
print a named preset's parameter changes."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _label(args: argparse.Namespace) -> int:
    from ekagen.labeler.files import label_file

    table = label_file(args.input, args.output)
    if args.output is None:
        sys.stdout.write(table.to_csv(index=False))
    else:
        positives = int(table.iloc[:, 1:].eq(1).fillna(False).to_numpy(dtype=bool).sum())
        print(f"labelled {len(table)} report(s), {positives} positive finding(s) -> {args.output}",
              file=sys.stderr)
    return 0


def _attention_path(base: str, index: int, count: int) -> Path:
    path = Path(base)
    return path if count == 1 else path.with_name(f"{path.stem}_{index}{path.suffix or '.png'}")


def _generate(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from ekagen.data.images import load_image
    from ekagen.evaluation.html import overlay_png
    from ekagen.inference import ReportWriter

    torch.set_grad_enabled(False)
    changes = {k: v for k, v in (("beam_size", args.beam_size), ("max_length", args.max_length),
                                 ("eos_threshold", args.eos_threshold)) if v is not None}
    writer = ReportWriter.load(args.model, device="cpu", **changes)
    pixels = np.stack([load_image(p, writer.image_size) for p in args.images])
    studies = [list(args.images)] if args.views else [[p] for p in args.images]
    pixels = pixels[None] if args.views else pixels[:, None]
    reports = writer.write(pixels)
    names = [" + ".join(paths) for paths in studies]
    if args.attention:
        for i, (paths, rep) in enumerate(zip(studies, reports, strict=True)):
            overlay_png(load_image(paths[0], writer.image_size), rep.masks[0],
                        _attention_path(args.attention, i, len(reports)))
    if args.json:
        payload = [{"images": paths, "report": r.report, "diagnosis": r.diagnosis,
                    "probabilities": r.probabilities,
                    "knowledge": f"{r.knowledge.rule}:{r.knowledge.key}",
                    "knowledge_reports": list(r.knowledge.report_ids),
                    "attention_coverage": [round(c, 4) for c in r.attention_coverage]}
                   for paths, r in zip(studies, reports, strict=True)]
        print(json.dumps(payload, indent=2))
    else:
        for name, r in zip(names, reports, strict=True):
            print(r.report if len(reports) == 1 else f"{name}: {r.report}")
    return 0


def _preset(args: argparse.Namespace) -> int:
    import shlex

    from ekagen.presets import load_preset, names, set_arguments

    if args.name is None:
        print("\n".join(names()))
        return 0
    print(" ".join(shlex.quote(a) for a in set_arguments(load_preset(args.name))))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    import pandas as pd

    from ekagen.evaluation.run import score_systems

    path = Path(args.generations)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: generations file not found")
    table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    for column in (args.generated_column, args.reference_column):
        if column not in table.columns:
            raise ValueError(f"{path}: no column {column!r} (columns: {list(table.columns)})")
    for column in (args.generated_column, args.reference_column):
        bad = table[column].map(lambda v: not isinstance(v, str))
        if bad.any():
            raise ValueError(f"{path}: row {int(bad.idxmax()) + 1}: {column!r} is not text")
    refs = table[args.reference_column].tolist()
    if any(not r.strip() for r in refs):
        raise ValueError(f"{path}: empty reference report(s); every study needs one")
    flat, per_class, _ = score_systems({"system": table[args.generated_column].tolist()}, refs,
                                       meteor=not args.no_meteor)
    print(json.dumps({"metrics": flat, "per_class": per_class["system"]}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ekagen", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    label = commands.add_parser(
        "label", help="label reports with the 14 CheXpert observations (1, 0, -1, blank)",
        description="INPUT is a .txt (one report per line) or a .csv/.jsonl/.parquet with a "
                    "'report' column. Output: CSV with 'report' and the 14 observation columns.")
    label.add_argument("input")
    label.add_argument("-o", "--output", default=None, help="CSV to write (default: stdout)")
    label.set_defaults(func=_label)

    gen = commands.add_parser("generate", help="write a report for each radiograph",
                              description="Each IMAGE (PNG, JPEG or DICOM) is one study and "
                                          "fills every view slot of the model, or with "
                                          "--views the IMAGEs are the views of one study; on "
                                          "CPU, through the evaluate stage's code path.")
    gen.add_argument("--model", required=True,
                     help="model folder written by the evaluate stage (data/eval/model)")
    gen.add_argument("images", nargs="+", metavar="IMAGE")
    gen.add_argument("--views", action="store_true",
                     help="the images are the views of one study, in the model's view order")
    gen.add_argument("--json", action="store_true", help="machine-readable output")
    gen.add_argument("--attention", default=None, metavar="OUT.png",
                     help="write the ADM overlay (OUT_<i>.png for several images)")
    gen.add_argument("--beam-size", type=int, default=None)
    gen.add_argument("--max-length", type=int, default=None)
    gen.add_argument("--eos-threshold", type=float, default=None)
    gen.set_defaults(func=_generate)

    ev = commands.add_parser("evaluate", help="score generated reports against references",
                             description="NLG (BLEU-1..4, METEOR, ROUGE-L, CIDEr) and CE "
                                         "(micro, macro, example-based) on a CSV or parquet.")
    ev.add_argument("--generations", required=True)
    ev.add_argument("--generated-column", default="generated")
    ev.add_argument("--reference-column", default="reference")
    ev.add_argument("--no-meteor", action="store_true", help="skip METEOR (needs Java)")
    ev.set_defaults(func=_evaluate)

    preset = commands.add_parser(
        "preset", help="print a preset's parameter changes as dvc exp run -S arguments",
        description="Prints `-S key=value` arguments: dvc exp run $(ekagen preset paper). "
                    "Without NAME, lists the presets.")
    preset.add_argument("name", nargs="?", default=None, metavar="NAME")
    preset.set_defaults(func=_preset)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        print(f"ekagen {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
