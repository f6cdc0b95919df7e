"""Public API: shapes, column order, No Finding, raw vs cleaned text, speed sanity."""

from __future__ import annotations

import math
import re
import time

import pandas as pd

from ekagen.labeler import label_report, label_reports, normalize
from ekagen.observations import OBSERVATIONS

REPORTS = [
    "The heart is normal in size. The mediastinum is unremarkable. The lungs are clear.",
    "Mild cardiomegaly. Small bilateral pleural effusions, left greater than right. "
    "Patchy right basilar opacity may represent atelectasis or early pneumonia.",
    "1. No acute cardiopulmonary abnormality. 2. Right IJ catheter tip in the SVC.",
    "Left apical pneumothorax, approximately 2 cm. No mediastinal shift. "
    "Healing left posterior rib fractures.",
    "Heart size upper limits of normal. Pulmonary vascularity within normal limits. "
    "No focal consolidation, pleural effusion or pneumothorax. Degenerative changes of the spine.",
    "Stable calcified granuloma in the right lower lobe. No suspicious pulmonary nodule. "
    "Blunting of the right costophrenic angle XXXX represents pleural thickening or "
    "small effusion.",
    "Interval removal of the endotracheal tube. Persistent retrocardiac consolidation; "
    "superimposed infection cannot be excluded. Moderate interstitial edema has improved.",
]


def _r2gen_style(report: str) -> str:
    """Our own imitation of R2Gen cleaning: lower case, sentences joined by ' . ', list
    numbers and most punctuation removed, slashes deleted without a space."""
    text = re.sub(r"\b\d+\.\s", " ", report)
    sentences = re.split(r"\.\s+|\.$", text.strip().lower())
    cleaned = []
    for sentence in sentences:
        sentence = sentence.replace("/", "").replace("'", "")
        sentence = re.sub(r"[.,?;*!%^&_+():\[\]{}]", "", sentence).strip()
        if sentence:
            cleaned.append(sentence)
    return " . ".join(cleaned) + " ."


def test_label_report_has_every_observation_in_order() -> None:
    labels = label_report(REPORTS[1])
    assert list(labels) == list(OBSERVATIONS)
    assert all(isinstance(v, float) for v in labels.values())
    assert all(math.isnan(v) or v in (1.0, 0.0, -1.0) for v in labels.values())


def test_label_reports_frame_shape_columns_and_order() -> None:
    frame = label_reports(REPORTS)
    assert list(frame.columns) == list(OBSERVATIONS)
    assert len(frame) == len(REPORTS)
    assert all(str(dtype) == "float64" for dtype in frame.dtypes)
    for i, text in enumerate(REPORTS):
        expected = label_report(text)
        row = frame.iloc[i]
        for name in OBSERVATIONS:
            assert (math.isnan(row[name]) and math.isnan(expected[name])) or \
                row[name] == expected[name]


def test_label_reports_empty_sequence_and_series_index() -> None:
    empty = label_reports([])
    assert list(empty.columns) == list(OBSERVATIONS) and len(empty) == 0
    series = pd.Series(REPORTS[:2], index=["a", "b"])
    assert list(label_reports(series).index) == ["a", "b"]


def test_no_finding_rule() -> None:
    assert label_report(REPORTS[0])["No Finding"] == 1.0
    # a finding withholds No Finding: blank, as CheXpert writes it (1 or blank)
    assert math.isnan(label_report(REPORTS[1])["No Finding"])
    # support devices alone do not make a finding
    assert label_report("Left chest pacemaker. Lungs clear.")["No Finding"] == 1.0
    # an uncertain finding does
    assert math.isnan(label_report("Possible small left effusion.")["No Finding"])
    # negatives only: still no finding; nothing mentioned at all: still 1
    assert label_report("No pneumothorax.")["No Finding"] == 1.0
    # CheXpert's "other findings" withhold it too
    assert math.isnan(label_report("Degenerative changes of the thoracic spine.")["No Finding"])


def test_empty_report_is_all_blank() -> None:
    for text in ("", "   ", None, float("nan")):
        labels = label_report(text)  # type: ignore[arg-type]
        assert all(math.isnan(v) for v in labels.values())


def test_raw_and_cleaned_text_agree() -> None:
    raw = label_reports(REPORTS)
    cleaned = label_reports([_r2gen_style(r) for r in REPORTS])
    pd.testing.assert_frame_equal(raw, cleaned)


def test_glued_words_from_cleaning_are_split() -> None:
    assert normalize("Scarring/atelectasis at the base.") == "scarring atelectasis at the base"
    glued = label_report("left basilar scarringatelectasis . pacemakerdefibrillator .")
    assert glued["Atelectasis"] == 1.0 and glued["Support Devices"] == 1.0


def test_throughput_sanity() -> None:
    texts = [f"{r} Comparison exam {i}." for i in range(150) for r in REPORTS]
    start = time.perf_counter()
    frame = label_reports(texts)
    elapsed = time.perf_counter() - start
    assert len(frame) == len(texts)
    print(f"labelled {len(texts)} reports in {elapsed:.2f} s")
