"""Choose the CE labeler by name: the rule labeler, or CheXbert from local files.

Both give the same thing, a frame with the 14 observation columns (1, 0, -1, blank) per
report, so everything downstream (CE protocols, bootstrap, ``ekagen label``) is labeler-blind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

Labeler = Callable[[Sequence[str]], pd.DataFrame]
LABELERS = ("rules", "chexbert")


def build_labeler(name: str, chexbert_checkpoint: str | None = None,
                  chexbert_bert_dir: str | None = None, device: str = "cpu",
                  batch_size: int = 16, progress: bool = False) -> Labeler:
    """``rules``: :func:`ekagen.labeler.label_reports`; ``chexbert``: the CheXbert model from
    ``chexbert_checkpoint`` (chexbert.pth) and ``chexbert_bert_dir`` (bert-base-uncased)."""
    if name == "rules":
        from ekagen.labeler import label_reports

        return label_reports
    if name != "chexbert":
        raise ValueError(f"unknown labeler {name!r}; choose one of {', '.join(LABELERS)}")
    if not chexbert_checkpoint or not chexbert_bert_dir:
        raise ValueError("the chexbert labeler needs the path of chexbert.pth (the CheXbert "
                         "authors' checkpoint) and of a local bert-base-uncased folder "
                         "(config.json, vocab.txt); nothing is downloaded")
    from ekagen.labeler.chexbert import load_chexbert

    model = load_chexbert(chexbert_checkpoint, chexbert_bert_dir, device=device)

    def label(texts: Sequence[str]) -> pd.DataFrame:
        return model.label(texts, batch_size=batch_size, progress=progress)

    return label
