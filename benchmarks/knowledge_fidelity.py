"""Does the decoder keep what its knowledge says, and how does the end-of-report rule move it?

    python benchmarks/knowledge_fidelity.py --runs constant=/tmp/stability/constant \\
        cosine=/tmp/stability/cosine --seeds 42 7 123 --rounds r1 \\
        --eos 0.5 0.6 0.7 0.8 [--rules likelihood threshold] [--train-studies 300] \\
        [--data data] [--json out.json]

Reads the rounds that ``benchmarks/round_stability.py`` trained (``NAME=FOLDER``, each
folder holding ``seed<k>/gid/<round>`` and ``seed<k>/params.yaml``) and decodes, with the
real inference path (:class:`~ekagen.inference.ReportWriter`), for every ``--eos`` value of
``decode.eos_threshold``:

* the validation split with the knowledge the diagnosis selects (as at test time), under
  each ``--rules`` value of ``iek.rule`` (``val``; ``val:<rule>`` for the later ones): CE
  micro/macro-F1 and BLEU-4 against the references, mean length, distinct reports, and the
  *fidelity*: the CE micro- and macro-F1 of the generated reports' labels against those of
  the knowledge text the decoder read, and the share of the knowledge's findings (No
  Finding aside) that the report names too (``finding_recall``) and of the report's
  findings that the knowledge named (``finding_precision``);
* ``--train-studies`` training studies (seeded sample) with the knowledge of their true
  labels, as the decoder saw them in training: the train-split faithfulness check. A decoder
  that does not follow its knowledge here has not learnt to, whatever the diagnosis does.

The knowledge text itself is scored once per split (the ``knowledge`` row of issue 14's
goal 3, on validation). Nothing is read from the test split. Prints JSON lines per decode
and, with ``--json``, writes everything plus mean and sd over seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np
import yaml

from ekagen.attention.adm import load_masks, load_study_diagnosis
from ekagen.config import IEK_RULES, AdmConfig, DecodeConfig, IekConfig, from_dict
from ekagen.data.artifacts import load_images, load_studies_table
from ekagen.data.vocab import Vocabulary
from ekagen.evaluation.ce import ce_scores, label_values, positive_mask
from ekagen.evaluation.nlg import bleu4
from ekagen.generation.checkpoint import load_generator
from ekagen.generation.data import (
    ReportStudies,
    diagnosed_knowledge_labels,
    encode_reports,
)
from ekagen.inference import ReportWriter
from ekagen.knowledge.iek import KnowledgeBase
from ekagen.knowledge.store import RKS_FILE, read_table
from ekagen.observations import OBSERVATIONS

ROOT = Path(__file__).resolve().parent.parent


class Split:
    """One split's studies with the knowledge the decoder reads and that knowledge's text."""

    def __init__(self, dataset: ReportStudies, references: list[str], knowledge: list[str]):
        self.dataset, self.references, self.knowledge = dataset, references, knowledge
        self.reference_labels = label_values(references)
        self.knowledge_labels = label_values(knowledge)


def load_splits(data: Path, params: dict, train_studies: int, seed: int,
                rules: list[str]) -> tuple[dict[str, Split], Vocabulary, KnowledgeBase]:
    """Validation with the knowledge each ``iek.rule`` selects from the diagnosis (``val`` for
    the first rule, ``val:<rule>`` for the others) and a seeded training sample with the
    knowledge of its true labels (what ``train.knowledge_gt_fraction: 1`` trains on)."""
    prepared = data / "prepared"
    studies = load_studies_table(prepared)
    images = load_images(prepared)
    vocab = Vocabulary.load(prepared / "vocab.json")
    packed, _ = load_masks(data / "adm")
    diagnosis = load_study_diagnosis(data / "adm")
    iek = from_dict(IekConfig, params["iek"], "iek")
    max_length = int(params["model"]["max_length"])
    rks = read_table(data / "knowledge" / RKS_FILE, "rks")
    kb = KnowledgeBase.from_rks(rks, max_length, max_hamming=iek.hamming_limit)
    texts = dict(zip(rks["report_id"], rks["report"], strict=True))
    tokens = encode_reports(studies["report"].tolist(), vocab, max_length)
    references = studies["report"].tolist()

    def split(rows: np.ndarray, labels: np.ndarray) -> Split:
        looked_up = kb.lookup(labels)
        knowledge = np.zeros((len(studies), looked_up.shape[1]), dtype=np.int64)
        knowledge[rows] = looked_up
        matches = kb.lookup_details(labels)
        return Split(ReportStudies(images, packed, rows, tokens, knowledge),
                     [references[r] for r in rows],
                     [" ".join(texts[i] for i in m.report_ids) for m in matches])

    out = {}
    val_rows = np.flatnonzero((studies["split"] == "val").to_numpy())
    for i, rule in enumerate(rules):
        labels = diagnosed_knowledge_labels(diagnosis, kb, rule).astype(np.float32)
        out["val" if i == 0 else f"val:{rule}"] = split(val_rows, labels[val_rows])
    if train_studies > 0:
        train_rows = np.flatnonzero((studies["split"] == "train").to_numpy())
        pick = np.random.default_rng(seed).choice(len(train_rows), min(train_studies,
                                                  len(train_rows)), replace=False)
        rows = np.sort(train_rows[pick])
        truth = studies[list(OBSERVATIONS)].to_numpy()[rows]
        out["train"] = split(rows, (truth == 1).astype(np.float32))
    return out, vocab, kb


def brevity_penalty(generated: list[str], references: list[str]) -> float:
    """BLEU's brevity penalty on the whole split (one reference per study, words as the
    cleaned text spells them): exp(1 - r / c) when the c generated words fall short of the r
    reference words, else 1. BLEU-4 is this times the geometric mean of the n-gram
    precisions, so dividing by it tells short reports from wrong ones."""
    c = sum(len(g.split()) for g in generated)
    r = sum(len(ref.split()) for ref in references)
    return 1.0 if c >= r else (float(np.exp(1 - r / c)) if c else 0.0)


def score(generated: list[str], split: Split) -> dict:
    """Against the references (CE, BLEU-4) and against the knowledge read (fidelity): which
    of the knowledge text's findings, No Finding aside, the report also names (recall) and
    how many of the report's findings the knowledge named (precision)."""
    labels = label_values(generated)
    ce = ce_scores(labels, split.reference_labels)
    fidelity = ce_scores(labels, split.knowledge_labels)
    findings = [i for i, name in enumerate(OBSERVATIONS) if name != "No Finding"]
    said = positive_mask(labels)[:, findings]
    known = positive_mask(split.knowledge_labels)[:, findings]
    both = int((said & known).sum())
    bleu, penalty = bleu4(generated, split.references), brevity_penalty(generated,
                                                                           split.references)
    return {"ce_micro_f1": ce["ce14_micro_f1"], "ce_macro_f1": ce["ce14_macro_f1"],
            "bleu4": round(bleu, 6), "brevity_penalty": round(penalty, 6),
            "bleu4_without_brevity": round(bleu / penalty, 6) if penalty > 0 else 0.0,
            "mean_length": round(float(np.mean([len(g.split()) for g in generated])), 2),
            "distinct": len(set(generated)), "fidelity_micro_f1": fidelity["ce14_micro_f1"],
            "fidelity_macro_f1": fidelity["ce14_macro_f1"],
            "finding_recall": round(both / max(int(known.sum()), 1), 6),
            "finding_precision": round(both / max(int(said.sum()), 1), 6)}


def summarise(values: list[float]) -> dict:
    return {"mean": round(statistics.fmean(values), 4),
            "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", required=True, metavar="NAME=FOLDER")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 123])
    parser.add_argument("--rounds", nargs="+", default=["r1"])
    parser.add_argument("--eos", type=float, nargs="+", default=[0.5])
    parser.add_argument("--rules", nargs="+", default=None,
                        help="iek.rule values for the validation knowledge (default: "
                             "params.yaml's; the first is 'val', the others 'val:<rule>')")
    parser.add_argument("--train-studies", type=int, default=300)
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    runs = {}
    for item in args.runs:
        name, sep, folder = item.partition("=")
        if not sep:
            raise SystemExit(f"--runs {item!r}: expected NAME=FOLDER")
        for seed in args.seeds:
            for round_key in args.rounds:
                model = Path(folder) / f"seed{seed}" / "gid" / round_key
                if not (model / "model.safetensors").is_file():
                    raise SystemExit(f"{model}: no trained round (run "
                                     f"benchmarks/round_stability.py --out {folder} first)")
        runs[name] = Path(folder)
    for value in args.eos:
        if not 0 <= value < 1:
            raise SystemExit(f"--eos {value}: a probability in [0, 1)")
    base = yaml.safe_load(args.params.read_text())
    args.rules = args.rules or [base["iek"]["rule"]]
    unknown = [r for r in args.rules if r not in IEK_RULES]
    if unknown:
        raise SystemExit(f"--rules {unknown}: expected some of {IEK_RULES}")
    splits, vocab, kb = load_splits(args.data, base, args.train_studies, base["seed"],
                                    args.rules)
    result: dict = {"knowledge_text": {name: score(s.knowledge, s) for name, s in splits.items()},
                    "decodes": []}
    print(json.dumps({"knowledge_text": result["knowledge_text"]}), flush=True)
    for name, folder in runs.items():
        for seed in args.seeds:
            params = yaml.safe_load((folder / f"seed{seed}" / "params.yaml").read_text())
            adm = from_dict(AdmConfig, params["adm"], "adm")
            iek = from_dict(IekConfig, params["iek"], "iek")
            for round_key in args.rounds:
                generator = load_generator(folder / f"seed{seed}" / "gid" / round_key)[0]
                for eos in args.eos:
                    decode = from_dict(DecodeConfig, {**params["decode"], "eos_threshold": eos},
                                       "decode")
                    writer = ReportWriter(generator, vocab, kb, iek, adm, decode,
                                          batch_size=args.batch_size)
                    record = {"run": name, "seed": seed, "round": round_key, "eos": eos}
                    for split_name, split in splits.items():
                        record[split_name] = score(writer.write_dataset(split.dataset), split)
                    result["decodes"].append(record)
                    print(json.dumps(record), flush=True)
    summary = {}
    for record in result["decodes"]:
        key = f"{record['run']} {record['round']} eos={record['eos']}"
        for split_name in splits:
            for metric, value in record[split_name].items():
                summary.setdefault(key, {}).setdefault(f"{split_name}_{metric}", []).append(value)
    result["over_seeds"] = {key: {m: summarise(v) for m, v in metrics.items()}
                            for key, metrics in summary.items()}
    print(json.dumps(result["over_seeds"], indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
