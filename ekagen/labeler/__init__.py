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

Conventions: the CheXpert labeler's
------------------------------------
The rules follow the published conventions of the CheXpert labeler (Irvin et al. 2019,
stanfordmlgroup/chexpert-labeler): its mention and unmention vocabulary, negation and
uncertainty, and its aggregation. On that labeler's own example (the four reports of its
``sample_reports.csv``) the output equals its ``labeled_reports.csv`` in every column
(``tests/labeler/test_chexpert_conventions.py``). In detail:

* **Aggregation** over a report's mentions: positive over uncertain over negative.
* **No Finding** is 1 when no mention other than of Support Devices is positive or uncertain,
  and blank otherwise (never 0). Mentions of CheXpert's "other findings" count as findings
  here even though they are none of the 14: emphysema, granuloma, degenerative changes,
  scoliosis, hyperinflation, calcification, blunting, elevation, hernia, volume loss, ...
  (:data:`ekagen.labeler.rules.OTHER_FINDINGS`).
* **CHF rule**: a positive or uncertain "heart failure"/"CHF" is Edema and makes Cardiomegaly
  uncertain.
* **Unmentions**: a calcified nodule is not a Lung Lesion, a pericardial effusion not a Pleural
  Effusion, "massive" not a mass, pleural scarring not a Lung Opacity.
* **Vocabulary**: Lung Opacity includes scarring, peribronchial and wall thickening,
  interstitial and reticular markings, reticulation, increased density and decreased
  translucency; Pleural Other includes fibrosis; vascular or pulmonary congestion,
  indistinctness and vascular prominence are uncertain Edema; blunted costophrenic angles and
  volume loss are "other findings", not Pleural Effusion or Atelectasis.
* **Uncertainty**: "possible", "likely", "may", "suggestive of", "concerning for", "versus",
  "and/or", "borderline" ...; negated uncertainty ("cannot be excluded", "not ruled out") and
  "no new X" are uncertain; a "stable" or "unchanged" heart, cardiomediastinal silhouette or
  mediastinum is uncertain unless it is also called normal.
* **Negation** ("no", "without", "free of", "resolved", "is not seen", "normal") runs over a
  list ("no effusion, consolidation or pneumothorax") and stops at clause breaks ("but",
  "however", "which", "there is", "with", ";"), at words asserting presence ("stable",
  "persistent", "is", ...) and at a new hedge ("no pneumothorax, possible effusion").
* **Only what the vocabulary mentions gets a value**: "heart size is normal" is Cardiomegaly 0
  and "normal cardiomediastinal silhouette" Enlarged Cardiomediastinum 0, but "the lungs are
  clear", "sharp costophrenic angles" and "bones intact" give blanks, as in CheXpert.

Deliberate differences (cases CheXpert is known to get wrong; each is tested)
-----------------------------------------------------------------------------
* A bare organ mention is not a finding. CheXpert lists "the heart", "heart size" and
  "cardiac silhouette" as Cardiomegaly mentions, so any such sentence without a negation
  ("the heart and lungs have not changed") becomes Cardiomegaly 1. Here the heart needs a
  predicate: enlarged (1), normal (0), stable or borderline (uncertain).
* A native valve is not a device: CheXpert's "valve" makes any valve Support Devices; only
  prosthetic or replaced valves are here.
* A disclaimer ("fractures may not be demonstrated") is no mention at all, and plain "X or Y"
  is not a hedge.
* Synonyms CheXpert's lists lack are kept where CheXpert assigns them nothing else: haziness
  and ground glass (Lung Opacity), Kerley lines, venous hypertension and fluid overload
  (Edema), hydro- and haemothorax (Pleural Effusion), pleural plaques, calcification and
  apical caps (Pleural Other), pneumonitis (Pneumonia), and device names such as sternotomy
  wires, clips, stents and ports (Support Devices). Without a dependency parser, negation
  and uncertainty scope is approximated with word windows and clause breaks.

IU X-Ray specifics: anonymisation tokens ("XXXX") are ordinary words, used where they stand
for an angle or a device ("costophrenic XXXX", "sternotomy XXXX"); IU's anonymised hedges
("most XXXX", "XXXX representing") are read as "likely".
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
