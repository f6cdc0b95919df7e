"""The `ekagen` subcommands through their real entry point, exit codes included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ekagen.observations import OBSERVATIONS


def _ekagen(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ekagen.cli", *args], capture_output=True,
                          text=True, cwd=cwd, check=False)


def test_label_writes_the_csv_and_exits_zero(tmp_path):
    reports = tmp_path / "r.txt"
    reports.write_text("No acute cardiopulmonary process.\n"
                       "Small left pleural effusion. Mild cardiomegaly.\n"
                       "Possible right lower lobe pneumonia.\n")
    out = tmp_path / "l.csv"
    done = _ekagen("label", str(reports), "-o", str(out))
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out)
    assert len(table) == 3
    assert table.loc[1, "Pleural Effusion"] == 1 and table.loc[1, "Cardiomegaly"] == 1
    assert table.loc[2, "Pneumonia"] == -1 and pd.isna(table.loc[0, "Pneumonia"])
    positives = int((table.iloc[:, 1:] == 1).to_numpy().sum())
    assert f"labelled 3 report(s), {positives} positive finding(s)" in done.stderr


def test_label_to_stdout_and_a_missing_file(tmp_path):
    reports = tmp_path / "r.txt"
    reports.write_text("The heart is enlarged.\n")
    done = _ekagen("label", str(reports))
    assert done.returncode == 0 and done.stdout.splitlines()[0].startswith("report,")
    missing = _ekagen("label", str(tmp_path / "none.txt"))
    assert missing.returncode == 2 and "none.txt" in missing.stderr


def test_every_subcommand_has_help():
    for sub in ("label", "generate", "evaluate", "preset"):
        done = _ekagen(sub, "--help")
        assert done.returncode == 0 and f"ekagen {sub}" in done.stdout


# --- label with CheXbert from local files --------------------------------------------------

def _reports(tmp_path) -> Path:
    path = tmp_path / "r.txt"
    path.write_text("No acute cardiopulmonary process.\n"
                    "Small left pleural effusion. Mild cardiomegaly.\n"
                    "Possible right lower lobe pneumonia. The heart is enlarged.\n")
    return path


def test_label_with_chexbert_from_a_local_checkpoint(tmp_path):
    from ekagen.labeler.chexbert import load_chexbert
    from tests.labeler.tiny_chexbert import write_tiny_chexbert

    checkpoint, bert = write_tiny_chexbert(tmp_path / "chexbert", seed=1)
    out = tmp_path / "l.csv"
    done = _ekagen("label", str(_reports(tmp_path)), "-o", str(out), "--labeler", "chexbert",
                   "--chexbert-checkpoint", str(checkpoint), "--chexbert-bert-dir", str(bert),
                   "--batch-size", "2")
    assert done.returncode == 0, done.stderr
    table = pd.read_csv(out)
    assert list(table.columns) == ["report", *OBSERVATIONS]
    direct = load_chexbert(checkpoint, bert).label(table["report"].tolist())
    assert table[list(OBSERVATIONS)].astype(float).equals(direct.astype(float))


def test_label_with_chexbert_reads_the_paths_from_params_yaml(tmp_path):
    from tests.labeler.tiny_chexbert import write_tiny_chexbert

    checkpoint, bert = write_tiny_chexbert(tmp_path / "chexbert")
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"evaluate": {"chexbert_checkpoint": str(checkpoint),
                                     "chexbert_bert_dir": str(bert)}}))
    done = _ekagen("label", str(_reports(tmp_path)), "--labeler", "chexbert", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 4  # header + 3 reports


def test_label_with_chexbert_says_what_is_missing(tmp_path):
    done = _ekagen("label", str(_reports(tmp_path)), "--labeler", "chexbert", cwd=tmp_path)
    assert done.returncode == 2 and "chexbert.pth" in done.stderr
    assert "Traceback" not in done.stderr
    from tests.labeler.tiny_chexbert import write_tiny_chexbert

    _, bert = write_tiny_chexbert(tmp_path / "chexbert")
    done = _ekagen("label", str(_reports(tmp_path)), "--labeler", "chexbert",
                   "--chexbert-checkpoint", str(tmp_path / "nowhere.pth"),
                   "--chexbert-bert-dir", str(bert), cwd=tmp_path)
    assert done.returncode == 2 and "nowhere.pth" in done.stderr
    done = _ekagen("label", str(_reports(tmp_path)), "--labeler", "chexbert",
                   "--chexbert-checkpoint", str(tmp_path / "nowhere.pth"),
                   "--chexbert-bert-dir", str(tmp_path), cwd=tmp_path)
    assert done.returncode == 2 and "config.json" in done.stderr


# --- evaluate: every protocol, intervals, a paired comparison ------------------------------

REFERENCES = ["the heart is enlarged . small left pleural effusion .",
              "no acute cardiopulmonary process . the lungs are clear .",
              "right lower lobe consolidation . no pneumothorax .",
              "mild pulmonary edema . the heart is enlarged .",
              "no pleural effusion or pneumothorax . normal heart size .",
              "left basilar atelectasis . no effusion ."] * 3


def _generations(tmp_path, name: str, reports: list[str], ids=None, references=None) -> Path:
    ids = ids if ids is not None else [f"s{i}" for i in range(len(reports))]
    frame = {"id": ids, "generated": reports}
    if references is not None:
        frame["reference"] = references
    path = tmp_path / name
    pd.DataFrame(frame).to_csv(path, index=False)
    return path


def test_evaluate_every_protocol_with_intervals_and_a_paired_comparison(tmp_path):
    good = _generations(tmp_path, "good.csv", REFERENCES, references=REFERENCES)
    bad_reports = ["no acute cardiopulmonary process ."] * len(REFERENCES)
    # the comparison file lists the studies in another order: rows are matched by id
    ids = [f"s{i}" for i in range(len(REFERENCES))]
    bad = _generations(tmp_path, "bad.csv", bad_reports[::-1], ids=ids[::-1])
    done = _ekagen("evaluate", "--generations", str(good), "--compare", str(bad),
                   "--no-meteor", "--bootstrap", "300", "--seed", "4")
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    metrics, intervals = payload["metrics"], payload["intervals"]
    assert metrics["system.bleu4"] == pytest.approx(1.0, abs=1e-6)
    assert metrics["system.ce14_micro_f1"] == 1.0 and metrics["system.ce5u_macro_f1"] == 1.0
    for key in ("ce14_micro_f1", "ce14_macro_f1", "ce14_example_f1", "ce5_micro_f1",
                "ce5_macro_f1", "ce14u_micro_f1", "ce14u_example_f1", "ce5u_micro_f1"):
        assert f"compare.{key}" in metrics and key in intervals["systems"]["compare"]
    assert intervals["resamples"] == 300 and intervals["seed"] == 4
    gap = intervals["differences"]["system-compare"]["ce14_micro_f1"]
    assert gap["value"] == pytest.approx(1.0 - metrics["compare.ce14_micro_f1"], abs=1e-6)
    assert gap["low"] > 0 and gap["p_value"] < 0.05
    assert "system-compare" in done.stderr and "ce14_micro_f1" in done.stderr


def test_evaluate_against_itself_is_an_exact_tie(tmp_path):
    reports = [r.replace("enlarged", "normal") for r in REFERENCES]
    mine = _generations(tmp_path, "mine.csv", reports, references=REFERENCES)
    same = _generations(tmp_path, "same.csv", reports)
    out = tmp_path / "scores.json"
    done = _ekagen("evaluate", "--generations", str(mine), "--compare", str(same),
                   "--no-meteor", "--bootstrap", "100", "-o", str(out))
    assert done.returncode == 0, done.stderr
    difference = json.loads(out.read_text())["intervals"]["differences"]["system-compare"]
    assert difference["bleu4"] == {"value": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}


def test_evaluate_compare_errors_name_the_problem(tmp_path):
    mine = _generations(tmp_path, "mine.csv", REFERENCES, references=REFERENCES)
    n = len(REFERENCES)
    fewer = _generations(tmp_path, "fewer.csv", REFERENCES[:-1],
                         ids=[f"s{i}" for i in range(n - 1)])
    done = _ekagen("evaluate", "--generations", str(mine), "--compare", str(fewer), "--no-meteor")
    assert done.returncode == 2 and f"s{n - 1}" in done.stderr and "only in" in done.stderr
    twice = _generations(tmp_path, "twice.csv", REFERENCES, ids=["s0"] * n)
    done = _ekagen("evaluate", "--generations", str(mine), "--compare", str(twice), "--no-meteor")
    assert done.returncode == 2 and "'s0' appears more than once" in done.stderr
    other_refs = _generations(tmp_path, "refs.csv", REFERENCES,
                              references=["something else ."] + REFERENCES[1:])
    done = _ekagen("evaluate", "--generations", str(mine), "--compare", str(other_refs),
                   "--no-meteor")
    assert done.returncode == 2 and "'s0' has a different reference" in done.stderr
    no_ids = tmp_path / "noid.csv"
    pd.DataFrame({"generated": REFERENCES}).to_csv(no_ids, index=False)
    done = _ekagen("evaluate", "--generations", str(mine), "--compare", str(no_ids),
                   "--no-meteor")
    assert done.returncode == 2 and "noid.csv" in done.stderr and "'id'" in done.stderr
    done = _ekagen("evaluate", "--generations", str(tmp_path / "none.csv"))
    assert done.returncode == 2 and "none.csv: generations file not found" in done.stderr


def test_evaluate_with_chexbert_labels_both_sides(tmp_path):
    from tests.labeler.tiny_chexbert import write_tiny_chexbert

    checkpoint, bert = write_tiny_chexbert(tmp_path / "chexbert")
    mine = _generations(tmp_path, "mine.csv", REFERENCES[::-1], references=REFERENCES)
    rules = _ekagen("evaluate", "--generations", str(mine), "--no-meteor", "--bootstrap", "50")
    chexbert = _ekagen("evaluate", "--generations", str(mine), "--no-meteor", "--bootstrap",
                       "50", "--labeler", "chexbert", "--chexbert-checkpoint", str(checkpoint),
                       "--chexbert-bert-dir", str(bert))
    assert rules.returncode == 0 and chexbert.returncode == 0, chexbert.stderr
    by_rules, by_chexbert = json.loads(rules.stdout), json.loads(chexbert.stdout)
    assert by_chexbert["ce_labeler"] == "chexbert" and by_rules["ce_labeler"] == "rules"
    # the NLG side does not depend on the labeler; the CE side does (random tiny weights)
    assert by_chexbert["metrics"]["system.bleu4"] == by_rules["metrics"]["system.bleu4"]
    assert by_chexbert["per_class"] != by_rules["per_class"]


def test_the_installed_console_script_runs_every_subcommand(tmp_path):
    """The `ekagen` script pip installed (not only `python -m ekagen.cli`), exit codes too."""
    script = Path(sys.executable).with_name("ekagen")
    assert script.is_file(), f"{script}: console script not installed (make setup)"
    reports = _reports(tmp_path)
    done = subprocess.run([str(script), "label", str(reports)], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 4, done.stderr
    done = subprocess.run([str(script), "preset"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and "paper" in done.stdout.split()
    mine = _generations(tmp_path, "mine.csv", REFERENCES, references=REFERENCES)
    done = subprocess.run([str(script), "evaluate", "--generations", str(mine), "--no-meteor",
                           "--bootstrap", "20"], capture_output=True, text=True, check=False)
    assert done.returncode == 0 and json.loads(done.stdout)["metrics"]["test_studies"] == 18
    done = subprocess.run([str(script), "generate", "--model", str(tmp_path), str(reports)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "ekagen generate: error" in done.stderr
    done = subprocess.run([str(script), "frobnicate"], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 2 and "invalid choice" in done.stderr


def test_evaluate_reads_csv_cells_as_written(tmp_path):
    """Ids keep leading zeros, an empty generated cell is an empty report (scored, counted),
    and a missing id is an error naming the row."""
    n = len(REFERENCES)
    ids = [f"{i:03d}" for i in range(n)]
    reports = ["" if i == 2 else r for i, r in enumerate(REFERENCES)]
    mine = _generations(tmp_path, "mine.csv", reports, ids=ids, references=REFERENCES)
    theirs = _generations(tmp_path, "theirs.csv", REFERENCES, ids=ids)
    done = _ekagen("evaluate", "--generations", str(mine), "--compare", str(theirs),
                   "--no-meteor", "--bootstrap", "20")
    assert done.returncode == 0, done.stderr
    metrics = json.loads(done.stdout)["metrics"]
    assert metrics["system.empty_reports"] == 1 and metrics["compare.empty_reports"] == 0
    holes = _generations(tmp_path, "holes.csv", REFERENCES, ids=[*ids[:-1], ""])
    done = _ekagen("evaluate", "--generations", str(mine), "--compare", str(holes),
                   "--no-meteor")
    assert done.returncode == 2 and f"holes.csv: row {n}: no 'id'" in done.stderr
