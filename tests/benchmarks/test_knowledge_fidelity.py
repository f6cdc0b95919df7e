"""benchmarks/knowledge_fidelity.py on the tiny pipeline's trained rounds."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from benchmarks.knowledge_fidelity import Split, brevity_penalty, score
from tests.conftest import REPO

KNOWLEDGE = ["the heart is enlarged . there is a small right pleural effusion .",
             "the lungs are clear . no pneumothorax .",
             "there is a left lower lobe consolidation ."]


def _split() -> Split:
    references = ["the heart is enlarged . no effusion .", "the lungs are clear .",
                  "left lower lobe consolidation ."]
    return Split(None, references, KNOWLEDGE)  # type: ignore[arg-type]


def test_a_report_that_drops_a_finding_of_its_knowledge_loses_fidelity_recall_only():
    same = score(KNOWLEDGE, _split())
    assert same["finding_recall"] == same["finding_precision"] == 1.0
    dropped = ["the heart is enlarged .", KNOWLEDGE[1], KNOWLEDGE[2]]
    scores = score(dropped, _split())
    assert scores["finding_recall"] == pytest.approx(2 / 3, abs=1e-6)  # effusion dropped
    assert scores["finding_precision"] == 1.0
    assert scores["fidelity_micro_f1"] < same["fidelity_micro_f1"]
    invented = [KNOWLEDGE[0], "there is a right pneumothorax .", KNOWLEDGE[2]]
    assert score(invented, _split())["finding_precision"] == 0.75


def test_fidelity_scores_knowledge_against_itself_and_longer_reports_with_a_higher_eos_bar(
        tiny_dag, tmp_path):
    root, env = tiny_dag
    params = yaml.safe_load((root / "params.yaml").read_text())
    run = tmp_path / "pipeline" / f"seed{params['seed']}"
    run.mkdir(parents=True)
    (run / "gid").symlink_to(root / "data" / "gid")
    (run / "params.yaml").write_text((root / "params.yaml").read_text())
    out = tmp_path / "fidelity.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/knowledge_fidelity.py", "--runs",
         f"pipeline={tmp_path / 'pipeline'}", "--seeds", str(params["seed"]), "--rounds", "r0",
         "r1", "--eos", "0", "0.5", "0.9", "--rules", "likelihood", "threshold",
         "--train-studies", "6", "--data", str(root / "data"), "--params",
         str(root / "params.yaml"), "--json", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert set(result["knowledge_text"]) == {"val", "val:threshold", "train"}
    for split in ("val", "val:threshold", "train"):  # knowledge read against its own labels
        text = result["knowledge_text"][split]
        assert text["fidelity_micro_f1"] == 1.0
        assert text["finding_recall"] == text["finding_precision"]
    decodes = result["decodes"]
    assert [(d["round"], d["eos"]) for d in decodes] == [
        (r, e) for r in ("r0", "r1") for e in (0.0, 0.5, 0.9)]
    assert all(set(d) == {"run", "seed", "round", "eos", "val", "val:threshold",
                                "train"} for d in decodes)
    for round_key in ("r0", "r1"):  # a higher bar for ending never ends a report sooner
        lengths = [d["val"]["mean_length"] for d in decodes if d["round"] == round_key]
        assert lengths == sorted(lengths)
    assert set(result["over_seeds"]) == {f"pipeline {r} eos={e}" for r in ("r0", "r1")
                                         for e in (0.0, 0.5, 0.9)}


def test_fidelity_refuses_a_folder_without_trained_rounds(tmp_path):
    done = subprocess.run(
        [sys.executable, "benchmarks/knowledge_fidelity.py", "--runs", f"x={tmp_path}",
         "--seeds", "1"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "no trained round" in done.stderr


def test_brevity_penalty_separates_short_reports_from_wrong_ones():
    from pycocoevalcap.bleu.bleu import Bleu

    references = ["the heart is normal in size . the lungs are clear . there is no effusion ."
                  ] * 4
    short = ["the heart is normal in size ."] * 4  # every word right, half the length
    penalty = brevity_penalty(short, references)
    assert penalty == pytest.approx(float(np.exp(1 - 17 / 7)), rel=1e-9)
    assert brevity_penalty(references, references) == 1.0
    # pycocoevalcap's BLEU-4 is the penalty times the n-gram precisions (all 1 here)
    bleu = Bleu(4).compute_score({i: [r] for i, r in enumerate(references)},
                                 {i: [s] for i, s in enumerate(short)}, verbose=0)[0][3]
    assert bleu == pytest.approx(penalty, rel=1e-4)
    scores = score(short, Split(None, references, short))  # type: ignore[arg-type]
    assert scores["bleu4_without_brevity"] == pytest.approx(1.0, rel=1e-4)
