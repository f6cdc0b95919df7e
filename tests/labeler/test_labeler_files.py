"""read_reports / label_file: formats, error messages and the written CSV."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from ekagen.labeler.files import ReportFileError, label_file, main, read_reports
from ekagen.observations import OBSERVATIONS

GOOD = ["No acute disease.", "Small right pleural effusion.", "Possible left lower lobe pneumonia."]


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".txt", ".csv", ".jsonl", ".parquet"])
def test_read_each_format(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"reports{suffix}"
    if suffix == ".txt":
        _write(path, "\n".join(GOOD) + "\n")
    elif suffix == ".csv":
        pd.DataFrame({"id": [1, 2, 3], "report": GOOD}).to_csv(path, index=False)
    elif suffix == ".jsonl":
        _write(path, "\n".join(json.dumps({"report": r}) for r in GOOD) + "\n")
    else:
        pd.DataFrame({"report": GOOD}).to_parquet(path)
    frame = read_reports(path)
    assert frame["report"].tolist() == GOOD


def _message(path: Path) -> str:
    with pytest.raises(ValueError) as info:
        read_reports(path)
    assert isinstance(info.value, ReportFileError)
    message = str(info.value)
    assert str(path) in message
    return message


def test_txt_blank_line_names_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.txt", "No acute disease.\n\nCardiomegaly.\n")
    assert "line 2" in _message(path) and "blank" in _message(path)


def test_csv_missing_column(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "text\nNo acute disease.\n")
    assert "'report' column" in _message(path)


def test_csv_empty_report_names_row(tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", 'id,report\n1,No acute disease.\n2,""\n3," "\n')
    message = _message(path)
    assert "row 2" in message and "empty report" in message


def test_csv_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_bytes(b"report\n\xff\xfe broken \x00\n")
    assert "UTF-8" in _message(path) or "unreadable" in _message(path)


def test_jsonl_errors_name_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "a.jsonl", '{"report": "Clear lungs."}\n{"report": 3}\n')
    message = _message(path)
    assert "line 2" in message and "not a string" in message
    path = _write(tmp_path / "b.jsonl", '{"report": "Clear lungs."}\n{"text": "x"}\n')
    assert "line 2" in _message(path) and "'report'" in _message(path)
    path = _write(tmp_path / "c.jsonl", '{"report": "Clear lungs."}\n{not json\n')
    assert "line 2" in _message(path) and "invalid JSON" in _message(path)
    path = _write(tmp_path / "d.jsonl", '["Clear lungs."]\n')
    assert "line 1" in _message(path) and "not a JSON object" in _message(path)
    path = _write(tmp_path / "e.jsonl", '{"report": "   "}\n')
    assert "line 1" in _message(path) and "empty report" in _message(path)


def test_parquet_errors_name_row(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pd.DataFrame({"report": ["Clear lungs.", None]}).to_parquet(path)
    message = _message(path)
    assert "row 2" in message and "not a string" in message
    path = tmp_path / "b.parquet"
    pd.DataFrame({"report": [1, 2]}).to_parquet(path)
    assert "row 1" in _message(path) and "int" in _message(path)
    path = tmp_path / "c.parquet"
    pd.DataFrame({"other": ["x"]}).to_parquet(path)
    assert "'report' column" in _message(path)
    path = _write(tmp_path / "d.parquet", "this is not parquet")
    assert "unreadable" in _message(path)


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    assert "not found" in _message(tmp_path / "absent.csv")
    path = _write(tmp_path / "reports.xlsx", "x")
    assert "unknown report file type" in _message(path)


def test_label_file_output_format(tmp_path: Path) -> None:
    source = _write(tmp_path / "in.txt", "\n".join(GOOD) + "\n")
    out = tmp_path / "out" / "labels.csv"
    table = label_file(source, out)
    assert list(table.columns) == ["report", *OBSERVATIONS]
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == ",".join(["report", *OBSERVATIONS])
    cells = [line.split(",") for line in lines[1:]]
    assert len(cells) == len(GOOD)
    for row in cells:
        assert all(value in {"1", "0", "-1", ""} for value in row[1:])
    by_name = dict(zip(OBSERVATIONS, cells[1][1:], strict=True))
    assert by_name["Pleural Effusion"] == "1" and by_name["No Finding"] == ""
    assert by_name["Cardiomegaly"] == ""
    assert dict(zip(OBSERVATIONS, cells[2][1:], strict=True))["Pneumonia"] == "-1"
    reread = pd.read_csv(out)
    assert reread["report"].tolist() == GOOD
    assert table["Pleural Effusion"].tolist() == [pd.NA, 1, pd.NA] or \
        table["Pleural Effusion"].iloc[1] == 1


def test_label_file_without_output_and_cli(tmp_path: Path, capsys) -> None:
    source = tmp_path / "in.jsonl"
    _write(source, "\n".join(json.dumps({"report": r, "id": i}) for i, r in enumerate(GOOD)))
    table = label_file(source)
    assert len(table) == 3 and str(table["No Finding"].dtype) == "Int64"
    assert main([str(source)]) == 0
    assert capsys.readouterr().out.startswith("report,Atelectasis,")
    assert main([str(tmp_path / "missing.txt")]) == 2
    with pytest.raises(ValueError, match="overwrite"):
        label_file(source, source)
