"""Word vocabulary of the generator, saved as JSON (never a pickle)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ekagen.data.text import tokenize

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)


@dataclass
class Vocabulary:
    """Maps words to ids; ids 0..3 are pad, bos, eos, unk.

    ``max_length`` counts every token of an encoded sequence, bos and eos included.
    """

    itos: list[str]
    min_freq: int
    max_length: int

    def __post_init__(self) -> None:
        if tuple(self.itos[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"vocabulary must start with {SPECIALS}, got {self.itos[:4]}")
        self.stoi = {word: i for i, word in enumerate(self.itos)}

    pad_id = 0
    bos_id = 1
    eos_id = 2
    unk_id = 3

    def __len__(self) -> int:
        return len(self.itos)

    @classmethod
    def build(cls, reports: Iterable[str], min_freq: int, max_length: int) -> Vocabulary:
        """Words seen at least ``min_freq`` times, most frequent first (ties alphabetical)."""
        counts = Counter(word for report in reports for word in tokenize(report))
        kept = sorted((w for w, c in counts.items() if c >= min_freq),
                      key=lambda w: (-counts[w], w))
        return cls(list(SPECIALS) + [w for w in kept if w not in SPECIALS], min_freq, max_length)

    def encode(self, report: str, max_length: int | None = None) -> list[int]:
        """``[bos, words..., eos]`` truncated to ``max_length`` tokens (eos always kept)."""
        limit = max_length or self.max_length
        ids = [self.stoi.get(word, self.unk_id) for word in tokenize(report)][: limit - 2]
        return [self.bos_id, *ids, self.eos_id]

    def decode(self, ids: Iterable[int]) -> str:
        """Words of ``ids`` up to the first eos, skipping pad and bos."""
        words = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i in (self.pad_id, self.bos_id):
                continue
            words.append(self.itos[i] if 0 <= i < len(self.itos) else UNK)
        return " ".join(words)

    def save(self, path: str | Path) -> None:
        payload = {"min_freq": self.min_freq, "max_length": self.max_length,
                   "specials": {"pad": PAD, "bos": BOS, "eos": EOS, "unk": UNK}, "itos": self.itos}
        Path(path).write_text(json.dumps(payload, indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        try:
            payload = json.loads(Path(path).read_text())
            return cls(payload["itos"], int(payload["min_freq"]), int(payload["max_length"]))
        except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a valid ekagen vocabulary ({exc})") from exc
