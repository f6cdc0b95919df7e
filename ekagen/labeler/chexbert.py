"""CheXbert report labeler (Smit et al., EMNLP 2020) run from local files only.

CheXbert is a BERT-base encoder fine-tuned to give, for each of the 14 CheXpert observations,
one of blank / positive / negative / uncertain. Its public checkpoint is the labeler behind
the clinical-efficacy (CE) numbers of most report generation papers from 2023 on (directly, or
through the ``f1chexbert`` package, which loads the same ``chexbert.pth``), so labelling
generated and reference reports with it makes our CE comparable to theirs. The rule-based
labeler in :mod:`ekagen.labeler` stays the default; this one is opt-in because its weights are
not redistributable and must be fetched by the user.

Files (nothing is ever downloaded; Hugging Face is forced offline before transformers loads)
------------------------------------------------------------------------------------------------
* ``evaluate.chexbert_checkpoint``: the ``chexbert.pth`` of the CheXbert authors. It is a
  ``torch.save`` of ``{"epoch", "model_state_dict", "optimizer_state_dict"}``; the state dict
  was taken from an ``nn.DataParallel`` model, so every key starts with ``module.``:
  ``module.bert.<BertModel keys>`` (embeddings, 12 encoder layers, pooler) and
  ``module.linear_heads.<i>.weight`` / ``.bias`` for ``i`` in 0..13. A bare state dict, or
  keys without ``module.``, are accepted too. The pooler and the ``position_ids`` /
  ``token_type_ids`` buffers are ignored when present (the labeler reads the [CLS] hidden
  state, not the pooled output). The file is read with ``weights_only=True``: nothing but
  tensors and plain containers is ever unpickled.
* ``evaluate.chexbert_bert_dir``: a local ``bert-base-uncased`` folder with ``config.json``
  (builds the encoder) and ``vocab.txt`` (the uncased WordPiece tokenizer CheXbert uses).

Model and text handling (as in the authors' ``src/``)
------------------------------------------------------
The hidden state of [CLS] goes through dropout (a no-op in eval mode) into 14 linear heads, in
:data:`CHEXBERT_CONDITIONS` order: heads 0..12 have four classes (0 blank, 1 positive,
2 negative, 3 uncertain), head 13 (No Finding) has two (0 blank, 1 positive). The class with
the largest logit wins. A report is stripped, its newlines become spaces and runs of
whitespace collapse to one space; it is then tokenised and cut to 512 tokens ([CLS], the
first 510 WordPieces, [SEP]). A report that is empty after cleaning is encoded as
[CLS] [SEP] and still goes through the model, as CheXbert does: its labels are whatever the
network predicts for that input, not forced to blank. ``None``/NaN texts are empty reports.

Output values follow the project convention (CheXbert's own ``label.py`` writes the same):
class 0 -> NaN, 1 -> 1.0, 2 -> 0.0, 3 -> -1.0; No Finding 0 -> NaN, 1 -> 1.0. Columns are in
:data:`ekagen.observations.OBSERVATIONS` order, not CheXbert's head order.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ekagen.knowledge.embedding import _force_offline
from ekagen.observations import NEGATIVE, OBSERVATIONS, POSITIVE, UNCERTAIN

CHEXBERT_CONDITIONS: tuple[str, ...] = (
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
    "No Finding",
)
"""Observation of each CheXbert head, in head order (``linear_heads.0`` .. ``.13``)."""

HEAD_CLASSES: tuple[int, ...] = (4,) * 13 + (2,)
"""Number of classes of each head: blank/positive/negative/uncertain, No Finding blank/positive."""

MAX_TOKENS = 512
"""Longest encoded report, [CLS] and [SEP] included (CheXbert's cut-off)."""

CLASS_VALUES: tuple[float, ...] = (math.nan, POSITIVE, NEGATIVE, UNCERTAIN)
"""Project value of CheXbert class 0 (blank), 1 (positive), 2 (negative), 3 (uncertain)."""

_CHECKPOINT_HINT = (
    "download chexbert.pth from the CheXbert authors and point evaluate.chexbert_checkpoint at it"
)
_BERT_DIR_HINT = (
    "evaluate.chexbert_bert_dir needs a local bert-base-uncased folder (config.json, vocab.txt)"
)
# Keys of the public checkpoint that the labeler does not use.
_IGNORED_SUFFIXES = ("embeddings.position_ids", "embeddings.token_type_ids")
_IGNORED_PREFIXES = ("bert.pooler.",)
_SHOW = 5  # offending keys listed in an error message

# column j of the output takes CheXbert head _COLUMN_HEADS[j]
_COLUMN_HEADS = np.array([CHEXBERT_CONDITIONS.index(name) for name in OBSERVATIONS])


class _CheXbertNet(nn.Module):
    """BERT encoder + dropout + 14 linear heads on the [CLS] hidden state (CheXbert's layout)."""

    def __init__(self, bert: nn.Module, hidden_size: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.bert = bert
        self.dropout = nn.Dropout(dropout)
        self.linear_heads = nn.ModuleList(nn.Linear(hidden_size, n) for n in HEAD_CLASSES)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        cls = self.dropout(hidden[:, 0])
        return [head(cls) for head in self.linear_heads]


def clean_report(text: object) -> str:
    """CheXbert's text cleaning; ``None``/NaN become the empty report."""
    if text is None or text is pd.NA or (isinstance(text, float) and math.isnan(text)):
        return ""
    if not isinstance(text, str):
        raise TypeError(f"report text must be a string, got {type(text).__name__}")
    return " ".join(text.strip().replace("\n", " ").split())


class CheXbertLabeler:
    """A loaded CheXbert model and its tokenizer; build one with :func:`load_chexbert`."""

    def __init__(self, net: _CheXbertNet, tokenizer: Any, device: torch.device,
                 max_tokens: int = MAX_TOKENS) -> None:
        self.net = net.to(device).eval()
        self.tokenizer = tokenizer
        self.device = device
        self.max_tokens = max_tokens

    def encode(self, texts: Sequence[object]) -> list[list[int]]:
        """Token ids of each cleaned report: [CLS] ... [SEP], at most ``max_tokens`` long."""
        cleaned = [clean_report(text) for text in texts]
        if not cleaned:
            return []
        encoded = self.tokenizer(cleaned, add_special_tokens=True, truncation=True,
                                 max_length=self.max_tokens)
        return [list(ids) for ids in encoded["input_ids"]]

    def predict_classes(self, texts: Sequence[object], batch_size: int = 16,
                        progress: bool = False) -> np.ndarray:
        """Winning class of every head, shape (len(texts), 14), in CheXbert head order."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        ids = self.encode(texts)
        classes = np.zeros((len(ids), len(HEAD_CLASSES)), dtype=np.int64)
        # shortest first, ties in input order: little padding, and a fixed order
        order = sorted(range(len(ids)), key=lambda i: (len(ids[i]), i))
        pad_id = self.tokenizer.pad_token_id or 0
        starts = range(0, len(order), batch_size)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, desc="CheXbert", unit="batch", dynamic_ncols=True)
        self.net.eval()
        with torch.inference_mode():
            for start in starts:
                chunk = order[start:start + batch_size]
                width = max(len(ids[i]) for i in chunk)
                batch = torch.full((len(chunk), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, i in enumerate(chunk):
                    batch[row, :len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
                    mask[row, :len(ids[i])] = 1
                logits = self.net(batch.to(self.device), mask.to(self.device))
                winners = torch.stack([out.argmax(dim=1) for out in logits], dim=1)
                classes[chunk] = winners.cpu().numpy()
        return classes

    def label(self, texts: Sequence[str], batch_size: int = 16,
              progress: bool = False) -> pd.DataFrame:
        """Label reports: one row per text (input order), one column per observation.

        Columns are :data:`~ekagen.observations.OBSERVATIONS`; values 1.0 positive, 0.0
        negative, -1.0 uncertain, NaN blank. A ``pd.Series`` keeps its index. Reports are
        batched by length; the result does not depend on ``batch_size``.
        """
        classes = self.predict_classes(texts, batch_size=batch_size, progress=progress)
        values = np.asarray(CLASS_VALUES, dtype=float)[classes[:, _COLUMN_HEADS]]
        index = texts.index if isinstance(texts, pd.Series) else None
        return pd.DataFrame(values, columns=list(OBSERVATIONS), index=index, dtype=float)


def _bert_files(bert_dir: Path) -> tuple[Path, Path]:
    if not bert_dir.is_dir():
        raise FileNotFoundError(f"{bert_dir}: no such folder; {_BERT_DIR_HINT}")
    files = (bert_dir / "config.json", bert_dir / "vocab.txt")
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"{file}: missing; {_BERT_DIR_HINT}")
    return files


def _read_state_dict(checkpoint: Path) -> dict[str, torch.Tensor]:
    """The model state dict of ``checkpoint``, with any ``module.`` prefix removed."""
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: no such file; {_CHECKPOINT_HINT}")
    try:
        content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise ValueError(
            f"{checkpoint}: cannot be read as a weights-only torch checkpoint ({exc}); "
            f"{_CHECKPOINT_HINT}"
        ) from exc
    if isinstance(content, Mapping) and isinstance(content.get("model_state_dict"), Mapping):
        content = content["model_state_dict"]
    if not isinstance(content, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in content.values()
    ):
        raise ValueError(
            f"{checkpoint}: expected a state dict of tensors (or a dict with "
            f"'model_state_dict'); {_CHECKPOINT_HINT}"
        )
    state = {}
    for key, value in content.items():
        name = key[len("module."):] if key.startswith("module.") else key
        if name.endswith(_IGNORED_SUFFIXES) or name.startswith(_IGNORED_PREFIXES):
            continue
        state[name] = value
    return state


def _check_state_dict(state: Mapping[str, torch.Tensor], net: _CheXbertNet, checkpoint: Path,
                      config_file: Path, hidden_size: int) -> None:
    embeddings = state.get("bert.embeddings.word_embeddings.weight")
    if embeddings is not None and embeddings.ndim == 2 and embeddings.shape[1] != hidden_size:
        raise ValueError(
            f"{checkpoint}: BERT hidden size is {embeddings.shape[1]} but {config_file} says "
            f"hidden_size={hidden_size}; use the config.json of the model the checkpoint was "
            "trained from (bert-base-uncased for CheXbert)"
        )
    expected = net.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [
        f"{key} {tuple(state[key].shape)} (expected {tuple(value.shape)})"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    problems = [
        f"{what} ({len(keys)}): {', '.join(keys[:_SHOW])}{', ...' if len(keys) > _SHOW else ''}"
        for what, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                           ("wrong shapes", shapes))
        if keys
    ]
    if problems:
        raise ValueError(
            f"{checkpoint}: not a CheXbert checkpoint matching {config_file} (expected "
            f"module.bert.* and module.linear_heads.0-13, heads 0-12 with 4 classes and head 13 "
            f"with 2): " + "; ".join(problems)
        )


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"CheXbert device {device!r} requested but torch sees no CUDA GPU")
    return torch.device(device)


def load_chexbert(checkpoint: str | Path, bert_dir: str | Path,
                  device: str = "cpu") -> CheXbertLabeler:
    """Build the CheXbert labeler from a local ``chexbert.pth`` and ``bert-base-uncased`` folder.

    ``device`` is ``cpu``, ``cuda``, ``cuda:N`` or ``auto``. Raises ``FileNotFoundError`` for
    a missing file or folder and ``ValueError`` for a checkpoint that does not fit the layout.
    """
    checkpoint, bert_dir = Path(checkpoint).expanduser(), Path(bert_dir).expanduser()
    config_file, vocab_file = _bert_files(bert_dir)
    state = _read_state_dict(checkpoint)
    target = _resolve_device(device)

    _force_offline()
    from transformers import BertConfig, BertModel, BertTokenizerFast

    config = BertConfig.from_json_file(str(config_file))
    # positional: the vocabulary argument is ``vocab_file`` in transformers 4, ``vocab`` in 5
    tokenizer = BertTokenizerFast(str(vocab_file), do_lower_case=True)
    with vocab_file.open(encoding="utf-8") as lines:
        entries = sum(1 for _ in lines)
    if tokenizer.vocab_size != entries:
        raise ValueError(
            f"{vocab_file}: the tokenizer read {tokenizer.vocab_size} of its {entries} entries; "
            f"{_BERT_DIR_HINT}"
        )
    if len(tokenizer) > config.vocab_size:
        raise ValueError(
            f"{vocab_file} has {len(tokenizer)} tokens but {config_file} says "
            f"vocab_size={config.vocab_size}; both must come from the same bert-base-uncased"
        )
    net = _CheXbertNet(BertModel(config, add_pooling_layer=False), config.hidden_size)
    _check_state_dict(state, net, checkpoint, config_file, config.hidden_size)
    net.load_state_dict(state, strict=True)
    max_tokens = min(MAX_TOKENS, int(config.max_position_embeddings))
    return CheXbertLabeler(net, tokenizer, target, max_tokens=max_tokens)
