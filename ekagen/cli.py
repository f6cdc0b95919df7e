"""The ``ekagen`` command line: label reports, write reports for images, score reports, and
print a named preset's parameter changes."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _labeler(args: argparse.Namespace):
    """The labeler the flags name; CheXbert paths fall back to ./params.yaml's evaluate."""
    from ekagen.labeler.select import build_labeler

    checkpoint, bert_dir = args.chexbert_checkpoint, args.chexbert_bert_dir
    if args.labeler == "chexbert" and (checkpoint is None or bert_dir is None) \
            and Path("params.yaml").is_file():
        from ekagen.config import load_params

        section = load_params("params.yaml").get("evaluate") or {}
        checkpoint = checkpoint or section.get("chexbert_checkpoint")
        bert_dir = bert_dir or section.get("chexbert_bert_dir")
    return build_labeler(args.labeler, checkpoint, bert_dir, device=args.device,
                         batch_size=args.batch_size, progress=True)


def _label(args: argparse.Namespace) -> int:
    from ekagen.labeler.files import label_file

    table = label_file(args.input, args.output, _labeler(args))
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
    import torch

    from ekagen.evaluation.html import overlay_png
    from ekagen.inference import ReportWriter
    from ekagen.reporting import report_files

    torch.set_grad_enabled(False)
    changes = {k: v for k, v in (("beam_size", args.beam_size), ("max_length", args.max_length),
                                 ("eos_threshold", args.eos_threshold)) if v is not None}
    writer = ReportWriter.load(args.model, device="cpu", **changes)
    pixels, reports = report_files(writer, args.images, views=args.views)
    studies = [list(args.images)] if args.views else [[p] for p in args.images]
    names = [" + ".join(paths) for paths in studies]
    if args.attention:
        for i, rep in enumerate(reports):  # the study's first view
            overlay_png(pixels[i, 0], rep.masks[0], _attention_path(args.attention, i,
                                                                    len(reports)))
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


def _serve(args: argparse.Namespace) -> int:
    from ekagen.demo import serve

    try:
        limit = {} if args.max_upload_mb is None else {"max_mb": args.max_upload_mb}
        serve(args.model, host=args.host, port=args.port, device=args.device,
              share=args.share, **limit)
    except OSError as exc:  # e.g. the port is taken
        raise RuntimeError(f"cannot serve on {args.host}:{args.port}: {exc}") from exc
    return 0


def _preset(args: argparse.Namespace) -> int:
    import shlex

    from ekagen.presets import load_preset, names, set_arguments

    if args.name is None:
        print("\n".join(names()))
        return 0
    print(" ".join(shlex.quote(a) for a in set_arguments(load_preset(args.name))))
    return 0


def _read_generations(path: Path, columns: Sequence[str]):
    """A generations file; CSV cells are read as text as written ("007" stays "007", an
    empty report is an empty string, as in parquet)."""
    import pandas as pd

    if not path.is_file():
        raise FileNotFoundError(f"{path}: generations file not found")
    if path.suffix == ".parquet":
        table = pd.read_parquet(path)
    else:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in columns:
        if column not in table.columns:
            raise ValueError(f"{path}: no column {column!r} (columns: {list(table.columns)})")
        bad = table[column].map(lambda v: not isinstance(v, str))
        if bad.any():
            raise ValueError(f"{path}: row {int(bad.to_numpy().argmax()) + 1}: {column!r} "
                             "is not text")
    return table.reset_index(drop=True)


def _matched_by_id(table, other, args: argparse.Namespace) -> list[str]:
    """The other file's reports in the order of the main file's ids."""
    key = args.id_column
    for name, frame in ((args.generations, table), (args.compare, other)):
        if key not in frame.columns:
            raise ValueError(f"{name}: --compare matches rows by {key!r}, a column it lacks")
        missing = frame[key].map(lambda v: v is None or v != v or not str(v).strip())
        if missing.any():
            raise ValueError(f"{name}: row {int(missing.to_numpy().argmax()) + 1}: no {key!r}")
        twice = frame[key].astype(str).duplicated()
        if twice.any():
            raise ValueError(f"{name}: id {frame[key].astype(str)[twice].iloc[0]!r} appears "
                             "more than once")
    ids, other_ids = table[key].astype(str), other[key].astype(str)
    only_main = sorted(set(ids) - set(other_ids))
    only_other = sorted(set(other_ids) - set(ids))
    if only_main or only_other:
        raise ValueError(f"the two files score different studies: {len(only_main)} id(s) only "
                         f"in {args.generations} (e.g. {only_main[:3]}), {len(only_other)} "
                         f"only in {args.compare} (e.g. {only_other[:3]})")
    other = other.set_index(other_ids)
    if args.reference_column in other.columns:
        def words(text: object) -> str:
            return " ".join(text.split()) if isinstance(text, str) else ""

        for i, ref in zip(ids, table[args.reference_column], strict=True):
            theirs = words(other.at[i, args.reference_column])
            if not theirs:
                raise ValueError(f"{args.compare}: id {i!r} has no reference")
            if theirs != words(ref):
                raise ValueError(f"{args.compare}: id {i!r} has a different reference than "
                                 f"in {args.generations}; both must be scored on the same "
                                 "references")
    return other.loc[ids.tolist(), args.compare_column].tolist()


def _protocol_table(flat: dict, intervals: dict, systems: Sequence[str]) -> str:
    """A short text table of the headline metrics with their 95% intervals."""
    keys = ("bleu4", "rouge_l", "cider", "ce14_micro_f1", "ce14_macro_f1", "ce14_example_f1",
            "ce5_micro_f1", "ce14u_micro_f1")
    width = max(len(n) for n in [*systems, *intervals["differences"], "metric"]) + 2
    lines = ["metric".ljust(width) + "".join(k.rjust(24) for k in keys)]
    for name in systems:
        cells = []
        for key in keys:
            ci = intervals["systems"][name][key]
            cells.append(f"{flat[f'{name}.{key}']:.3f} [{ci['low']:.3f}, {ci['high']:.3f}]")
        lines.append(name.ljust(width) + "".join(c.rjust(24) for c in cells))
    for pair, metrics in intervals["differences"].items():
        cells = [f"{metrics[k]['value']:+.3f} p={metrics[k]['p_value']:.3f}" for k in keys]
        lines.append(pair.ljust(width) + "".join(c.rjust(24) for c in cells))
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    from ekagen.evaluation.run import score_systems

    path = Path(args.generations)
    table = _read_generations(path, (args.generated_column, args.reference_column))
    refs = table[args.reference_column].tolist()
    if any(not r.strip() for r in refs):
        raise ValueError(f"{path}: empty reference report(s); every study needs one")
    systems = {"system": table[args.generated_column].tolist()}
    if args.compare is not None:
        other = _read_generations(Path(args.compare), (args.compare_column,))
        systems["compare"] = _matched_by_id(table, other, args)
    labeler = _labeler(args)
    scored = score_systems(systems, refs, meteor=not args.no_meteor, labeler=labeler)
    intervals = scored.bootstrap("system", args.bootstrap, args.seed)
    payload = {"ce_labeler": args.labeler, "metrics": scored.flat,
               "per_class": scored.per_class["system"], "intervals": intervals}
    if args.compare is not None:
        payload["per_class_compare"] = scored.per_class["compare"]
    text = json.dumps(payload, indent=2)
    if args.output is None:
        print(text)
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text + "\n")
    print(_protocol_table(scored.flat, intervals, list(systems)), file=sys.stderr)
    return 0


def _synth(args: argparse.Namespace) -> int:
    import shlex

    from ekagen.data.synth import MIMIC_SPLIT, dvc_arguments, write_synthetic_mimic

    summary = write_synthetic_mimic(args.out, args.studies, image_size=args.image_size,
                                    seed=args.seed, workers=args.workers,
                                    fractions=args.split or MIMIC_SPLIT)
    print(json.dumps(summary, indent=2))
    print("run the pipeline on it:\n  dvc exp run "
          + " ".join(shlex.quote(a) for a in dvc_arguments(summary)), file=sys.stderr)
    return 0


def _fractions(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise argparse.ArgumentTypeError(
            f"expected three comma-separated fractions TRAIN,VAL,TEST, got {text!r}")
    return values


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _labeler_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("labeler")
    group.add_argument("--labeler", choices=("rules", "chexbert"), default="rules",
                       help="rules: CheXpert-labeler conventions, no model (default); "
                            "chexbert: the CheXbert model from local files")
    group.add_argument("--chexbert-checkpoint", default=None, metavar="chexbert.pth",
                       help="the CheXbert authors' checkpoint (default: evaluate."
                            "chexbert_checkpoint of ./params.yaml)")
    group.add_argument("--chexbert-bert-dir", default=None, metavar="DIR",
                       help="local bert-base-uncased folder with config.json and vocab.txt "
                            "(default: evaluate.chexbert_bert_dir of ./params.yaml)")
    group.add_argument("--device", default="cpu", help="CheXbert's device (cpu, cuda)")
    group.add_argument("--batch-size", type=_positive, default=16,
                       help="CheXbert's batch size")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ekagen", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    label = commands.add_parser(
        "label", help="label reports with the 14 CheXpert observations (1, 0, -1, blank)",
        description="INPUT is a .txt (one report per line) or a .csv/.jsonl/.parquet with a "
                    "'report' column. Output: CSV with 'report' and the 14 observation columns.")
    label.add_argument("input")
    label.add_argument("-o", "--output", default=None, help="CSV to write (default: stdout)")
    _labeler_arguments(label)
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
                             description="NLG (BLEU-1..4, METEOR, ROUGE-L, CIDEr) and every "
                                         "CE protocol (14 or 5 observations; micro, macro, "
                                         "example-based; uncertain as negative or positive) "
                                         "with paired-bootstrap 95% intervals, on a CSV or "
                                         "parquet. JSON on stdout, a short table on stderr.")
    ev.add_argument("--generations", required=True, metavar="FILE",
                    help="CSV or parquet with the generated and the reference report per row")
    ev.add_argument("--generated-column", default="generated")
    ev.add_argument("--reference-column", default="reference")
    ev.add_argument("--compare", default=None, metavar="OTHER",
                    help="another system's CSV/parquet on the same studies: paired test of "
                         "FILE minus OTHER, rows matched by --id-column")
    ev.add_argument("--compare-column", default="generated",
                    help="OTHER's column with its reports (default: generated)")
    ev.add_argument("--id-column", default="id", help="study id column, for --compare")
    ev.add_argument("--bootstrap", type=_positive, default=1000, metavar="N",
                    help="paired bootstrap resamples over the studies (default 1000)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the bootstrap draws")
    ev.add_argument("--no-meteor", action="store_true", help="skip METEOR (needs Java)")
    ev.add_argument("-o", "--output", default=None, metavar="OUT.json",
                    help="write the JSON there instead of stdout (the table goes to stderr)")
    _labeler_arguments(ev)
    ev.set_defaults(func=_evaluate)

    serve = commands.add_parser(
        "serve", help="a local web demo of a model folder (needs the extra 'demo')",
        description="Upload a radiograph (PNG, JPEG or DICOM; one image or the views of a "
                    "study) and read the report, DiagnosisBot's probabilities, the ADM overlay "
                    "and the retrieved knowledge. Same code path as `ekagen generate`. Gradio, "
                    "offline; install with pip install -e '.[demo]' or make serve.")
    serve.add_argument("--model", required=True,
                       help="model folder written by the evaluate stage (data/eval/model)")
    serve.add_argument("--host", default="127.0.0.1",
                       help="interface to bind (default 127.0.0.1, this machine only; "
                            "0.0.0.0 serves the network)")
    serve.add_argument("--port", type=_positive, default=7860)
    serve.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda")
    serve.add_argument("--max-upload-mb", type=float, default=None, metavar="MB",
                       help="largest file accepted (default: ekagen.demo's, 50)")
    serve.add_argument("--share", action="store_true",
                       help="also a public *.gradio.live link through Gradio's tunnel "
                            "(needs internet; off by default)")
    serve.set_defaults(func=_serve)

    synth = commands.add_parser(
        "synth", help="write a synthetic MIMIC-CXR in R2Gen format (IU text, phantom JPGs)",
        description="Writes annotation.json, mimic-cxr-2.0.0-chexpert.csv and images/ under "
                    "OUT: IU X-Ray reports drawn with replacement, each with a phantom radiograph "
                    "of its labels. Re-running skips the images already written.")
    synth.add_argument("--studies", type=_positive, required=True, metavar="N")
    synth.add_argument("--out", required=True, metavar="DIR")
    synth.add_argument("--image-size", type=_positive, default=256, metavar="PX")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--split", type=_fractions, default=None, metavar="TRAIN,VAL,TEST",
                       help="split fractions (default: MIMIC-CXR's R2Gen split, 97.8/0.8/1.4%%)")
    synth.add_argument("--workers", type=_positive, default=1,
                       help="processes rendering images")
    synth.set_defaults(func=_synth)

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
