"""benchmarks/seed_table.py on a synthetic `dvc exp show --json` tree."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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
    assert "| ekagen | 0.120 ± 0.020 |" in seed_table.markdown(table)


def test_a_single_seed_has_no_sd():
    table = seed_table.seed_table([_row("workspace", 42, 0.1)],
                                  {"seed": 1, "train": {"lr": 0.0005}})
    assert table["over_seeds"]["ekagen.bleu4"]["sd"] is None
    assert "| ekagen | 0.100 |" in seed_table.markdown(table)
