"""Scoring systems on the test split: every study scored, or an error."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ekagen.evaluation.ce import ce_scores, positives
from ekagen.evaluation.nlg import nlg_scores


def score_systems(systems: Mapping[str, Sequence[str]], references: Sequence[str],
                  meteor: bool = True) -> tuple[dict, dict, dict[str, np.ndarray]]:
    """NLG and CE metrics of each system against the same references.

    Returns flat metrics (``<system>.<metric>``), per-class CE per system, and each system's
    positive-label matrix. Raises when any system does not cover every reference.
    """
    if not references:
        raise ValueError("no reference reports: the test split is empty")
    reference_positive = positives(references)
    flat: dict = {"test_studies": len(references)}
    per_class: dict = {}
    labels: dict[str, np.ndarray] = {"reference": reference_positive}
    for name, generated in systems.items():
        if len(generated) != len(references):
            raise RuntimeError(f"system {name!r} produced {len(generated)} reports for "
                               f"{len(references)} test studies: every study must be scored")
        empty = [i for i, g in enumerate(generated) if not str(g).strip()]
        nlg = nlg_scores([g if g.strip() else "." for g in generated], references, meteor)
        generated_positive = positives(generated)
        ce = ce_scores(generated_positive, reference_positive)
        per_class[name] = ce.pop("per_class")
        labels[name] = generated_positive
        flat.update({f"{name}.{k}": v for k, v in {**nlg, **ce}.items()})
        flat[f"{name}.empty_reports"] = len(empty)
    return flat, per_class, labels
