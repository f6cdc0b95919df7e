"""Reading report files and writing label files.

``read_reports(path)`` accepts:

* ``.txt``: one report per line; a blank line is an error (it would silently shift the rows);
* ``.csv``: a header with a ``report`` column;
* ``.jsonl``: one JSON object per line with a ``report`` field (blank lines are skipped);
* ``.parquet``: a ``report`` column.

Every problem raises :class:`ReportFileError` (a ``ValueError``) whose message names the file,
the record (line or row number, 1-based) and the problem.

``label_file(input_path, output_path=None)`` labels every report and returns (and, given an
output path, writes as CSV) a table with the column ``report`` followed by the 14 observations,
written as 1, 0, -1, or empty for not mentioned.

Command line: ``python -m ekagen.labeler.files INPUT [OUTPUT.csv]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

from ekagen.labeler import label_reports
from ekagen.labeler.select import Labeler
from ekagen.observations import OBSERVATIONS

REPORT_COLUMN = "report"
SUFFIXES = (".txt", ".csv", ".jsonl", ".parquet")


class ReportFileError(ValueError):
    """A report file that cannot be read, or a record in it that is not a usable report."""


def _check_report(path: Path, where: str, value: object) -> str:
    if not isinstance(value, str):
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        shown = "missing value" if missing else type(value).__name__
        raise ReportFileError(f"{path}: {where}: report is not a string ({shown})")
    if not value.strip():
        raise ReportFileError(f"{path}: {where}: empty report")
    return value


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ReportFileError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise ReportFileError(f"{path}: cannot read file ({exc.strerror or exc})") from exc


def _read_txt(path: Path) -> pd.DataFrame:
    lines = _read_text(path).splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            raise ReportFileError(f"{path}: line {number}: blank line (one report per line)")
    return pd.DataFrame({REPORT_COLUMN: lines})


def _read_jsonl(path: Path) -> pd.DataFrame:
    rows = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReportFileError(f"{path}: line {number}: invalid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise ReportFileError(f"{path}: line {number}: not a JSON object")
        if REPORT_COLUMN not in record:
            raise ReportFileError(f"{path}: line {number}: no '{REPORT_COLUMN}' field")
        _check_report(path, f"line {number}", record[REPORT_COLUMN])
        rows.append(record)
    return pd.DataFrame(rows, columns=None if rows else [REPORT_COLUMN])


def _read_table(path: Path) -> pd.DataFrame:
    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            frame = pd.read_parquet(path)
    except pd.errors.EmptyDataError as exc:
        raise ReportFileError(f"{path}: empty file (no header)") from exc
    except UnicodeDecodeError as exc:
        raise ReportFileError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise ReportFileError(f"{path}: cannot read file ({exc})") from exc
    except Exception as exc:  # parser errors of pandas / pyarrow
        raise ReportFileError(f"{path}: unreadable {path.suffix} file ({exc})") from exc
    if REPORT_COLUMN not in frame.columns:
        columns = ", ".join(map(str, frame.columns)) or "none"
        raise ReportFileError(f"{path}: no '{REPORT_COLUMN}' column (columns: {columns})")
    for number, value in enumerate(frame[REPORT_COLUMN].tolist(), start=1):
        _check_report(path, f"row {number}", value)
    return frame.reset_index(drop=True)


def read_reports(path: str | Path) -> pd.DataFrame:
    """Read a report file into a DataFrame with a ``report`` column (plus any other columns)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ReportFileError(
            f"{path}: unknown report file type '{path.suffix or '(none)'}'; "
            f"expected one of {', '.join(SUFFIXES)}"
        )
    if not path.is_file():
        raise ReportFileError(f"{path}: file not found")
    if suffix == ".txt":
        return _read_txt(path)
    if suffix == ".jsonl":
        return _read_jsonl(path)
    return _read_table(path)


def label_file(input_path: str | Path, output_path: str | Path | None = None,
               labeler: Labeler = label_reports) -> pd.DataFrame:
    """Label every report of a file; write ``report`` + 14 columns as CSV if asked.

    ``labeler`` is the rule labeler unless another is given (see
    :func:`ekagen.labeler.select.build_labeler`).

    The returned frame uses pandas' nullable ``Int64`` for the labels (1, 0, -1, <NA>), which
    is also how the CSV is written: integers, and an empty field for not mentioned.
    """
    reports = read_reports(input_path)[REPORT_COLUMN].reset_index(drop=True)
    labels = labeler(reports.tolist())[list(OBSERVATIONS)].reset_index(drop=True)
    labels = labels.astype("Int64")
    table = pd.concat([reports.to_frame(), labels], axis=1)
    table = table[[REPORT_COLUMN, *OBSERVATIONS]]
    if output_path is not None:
        output_path = Path(output_path)
        if output_path.resolve() == Path(input_path).resolve():
            raise ValueError(f"{output_path}: output would overwrite the input file")
        output_path.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(output_path, index=False)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Label chest X-ray reports (CheXpert classes).")
    parser.add_argument("input", help="reports: .txt (one per line), .csv, .jsonl or .parquet")
    parser.add_argument("output", nargs="?", help="CSV to write (default: print to stdout)")
    args = parser.parse_args(argv)
    try:
        table = label_file(args.input, args.output)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output is None:
        table.to_csv(sys.stdout, index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
