"""Rejection kinds (machine-safe metric keys) and where duplicate studies came from."""

import re

import numpy as np
import pandas as pd
import pytest

from ekagen.data.prepare import _dedupe_and_clean, prepare, prepare_metrics, write_prepared
from ekagen.data.records import REJECTION_KINDS, RecordError, Rejections, StudyRecord
from tests.conftest import make_r2gen
from tests.data.test_sources import edit_annotation, r2gen_cfg

KIND = re.compile(r"^[a-z_]+$")


def test_path_in_problem_text_is_not_a_metric_key(tmp_path):
    import mlflow

    from ekagen.tracking import log_metrics_flat

    files = make_r2gen(tmp_path)
    edit_annotation(files, lambda a: (a["train"][0].update(image_path=["../../etc/passwd",
                                                                        "x.png"]),
                                       a["train"][1].update(report=" . ")))
    cfg = r2gen_cfg(files, skip_bad_records=True)
    prepared = prepare(cfg, seed=0)
    metrics = prepare_metrics(prepared, cfg)
    with mlflow.start_run():  # MLflow refuses metric names with '..' in them
        log_metrics_flat(mlflow, metrics)
    assert metrics["rejected"] == 2
    assert metrics["rejected_by_problem"] == {"empty_report": 1, "image_outside_folder": 1}
    assert all(KIND.match(key) for key in metrics["rejected_by_problem"])
    write_prepared(prepared, tmp_path / "prepared")
    rejected = pd.read_csv(tmp_path / "prepared" / "rejected.csv")
    assert list(rejected.columns) == ["file", "record", "kind", "problem"]
    row = rejected.set_index("kind").loc["image_outside_folder"]
    assert row["problem"] == "image path '../../etc/passwd' escapes the image folder"
    assert row["file"] == str(files["annotation"]) and row["record"].startswith("train[0]")


def test_every_kind_is_machine_safe_and_required():
    assert all(KIND.match(kind) for kind in REJECTION_KINDS)
    rejections = Rejections(allow=True)
    with pytest.raises(TypeError):
        rejections.reject("f", "r", "problem")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="unknown rejection kind"):
        rejections.reject("f", "r", "problem", kind="../etc")  # type: ignore[arg-type]
    with pytest.raises(RecordError) as info:
        Rejections(allow=False).reject("f", "r", "gone", kind="missing_image")
    assert info.value.kind == "missing_image" and str(info.value) == "f: record r: gone"


def _duplicate_test0(files) -> dict:
    return edit_annotation(files, lambda a: a["test"][0].update(id=a["train"][3]["id"]))


def test_duplicate_id_names_both_places(tmp_path):
    files = make_r2gen(tmp_path)
    study = _duplicate_test0(files)["train"][3]["id"]
    expected = (f"duplicate id {study}: first at train[3] in {files['annotation']}, "
                f"again at test[0]")
    with pytest.raises(RecordError) as info:
        prepare(r2gen_cfg(files), seed=0)
    assert info.value.problem == expected and info.value.kind == "duplicate_id"
    assert str(info.value) == f"{files['annotation']}: record {study}: {expected}"


def test_skipped_duplicate_id_row_names_both_places(tmp_path):
    files = make_r2gen(tmp_path)
    study = _duplicate_test0(files)["train"][3]["id"]
    prepared = prepare(r2gen_cfg(files, skip_bad_records=True), seed=0)
    write_prepared(prepared, tmp_path / "prepared")
    rows = pd.read_csv(tmp_path / "prepared" / "rejected.csv").to_dict("records")
    assert rows == [{"file": str(files["annotation"]), "record": study, "kind": "duplicate_id",
                     "problem": f"duplicate id {study}: first at train[3] in "
                                f"{files['annotation']}, again at test[0]"}]
    assert len(prepared.studies) == 9


def test_duplicate_id_across_openi_files_names_both_files():
    studies = [StudyRecord(id="CXR1", report="Heart is normal.", images=[], file=name)
               for name in ("a/1.xml", "a/2.xml")]
    with pytest.raises(RecordError, match=r"^a/2.xml: record CXR1: duplicate id CXR1: "
                                          r"first in a/1.xml, again in a/2.xml$"):
        _dedupe_and_clean(studies, "iu_xray", Rejections(allow=False))


def test_image_cache_rejections_carry_the_image_kind(tmp_path):
    from PIL import Image

    from ekagen.data.image_cache import build_image_cache

    Image.fromarray(np.zeros((20, 20), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    tasks = [("file", (str(tmp_path), [name]), 16) for name in ("ok.png", "gone.png", "bad.png")]
    rejections = Rejections(allow=True)
    images, failed = build_image_cache(tasks, 1, ["a", "b", "c"], ["f"] * 3, rejections)
    assert images.shape == (1, 1, 16, 16) and failed == [1, 2]
    assert [(r["record"], r["kind"]) for r in rejections.rows] == [
        ("b", "missing_image"), ("c", "unreadable_image")]
