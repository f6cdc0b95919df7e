"""Natural-language generation metrics with pycocoevalcap, on cleaned report text.

Scores are computed on the R2Gen-cleaned text (lower case, punctuation removed, `` . `` between
sentences), never on ``<unk>``-mapped or truncated references. The scorers are called on
whitespace-tokenised text directly, as R2Gen does, so no Stanford tokenizer run is needed.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

NLG_KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")


def _prepare(texts: Sequence[str]) -> dict[int, list[str]]:
    return {i: [" ".join(t.split()) or "."] for i, t in enumerate(texts)}


def bleu4(generated: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU-4 only (cheap enough for model selection every epoch)."""
    from pycocoevalcap.bleu.bleu import Bleu

    score, _ = Bleu(4).compute_score(_prepare(references), _prepare(generated), verbose=0)
    return float(score[3])


def nlg_scores(generated: Sequence[str], references: Sequence[str],
               meteor: bool = True) -> dict[str, float]:
    """BLEU-1..4, METEOR (needs Java; omitted with a clear error if absent), ROUGE-L, CIDEr."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(generated) != len(references):
        raise ValueError(f"{len(generated)} generated reports for {len(references)} references")
    if not generated:
        raise ValueError("no reports to score")
    gts, res = _prepare(references), _prepare(generated)
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out = {f"bleu{i + 1}": float(b) for i, b in enumerate(bleu)}
    out["rouge_l"] = float(Rouge().compute_score(gts, res)[0])
    out["cider"] = float(Cider().compute_score(gts, res)[0])
    if meteor:
        if shutil.which("java") is None:
            raise RuntimeError("METEOR needs Java (java not found on PATH); install a JRE or "
                               "set evaluate.meteor: false")
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            out["meteor"] = float(scorer.compute_score(gts, res)[0])
        finally:
            scorer.close() if hasattr(scorer, "close") else None
    return {k: round(v, 6) for k, v in out.items()}
