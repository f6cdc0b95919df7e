"""benchmarks/seed_table.py on a synthetic `dvc exp show --json` tree."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("seed_table", ROOT / "benchmarks/seed_table.py")
seed_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seed_table)


def _row(name, seed, bleu4, lr=0.0005, auroc=0.8):
    return {"rev": name, "name": name, "data": {
        "rev": name,
        "params": {"params.yaml": {"data": {"seed": seed, "train": {"lr": lr}}}},
        "metrics": {"metrics/eval.json": {"data": {"ekagen.bleu4": bleu4,
                                                   "ekagen.ce14_micro_f1": 0.7}},
                    "metrics/classifier.json": {"data": {"test_mean_auroc": auroc}}}}}


def test_rows_of_one_parameter_set_are_averaged_over_seeds_only():
    tree = [_row("workspace", 42, 0.10),
            {"rev": "abc", "name": "main", "data": _row("abc", 42, 0.10)["data"],
             "experiments": [{"revs": [_row("exp-a", 7, 0.12)]},
                             {"revs": [_row("exp-b", 123, 0.14)]},
                             {"revs": [_row("exp-lr", 7, 0.50, lr=0.001)]}]}]
    table = seed_table.seed_table(tree, {"seed": 42, "train": {"lr": 0.0005}})
    assert table["seeds"] == [7, 42, 123]
    bleu = table["over_seeds"]["ekagen.bleu4"]
    assert bleu["mean"] == pytest.approx(0.12) and bleu["sd"] == pytest.approx(0.02)
    assert bleu["n"] == 3
    assert table["over_seeds"]["ekagen.ce14_micro_f1"]["sd"] == pytest.approx(0.0)
    assert "exp-lr" in table["skipped"]  # another learning rate is never averaged in
    assert "| ekagen |  | 0.120 ± 0.020 |" in seed_table.markdown(table)  # no BLEU-1 given


def test_a_single_seed_has_no_sd():
    table = seed_table.seed_table([_row("workspace", 42, 0.1)],
                                  {"seed": 1, "train": {"lr": 0.0005}})
    assert table["over_seeds"]["ekagen.bleu4"]["sd"] is None
    assert "| ekagen |  | 0.100 |" in seed_table.markdown(table)


def _scores(**values):
    """Every system's scores at 0.5 but the ``values`` given (``system.score``)."""
    base = {f"{system}.{score}": 0.5 if system == "ekagen" else 0.1
            for system in seed_table.SYSTEMS for score in seed_table.SCORES}
    return {**base, **values}


def _full_row(name, seed, scores, differences=None, **params):
    return {"rev": name, "name": name, "data": {
        "rev": name,
        "params": {"params.yaml": {"data": {"seed": seed, "train": {"lr": 0.0005}, **params}}},
        "metrics": {"metrics/eval.json": {"data": scores},
                    "metrics/eval_ci.json": {"data": {"differences": differences or {}}}}}}


def _difference(value, low, high):
    return {"value": value, "low": low, "high": high, "p_value": 0.01}


def test_issue_goals_are_checked_on_the_mean_over_seeds_and_every_seeds_interval():
    ahead = {f"ekagen-{other}": {score: _difference(0.02, 0.01, 0.03)
                                 for score in seed_table.PAIRED}
             for other in ("knowledge", "nearest_neighbour")}
    behind_once = json.loads(json.dumps(ahead))
    behind_once["ekagen-knowledge"]["cider"] = _difference(0.01, -0.02, 0.04)
    rows = [_full_row("a", 42, _scores(**{"ekagen.ce14_micro_f1": 0.70,
                                          "knowledge.ce14_micro_f1": 0.715,
                                          "ekagen.bleu4": 0.12, "ekagen.cider": 0.6}), ahead),
            _full_row("b", 7, _scores(**{"ekagen.ce14_micro_f1": 0.72,
                                         "knowledge.ce14_micro_f1": 0.715,
                                         "ekagen.bleu4": 0.13, "ekagen.cider": 0.6}),
                      behind_once)]
    table = seed_table.seed_table(rows, {"seed": 42, "train": {"lr": 0.0005}})
    checks = {c["check"]: c for c in table["checks"]}
    # mean CE micro-F1 .710 against the knowledge text's .715: within the .01 margin
    micro = checks["ce14_micro_f1: ekagen - knowledge >= -0.01"]
    assert micro["value"] == pytest.approx(-0.005) and micro["passed"] is True
    # ahead of the knowledge text on CIDEr on average, but one seed's interval holds zero
    assert checks["cider: ekagen - knowledge > 0, every seed's interval above 0"]["passed"] \
        is False
    assert checks["bleu4: ekagen - knowledge > 0, every seed's interval above 0"]["passed"] \
        is True
    # sd of CE micro-F1 over the two seeds is .0141 > .01; of BLEU-4 .0071 > .005
    assert checks["ce14_micro_f1: sd of ekagen over seeds <= 0.01"]["passed"] is False
    assert checks["bleu4: sd of ekagen over seeds <= 0.005"]["value"] == pytest.approx(0.0071,
                                                                                     abs=1e-4)
    assert table["differences"]["7"]["ekagen-knowledge"]["cider"]["low"] == -0.02
    text = seed_table.markdown(table)
    assert "| 7 | knowledge |" in text and "| cider: ekagen - knowledge > 0" in text


def test_a_check_without_its_inputs_is_unknown_not_passed():
    table = seed_table.seed_table([_row("workspace", 42, 0.1)],
                                  {"seed": 1, "train": {"lr": 0.0005}})
    checks = {c["check"]: c["passed"] for c in table["checks"]}
    assert checks["ce14_micro_f1: ekagen - knowledge >= -0.01"] is None
    assert checks["bleu4: sd of ekagen over seeds <= 0.005"] is None


REFERENCES = ["the heart is enlarged . no effusion .",
              "there is a small right pleural effusion .",
              "the lungs are clear . no pneumothorax .",
              "mild cardiomegaly . no focal consolidation .",
              "left lower lobe opacity consistent with pneumonia ."] * 6


def _generations(generated):
    return pd.DataFrame({"id": [f"s{i}" for i in range(len(REFERENCES))],
                         "generated": generated, "reference": REFERENCES})


def test_ablations_are_paired_with_the_default_of_the_same_seed():
    normal = "the lungs are clear . no pneumothorax ."
    reports = {"ws": REFERENCES, "d7": REFERENCES, "k42": [normal] * len(REFERENCES),
               "k7": [normal] * len(REFERENCES), "r42": REFERENCES}
    tree = [_full_row("ws", 42, _scores()),
            {"rev": "head", "name": "main", "data": _full_row("head", 42, _scores())["data"],
             "experiments": [
                 {"revs": [_full_row("d7", 7, _scores())]},
                 {"revs": [_full_row("k42", 42, _scores(**{"ekagen.bleu4": 0.3}),
                                     model={"knowledge": False})]},
                 {"revs": [_full_row("k7", 7, _scores(**{"ekagen.bleu4": 0.1}),
                                     model={"knowledge": False})]},
                 {"revs": [_full_row("r42", 42, _scores(), evaluate={"round": "r0"})]},
                 {"revs": [_full_row("r123", 123, _scores(), evaluate={"round": "r0"})]}]}]
    loaded = []

    def load(row):
        loaded.append(row["rev"])
        return _generations(reports[row["rev"]])

    reference = {"seed": 42, "train": {"lr": 0.0005}, "model": {"knowledge": True},
                 "evaluate": {"round": "r1"}}
    for row in seed_table.rows(tree):  # the synthetic rows hold only part of the params
        row["params"]["params.yaml"]["data"] = {"model": {"knowledge": True},
                                                "evaluate": {"round": "r1"},
                                                **row["params"]["params.yaml"]["data"]}
    table = seed_table.ablation_table(tree, reference, load, resamples=200)
    assert table["default_seeds"] == [7, 42]
    knowledge = table["runs"]['model.knowledge=false']
    assert knowledge["changes"] == {"model.knowledge": False} and knowledge["seeds"] == [7, 42]
    assert knowledge["over_seeds"]["bleu4"]["mean"] == pytest.approx(0.2)
    for seed in ("7", "42"):  # one normal report for every study: default is ahead on CE
        micro = knowledge["default_minus_run"][seed]["ce14_micro_f1"]
        assert micro["value"] > 0.3 and micro["low"] > 0
    one_round = table["runs"]['evaluate.round="r0"']
    assert one_round["unpaired_seeds"] == [123]  # no default of seed 123 to pair with
    same = one_round["default_minus_run"]["42"]["ce14_micro_f1"]
    assert same["value"] == 0 and same["low"] == 0 and same["high"] == 0
    assert "r123" not in loaded and "head" not in loaded  # the workspace stands for HEAD
    assert loaded.count("ws") == 1  # seed 42's default is read once for both of its runs
    text = seed_table.ablation_markdown(table)
    assert text.count("\n") == 4 and "model.knowledge=false (seeds 7, 42)" in text


def test_ablation_pairs_must_share_their_test_studies():
    shuffled = _generations(REFERENCES)
    shuffled["id"] = shuffled["id"][::-1].tolist()
    with pytest.raises(SystemExit, match="different test studies"):
        seed_table.paired_difference(_generations(REFERENCES), shuffled, 10, 0, "run x")
    other = _generations(REFERENCES)
    other["reference"] = other["reference"][::-1].tolist()
    with pytest.raises(SystemExit, match="different references"):
        seed_table.paired_difference(_generations(REFERENCES), other, 10, 0, "run x")


def test_a_parameter_one_side_lacks_counts_as_changed():
    assert seed_table.changed_params({"a": 1, "seed": 3}, {"a": 1, "b": 2, "seed": 4}) == \
        {"b": None}
    assert seed_table.run_name({}) == "default"


def test_running_and_queued_experiments_are_never_averaged_in():
    """`dvc exp show --json` lists a running experiment with the metrics its workspace started
    from (the baseline's): counting it would copy the baseline into another seed's row."""
    def queued(row, state):
        return {"executor": {"state": state, "name": "dvc-task"}, "name": row["name"],
                "revs": [row]}

    tree = [_row("workspace", 42, 0.10),
            {"rev": "abc", "name": "main", "data": _row("abc", 42, 0.10)["data"],
             "experiments": [queued(_row("done", 7, 0.12), "success"),
                             queued(_row("busy", 123, 0.10), "running"),
                             queued(_row("later", 5, 0.10), "queued"),
                             queued(_row("broke", 6, 0.10), "failed")]}]
    table = seed_table.seed_table(tree, {"seed": 42, "train": {"lr": 0.0005}})
    assert table["seeds"] == [7, 42]
    assert {"busy (running)", "later (queued)", "broke (failed)"} <= set(table["skipped"])
    assert table["over_seeds"]["ekagen.bleu4"]["mean"] == pytest.approx(0.11)
