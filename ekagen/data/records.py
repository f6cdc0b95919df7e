"""Study records and the bookkeeping of rejected input.

Bad input is never dropped silently: a per-record problem either stops the stage with an error
naming the file, the record and the problem, or, when ``data.skip_bad_records`` allows it, is
kept in ``rejected.csv`` and counted in the metrics.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, get_args

SPLITS = ("train", "val", "test")

#: What went wrong, as a fixed identifier: the free-text problem may hold paths and ids, so
#: only the kind may become a metric key (``rejected_by_problem``, logged to MLflow).
RejectionKind = Literal[
    "bad_entry",  # an R2Gen entry that is not an object
    "missing_id",
    "bad_report",  # missing or not a string
    "bad_image_path",  # 'image_path' not a non-empty list of strings
    "bad_split",  # a split name not in SPLITS
    "split_mismatch",  # listed under one split, declaring another
    "too_few_images",  # fewer images than data.views asks for
    "image_outside_folder",
    "missing_image",
    "unreadable_image",
    "image_error",  # any other failure decoding or rendering a study's images
    "missing_labels",  # no row in data.chexpert_csv
    "duplicate_id",
    "empty_report",  # nothing left after cleaning
]
REJECTION_KINDS: tuple[str, ...] = get_args(RejectionKind)
REJECTED_COLUMNS = ("file", "record", "kind", "problem")


class RecordError(ValueError):
    """A problem with one input record, naming the file, the record and what is wrong."""

    def __init__(self, file: str, record: str, problem: str, *, kind: RejectionKind) -> None:
        super().__init__(f"{file}: record {record}: {problem}")
        self.file, self.record, self.problem, self.kind = file, record, problem, kind


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
    where: str = ""  # the entry within ``file`` (``train[3]``); "" when the file is the record

    def place(self, beside: StudyRecord | None = None) -> str:
        """``at train[3] in annotation.json``, leaving out the file ``beside`` already named."""
        at = f"at {self.where}" if self.where else ""
        if beside is not None and beside.file == self.file:
            return at or "in the same file"
        return f"{at} in {self.file}".lstrip()


@dataclass
class Rejections:
    """Collects rejected records when allowed, raises the first one otherwise."""

    allow: bool
    rows: list[dict[str, str]] = field(default_factory=list)
    #: studies left out by a documented selection rule (not errors), counted per rule
    excluded: Counter = field(default_factory=Counter)

    def exclude(self, rule: str, count: int = 1) -> None:
        self.excluded[rule] += count

    def reject(self, file: str, record: str, problem: str, *, kind: RejectionKind) -> None:
        if kind not in REJECTION_KINDS:
            raise ValueError(f"unknown rejection kind {kind!r}; known: {REJECTION_KINDS}")
        if not self.allow:
            raise RecordError(file, record, problem, kind=kind)
        self.rows.append({"file": file, "record": record, "kind": kind, "problem": problem})

    def __len__(self) -> int:
        return len(self.rows)
