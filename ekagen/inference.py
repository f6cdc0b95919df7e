"""Writing a report for a radiograph outside the pipeline (``ekagen generate``).

A model folder holds everything inference needs and nothing of the training code's objects:
the generator (``model.safetensors``, ``model.json``, ``vocab.json``), the DiagnosisBot and
its thresholds (``classifier/``), the ADM settings (``adm.json``) and the RKS knowledge
(``rks.parquet``). The ``evaluate`` stage writes one to ``data/eval/model``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ekagen.attention.adm import compute_adm, unpack_masks
from ekagen.config import IekConfig
from ekagen.data.images import load_image
from ekagen.decoding import beam_decode
from ekagen.generation.checkpoint import load_generator, trained_adm
from ekagen.generation.train import adm_views
from ekagen.knowledge.iek import KnowledgeBase
from ekagen.knowledge.store import read_table
from ekagen.observations import OBSERVATIONS

ADM_FILE, RKS_FILE, CLASSIFIER_DIR = "adm.json", "rks.parquet", "classifier"


def export_model(out_dir: str | Path, generator_dir: str | Path, classifier_dir: str | Path,
                 rks_path: str | Path, adm: dict, decode: dict, iek_max_hamming: int,
                 iek_rule: str = "likelihood") -> Path:
    """Assemble a self-contained model folder for ``ekagen generate``."""
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(generator_dir, out)
    shutil.copytree(classifier_dir, out / CLASSIFIER_DIR)
    shutil.copy(rks_path, out / RKS_FILE)
    (out / ADM_FILE).write_text(json.dumps({**adm, "decode": decode,
                                            "iek_max_hamming": iek_max_hamming,
                                            "iek_rule": iek_rule}, indent=2))
    return out


@dataclass
class Report:
    image: str
    report: str
    diagnosis: list[str]
    probabilities: dict[str, float]
    knowledge_rule: str
    attention_coverage: float
    mask: np.ndarray


class Reporter:
    """Loads a model folder once and writes reports for images (PNG, JPEG or DICOM)."""

    def __init__(self, model_dir: str | Path, device: str | torch.device = "cpu") -> None:
        from ekagen.diagnosis.train import load_thresholds
        from ekagen.models.classifier import load_classifier

        root = Path(model_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: model folder not found")
        missing = [name for name in (ADM_FILE, RKS_FILE, CLASSIFIER_DIR, "model.json",
                                     "model.safetensors", "vocab.json")
                   if not (root / name).exists()]
        if missing:
            raise FileNotFoundError(f"{root}: incomplete model folder, missing {missing} "
                                    "(a folder written by the evaluate stage: data/eval/model)")
        self.device = torch.device(device)
        self.generator, self.vocab, self.config = load_generator(root, self.device)
        self.classifier, cls_cfg = load_classifier(root / CLASSIFIER_DIR, self.device)
        self.thresholds = load_thresholds(root / CLASSIFIER_DIR / "thresholds.json")
        self.settings = json.loads((root / ADM_FILE).read_text())
        self.image_size = int(self.config["image_size"])
        # folders written before iek.rule existed used the thresholded diagnosis
        iek = IekConfig(max_hamming=int(self.settings.get("iek_max_hamming", -1)),
                        rule=str(self.settings.get("iek_rule", "threshold")))
        self.iek_rule = iek.rule
        self.kb = KnowledgeBase.from_rks(read_table(root / RKS_FILE, "rks"),
                                         self.generator.cfg.max_length,
                                         max_hamming=iek.hamming_limit)
        self.adm = trained_adm(self.config)

    def generate(self, paths: list[str | Path], beam_size: int | None = None,
                 max_length: int | None = None) -> list[Report]:
        decode = self.settings.get("decode", {})
        beam = beam_size or int(decode.get("beam_size", 1))
        limit = max_length or int(decode.get("max_length", 100))
        pixels = np.stack([load_image(p, self.image_size) for p in paths])[:, None]
        result = compute_adm(self.classifier, pixels, self.thresholds,
                             float(self.settings.get("cam_threshold", 0.5)),
                             int(self.settings.get("dilation", 3)), 16, self.device,
                             progress=False)
        predicted = result.predicted[:, 0].astype(np.float32)
        masks = np.stack([unpack_masks(result.packed[i, 0], self.image_size)
                          for i in range(len(paths))])
        views = self.generator.views  # one image per study: it fills every view slot
        images = torch.from_numpy(pixels.astype(np.float32) / 255.0).repeat(1, views, 1, 1)
        mask_t = torch.from_numpy(masks)[:, None].repeat(1, views, 1, 1)
        images = adm_views(images.to(self.device), mask_t.to(self.device), self.adm)
        knowledge_labels = self.kb.diagnosis_labels(self.iek_rule, predicted,
                                                    result.probs[:, 0])
        knowledge = torch.from_numpy(self.kb.lookup(knowledge_labels)).to(self.device)
        with torch.no_grad():
            seqs = beam_decode(self.generator, images, knowledge, self.vocab.bos_id,
                               self.vocab.eos_id, beam, limit,
                               float(decode.get("length_penalty", 0.0)),
                               int(decode.get("no_repeat_ngram", 0)),
                               float(decode.get("eos_threshold", 0.0)))
        details = self.kb.lookup_details(knowledge_labels)
        return [Report(image=str(p), report=self.vocab.decode(seq),
                       diagnosis=[o for o, v in zip(OBSERVATIONS, predicted[i], strict=True) if v],
                       probabilities={o: round(float(x), 4) for o, x in
                                      zip(OBSERVATIONS, result.probs[i, 0], strict=True)},
                       knowledge_rule=f"{details[i].rule}:{details[i].key}",
                       attention_coverage=float(result.coverage[i, 0]), mask=masks[i])
                for i, (p, seq) in enumerate(zip(paths, seqs, strict=True))]
