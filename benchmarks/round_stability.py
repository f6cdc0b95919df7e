"""GID rounds over training seeds on validation: do the last epochs agree, and what is kept?

    python benchmarks/round_stability.py --out /tmp/stability/ema --seeds 42 7 123 \\
        -S train.ema_decay=0.997 [--data data] [--rounds r0 r1] [--threads 0]
    python benchmarks/round_stability.py --plot metrics/plots/round_stability.png \\
        --compare constant=/tmp/stability/constant ema=/tmp/stability/ema

Trains the rounds of ``gid.rounds`` with the real ``train@<round>`` stage code on an existing
pipeline's prepared data, DiagnosisBot, ADM masks and knowledge (``--data``, the result of
``dvc repro``), once per training seed (the top-level ``seed`` of the round; the data stay the
ones prepared under params.yaml's seed), with the ``-S key=value`` overrides. Nothing is read
from the test split. Prints JSON: for every seed and round the validation curve, the last two
epochs' relative difference in mean report length and absolute difference in CE micro-F1
(issue 14's stability criteria: < 10% and < .02), and the selected epoch's validation scores;
then mean and sd over seeds. Each round runs in its own process, so seeds do not share state.
``--from-metrics metrics/train --seeds 42`` summarises a finished pipeline's rounds the same
way, without training. ``--compare NAME=FOLDER ...`` draws the validation curves (mean report
length and CE micro-F1 per epoch, rounds end to end) of earlier runs side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

from ekagen.presets import apply_preset

ROOT = Path(__file__).resolve().parent.parent
SCORES = ("val_ce_micro_f1", "val_bleu4", "val_ce_bleu4", "val_mean_length")


def overrides(assignments: list[str]) -> dict:
    """``a.b.c=value`` arguments as preset changes (values parsed as YAML, like ``-S``)."""
    changes = {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep:
            raise SystemExit(f"-S {assignment!r}: expected key=value")
        changes[key] = yaml.safe_load(text)
    return changes


def stability(curve: list[dict]) -> dict:
    """The stability criteria on the last two epochs of one round's validation curve."""
    if len(curve) < 2:
        return {}
    a, b = curve[-2], curve[-1]
    return {"length_change": abs(b["val_mean_length"] - a["val_mean_length"])
            / max(a["val_mean_length"], 1e-9),
            "ce_change": abs(b["val_ce_micro_f1"] - a["val_ce_micro_f1"])}


def read_curve(path: Path) -> list[dict]:
    import csv

    with path.open() as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def run_round(params_file: Path, round_key: str, data: Path, out: Path, threads: int) -> None:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1",
           "MLFLOW_TRACKING_URI": os.environ.get("MLFLOW_TRACKING_URI")
           or f"sqlite:///{out / 'mlflow.db'}"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "stages.train", "--round", round_key,
               "--params", str(params_file), "--prepared", str(data / "prepared"),
               "--knowledge", str(data / "knowledge"), "--classifier", str(data / "classifier"),
               "--adm", str(data / "adm"), "--gid-dir", str(out / "gid"),
               "--ckpt-dir", str(out / "gid_ckpt"), "--metrics-dir", str(out / "metrics"),
               "--no-progress"]
    subprocess.run(command, cwd=ROOT, env=env, check=True)


def round_result(metrics_dir: Path, round_key: str) -> dict:
    """One round's selected validation scores, stability and curve from its metrics files."""
    metrics = json.loads((metrics_dir / f"{round_key}.json").read_text())
    curve = read_curve(metrics_dir / f"{round_key}_curve.csv")
    return {"best_epoch": metrics["best_epoch"],
            "best": {k: metrics["best"][k] for k in SCORES},
            "precision": metrics["precision"], "seconds": metrics["seconds"],
            **stability(curve), "curve": curve}


def summarise(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0}


def plot_curves(runs: dict[str, Path], out: Path) -> None:
    """Validation length and CE micro-F1 per epoch of each run's seeds, rounds end to end."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for colour, (name, folder) in zip(colours, runs.items(), strict=False):
        result = json.loads((folder / "stability.json").read_text())
        for i, rounds in enumerate(result["seeds"].values()):
            epochs = [r for curve in rounds.values() for r in curve["curve"]]
            x = range(1, len(epochs) + 1)
            label = f"{name}" if i == 0 else None
            axes[0].plot(x, [r["val_mean_length"] for r in epochs], color=colour, marker="o",
                         markersize=3, label=label, alpha=0.8)
            axes[1].plot(x, [r["val_ce_micro_f1"] for r in epochs], color=colour, marker="o",
                         markersize=3, label=label, alpha=0.8)
    bounds = [len(c["curve"]) for c in next(iter(result["seeds"].values())).values()]
    for ax in axes:  # where each later round starts
        for end in [sum(bounds[: i + 1]) for i in range(len(bounds) - 1)]:
            ax.axvline(end + 0.5, color="grey", linestyle=":", linewidth=1)
    for ax, title in zip(axes, ("validation mean report length (words)",
                                "validation CE micro-F1"), strict=True):
        ax.set_xlabel("epoch, rounds end to end")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--compare", nargs="+", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--plot", type=Path)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 123])
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--rounds", nargs="+", default=None, help="default: every gid round")
    parser.add_argument("-S", dest="overrides", action="append", default=[])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--from-metrics", type=Path, default=None,
                        help="summarise a finished pipeline's metrics/train (one seed) instead "
                             "of training")
    args = parser.parse_args(argv)
    if args.compare:
        if not args.plot:
            raise SystemExit("--compare needs --plot")
        runs = {}
        for item in args.compare:
            name, sep, folder = item.partition("=")
            if not sep or not (Path(folder) / "stability.json").is_file():
                raise SystemExit(f"--compare {item!r}: expected NAME=FOLDER holding "
                                 "stability.json")
            runs[name] = Path(folder)
        plot_curves(runs, args.plot)
        return {"plot": str(args.plot)}
    if args.out is None:
        raise SystemExit("--out is required to train")
    for folder in () if args.from_metrics else ("prepared", "knowledge", "classifier", "adm"):
        if not (args.data / folder).is_dir():
            raise SystemExit(f"{args.data / folder}: missing; run `dvc repro adm rks` first")
    try:  # the presets' own setter: unknown sections and keys are errors
        base = apply_preset(yaml.safe_load(args.params.read_text()), overrides(args.overrides))
    except ValueError as error:
        raise SystemExit(f"-S: {error}") from error
    rounds = args.rounds or list(base["gid"]["rounds"])
    result: dict = {"overrides": args.overrides, "seeds": {}, "over_seeds": {}}
    for seed in args.seeds:
        out = (args.out / f"seed{seed}").resolve()
        out.mkdir(parents=True, exist_ok=True)
        params = json.loads(json.dumps(base))
        params["seed"] = seed
        for spec in params["gid"]["rounds"].values():  # teachers from this seed's folder
            if spec.get("teacher", "none") != "none":
                spec["after"] = (out / "gid" / spec["teacher"]).as_posix()
        params_file = out / "params.yaml"
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        if args.from_metrics:  # a finished pipeline's rounds, trained under this seed
            per_round = {key: round_result(args.from_metrics, key) for key in rounds}
        else:
            for round_key in rounds:
                run_round(params_file, round_key, args.data.resolve(), out, args.threads)
            per_round = {key: round_result(out / "metrics", key) for key in rounds}
        result["seeds"][seed] = per_round
        print(json.dumps({"seed": seed, **{r: {k: v for k, v in m.items() if k != "curve"}
                                           for r, m in per_round.items()}}), flush=True)
    for round_key in rounds:
        runs = [result["seeds"][s][round_key] for s in args.seeds]
        result["over_seeds"][round_key] = {
            **{name: summarise([r["best"][name] for r in runs]) for name in SCORES},
            **{name: summarise([r[name] for r in runs if name in r])
               for name in ("length_change", "ce_change")}}
    (args.out / "stability.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result["over_seeds"], indent=1))
    return result


if __name__ == "__main__":
    main()
