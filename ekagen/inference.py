"""The one path from radiographs to reports: diagnosis -> ADM -> knowledge -> decoding.

:class:`ReportWriter` is what the ``evaluate`` stage, the validation decodes that select a
round's epoch, and ``ekagen generate`` all call, so a report scored in the pipeline is the
report a user gets for the same image.

A model folder holds everything inference needs and none of the training code's objects: the
generator (``model.safetensors``, ``model.json`` with the ``adm`` and ``iek`` settings it was
trained with, ``vocab.json``), the DiagnosisBot and its thresholds (``classifier/``), the RKS
knowledge (``rks.parquet``) and the decoding settings (``decode.json``). The ``evaluate``
stage writes one to ``data/eval/model``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ekagen.attention.adm import AdmResult, adm_views, compute_adm, study_diagnosis, unpack_masks
from ekagen.config import AdmConfig, DecodeConfig, IekConfig, from_dict
from ekagen.data.vocab import Vocabulary
from ekagen.decoding import beam_decode
from ekagen.generation.checkpoint import load_generator, trained_settings
from ekagen.knowledge.iek import IEKMatch, KnowledgeBase
from ekagen.knowledge.store import read_table
from ekagen.models.generator import EKAGenerator
from ekagen.observations import OBSERVATIONS

DECODE_FILE, RKS_FILE, CLASSIFIER_DIR = "decode.json", "rks.parquet", "classifier"


def export_model(out_dir: str | Path, generator_dir: str | Path, classifier_dir: str | Path,
                 rks_path: str | Path, decode: DecodeConfig) -> Path:
    """Assemble a self-contained model folder for ``ekagen generate``."""
    out = Path(out_dir)
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(generator_dir, out)
    shutil.copytree(classifier_dir, out / CLASSIFIER_DIR)
    shutil.copy(rks_path, out / RKS_FILE)
    (out / DECODE_FILE).write_text(json.dumps(asdict(decode), indent=2) + "\n")
    return out


@dataclass
class Report:
    """One study's report and how it came about."""

    report: str
    diagnosis: list[str]  # observations diagnosed positive (thresholded, OR over views)
    probabilities: dict[str, float]  # per observation, max over views
    knowledge: IEKMatch  # which RKS reports the decoder read
    attention_coverage: list[float]  # ADM mask fraction, per view
    masks: np.ndarray  # (V, S, S) bool ADM masks


class ReportWriter:
    """A generator with its knowledge base and settings; with a DiagnosisBot it also
    diagnoses, otherwise (validation during training) the caller supplies the diagnosis."""

    def __init__(self, generator: EKAGenerator, vocab: Vocabulary, kb: KnowledgeBase,
                 iek: IekConfig, adm: AdmConfig, decode: DecodeConfig, *,
                 classifier: torch.nn.Module | None = None,
                 thresholds: np.ndarray | None = None, image_size: int = 0,
                 device: str | torch.device = "cpu", batch_size: int = 32,
                 knowledge_reports: dict[str, str] | None = None) -> None:
        self.generator, self.vocab, self.kb = generator, vocab, kb
        self.knowledge_reports = knowledge_reports or {}  # RKS report id -> its text
        self.iek, self.adm, self.decode_cfg = iek, adm, decode
        self.classifier, self.thresholds = classifier, thresholds
        self.image_size = image_size  # what the models were trained at (0: not recorded)
        self.device, self.batch_size = torch.device(device), batch_size

    @classmethod
    def load(cls, model_dir: str | Path, device: str | torch.device = "cpu",
             batch_size: int = 32, **decode_changes: Any) -> ReportWriter:
        """A model folder (see the module docstring); ``decode_changes`` override fields of
        its decoding settings (e.g. ``beam_size=3``)."""
        from ekagen.diagnosis.train import load_thresholds
        from ekagen.models.classifier import load_classifier

        root = Path(model_dir)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: model folder not found")
        missing = [name for name in (DECODE_FILE, RKS_FILE, CLASSIFIER_DIR, "model.json",
                                     "model.safetensors", "vocab.json")
                   if not (root / name).exists()]
        if missing:
            raise FileNotFoundError(f"{root}: incomplete model folder, missing {missing} "
                                    "(a folder written by the evaluate stage: data/eval/model)")
        device = torch.device(device)
        generator, vocab, config = load_generator(root, device)
        adm, iek = trained_settings(config, str(root / "model.json"))
        decode_file = root / DECODE_FILE
        decode = from_dict(DecodeConfig, {**json.loads(decode_file.read_text()),
                                          **decode_changes}, str(decode_file))
        classifier, cls_config = load_classifier(root / CLASSIFIER_DIR, device)
        if int(cls_config["image_size"]) != int(config["image_size"]):
            raise ValueError(f"{root}: classifier and generator disagree on the image size")
        rks = read_table(root / RKS_FILE, "rks")
        kb = KnowledgeBase.from_rks(rks, generator.cfg.max_length, max_hamming=iek.hamming_limit)
        return cls(generator, vocab, kb, iek, adm, decode, classifier=classifier,
                   thresholds=load_thresholds(root / CLASSIFIER_DIR / "thresholds.json"),
                   image_size=int(config["image_size"]), device=device, batch_size=batch_size,
                   knowledge_reports=dict(zip(rks["report_id"], rks["report"], strict=True)))

    def knowledge_text(self, match: IEKMatch) -> str:
        """The RKS reports the decoder read for one study, as one text (what the
        ``knowledge`` system of the evaluate stage scores)."""
        missing = [i for i in match.report_ids if i not in self.knowledge_reports]
        if missing:
            raise KeyError(f"knowledge report(s) {missing[:3]} are not in this model's RKS")
        return " ".join(self.knowledge_reports[i] for i in match.report_ids)

    # ------------------------------------------------------------------ the chain
    def diagnose(self, pixels: np.ndarray, progress: bool = False) -> AdmResult:
        """DiagnosisBot and ADM on uint8 images (studies, views, S, S)."""
        if self.classifier is None or self.thresholds is None:
            raise RuntimeError("this ReportWriter has no DiagnosisBot; pass the diagnosis")
        skip = [OBSERVATIONS.index(c) for c in self.adm.skip_classes]
        return compute_adm(self.classifier, pixels, self.thresholds, self.adm.cam_threshold,
                           self.adm.dilation, self.batch_size, self.device, progress=progress,
                           skip_classes=skip)

    def decode(self, inputs: torch.Tensor, knowledge: torch.Tensor) -> list[str]:
        """Reports for a batch: the student's view of the images (B, V, S, S), or cached
        backbone features of that view, and knowledge token ids (B, L)."""
        d = self.decode_cfg
        sequences = beam_decode(self.generator, inputs.to(self.device),
                                knowledge.to(self.device), self.vocab.bos_id, self.vocab.eos_id,
                                d.beam_size, d.max_length, d.length_penalty, d.no_repeat_ngram,
                                d.eos_threshold)
        return [self.vocab.decode(seq) for seq in sequences]

    def decode_images(self, images: torch.Tensor, masks: torch.Tensor,
                      knowledge: torch.Tensor) -> list[str]:
        """Reports for images (B, V, S, S) in [0, 1] with their ADM masks: the student's view
        (``adm`` settings), then :meth:`decode`."""
        student = adm_views(images.to(self.device), masks.to(self.device), self.adm)
        return self.decode(student, knowledge)

    @torch.no_grad()
    def write(self, pixels: np.ndarray, progress: bool = False) -> list[Report]:
        """Reports for uint8 radiographs (studies, views, S, S) at the model's image size; a
        single view fills every view slot the generator has."""
        pixels = np.asarray(pixels)
        if self.image_size and pixels.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"images are {pixels.shape[-2:]} but the model was trained at "
                             f"{self.image_size} px")
        views = self.generator.views
        if pixels.ndim != 4 or pixels.shape[1] not in (1, views):
            raise ValueError(f"expected images (studies, 1 or {views} views, S, S), got "
                             f"{pixels.shape}")
        if pixels.shape[1] != views:
            pixels = np.repeat(pixels, views, axis=1)
        self.generator.eval()
        result = self.diagnose(pixels, progress)
        probabilities, predicted = study_diagnosis(result)
        labels = self.kb.diagnosis_labels(self.iek.rule, predicted.astype(np.float32),
                                          probabilities)
        tokens = torch.from_numpy(self.kb.lookup(labels))
        details = self.kb.lookup_details(labels)
        size = pixels.shape[-1]
        masks = unpack_masks(result.packed.reshape(-1, result.packed.shape[-1]), size)
        masks = masks.reshape(len(pixels), views, size, size)
        texts: list[str] = []
        for start in range(0, len(pixels), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            images = torch.from_numpy(pixels[chunk].astype(np.float32) / 255.0)
            texts.extend(self.decode_images(images, torch.from_numpy(masks[chunk]),
                                            tokens[chunk]))
        return [Report(report=texts[i],
                       diagnosis=[o for o, v in zip(OBSERVATIONS, predicted[i], strict=True)
                                  if v],
                       probabilities={o: round(float(p), 4) for o, p in
                                      zip(OBSERVATIONS, probabilities[i], strict=True)},
                       knowledge=details[i],
                       attention_coverage=[float(c) for c in result.coverage[i]],
                       masks=masks[i])
                for i in range(len(pixels))]

    @torch.no_grad()
    def write_dataset(self, dataset: Any) -> list[str]:
        """Reports for every study of a :class:`~ekagen.generation.data.ReportStudies`, in
        order: its diagnosed knowledge and ADM masks (or cached features) are the diagnosis
        part of the chain, computed once by the pipeline's ``adm`` stage."""
        was_training = self.generator.training
        self.generator.eval()
        texts: list[str] = []
        for start in range(0, len(dataset), self.batch_size):
            items = [dataset[i] for i in range(start, min(start + self.batch_size, len(dataset)))]
            knowledge = torch.stack([it["knowledge"] for it in items])
            if "features" in items[0]:
                key = "adm_features" if self.adm.apply else "features"
                texts.extend(self.decode(torch.stack([it[key] for it in items]), knowledge))
            else:
                texts.extend(self.decode_images(torch.stack([it["images"] for it in items]),
                                                torch.stack([it["masks"] for it in items]),
                                                knowledge))
        self.generator.train(was_training)
        if len(texts) != len(dataset):
            raise RuntimeError(f"decoded {len(texts)} reports for {len(dataset)} studies")
        return texts
