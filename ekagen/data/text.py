"""Report cleaning and tokenisation, following R2Gen's treatment of IU X-Ray and MIMIC-CXR.

R2Gen lower-cases a report, splits it into sentences, strips punctuation from each sentence
and joins them back with `` . ``; metrics in the literature are computed on that form, so the
pipeline keeps it as *the* report text (references are scored cleaned, never ``<unk>``-mapped).
"""

from __future__ import annotations

import re

_IU_FIXES = [("..", "."), ("1. ", ""), (". 2. ", ". "), (". 3. ", ". "), (". 4. ", ". "),
             (". 5. ", ". "), (" 2. ", ". "), (" 3. ", ". "), (" 4. ", ". "), (" 5. ", ". ")]
_MIMIC_FIXES = [("\n", " "), ("__", "_"), ("  ", " "), ("..", ".")]
_PUNCT = re.compile(r"[.,?;*!%^&_+():\-\[\]{}]")
_SENTENCE_SPLIT = re.compile(r"\.\s+|\.$")
_NUMBERING = re.compile(r"(^|\s)\d+\.\s")


def _strip_sentence(sentence: str) -> str:
    sentence = sentence.replace('"', "").replace("/", "").replace("\\", "").replace("'", "")
    sentence = _PUNCT.sub("", sentence.strip().lower())
    return " ".join(sentence.split())


def clean_report(text: str, dataset: str = "iu_xray") -> str:
    """Clean a report the way R2Gen does for ``iu_xray`` or ``mimic_cxr``.

    Returns ``"sent one . sent two ."``, or ``""`` when nothing is left (callers treat an
    empty cleaned report as a rejected record, never as a silent blank).
    """
    if dataset not in ("iu_xray", "mimic_cxr"):
        raise ValueError(f"unknown dataset {dataset!r} for report cleaning (iu_xray, mimic_cxr)")
    text = text.strip().lower()
    fixes = _IU_FIXES if dataset == "iu_xray" else _MIMIC_FIXES
    for old, new in fixes:
        while old in text:
            text = text.replace(old, new)
    if dataset == "mimic_cxr":
        text = _NUMBERING.sub(" ", text)
    sentences = [_strip_sentence(s) for s in _SENTENCE_SPLIT.split(text)]
    sentences = [s for s in sentences if s]
    return " . ".join(sentences) + " ." if sentences else ""


def tokenize(report: str) -> list[str]:
    """Split a cleaned report into word tokens (the full stop is a token of its own)."""
    return report.split()
