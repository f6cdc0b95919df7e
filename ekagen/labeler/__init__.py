"""Rule-based CheXpert labeler for chest X-ray reports.

``label_report(text)`` gives the 14 CheXpert observations of one report (in
:data:`ekagen.observations.OBSERVATIONS` order): 1.0 positive, 0.0 negative, -1.0 uncertain,
NaN not mentioned. ``label_reports(texts)`` does the same for many reports as a DataFrame, and
:mod:`ekagen.labeler.files` reads and writes report files.

The labeler works on raw report text and on R2Gen-cleaned text (lower case, punctuation
stripped, sentences joined by " . ") alike: both are normalised to the same word sequence, and
words that cleaning glued together when it deleted a slash ("scarringatelectasis") are split
again. IU X-Ray anonymisation tokens ("XXXX") are ordinary words, used where they stand for an
angle or a device ("costophrenic XXXX", "sternotomy XXXX"). It needs no model and no download,
and sentences are cached, since reports repeat the same normal sentences: labelling a whole
corpus is cheap enough to run inside ``prepare`` and for every evaluation.

Design choices (where labelers differ)
--------------------------------------
* **No Finding** is 1 when no observation other than Support Devices is positive or uncertain,
  and 0 otherwise, so it is always usable for metrics. It is blank only for an empty report
  (nothing was said at all). CheXpert writes 1 or blank.
* **Aggregation** over a report's mentions: positive over uncertain over negative (CheXpert).
* **Negated uncertainty** ("cannot be excluded", "not ruled out", "cannot exclude", "difficult
  to exclude") is uncertain. "Likely", "probably", "possible", "may", "suggestive of",
  "concerning for", "versus", "and/or", "borderline", "questionable", "unlikely",
  "differential" etc. are uncertain, as in CheXpert ("likely" included). IU's anonymised hedges
  ("most XXXX", "XXXX representing") are read as "likely" and so uncertain. Plain "X or Y" is
  *not* uncertain (CheXpert marks it uncertain); "no new X" is negative (CheXpert: uncertain).
  A disclaimer ("fractures may not be demonstrated") is not a mention.
* **Negation scope** runs from the cue over a list ("no effusion, consolidation or
  pneumothorax") and stops at clause breaks ("but", "however", "although", "which", "there
  is", "with", "other than", ";"), at words that assert presence ("stable", "persistent",
  "is", ...) unless a relation keeps it ("no findings are seen to suggest pneumonia"), and at
  a new hedge ("no pneumothorax, possible effusion"). "No change in X" does not negate X.
* **Normal language** gives negatives: "heart size is normal" -> Cardiomegaly 0; "normal
  cardiomediastinal silhouette" -> Cardiomegaly 0 and Enlarged Cardiomediastinum 0; "the lungs
  are clear" -> Lung Opacity 0; "normal pulmonary vascularity" -> Edema 0; "sharp costophrenic
  angles" -> Pleural Effusion 0; "no acute bony abnormality"/"bones intact" -> Fracture 0.
  A heart at the "upper limits of normal" is normal (Cardiomegaly 0); a "borderline" heart,
  or "upper limits of normal to mildly enlarged", is uncertain Cardiomegaly.
* **Enlarged cardiomediastinal silhouette** is Enlarged Cardiomediastinum 1 and Cardiomegaly
  uncertain (which compartment is enlarged is not said); a "prominent" heart is uncertain
  Cardiomegaly, a "prominent" mediastinum is Enlarged Cardiomediastinum.
* **Lung Lesion** counts nodules, masses, tumours, cancers and "lesions" of the lung, as
  CheXpert does. A (calcified) **granuloma** is *not* a lung lesion: it is a healed benign
  finding that CheXpert does not list either (a "calcified nodule" still counts, being a
  nodule).
* **Lung Opacity** counts opacity, infiltrate, airspace disease, density, haziness and ground
  glass; consolidation, edema or atelectasis do not imply it (no hierarchy is imposed).
* **Edema** includes vascular/pulmonary congestion, CHF and heart failure (positive, where
  CheXpert marks congestion uncertain); heart failure does not add uncertain Cardiomegaly.
* **Atelectasis** includes "atelectatic", collapse (not vertebral) and volume loss.
* **Pleural Effusion** includes "effusion(s)" (not pericardial or joint), pleural fluid and
  blunting of the costophrenic angles.
* **Pleural Other**: pleural thickening, plaques, calcification, pleural(-parenchymal)
  scarring, fibrothorax, apical cap; not pulmonary fibrosis (CheXpert lists "fibrosis" here).
* **Fracture**: fracture(s), fx; a rib "deformity" alone is not a fracture.
* **Support Devices**: tubes, lines, catheters, ports, PICC, pacemakers/ICDs and their leads,
  wires (incl. sternotomy wires), clips, staples, stents, prosthetic valves, orthopaedic
  hardware, drains, coils, etc. "Sternotomy" alone (a history) is not a device; removed
  devices are negative.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from ekagen.labeler.engine import label_text, normalize, split_sentences
from ekagen.observations import OBSERVATIONS

__all__ = ["label_report", "label_reports", "normalize", "split_sentences"]


def _as_text(text: object, position: int | None = None) -> str:
    if text is None or (isinstance(text, float) and text != text):
        return ""
    if not isinstance(text, str):
        where = "" if position is None else f" (report {position})"
        raise TypeError(f"report text must be a string, got {type(text).__name__}{where}")
    return text


def label_report(text: str) -> dict[str, float]:
    """Label one report: {observation: 1.0 | 0.0 | -1.0 | nan} in OBSERVATIONS order."""
    return dict(zip(OBSERVATIONS, label_text(_as_text(text)), strict=True))


def label_reports(texts: Sequence[str]) -> pd.DataFrame:
    """Label many reports: one row per text (same order), one float column per observation.

    ``None`` or NaN texts are treated as empty reports (every value NaN).
    """
    rows = [label_text(_as_text(t, i)) for i, t in enumerate(texts)]
    frame = pd.DataFrame(rows, columns=list(OBSERVATIONS), dtype=float)
    if isinstance(texts, pd.Series):
        frame.index = texts.index
    return frame
