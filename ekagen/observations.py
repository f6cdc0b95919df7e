"""The 14 CheXpert observations, in the order every label vector in the project uses.

Label values follow CheXpert: 1 positive, 0 negative, -1 uncertain, NaN (blank) not mentioned.
Keeping the order in one place means a label vector is meaningful without its column names.
"""

from __future__ import annotations

OBSERVATIONS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
)

POSITIVE, NEGATIVE, UNCERTAIN = 1.0, 0.0, -1.0
NUM_OBSERVATIONS = len(OBSERVATIONS)
