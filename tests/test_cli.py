"""The `ekagen` subcommands through their real entry point, exit codes included."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd


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
