"""Mean and sd over seeds of every system's test scores, from DVC experiments.

    dvc exp run --queue -S seed=7 && dvc exp run --queue -S seed=123 && dvc exp run --run-all
    python benchmarks/seed_table.py [--input exp_show.json] [--markdown]

Reads ``dvc exp show --json`` (or a saved copy of it), keeps the rows whose parameters equal
the workspace's ``params.yaml`` in everything but ``seed`` (one row per seed), and prints JSON:
each seed's headline scores from ``metrics/eval.json`` (and the DiagnosisBot's test AUROC),
then mean and sample sd over seeds. Rows that differ in any other parameter are listed as
skipped, never averaged in. ``--markdown`` also prints the table for the README.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

SYSTEMS = ("ekagen", "nearest_neighbour", "knowledge", "most_frequent")
SCORES = ("bleu4", "rouge_l", "cider", "ce14_micro_f1", "ce14_macro_f1")


def rows(tree: Any) -> Iterator[dict]:
    """Every experiment or commit row of ``dvc exp show --json``, however deeply nested."""
    if isinstance(tree, list):
        for item in tree:
            yield from rows(item)
    elif isinstance(tree, dict):
        data = tree.get("data")
        if isinstance(data, dict) and "params" in data:
            yield {"name": tree.get("name") or tree.get("rev") or data.get("rev"), **data}
        for key in ("experiments", "revs"):
            if tree.get(key):
                yield from rows(tree[key])


def flat(mapping: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def file_data(row: dict, kind: str, path: str) -> dict:
    return ((row.get(kind) or {}).get(path) or {}).get("data") or {}


def seed_table(exp_show: Any, reference: dict) -> dict:
    """Per-seed scores of the rows that match ``reference`` params except for the seed."""
    wanted = {k: v for k, v in flat(reference).items() if k != "seed"}
    per_seed: dict[int, dict[str, float]] = {}
    skipped: list[str] = []
    for row in rows(exp_show):
        params = flat(file_data(row, "params", "params.yaml"))
        if not params:
            continue
        if {k: v for k, v in params.items() if k != "seed"} != wanted:
            skipped.append(str(row["name"]))
            continue
        evaluation = file_data(row, "metrics", "metrics/eval.json")
        if not evaluation:
            skipped.append(f"{row['name']} (no metrics/eval.json)")
            continue
        seed = int(params["seed"])
        if seed in per_seed:
            continue  # the workspace and its commit are the same run
        scores = {f"{system}.{score}": float(evaluation[f"{system}.{score}"])
                  for system in SYSTEMS for score in SCORES
                  if f"{system}.{score}" in evaluation}
        classifier = file_data(row, "metrics", "metrics/classifier.json")
        if "test_mean_auroc" in classifier:
            scores["classifier.test_mean_auroc"] = float(classifier["test_mean_auroc"])
        per_seed[seed] = scores
    keys = sorted({k for scores in per_seed.values() for k in scores})
    summary = {}
    for key in keys:
        values = [scores[key] for scores in per_seed.values() if key in scores]
        summary[key] = {"mean": statistics.fmean(values), "n": len(values),
                        "sd": statistics.stdev(values) if len(values) > 1 else None}
    return {"seeds": sorted(per_seed), "per_seed": {str(s): per_seed[s] for s in sorted(per_seed)},
            "over_seeds": summary, "skipped": skipped}


def markdown(table: dict) -> str:
    lines = ["| system | " + " | ".join(SCORES) + " |", "|---" * (len(SCORES) + 1) + "|"]
    for system in SYSTEMS:
        cells = []
        for score in SCORES:
            entry = table["over_seeds"].get(f"{system}.{score}")
            if entry is None:
                cells.append("")
            elif entry["sd"] is None:
                cells.append(f"{entry['mean']:.3f}")
            else:
                cells.append(f"{entry['mean']:.3f} ± {entry['sd']:.3f}")
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, help="saved `dvc exp show --json` output")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    if args.input:
        exp_show = json.loads(args.input.read_text())
    else:
        done = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"dvc exp show failed: {done.stderr.strip()}")
        exp_show = json.loads(done.stdout)
    table = seed_table(exp_show, yaml.safe_load(args.params.read_text()))
    if not table["seeds"]:
        raise SystemExit("no experiment matches params.yaml except for its seed; run "
                         "`dvc exp run --queue -S seed=<n>` and `dvc exp run --run-all` first")
    print(json.dumps(table, indent=1))
    if args.markdown:
        print(markdown(table), file=sys.stderr)
    return table


if __name__ == "__main__":
    main()
