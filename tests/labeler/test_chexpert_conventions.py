"""The CheXpert labeler's conventions, and the few places where ours deliberately differ.

``SAMPLE`` is the CheXpert labeler's own example: the four reports of its ``sample_reports.csv``
with the labels its ``labeled_reports.csv`` gives them (stanfordmlgroup/chexpert-labeler, MIT
licence), used here as test data. Every other sentence was written for these tests.
"""

from __future__ import annotations

import math

import pytest

from ekagen.labeler import label_reports
from ekagen.observations import OBSERVATIONS
from tests.labeler.test_labeler_rules import check

P, N, U, B = 1.0, 0.0, -1.0, None  # B: blank (not mentioned)

SAMPLE = [
    ("Heart size normal and lungs are clear. No edema or pneumonia. No effusion",
     {"No Finding": P, "Cardiomegaly": N, "Edema": N, "Pneumonia": N, "Pleural Effusion": N}),
    ("1. Left pleural effusion with adjacent atelectasis. Right effusion is also present.\n\n"
     "2. Cardiomegaly without overt edema.",
     {"Cardiomegaly": P, "Edema": N, "Atelectasis": P, "Pleural Effusion": P}),
    ("Minimal patchy airspace disease within the lingula, may reflect atelectasis or "
     "consolidation.",
     {"Lung Opacity": P, "Consolidation": U, "Atelectasis": U}),
    ("1. Stable mild cardiomegaly. 2. Hyperexpanded but clear lungs.", {"Cardiomegaly": P}),
]


def _same(got: float, want: float | None) -> bool:
    return math.isnan(got) if want is None else got == want


def test_chexpert_sample_reports_match_exactly() -> None:
    """All 14 columns of all four reports, blanks included."""
    table = label_reports([text for text, _ in SAMPLE])
    for row, (_, expected) in enumerate(SAMPLE):
        for name in OBSERVATIONS:
            want = expected.get(name)
            got = table.iloc[row][name]
            assert _same(got, want), f"report {row + 1}, {name}: want {want}, got {got}"


NO_FINDING = [
    # any of CheXpert's "other findings", positive or uncertain, withholds No Finding
    ("Heart size is normal. Calcified granuloma in the right upper lobe.", {"No Finding": B}),
    ("Lungs are hyperinflated. No pneumothorax.", {"No Finding": B}),
    ("Changes of emphysema.", {"No Finding": B}),
    ("Mild dextroscoliosis of the thoracic spine.", {"No Finding": B}),
    ("Thoracic scoliosis.", {"No Finding": B}),
    ("Aortic calcification.", {"No Finding": B}),
    ("Possible small hiatal hernia.", {"No Finding": B}),
    ("Atherosclerotic aorta. No effusion.", {"No Finding": B}),
    # a negated one does not
    ("No emphysema. No pneumothorax.", {"No Finding": P}),
    ("No hiatal hernia.", {"No Finding": P}),
    # support devices never withhold it
    ("Right IJ catheter tip in the SVC. No pneumothorax.", {"No Finding": P,
                                                           "Support Devices": P}),
    # No Finding is 1 or blank, never 0
    ("Small left pleural effusion.", {"No Finding": B, "Pleural Effusion": P}),
]

CHEXPERT_RULES = [
    # CHF exception: heart failure makes Cardiomegaly uncertain
    ("Findings consistent with CHF.", {"Edema": P, "Cardiomegaly": U}),
    ("Congestive heart failure.", {"Edema": P, "Cardiomegaly": U}),
    ("Possible heart failure.", {"Edema": U, "Cardiomegaly": U}),
    ("No evidence of heart failure.", {"Edema": N, "Cardiomegaly": B}),
    ("Cardiomegaly and CHF.", {"Cardiomegaly": P}),  # positive over uncertain
    # unmention lists
    ("Calcified nodule in the left lower lobe.", {"Lung Lesion": B, "No Finding": B}),
    ("Small pericardial effusion.", {"Pleural Effusion": B}),
    ("Massive cardiomegaly.", {"Lung Lesion": B, "Cardiomegaly": P}),
    ("Right apical pleural scarring.", {"Lung Opacity": B, "Pleural Other": P}),
    # mention vocabulary
    ("Peribronchial thickening.", {"Lung Opacity": P}),
    ("Increased interstitial markings.", {"Lung Opacity": P}),
    ("Reticulation at the bases.", {"Lung Opacity": P}),
    ("Scarring in the left base.", {"Lung Opacity": P}),
    ("Decreased translucency of the right hemithorax.", {"Lung Opacity": P}),
    ("Vascular indistinctness.", {"Edema": U}),
    ("Pulmonary vascular congestion.", {"Edema": U}),
    ("Pulmonary fibrosis.", {"Pleural Other": P}),
    ("Cavitary lesion in the right upper lobe.", {"Lung Lesion": P}),
    # stable heart or silhouette: uncertain; normal comes first
    ("Stable cardiomediastinal silhouette.", {"Enlarged Cardiomediastinum": U,
                                              "Cardiomegaly": B, "No Finding": B}),
    ("Heart size is stable.", {"Cardiomegaly": U}),
    ("The heart size is stable and normal.", {"Cardiomegaly": N}),
    ("Stable normal cardiomediastinal silhouette.", {"Enlarged Cardiomediastinum": N}),
    # aggregation precedence
    ("No effusion on the left. Right effusion.", {"Pleural Effusion": P}),
    ("No effusion on the left. Possible right effusion.", {"Pleural Effusion": U}),
    # negated uncertainty
    ("Pneumonia cannot be excluded.", {"Pneumonia": U}),
    ("No new consolidation.", {"Consolidation": U}),
    ("No new consolidation. No effusion.", {"Consolidation": U, "Pleural Effusion": N}),
]

# Where we differ from CheXpert on purpose: cases its rules are known to get wrong.
DELIBERATE = [
    # a bare organ mention is not a finding: CheXpert reads any un-negated "the heart" or
    # "cardiac silhouette" as Cardiomegaly 1
    ("The heart and lungs have XXXX XXXX in the interval.", {"Cardiomegaly": B}),
    ("The cardiac silhouette is stable in size and normal.", {"Cardiomegaly": N}),
    # a native valve is not a support device (CheXpert: "valve" anywhere is a device)
    ("Aortic valve calcification.", {"Support Devices": B}),
    ("Prosthetic aortic valve.", {"Support Devices": P}),
    # a disclaimer is not a mention
    ("Fractures may not be demonstrated on this exam.", {"Fracture": B}),
    # "X or Y" alone is not a hedge
    ("Right lower lobe atelectasis or scarring.", {"Atelectasis": P}),
]


@pytest.mark.parametrize(("text", "expected"), NO_FINDING)
def test_no_finding_withheld_by_other_findings(text, expected) -> None:
    check(text, expected)


@pytest.mark.parametrize(("text", "expected"), CHEXPERT_RULES)
def test_chexpert_rules(text, expected) -> None:
    check(text, expected)


@pytest.mark.parametrize(("text", "expected"), DELIBERATE)
def test_deliberate_differences(text, expected) -> None:
    check(text, expected)
