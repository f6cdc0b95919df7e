"""Agreement of the rule-based labeler with the curated MeSH tags of the IU X-Ray reports.

Usage: ``python benchmarks/labeler_mesh.py [--disagreements OBSERVATION] [--limit N]``

Labels the 3,955 OpenI reports bundled with torchxrayvision (FINDINGS + IMPRESSION) and, as a
second subset, the 2,955 with non-empty findings and at least two images (the usual IU
report-generation set), then compares with the curated ``major`` MeSH tags. Prints JSON. With
``--disagreements`` it prints disagreeing sentences for one observation instead (to stderr,
for local rule work only; never commit that output: the report text is CC BY-NC-ND).

MeSH -> observation table (the first '/'-part of a tag is the term, the rest are qualifiers):

==============================  ================================  ===========================
MeSH term                       observation                       condition
==============================  ================================  ===========================
Pulmonary Atelectasis,          Atelectasis
Atelectasis, Volume Loss
Cardiomegaly                    Cardiomegaly
Cardiac Shadow                  Cardiomegaly                      qualifier 'enlarged'
Consolidation                   Consolidation
Pulmonary Edema, Edema,         Edema                             (CheXpert counts congestion
Pulmonary Congestion,                                             and heart failure as edema)
Heart Failure
Mediastinum                     Enlarged Cardiomediastinum        qualifier enlarged/prominent
                                                                  /widened, not lymph nodes
Fractures, Bone, Rib Fractures  Fracture
Nodule, Mass                    Lung Lesion                       (granulomas are not lesions)
Opacity, Airspace Disease,      Lung Opacity
Infiltrate
Density                         Lung Opacity                      qualifier 'lung'
normal                          No Finding
Pleural Effusion                Pleural Effusion
Costophrenic Angle              Pleural Effusion                  qualifier 'blunted'
Thickening, Cicatrix, Pleura    Pleural Other                     qualifier 'pleura'
Pneumonia                       Pneumonia
Pneumothorax,                   Pneumothorax
Hydropneumothorax,
Hemopneumothorax
Catheters, Indwelling,          Support Devices
Implanted Medical Device,
Medical Device, Surgical
Instruments, Tube, Inserted,
Stents, Sutures
==============================  ================================  ===========================

Scores per observation: MeSH-positive count, labeler-positive count and precision / recall /
F1 of "labeler = 1" and of "labeler = 1 or -1" against MeSH presence; micro averages over the
13 observations other than No Finding; ``mean_recall``, the unweighted mean of the 13
recalls (the acceptance figure: >= 0.90 for "1 or -1", that is mention detection); the share
of reports tagged only 'normal' in which the labeler marks any finding 1 (the false-positive
figure: <= 5%); accuracy and F1 of No Finding = 1 against the 'normal'
tag. The ``automatic`` tags come from an automatic indexer that ignores negation; the script
only counts how often the labeler mentions (any value) an observation whose automatic tag is
present, for reference.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time

from ekagen.data.openi import OpenIRecord, iter_openi_records
from ekagen.evaluation.ce import precision_recall_f1
from ekagen.labeler import label_reports, split_sentences
from ekagen.labeler.engine import label_sentence
from ekagen.observations import OBSERVATIONS

# term -> (observation, qualifier regex that must appear in the rest of the tag, or None)
MESH_TABLE: dict[str, tuple[str, str | None]] = {
    "Pulmonary Atelectasis": ("Atelectasis", None),
    "Atelectasis": ("Atelectasis", None),
    "Volume Loss": ("Atelectasis", None),
    "Cardiomegaly": ("Cardiomegaly", None),
    "Cardiac Shadow": ("Cardiomegaly", r"enlarged"),
    "Consolidation": ("Consolidation", None),
    "Pulmonary Edema": ("Edema", None),
    "Edema": ("Edema", None),
    "Pulmonary Congestion": ("Edema", None),
    "Heart Failure": ("Edema", None),
    "Mediastinum": ("Enlarged Cardiomediastinum", r"^(?!.*lymph).*(?:enlarged|prominent|widen)"),
    "Fractures, Bone": ("Fracture", None),
    "Rib Fractures": ("Fracture", None),
    "Nodule": ("Lung Lesion", None),
    "Mass": ("Lung Lesion", None),
    "Opacity": ("Lung Opacity", None),
    "Airspace Disease": ("Lung Opacity", None),
    "Infiltrate": ("Lung Opacity", None),
    "Density": ("Lung Opacity", r"lung"),
    "normal": ("No Finding", None),
    "Pleural Effusion": ("Pleural Effusion", None),
    "Costophrenic Angle": ("Pleural Effusion", r"blunted"),
    "Thickening": ("Pleural Other", r"pleura"),
    "Cicatrix": ("Pleural Other", r"pleura"),
    "Pleura": ("Pleural Other", r"thicken|blunted"),
    "Pneumonia": ("Pneumonia", None),
    "Pneumothorax": ("Pneumothorax", None),
    "Hydropneumothorax": ("Pneumothorax", None),
    "Hemopneumothorax": ("Pneumothorax", None),
    "Catheters, Indwelling": ("Support Devices", None),
    "Implanted Medical Device": ("Support Devices", None),
    "Medical Device": ("Support Devices", None),
    "Surgical Instruments": ("Support Devices", None),
    "Tube, Inserted": ("Support Devices", None),
    "Stents": ("Support Devices", None),
    "Sutures": ("Support Devices", None),
}

# Keywords of the automatic (indexer) tags, lower case, for the reference count only.
AUTOMATIC_KEYWORDS: dict[str, str] = {
    "Atelectasis": r"atelecta|collapse",
    "Cardiomegaly": r"cardiomegaly|enlarged heart",
    "Consolidation": r"consolidation",
    "Edema": r"edema|congestion|heart failure",
    "Fracture": r"fracture",
    "Lung Lesion": r"nodule|mass|neoplasm|cancer",
    "Lung Opacity": r"opacity|infiltrate",
    "Pleural Effusion": r"pleural effusion|^effusion|pleural fluid",
    "Pleural Other": r"pleural thickening",
    "Pneumonia": r"pneumonia|infection",
    "Pneumothorax": r"pneumothorax",
    "Support Devices": r"catheter|pacemaker|picc|tracheostom|stent|defibrillator|clip|prosthes",
}

FINDINGS = [o for o in OBSERVATIONS if o != "No Finding"]


def report_text(record: OpenIRecord) -> str:
    """FINDINGS and IMPRESSION, with a sentence break between them."""
    return "\n\n".join(p for p in (record.findings, record.impression) if p.strip())


def mesh_observations(tags: list[str]) -> set[str]:
    found = set()
    for tag in tags:
        term, _, rest = tag.partition("/")
        entry = MESH_TABLE.get(term.strip())
        if entry is None:
            continue
        observation, qualifier = entry
        if qualifier is None or re.search(qualifier, rest, re.IGNORECASE):
            found.add(observation)
    return found


def automatic_observations(tags: list[str]) -> set[str]:
    found = set()
    for tag in tags:
        term = tag.partition("/")[0].strip().lower()
        for observation, pattern in AUTOMATIC_KEYWORDS.items():
            if re.search(pattern, term):
                found.add(observation)
    return found


def _prf(tp: int, fp: int, fn: int) -> dict[str, float]:
    p, r, f = precision_recall_f1(tp, fp, fn)
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4)}


def score(records: list[OpenIRecord], labels) -> dict:
    gold = [mesh_observations(r.mesh_major) for r in records]
    auto = [automatic_observations(r.mesh_automatic) for r in records]
    out: dict = {"reports": len(records), "per_observation": {}}
    micro = {"pos": [0, 0, 0], "pos_or_unc": [0, 0, 0]}
    for obs in FINDINGS:
        values = labels[obs].to_numpy()
        truth = [obs in g for g in gold]
        row: dict = {"mesh_positive": int(sum(truth)),
                     "labeler_positive": int(sum(v == 1 for v in values)),
                     "labeler_uncertain": int(sum(v == -1 for v in values))}
        for key, accept in (("pos", (1.0,)), ("pos_or_unc", (1.0, -1.0))):
            pred = [v in accept for v in values]
            tp = sum(p and t for p, t in zip(pred, truth, strict=True))
            fp = sum(p and not t for p, t in zip(pred, truth, strict=True))
            fn = sum(t and not p for p, t in zip(pred, truth, strict=True))
            for i, n in enumerate((tp, fp, fn)):
                micro[key][i] += n
            row[key] = _prf(tp, fp, fn)
        in_auto = [obs in a for a in auto]
        if any(in_auto):
            mentioned = sum(a and not math.isnan(v) for a, v in zip(in_auto, values, strict=True))
            row["automatic_tagged"] = int(sum(in_auto))
            row["automatic_tagged_labeler_mentions"] = int(mentioned)
        out["per_observation"][obs] = row
    out["micro"] = {k: _prf(*v) for k, v in micro.items()}
    rows = out["per_observation"].values()
    out["mean_recall"] = {key: round(sum(r[key]["recall"] for r in rows) / len(FINDINGS), 4)
                          for key in ("pos", "pos_or_unc")}
    normal_rows = [i for i, g in enumerate(gold) if g == {"No Finding"}]
    flagged = labels[FINDINGS].iloc[normal_rows].eq(1).any(axis=1)
    out["normal_reports_with_a_positive"] = {
        "reports": len(normal_rows), "with_a_positive": int(flagged.sum()),
        "fraction": round(float(flagged.mean()) if normal_rows else 0.0, 4)}
    normal = [("No Finding" in g) for g in gold]
    nf = [v == 1 for v in labels["No Finding"].to_numpy()]
    tp = sum(a and b for a, b in zip(nf, normal, strict=True))
    fp = sum(a and not b for a, b in zip(nf, normal, strict=True))
    fn = sum(b and not a for a, b in zip(nf, normal, strict=True))
    out["no_finding"] = {"mesh_normal": int(sum(normal)), "labeler_no_finding": int(sum(nf)),
                         "accuracy": round(sum(a == b for a, b in zip(nf, normal, strict=True))
                                           / len(records), 4), **_prf(tp, fp, fn)}
    return out


def disagreements(records, labels, observation: str, limit: int) -> None:
    """Print (stderr) sentences of reports where labeler and MeSH disagree on one observation."""
    shown = 0
    for record, (_, row) in zip(records, labels.iterrows(), strict=True):
        gold = observation in mesh_observations(record.mesh_major)
        value = row[observation]
        if gold == (value == 1):
            continue
        kind = "FN" if gold else "FP"
        print(f"== {kind} {record.uid} value={value} mesh={record.mesh_major}", file=sys.stderr)
        index = OBSERVATIONS.index(observation)
        for sentence in split_sentences(report_text(record)):
            marks = [v for i, v in label_sentence(sentence) if i == index]
            if marks or kind == "FN":
                print(f"   {marks} {sentence}", file=sys.stderr)
        shown += 1
        if shown >= limit:
            break


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--disagreements", metavar="OBSERVATION")
    parser.add_argument("--limit", type=int, default=40)
    args = parser.parse_args(argv)

    records = list(iter_openi_records())
    texts = [report_text(r) for r in records]
    label_sentence.cache_clear()
    start = time.perf_counter()
    labels = label_reports(texts)
    seconds = time.perf_counter() - start
    if args.disagreements:
        disagreements(records, labels, args.disagreements, args.limit)
        return
    subset = [i for i, r in enumerate(records) if r.findings.strip() and len(r.image_ids) >= 2]
    result = {
        "labeling_seconds_all_reports_cold_cache": round(seconds, 3),
        "all": score(records, labels),
        "findings_and_two_images": score([records[i] for i in subset],
                                         labels.iloc[subset].reset_index(drop=True)),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
