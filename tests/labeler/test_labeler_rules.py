"""Rule behaviour on short synthetic sentences (written for these tests, not taken from data)."""

from __future__ import annotations

import math

import pytest

from ekagen.labeler import label_report

P, N, U = 1.0, 0.0, -1.0


def check(text: str, expected: dict[str, float]) -> None:
    labels = label_report(text)
    for name, value in expected.items():
        got = labels[name]
        if value is None:
            assert math.isnan(got), f"{text!r}: {name} should be blank, got {got}"
        else:
            assert got == value, f"{text!r}: {name} should be {value}, got {got}"


NEGATION = [
    ("No pneumothorax.", {"Pneumothorax": N}),
    ("There is no focal consolidation.", {"Consolidation": N}),
    ("Lungs are clear without effusion.", {"Pleural Effusion": N, "Lung Opacity": None}),
    ("Negative for pneumothorax.", {"Pneumothorax": N}),
    ("Chest is free of infiltrates.", {"Lung Opacity": N}),
    ("No evidence of pulmonary edema.", {"Edema": N}),
    ("The right lung is clear of consolidation.", {"Consolidation": N}),
    ("A pneumothorax is not seen.", {"Pneumothorax": N}),
    ("The heart is not enlarged.", {"Cardiomegaly": N}),
    ("The previously noted left effusion has resolved.", {"Pleural Effusion": N}),
    ("Resolved right lower lobe pneumonia.", {"Pneumonia": N}),
    ("Interval resolution of the basilar atelectasis.", {"Atelectasis": N}),
    ("The chest tube has been removed.", {"Support Devices": N}),
    ("Interval removal of the left subclavian line.", {"Support Devices": N}),
    ("No displaced rib fracture.", {"Fracture": N}),
    ("No nodules or masses are identified.", {"Lung Lesion": N}),
    ("No pleural thickening.", {"Pleural Other": N}),
    ("No XXXX of pleural effusion.", {"Pleural Effusion": N}),
    ("No definite consolidation.", {"Consolidation": N}),
    ("Pleural effusion is absent.", {"Pleural Effusion": N}),
    ("No acute osseous abnormality.", {"Fracture": None}),
    ("No new focal opacity.", {"Lung Opacity": U}),  # CheXpert: "no new" is uncertain
    ("No new opacity and no effusion.", {"Lung Opacity": U, "Pleural Effusion": N}),
]

LISTS_AND_SCOPE = [
    ("No effusion, consolidation or pneumothorax.",
     {"Pleural Effusion": N, "Consolidation": N, "Pneumothorax": N}),
    ("There is no pleural effusion, pneumothorax, focal airspace opacity or edema.",
     {"Pleural Effusion": N, "Pneumothorax": N, "Lung Opacity": N, "Edema": N}),
    ("Clear of focal airspace disease, pneumothorax, and pleural effusion.",
     {"Lung Opacity": N, "Pneumothorax": N, "Pleural Effusion": N}),
    ("No effusion but there is consolidation.", {"Pleural Effusion": N, "Consolidation": P}),
    ("No pneumothorax; small left effusion.", {"Pneumothorax": N, "Pleural Effusion": P}),
    ("No pneumothorax, however the left base shows atelectasis.",
     {"Pneumothorax": N, "Atelectasis": P}),
    ("Without pneumothorax, there is a moderate right effusion.",
     {"Pneumothorax": N, "Pleural Effusion": P}),
    ("No acute disease. Stable cardiomegaly.", {"Cardiomegaly": P}),
    ("Cardiomegaly without pulmonary edema.", {"Cardiomegaly": P, "Edema": N}),
    ("No pneumothorax and the heart is enlarged.", {"Pneumothorax": N, "Cardiomegaly": P}),
    ("No abnormality other than mild cardiomegaly.", {"Cardiomegaly": P}),
    ("No change in the moderate right pleural effusion.", {"Pleural Effusion": P}),
    ("No significant interval change in the left lower lobe consolidation.",
     {"Consolidation": P}),
    ("No pneumothorax, possible small left effusion.",
     {"Pneumothorax": N, "Pleural Effusion": U}),
    ("No findings to suggest pneumonia.", {"Pneumonia": N}),
    ("Lungs are clear. Small right pleural effusion.",
     {"Lung Opacity": None, "Pleural Effusion": P}),
]

UNCERTAINTY = [
    ("Possible right lower lobe pneumonia.", {"Pneumonia": U}),
    ("Left basilar opacity may represent atelectasis.", {"Lung Opacity": P, "Atelectasis": U}),
    ("Pneumonia cannot be excluded.", {"Pneumonia": U}),
    ("Cannot exclude a small left pleural effusion.", {"Pleural Effusion": U}),
    ("Early consolidation is not excluded.", {"Consolidation": U}),
    ("A small pneumothorax cannot be ruled out.", {"Pneumothorax": U}),
    ("Findings are suggestive of mild interstitial edema.", {"Edema": U}),
    ("Patchy right base opacity concerning for infection.", {"Pneumonia": U, "Lung Opacity": P}),
    ("Questionable tiny left apical pneumothorax.", {"Pneumothorax": U}),
    ("Infiltrate versus atelectasis at the left base.", {"Lung Opacity": U, "Atelectasis": U}),
    ("Right base atelectasis vs consolidation.", {"Atelectasis": U, "Consolidation": U}),
    ("This could be an early pneumonia.", {"Pneumonia": U}),
    ("Suspected nondisplaced fracture of the left sixth rib.", {"Fracture": U}),
    ("Probable small bilateral effusions.", {"Pleural Effusion": U}),
    ("Streaky opacity, likely atelectasis.", {"Atelectasis": U, "Lung Opacity": P}),
    ("Basilar opacity XXXX representing atelectasis.", {"Atelectasis": U}),
    ("Borderline cardiomegaly.", {"Cardiomegaly": U}),
    ("Differential diagnosis includes infection and pulmonary edema.",
     {"Pneumonia": U, "Edema": U}),
    ("Age indeterminate fracture of the right seventh rib.", {"Fracture": P}),
]

SYNONYMS = [
    ("Cardiomegaly.", {"Cardiomegaly": P}),
    ("Enlarged heart.", {"Cardiomegaly": P}),
    ("Heart size is enlarged.", {"Cardiomegaly": P}),
    ("The cardiac silhouette is moderately enlarged.", {"Cardiomegaly": P}),
    ("Heart size normal.", {"Cardiomegaly": N}),
    ("The heart is normal in size.", {"Cardiomegaly": N}),
    ("Normal cardiomediastinal silhouette.",
     {"Cardiomegaly": None, "Enlarged Cardiomediastinum": N}),
    ("The cardiomediastinal silhouette is within normal limits.",
     {"Cardiomegaly": None, "Enlarged Cardiomediastinum": N}),
    ("The heart and mediastinum are normal.",
     {"Cardiomegaly": N, "Enlarged Cardiomediastinum": N}),
    ("Widened mediastinum.", {"Enlarged Cardiomediastinum": P}),
    ("There is mediastinal widening.", {"Enlarged Cardiomediastinum": P}),
    ("Mediastinal contours are normal.", {"Enlarged Cardiomediastinum": N}),
    ("Bilateral pleural effusions.", {"Pleural Effusion": P}),
    ("Blunting of the left costophrenic angle.", {"Pleural Effusion": None, "No Finding": None}),
    ("Small amount of pleural fluid on the right.", {"Pleural Effusion": P}),
    ("Small pericardial effusion.", {"Pleural Effusion": None}),
    ("Left apical pneumothorax.", {"Pneumothorax": P}),
    ("Right lower lobe consolidation.", {"Consolidation": P}),
    ("Right middle lobe pneumonia.", {"Pneumonia": P}),
    ("Findings compatible with infection.", {"Pneumonia": P}),
    ("Patchy airspace disease in the lingula.", {"Lung Opacity": P}),
    ("Bilateral perihilar opacities.", {"Lung Opacity": P}),
    ("Right upper lobe infiltrate.", {"Lung Opacity": P}),
    ("Hazy density in the right lung base.", {"Lung Opacity": P}),
    ("Subsegmental atelectasis at the left base.", {"Atelectasis": P}),
    ("The left lower lobe is atelectatic.", {"Atelectasis": P}),
    ("Right upper lobe collapse.", {"Atelectasis": P}),
    ("Volume loss in the left lung.", {"Atelectasis": None, "No Finding": None}),
    ("Mild interstitial edema.", {"Edema": P}),
    ("Pulmonary vascular congestion.", {"Edema": U}),
    ("Findings of CHF.", {"Edema": P}),
    ("Normal pulmonary vascularity.", {"Edema": None}),
    ("Old healed left rib fractures.", {"Fracture": P}),
    ("A 1 cm nodule in the right upper lobe.", {"Lung Lesion": P}),
    ("Left hilar mass.", {"Lung Lesion": P}),
    ("Calcified granuloma in the left upper lobe.", {"Lung Lesion": None}),
    ("Right apical pleural thickening.", {"Pleural Other": P}),
    ("Fibrothorax on the left.", {"Pleural Other": P}),
    ("Bilateral pleural scarring.", {"Pleural Other": P}),
    ("Right IJ central venous catheter tip in the SVC.", {"Support Devices": P}),
    ("Endotracheal tube 4 cm above the carina.", {"Support Devices": P}),
    ("Left chest wall pacemaker with leads in the right ventricle.", {"Support Devices": P}),
    ("PICC line tip in the lower SVC.", {"Support Devices": P}),
    ("Median sternotomy wires are intact.", {"Support Devices": P}),
    ("Surgical clips in the right upper quadrant.", {"Support Devices": P}),
    ("Coronary artery stent.", {"Support Devices": P}),
    ("Lungs are clear.", {"Lung Opacity": None}),
    ("Bony structures are intact.", {"Fracture": None}),
    ("Rib deformity on the right.", {"Fracture": None}),
    ("Postoperative changes of sternotomy.", {"Support Devices": None}),
]


@pytest.mark.parametrize(("text", "expected"), NEGATION)
def test_negation(text: str, expected: dict[str, float]) -> None:
    check(text, expected)


@pytest.mark.parametrize(("text", "expected"), LISTS_AND_SCOPE)
def test_lists_and_scope(text: str, expected: dict[str, float]) -> None:
    check(text, expected)


@pytest.mark.parametrize(("text", "expected"), UNCERTAINTY)
def test_uncertainty(text: str, expected: dict[str, float]) -> None:
    check(text, expected)


@pytest.mark.parametrize(("text", "expected"), SYNONYMS)
def test_synonyms(text: str, expected: dict[str, float]) -> None:
    check(text, expected)


def test_aggregation_prefers_positive_then_uncertain() -> None:
    check("No effusion on the left. Small right effusion.", {"Pleural Effusion": P})
    check("No effusion on the left. Possible right effusion.", {"Pleural Effusion": U})
    check("Possible pneumonia. Right lower lobe pneumonia.", {"Pneumonia": P})


def test_iu_anonymisation_tokens() -> None:
    check("XXXX XXXX are intact. No focal consolidation, XXXX, or pneumothorax.",
          {"Consolidation": N, "Pneumothorax": N})
    check("Blunting of the right costophrenic XXXX.",
          {"Pleural Effusion": None, "No Finding": None})
    check("Midline sternotomy XXXX.", {"Support Devices": P})
    check("Most XXXX atelectasis at the right base.", {"Atelectasis": U})
    check("Stable XXXX opacity in the left upper lobe.", {"Lung Opacity": P})


EDGE_CASES = [
    ("Heart size is at the upper limits of normal.", {"Cardiomegaly": N}),
    ("Heart size is upper limits of normal to mildly enlarged.", {"Cardiomegaly": U}),
    ("Stable nonenlarged cardiomediastinal silhouette.",
     {"Cardiomegaly": None, "Enlarged Cardiomediastinum": N}),
    ("Enlarged cardiomediastinal silhouette.",
     {"Enlarged Cardiomediastinum": P, "Cardiomegaly": None}),
    ("Superimposed pneumonia is difficult to exclude.", {"Pneumonia": U}),
    ("Consolidation in the left lower lobe is unlikely.", {"Consolidation": U}),
    ("Please note that rib fractures may not be demonstrated on radiographs.",
     {"Fracture": None}),
    ("No pneumothorax after chest tube removal.", {"Pneumothorax": N, "Support Devices": N}),
    ("Sequelae of prior granulomatous infection.", {"Pneumonia": None}),
    ("The most lateral fixation screw is fractured.", {"Fracture": None}),
    ("Dense right hilar consolidation superimposed infection cannot be excluded.",
     {"Consolidation": P, "Pneumonia": U}),
    ("Effusion or pneumothorax is not seen.", {"Pleural Effusion": N, "Pneumothorax": N}),
    ("Normal heart size. Heart size and pulmonary vascularity are within normal limits.",
     {"Cardiomegaly": N, "Edema": None}),
    ("Mild central pulmonary vascular congestion.", {"Edema": U}),
    ("Prominent pulmonary vasculature.", {"Edema": U}),
    ("The right costophrenic angle is sharp.", {"Pleural Effusion": None}),
    ("Oval density overlying the left fifth rib.", {"Lung Opacity": None}),
    ("Patchy density in the left lower lobe.", {"Lung Opacity": None, "No Finding": None}),
    ("Increased density in the left lower lobe.", {"Lung Opacity": P}),
    ("Non-displaced fracture of the left fifth rib.", {"Fracture": P}),
    ("Non-specific opacity at the right base.", {"Lung Opacity": P}),
    ("Non-enlarged heart.", {"Cardiomegaly": N}),
    ("Non-widened mediastinum.", {"Enlarged Cardiomediastinum": N}),
    ("Small bilateral effusions; no pneumothorax.",
     {"Pleural Effusion": P, "Pneumothorax": N}),
]


@pytest.mark.parametrize(("text", "expected"), EDGE_CASES)
def test_edge_cases(text: str, expected: dict[str, float]) -> None:
    check(text, expected)
