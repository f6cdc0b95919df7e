"""Scoring systems against the same references: every study scored, or an error.

One pass per system gives the corpus metrics of ``metrics/eval.json`` (NLG and every CE
protocol) and the per-study statistics the paired bootstrap resamples, so the intervals are of
exactly the metrics in the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ekagen.evaluation.bootstrap import StudyStatistics, paired_bootstrap, study_statistics
from ekagen.evaluation.ce import ce_scores, label_values
from ekagen.evaluation.nlg import nlg_scores_with_studies
from ekagen.labeler.select import Labeler


@dataclass
class ScoredSystems:
    flat: dict  # ``<system>.<metric>``, ``test_studies``
    per_class: dict  # system -> observation -> primary-protocol P/R/F1
    statistics: dict[str, StudyStatistics]  # per-study sufficient statistics, for bootstrap
    labels: dict[str, np.ndarray]  # label values (n, 14) of each system and "reference"

    def bootstrap(self, primary: str, resamples: int, seed: int) -> dict:
        """Paired bootstrap intervals of every metric, and of ``primary`` minus each other."""
        return paired_bootstrap(self.statistics, primary=primary, resamples=resamples,
                                seed=seed)


def score_systems(systems: Mapping[str, Sequence[str]], references: Sequence[str],
                  meteor: bool = True, labeler: Labeler | None = None) -> ScoredSystems:
    """NLG metrics and every CE protocol of each system against the same references.

    ``labeler`` labels both sides (default: the rule labeler). Raises when a system does not
    cover every reference.
    """
    if not references:
        raise ValueError("no reference reports: the test split is empty")
    reference_values = label_values(references, labeler)
    flat: dict = {"test_studies": len(references)}
    per_class: dict = {}
    statistics: dict[str, StudyStatistics] = {}
    labels: dict[str, np.ndarray] = {"reference": reference_values}
    for name, generated in systems.items():
        if len(generated) != len(references):
            raise RuntimeError(f"system {name!r} produced {len(generated)} reports for "
                               f"{len(references)} test studies: every study must be scored")
        empty = [i for i, g in enumerate(generated) if not g.strip()]
        texts = [g if g.strip() else "." for g in generated]  # pycocoevalcap needs a token
        nlg, per_study = nlg_scores_with_studies(texts, references, meteor)
        values = label_values(list(generated), labeler)  # the labeler sees what was written
        ce = ce_scores(values, reference_values)
        per_class[name] = ce.pop("per_class")
        labels[name] = values
        statistics[name] = study_statistics(texts, references, values, reference_values,
                                            per_study=per_study)
        flat.update({f"{name}.{k}": v for k, v in {**nlg, **ce}.items()})
        flat[f"{name}.empty_reports"] = len(empty)
    return ScoredSystems(flat, per_class, statistics, labels)
