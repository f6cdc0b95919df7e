"""Study records and the bookkeeping of rejected input.

Bad input is never dropped silently: a per-record problem either stops the stage with an error
naming the file, the record and the problem, or, when ``data.skip_bad_records`` allows it, is
kept in ``rejected.csv`` and counted in the metrics.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

SPLITS = ("train", "val", "test")


class RecordError(ValueError):
    """A problem with one input record, naming the file, the record and what is wrong."""

    def __init__(self, file: str, record: str, problem: str) -> None:
        super().__init__(f"{file}: record {record}: {problem}")
        self.file, self.record, self.problem = file, record, problem


@dataclass
class StudyRecord:
    """One study as read from a source, before cleaning, labelling and splitting."""

    id: str
    report: str
    images: list[str]  # paths (relative to the image folder) or ``phantom:<id>:<view>``
    file: str  # where the record came from, for error messages
    split: str | None = None  # None: assigned by seed later
    labels: dict[str, float] | None = None  # None: the labeler labels the report
    label_source: str = "labeler"
    image_root: str = ""  # folder ``images`` are relative to ("" for phantoms)


@dataclass
class Rejections:
    """Collects rejected records when allowed, raises the first one otherwise."""

    allow: bool
    rows: list[dict[str, str]] = field(default_factory=list)
    #: studies left out by a documented selection rule (not errors), counted per rule
    excluded: Counter = field(default_factory=Counter)

    def exclude(self, rule: str, count: int = 1) -> None:
        self.excluded[rule] += count

    def reject(self, file: str, record: str, problem: str) -> None:
        if not self.allow:
            raise RecordError(file, record, problem)
        self.rows.append({"file": file, "record": record, "problem": problem})

    def __len__(self) -> int:
        return len(self.rows)
