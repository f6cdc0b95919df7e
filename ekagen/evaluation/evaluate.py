"""The ``evaluate`` stage's work: EKAGen and the reference systems on the whole test split.

Four systems are scored against the same references: EKAGen (through
:class:`~ekagen.inference.ReportWriter`, the path ``ekagen generate`` takes), the most
frequent training report, the nearest training neighbour in DiagnosisBot's feature space,
and, not a baseline, the unedited IEK reports the decoder read, so the table shows what
decoding adds to its knowledge. Every test study is scored, or the stage fails.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ekagen.evaluation.baselines import most_frequent_report, nearest_neighbour_reports
from ekagen.evaluation.html import overlay_png, write_gallery
from ekagen.evaluation.run import ScoredSystems, score_systems
from ekagen.inference import Report, ReportWriter
from ekagen.labeler.select import Labeler
from ekagen.observations import OBSERVATIONS


@dataclass
class EvaluationResult:
    reports: list[Report]  # EKAGen's, in test-split order
    systems: dict[str, list[str]]
    scored: ScoredSystems  # metrics, per-class scores, labels and per-study statistics

    @property
    def flat(self) -> dict:
        """``<system>.<metric>`` and ``test_studies``: metrics/eval.json."""
        return self.scored.flat

    @property
    def per_class(self) -> dict:
        return self.scored.per_class


def evaluate_test_split(writer: ReportWriter, studies: pd.DataFrame, images: np.ndarray,
                        features: np.ndarray, meteor: bool,
                        progress: bool = True, labeler: Labeler | None = None
                        ) -> EvaluationResult:
    """Write and score every test study. ``images`` is the image cache, ``features`` the
    per-(study, view) DiagnosisBot features the ``adm`` stage saved; ``labeler`` labels
    generated and reference reports for CE (default: the rule labeler)."""
    split = studies["split"].to_numpy()
    test_rows, train_rows = np.flatnonzero(split == "test"), np.flatnonzero(split == "train")
    if not len(test_rows):
        raise ValueError("no test studies in data/prepared")
    reports = writer.write(np.asarray(images[test_rows]), progress=progress)
    references = studies["report"].iloc[test_rows].tolist()
    train_reports = studies["report"].iloc[train_rows].tolist()
    study_features = np.asarray(features, dtype=np.float32).mean(axis=1)
    systems = {
        "ekagen": [r.report for r in reports],
        "most_frequent": [most_frequent_report(train_reports)] * len(test_rows),
        "nearest_neighbour": nearest_neighbour_reports(
            study_features[train_rows], train_reports, study_features[test_rows]),
        "knowledge": [writer.knowledge_text(r.knowledge) for r in reports],
    }
    scored = score_systems(systems, references, meteor, labeler)
    if scored.flat["test_studies"] != len(test_rows):
        raise RuntimeError("scored studies differ from the test split")
    return EvaluationResult(reports, systems, scored)


def generations_table(studies: pd.DataFrame, result: EvaluationResult) -> pd.DataFrame:
    """One row per test study: every system's report and the knowledge EKAGen read."""
    test = studies[studies["split"] == "test"]
    return pd.DataFrame({
        "id": test["id"].to_numpy(), "reference": test["report"].tolist(),
        "generated": result.systems["ekagen"],
        "most_frequent": result.systems["most_frequent"],
        "nearest_neighbour": result.systems["nearest_neighbour"],
        "knowledge": result.systems["knowledge"],
        "knowledge_rule": [r.knowledge.rule for r in result.reports],
        "knowledge_key": [r.knowledge.key for r in result.reports],
        "knowledge_reports": [list(r.knowledge.report_ids) for r in result.reports],
    })


def write_f1_table(per_class: dict, path: Path) -> None:
    """Per-observation F1 of every system, the CSV ``dvc plots`` draws as bars."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        table = csv.writer(handle)
        table.writerow(["observation", "system", "f1"])
        for system, classes in per_class.items():
            for name in OBSERVATIONS:
                table.writerow([name, system, round(classes[name]["f1"], 6)])


def write_test_gallery(path: str | Path, studies: pd.DataFrame, images: np.ndarray,
                       result: EvaluationResult, picks: Sequence[int]) -> Path:
    """The HTML gallery of test studies ``picks`` (positions in the test split): first view,
    its ADM, diagnosis, knowledge, generated and reference reports with the labels CE used."""
    path = Path(path)
    folder = path.with_suffix("")
    test_rows = np.flatnonzero((studies["split"] == "test").to_numpy())
    rows = []
    for i in sorted(picks):
        row, report = int(test_rows[i]), result.reports[i]
        sid = str(studies["id"].iloc[row])
        reference = str(studies["report"].iloc[row])
        overlay_png(np.asarray(images[row, 0]), None, folder / f"{sid}_image.png")
        overlay_png(np.asarray(images[row, 0]), report.masks[0], folder / f"{sid}_adm.png")
        labels = result.scored.labels  # what CE counted: the evaluation's labeler
        rows.append({
            "id": sid, "image": f"{folder.name}/{sid}_image.png",
            "adm": f"{folder.name}/{sid}_adm.png", "diagnosis": report.diagnosis,
            "knowledge": result.systems["knowledge"][i],
            "knowledge_rule": f"{report.knowledge.rule} {report.knowledge.key}",
            "generated": report.report, "reference": reference,
            "generated_labels": labels["ekagen"][i], "reference_labels": labels["reference"][i]})
    return write_gallery(path, rows)
