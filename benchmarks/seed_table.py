"""Mean and sd over seeds of every system's test scores, and ablations paired by seed, from
DVC experiments.

    dvc exp run --queue -S seed=7 && dvc exp run --queue -S seed=123 && dvc exp run --run-all
    python benchmarks/seed_table.py [--input exp_show.json] [--markdown]
    dvc exp run --queue -S seed=7 -S model.knowledge=false ... && dvc exp run --run-all
    python benchmarks/seed_table.py --ablations [--resamples 1000] [--markdown]

Reads ``dvc exp show --json`` (or a saved copy of it), keeps the rows whose parameters equal
the workspace's ``params.yaml`` in everything but ``seed`` (one row per seed), and prints JSON:
each seed's headline scores from ``metrics/eval.json`` (and the DiagnosisBot's test AUROC),
each seed's paired-bootstrap differences between EKAGen and the other systems from
``metrics/eval_ci.json``, then mean and sample sd over seeds, and issue 14's checks on them
(``checks``). Rows that differ in any other parameter are listed as skipped, never averaged
in. ``--markdown`` also prints the tables for the README.

``--ablations`` groups the rows instead by the parameters they change (the seed aside): each
set of changes is one run, compared seed by seed with the default row of the same seed. Both
rows' test reports (``data/eval/generations.parquet``, read at the row's revision through
``dvc.api``) are scored again by the rule labeler and resampled together (paired bootstrap of
default minus run, the evaluate stage's method), so the intervals are of the difference
itself, not of two separate runs.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

SYSTEMS = ("ekagen", "nearest_neighbour", "knowledge", "most_frequent")
SCORES = ("bleu1", "bleu4", "meteor", "rouge_l", "cider", "ce14_micro_precision",
          "ce14_micro_recall", "ce14_micro_f1", "ce14_macro_f1")
#: the scores whose paired intervals (EKAGen minus another system, default minus an ablation)
#: are reported per seed
PAIRED = ("bleu4", "rouge_l", "cider", "ce14_micro_f1", "ce14_macro_f1")
#: issue 14's targets for the spread of EKAGen's test scores over seeds
SD_TARGETS = {"ce14_micro_f1": 0.01, "bleu4": 0.005}


def rows(tree: Any, state: str | None = None) -> Iterator[dict]:
    """Every experiment or commit row of ``dvc exp show --json``, however deeply nested, with
    its queue ``state`` (``None`` for the workspace and commits, else the executor's:
    ``success``, ``running``, ``queued``, ``failed``)."""
    if isinstance(tree, list):
        for item in tree:
            yield from rows(item, state)
    elif isinstance(tree, dict):
        executor = tree.get("executor")
        if isinstance(executor, dict) and executor.get("state"):
            state = executor["state"]
        data = tree.get("data")
        if isinstance(data, dict) and "params" in data:
            yield {"name": tree.get("name") or tree.get("rev") or data.get("rev"),
                   "state": state, **data}
        for key in ("experiments", "revs"):
            if tree.get(key):
                yield from rows(tree[key], state)


def unfinished(row: dict) -> bool:
    """A queued, running or failed experiment: its metrics are not its own yet (a running
    one shows the files its workspace started from)."""
    return row.get("state") not in (None, "success")


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
    differences: dict[int, dict] = {}
    skipped: list[str] = []
    for row in rows(exp_show):
        params = flat(file_data(row, "params", "params.yaml"))
        if not params:
            continue
        if unfinished(row):
            skipped.append(f"{row['name']} ({row['state']})")
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
        intervals = file_data(row, "metrics", "metrics/eval_ci.json").get("differences", {})
        differences[seed] = {pair: {k: metrics[k] for k in PAIRED if k in metrics}
                             for pair, metrics in intervals.items()}
    keys = sorted({k for scores in per_seed.values() for k in scores})
    summary = {key: summarise([scores[key] for scores in per_seed.values() if key in scores])
               for key in keys}
    return {"seeds": sorted(per_seed), "per_seed": {str(s): per_seed[s] for s in sorted(per_seed)},
            "differences": {str(s): differences[s] for s in sorted(differences)},
            "over_seeds": summary, "checks": goal_checks(summary, differences),
            "skipped": skipped}


def summarise(values: list[float]) -> dict:
    """Mean, count and sample sd (None for a single value) of one score over seeds."""
    return {"mean": statistics.fmean(values), "n": len(values),
            "sd": statistics.stdev(values) if len(values) > 1 else None}


def goal_checks(summary: dict, differences: dict[int, dict]) -> list[dict]:
    """Issue 14's criteria on the mean over seeds: EKAGen's CE micro-F1 within .01 of the
    knowledge text's and of nearest neighbour's, its macro-F1 at least the knowledge text's,
    above both on BLEU-4, ROUGE-L and CIDEr with every seed's paired interval above zero, and
    its spread over seeds within the targets."""
    def mean(key: str) -> float | None:
        return summary[key]["mean"] if key in summary else None

    checks = []

    def check(name: str, value: float | None, passed: bool | None) -> None:
        checks.append({"check": name, "value": None if value is None else round(value, 4),
                       "passed": passed})

    def gap(score: str, other: str) -> float | None:
        """EKAGen's mean minus ``other``'s on ``score``; None when either is missing."""
        mine, theirs = mean(f"ekagen.{score}"), mean(f"{other}.{score}")
        return None if mine is None or theirs is None else mine - theirs

    for other, margin in (("knowledge", 0.01), ("nearest_neighbour", 0.01)):
        micro = gap("ce14_micro_f1", other)
        check(f"ce14_micro_f1: ekagen - {other} >= -{margin}", micro,
              None if micro is None else micro >= -margin)
    macro = gap("ce14_macro_f1", "knowledge")
    check("ce14_macro_f1: ekagen - knowledge >= 0", macro, None if macro is None else macro >= 0)
    for score in ("bleu4", "rouge_l", "cider"):
        for other in ("knowledge", "nearest_neighbour"):
            lows = [d.get(f"ekagen-{other}", {}).get(score, {}).get("low")
                    for d in differences.values()]
            ahead = gap(score, other)
            known = ahead is not None and bool(lows) and None not in lows
            check(f"{score}: ekagen - {other} > 0, every seed's interval above 0", ahead,
                  (ahead > 0 and min(lows) > 0) if known else None)
    for score, target in SD_TARGETS.items():
        sd = summary.get(f"ekagen.{score}", {}).get("sd")
        check(f"{score}: sd of ekagen over seeds <= {target}", sd,
              None if sd is None else sd <= target)
    return checks


def _interval(entry: dict) -> str:
    return f"{entry['value']:+.3f} [{entry['low']:+.3f}, {entry['high']:+.3f}]"


def _mean_sd(entry: dict | None) -> str:
    if entry is None:
        return ""
    if entry["sd"] is None:
        return f"{entry['mean']:.3f}"
    return f"{entry['mean']:.3f} ± {entry['sd']:.3f}"


def markdown(table: dict) -> str:
    lines = ["| system | " + " | ".join(SCORES) + " |", "|---" * (len(SCORES) + 1) + "|"]
    for system in SYSTEMS:
        cells = [_mean_sd(table["over_seeds"].get(f"{system}.{score}")) for score in SCORES]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    pairs = sorted({pair for d in table.get("differences", {}).values() for pair in d})
    if pairs:
        lines += ["", "| seed | EKAGen minus | " + " | ".join(PAIRED) + " |",
                  "|---" * (len(PAIRED) + 2) + "|"]
        for seed, by_pair in table["differences"].items():
            for pair in pairs:
                metrics = by_pair.get(pair, {})
                cells = [_interval(metrics[k]) if k in metrics else "" for k in PAIRED]
                lines.append(f"| {seed} | {pair.split('-', 1)[1]} | " + " | ".join(cells) + " |")
    if table.get("checks"):
        lines += ["", "| check | value | passed |", "|---|---|---|"]
        lines += [f"| {c['check']} | {c['value']} | {c['passed']} |" for c in table["checks"]]
    return "\n".join(lines)


def changed_params(params: dict, reference: dict) -> dict[str, Any]:
    """The parameters (flat keys, ``seed`` aside) whose values differ from ``reference``'s;
    a key one side lacks counts as changed (``None`` on that side)."""
    keys = (set(params) | set(reference)) - {"seed"}
    return {k: params.get(k) for k in sorted(keys) if params.get(k) != reference.get(k)}


def run_name(changes: dict[str, Any]) -> str:
    return " ".join(f"{k}={json.dumps(v)}" for k, v in changes.items()) or "default"


def read_generations(row: dict, root: Path) -> pd.DataFrame:
    """A row's ``data/eval/generations.parquet``: the workspace's from disk, an experiment's
    or a commit's from the DVC cache at its revision."""
    path = "data/eval/generations.parquet"
    rev = row.get("rev")
    if rev in (None, "workspace"):
        return pd.read_parquet(root / path)
    import dvc.api

    with dvc.api.open(path, repo=str(root), rev=rev, mode="rb") as handle:
        return pd.read_parquet(io.BytesIO(handle.read()))


def paired_difference(default: pd.DataFrame, run: pd.DataFrame, resamples: int,
                      seed: int, where: str) -> dict:
    """Default minus run on the same test studies: each metric of :data:`PAIRED` with its
    paired-bootstrap interval and p-value. The two tables must list the same studies with the
    same references."""
    from ekagen.evaluation.run import score_systems

    if default["id"].astype(str).tolist() != run["id"].astype(str).tolist():
        raise SystemExit(f"{where}: the default and the run list different test studies; "
                         "only runs on the same split can be paired")
    if default["reference"].tolist() != run["reference"].tolist():
        raise SystemExit(f"{where}: the default and the run score against different "
                         "references; only runs on the same split can be paired")
    scored = score_systems({"default": default["generated"].tolist(),
                            "run": run["generated"].tolist()},
                           default["reference"].tolist(), meteor=False)
    intervals = scored.bootstrap("default", resamples, seed)["differences"]["default-run"]
    return {k: {name: intervals[k][name] for name in ("value", "low", "high", "p_value")}
            for k in PAIRED}


def ablation_table(exp_show: Any, reference: dict, load: Callable[[dict], pd.DataFrame],
                   resamples: int = 1000) -> dict:
    """Every run (set of parameter changes against ``reference``, seed aside) against the
    default row of each seed it shares with it: the run's EKAGen scores per seed, their mean
    and sd, and the paired bootstrap of default minus run per seed (drawn from the seed)."""
    wanted = flat(reference)
    runs: dict[str, dict[int, dict]] = {}
    changes_of: dict[str, dict] = {}
    for row in rows(exp_show):
        params = flat(file_data(row, "params", "params.yaml"))
        if not params or unfinished(row) or not file_data(row, "metrics", "metrics/eval.json"):
            continue
        changes = changed_params(params, wanted)
        name = run_name(changes)
        changes_of[name] = changes
        runs.setdefault(name, {}).setdefault(int(params["seed"]), row)
    default = runs.pop("default", {})
    if not default:
        raise SystemExit("no experiment matches params.yaml except for its seed: the "
                         "ablations have no default to be compared with")
    out: dict = {"default_seeds": sorted(default), "resamples": resamples, "runs": {}}
    default_reports: dict[int, pd.DataFrame] = {}  # each seed's default read once, not per run
    for name in ["default", *sorted(runs)]:
        by_seed = default if name == "default" else runs[name]
        scores = {seed: {k: float(file_data(row, "metrics", "metrics/eval.json")[f"ekagen.{k}"])
                         for k in SCORES}
                  for seed, row in sorted(by_seed.items())}
        entry: dict = {"changes": changes_of.get(name, {}), "seeds": sorted(scores),
                       "per_seed": {str(s): v for s, v in scores.items()},
                       "over_seeds": {k: summarise([v[k] for v in scores.values()])
                                      for k in SCORES}}
        if name != "default":
            shared = sorted(set(by_seed) & set(default))
            entry["unpaired_seeds"] = sorted(set(by_seed) - set(default))
            for seed in shared:
                if seed not in default_reports:
                    default_reports[seed] = load(default[seed])
            entry["default_minus_run"] = {
                str(seed): paired_difference(default_reports[seed], load(by_seed[seed]),
                                             resamples, seed, f"{name}, seed {seed}")
                for seed in shared}
        out["runs"][name] = entry
    return out


def ablation_markdown(table: dict) -> str:
    lines = ["| run | BLEU-4 | ROUGE-L | CIDEr | CE micro P / R / F1 | CE macro-F1 | "
             "default minus run: CE micro-F1 | CE macro-F1 | BLEU-4 |", "|---" * 9 + "|"]
    for name, entry in table["runs"].items():
        over = entry["over_seeds"]
        cells = [_mean_sd(over["bleu4"]), _mean_sd(over["rouge_l"]), _mean_sd(over["cider"]),
                 f"{over['ce14_micro_precision']['mean']:.3f} / "
                 f"{over['ce14_micro_recall']['mean']:.3f} / {_mean_sd(over['ce14_micro_f1'])}",
                 _mean_sd(over["ce14_macro_f1"])]
        for score in ("ce14_micro_f1", "ce14_macro_f1", "bleu4"):
            per_seed = entry.get("default_minus_run", {})
            cells.append("; ".join(f"{seed}: {_interval(d[score])}"
                                   for seed, d in per_seed.items()))
        lines.append(f"| {name} (seeds {', '.join(map(str, entry['seeds']))}) | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, help="saved `dvc exp show --json` output")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--ablations", action="store_true",
                        help="every run's changes against the default, paired by seed")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--root", type=Path, default=Path("."),
                        help="the DVC repository whose experiments are read (--ablations)")
    args = parser.parse_args(argv)
    if args.input:
        exp_show = json.loads(args.input.read_text())
    else:
        done = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True,
                              cwd=args.root)
        if done.returncode:
            raise SystemExit(f"dvc exp show failed: {done.stderr.strip()}")
        exp_show = json.loads(done.stdout)
    reference = yaml.safe_load(args.params.read_text())
    if args.ablations:
        table = ablation_table(exp_show, reference,
                               lambda row: read_generations(row, args.root.resolve()),
                               args.resamples)
        print(json.dumps(table, indent=1))
        if args.markdown:
            print(ablation_markdown(table), file=sys.stderr)
        return table
    table = seed_table(exp_show, reference)
    if not table["seeds"]:
        raise SystemExit("no experiment matches params.yaml except for its seed; run "
                         "`dvc exp run --queue -S seed=<n>` and `dvc exp run --run-all` first")
    print(json.dumps(table, indent=1))
    if args.markdown:
        print(markdown(table), file=sys.stderr)
    return table


if __name__ == "__main__":
    main()
