"""Natural-language generation metrics with pycocoevalcap, on cleaned report text.

Scores are computed on the R2Gen-cleaned text (lower case, punctuation removed, `` . `` between
sentences), never on ``<unk>``-mapped or truncated references. The scorers are called on
whitespace-tokenised text directly, as R2Gen does, so no Stanford tokenizer run is needed.

One pycocoevalcap pass (:func:`nlg_scores_with_studies`) yields both the corpus scores and the
per-study ones the bootstrap and the per-study table use (:mod:`ekagen.evaluation.bootstrap`):
sentence BLEU-4 (Bleu's per-sentence list), ROUGE-L per study and METEOR segment scores.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence

import numpy as np

NLG_KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")


def _prepare(texts: Sequence[str]) -> dict[int, list[str]]:
    return {i: [" ".join(t.split()) or "."] for i, t in enumerate(texts)}


def _check(generated: Sequence[str], references: Sequence[str]) -> None:
    if len(generated) != len(references):
        raise ValueError(f"{len(generated)} generated reports for {len(references)} references")
    if not len(generated):
        raise ValueError("no reports to score")


def bleu4(generated: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU-4 only (cheap enough for model selection every epoch)."""
    from pycocoevalcap.bleu.bleu import Bleu

    score, _ = Bleu(4).compute_score(_prepare(references), _prepare(generated), verbose=0)
    return float(score[3])


def rouge_l_studies(gts: dict[int, list[str]], res: dict[int, list[str]]
                    ) -> tuple[float, np.ndarray]:
    """pycocoevalcap ROUGE-L of prepared texts: the corpus score and the per-study scores."""
    from pycocoevalcap.rouge.rouge import Rouge

    score, scores = Rouge().compute_score(gts, res)
    return float(score), np.asarray(scores, dtype=float)


def meteor_studies(gts: dict[int, list[str]], res: dict[int, list[str]]
                   ) -> tuple[float, np.ndarray]:
    """One METEOR 1.5 run (Java) on prepared texts: the jar's aggregate and the segment scores.

    The aggregate is computed by the jar from pooled statistics, so it is not the mean of the
    segment scores.
    """
    if shutil.which("java") is None:
        raise RuntimeError("METEOR needs Java (java not found on PATH); install a JRE or "
                           "set evaluate.meteor: false")
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()
    try:
        score, segments = scorer.compute_score(gts, res)
    finally:
        scorer.close() if hasattr(scorer, "close") else None
    return float(score), np.asarray(segments, dtype=float)


def nlg_scores_with_studies(generated: Sequence[str], references: Sequence[str],
                            meteor: bool = True
                            ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """:func:`nlg_scores` and, from the same scorer runs, per-study scores: ``bleu4``
    (pycocoevalcap's sentence BLEU-4), ``rouge_l`` and, with ``meteor``, ``meteor`` (segment
    scores), each an (n,) array in the order of ``generated``."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    _check(generated, references)
    gts, res = _prepare(references), _prepare(generated)
    bleu, sentence_bleu = Bleu(4).compute_score(gts, res, verbose=0)
    out = {f"bleu{i + 1}": float(b) for i, b in enumerate(bleu)}
    studies = {"bleu4": np.asarray(sentence_bleu[3], dtype=float)}
    out["rouge_l"], studies["rouge_l"] = rouge_l_studies(gts, res)
    out["cider"] = float(Cider().compute_score(gts, res)[0])
    if meteor:
        out["meteor"], studies["meteor"] = meteor_studies(gts, res)
    return {k: round(v, 6) for k, v in out.items()}, studies


def nlg_scores(generated: Sequence[str], references: Sequence[str],
               meteor: bool = True) -> dict[str, float]:
    """BLEU-1..4, METEOR (needs Java; omitted with a clear error if absent), ROUGE-L, CIDEr."""
    return nlg_scores_with_studies(generated, references, meteor)[0]
