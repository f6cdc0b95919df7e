"""Write a tiny CheXbert checkpoint and BERT folder in the public file layout (test helper).

``write_tiny_chexbert(folder, seed)`` gives ``(folder / "chexbert.pth", folder / "bert")``:

* ``bert/config.json``: a BERT config like bert-base-uncased's, shrunk to hidden size 32,
  2 layers, 2 attention heads, intermediate size 64 (512 positions, as the real one);
* ``bert/vocab.txt``: the five special tokens plus a few hundred radiology words, wordpieces
  and punctuation marks;
* ``chexbert.pth``: ``torch.save`` of ``{"epoch", "model_state_dict", "optimizer_state_dict"}``
  with ``module.``-prefixed keys named as transformers 2.5 named them when the authors trained
  CheXbert (``module.bert.*`` including the pooler, no ``position_ids`` buffer), 13 four-class
  heads and one two-class head. Weights are random from ``seed``, scaled so that different
  reports get different labels. The same seed gives byte-identical files.

The key names are written out here rather than taken from the installed transformers, so a
test fails if the loader stops accepting the public names.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
HIDDEN, LAYERS, ATTENTION_HEADS, INTERMEDIATE, POSITIONS = 32, 2, 2, 64, 512
HEAD_CLASSES = (4,) * 13 + (2,)

_WORDS = """
the a an of and or with without no not is are was were be been there this that these those to
in on at for from by as than then it its which but also may might can could should likely
possible possibly probable probably suggest suggests suggestive concerning compatible consistent
representing represent represents cannot excluded exclude ruled out rule evidence seen
identified noted demonstrated visualized appear appears appearance again previous prior
comparison compared study studies exam examination interval change changes changed unchanged
stable new old persistent resolved resolving improved improving worsened worsening increased
increasing decreased decreasing redemonstrated since today
heart cardiac cardiomediastinal mediastinal mediastinum silhouette contour contours size
sized enlarged enlargement cardiomegaly normal abnormal top upper lower limits limit borderline
mild mildly moderate moderately severe small large tiny trace minimal minor focal diffuse
patchy bilateral unilateral right left both lung lungs pulmonary lobe lobes base bases basilar
basal apex apical upper middle lingula perihilar hilar hila retrocardiac costophrenic angle
angles hemidiaphragm diaphragm pleural pleura effusion effusions fluid thickening plaque
plaques calcified calcification calcifications pneumothorax pneumothoraces air airspace
opacity opacities opacification density densities infiltrate infiltrates consolidation
consolidations atelectasis atelectatic collapse volume loss scarring scar fibrosis fibrotic
edema congestion vascular vascularity interstitial markings prominence prominent
cephalization pneumonia infection infectious aspiration nodule nodules mass masses lesion
lesions granuloma granulomas tumor cancer metastasis metastases fracture fractures fractured
rib ribs clavicle spine vertebral compression deformity degenerative osseous bony bone bones
structures intact acute chronic healed healing old
tube tubes line lines catheter catheters picc port pacemaker pacer leads lead wire wires
sternotomy clips clip stent stents valve drain drains device devices hardware endotracheal
enteric nasogastric tip terminates projects carina svc atrium junction gastric stomach
support chest radiograph radiographs frontal lateral view views pa ap portable upright supine
semi erect film image images finding findings impression clear well expanded inflated aerated
hyperinflated hyperinflation emphysema copd otherwise unremarkable remarkable within limits
cardiopulmonary process disease abnormality abnormalities significant definite definitely
obvious apparent visible difficult assess evaluate evaluation limited obscured obscuring
overlying soft tissue tissues aorta aortic tortuous knob atherosclerotic thoracic abdomen
upper quadrant surgical postoperative post status removal removed placement placed position
positioned appropriate satisfactory standard cm mm approximately level above below
""".split()
_PIECES = """
##s ##es ##ed ##ing ##al ##ly ##ic ##ity ##ation ##ous ##ar ##ary ##ia ##itis ##osis ##ectasis
##y ##er ##ers ##ment ##ness ##ial ##ion ##ions ##ive ##ized ##ac ##ma ##o ##a ##e ##i
##en ##on ##um ##us
""".split()
_MARKS = list(". , : ; ( ) - / ? ! ' \" % + = 0 1 2 3 4 5 6 7 8 9 10".split())


def vocabulary() -> list[str]:
    """The tiny vocabulary: special tokens first ([PAD] has id 0), no duplicates."""
    seen: dict[str, None] = dict.fromkeys(SPECIAL_TOKENS)
    for token in [*_WORDS, *_PIECES, *_MARKS]:
        seen.setdefault(token, None)
    return list(seen)


def bert_config(vocab_size: int) -> dict:
    """A bert-base-uncased style config.json, shrunk."""
    return {
        "architectures": ["BertForMaskedLM"],
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": HIDDEN,
        "initializer_range": 0.02,
        "intermediate_size": INTERMEDIATE,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": POSITIONS,
        "model_type": "bert",
        "num_attention_heads": ATTENTION_HEADS,
        "num_hidden_layers": LAYERS,
        "pad_token_id": 0,
        "type_vocab_size": 2,
        "vocab_size": vocab_size,
    }


def tiny_state_dict(vocab_size: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """CheXbert's model state dict with public key names (``module.`` prefix), random weights."""
    generator = torch.Generator().manual_seed(seed)

    def normal(*shape: int, std: float) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * std

    def layer_norm(prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weight": 1.0 + normal(HIDDEN, std=0.1),
                f"{prefix}.bias": normal(HIDDEN, std=0.1)}

    def linear(prefix: str, out: int, inp: int, std: float) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weight": normal(out, inp, std=std),
                f"{prefix}.bias": normal(out, std=0.1)}

    bert = "module.bert"
    state: dict[str, torch.Tensor] = {
        f"{bert}.embeddings.word_embeddings.weight": normal(vocab_size, HIDDEN, std=1.0),
        f"{bert}.embeddings.position_embeddings.weight": normal(POSITIONS, HIDDEN, std=0.5),
        f"{bert}.embeddings.token_type_embeddings.weight": normal(2, HIDDEN, std=0.5),
        **layer_norm(f"{bert}.embeddings.LayerNorm"),
    }
    for i in range(LAYERS):
        layer = f"{bert}.encoder.layer.{i}"
        for name in ("query", "key", "value"):
            state.update(linear(f"{layer}.attention.self.{name}", HIDDEN, HIDDEN, std=0.3))
        state.update(linear(f"{layer}.attention.output.dense", HIDDEN, HIDDEN, std=0.3))
        state.update(layer_norm(f"{layer}.attention.output.LayerNorm"))
        state.update(linear(f"{layer}.intermediate.dense", INTERMEDIATE, HIDDEN, std=0.3))
        state.update(linear(f"{layer}.output.dense", HIDDEN, INTERMEDIATE, std=0.3))
        state.update(layer_norm(f"{layer}.output.LayerNorm"))
    state.update(linear(f"{bert}.pooler.dense", HIDDEN, HIDDEN, std=0.3))
    for i, classes in enumerate(HEAD_CLASSES):
        state.update(linear(f"module.linear_heads.{i}", classes, HIDDEN, std=1.0))
    return state


def save_checkpoint(path: Path, state: dict[str, torch.Tensor], **save_kwargs: object) -> Path:
    """Save ``state`` as the authors did: with the epoch and an (Adam-like) optimizer state."""
    first = next(iter(state.values()))
    optimizer = {
        "state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros_like(first),
                      "exp_avg_sq": torch.zeros_like(first)}},
        "param_groups": [{"lr": 2e-5, "betas": (0.9, 0.999), "eps": 1e-8,
                          "weight_decay": 0.0, "amsgrad": False, "params": [0]}],
    }
    payload = {"epoch": 3, "model_state_dict": state, "optimizer_state_dict": optimizer}
    torch.save(payload, path, **save_kwargs)
    return path


def write_tiny_chexbert(folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """Write ``folder/chexbert.pth`` and ``folder/bert/`` (config.json, vocab.txt)."""
    folder = Path(folder)
    bert_dir = folder / "bert"
    bert_dir.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary()
    (bert_dir / "vocab.txt").write_text("".join(f"{token}\n" for token in vocab),
                                        encoding="utf-8")
    (bert_dir / "config.json").write_text(
        json.dumps(bert_config(len(vocab)), indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    checkpoint = save_checkpoint(folder / "chexbert.pth", tiny_state_dict(len(vocab), seed))
    return checkpoint, bert_dir
