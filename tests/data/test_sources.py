"""Loaders and bad-input handling on tiny R2Gen/OpenI fixtures written by the tests."""

import dataclasses
import json

import numpy as np
import pytest

from ekagen.config import DataConfig, from_dict, load_params
from ekagen.data.prepare import prepare
from ekagen.data.records import RecordError, Rejections
from ekagen.data.sources import load_studies
from ekagen.observations import OBSERVATIONS
from tests.conftest import REPO, make_r2gen


def data_cfg(**kw) -> DataConfig:
    """params.yaml's data section (the one home of defaults) with ``kw`` changed."""
    values = {**load_params(REPO / "params.yaml")["data"], "image_size": 32, "min_freq": 1, **kw}
    return from_dict(DataConfig, values, "data")


def r2gen_cfg(files, **kw) -> DataConfig:
    return data_cfg(source="r2gen", annotation=str(files["annotation"]),
                    image_dir=str(files["images"]), **kw)


def test_r2gen_iu_two_views_and_given_splits(tmp_path):
    files = make_r2gen(tmp_path)
    prepared = prepare(r2gen_cfg(files), seed=0)
    table = prepared.studies
    assert table["split"].value_counts().to_dict() == {"train": 6, "val": 2, "test": 2}
    assert prepared.images.shape == (10, 2, 32, 32) and prepared.images.dtype == np.uint8
    assert (table["label_source"] == "labeler").all()
    assert table["report"].iloc[0].endswith(" .")
    assert list(table.columns[-14:]) == list(OBSERVATIONS)


def test_r2gen_mimic_labels_from_chexpert_csv(tmp_path):
    files = make_r2gen(tmp_path, "mimic_cxr")
    cfg = r2gen_cfg(files, dataset="mimic_cxr", views=[0], chexpert_csv=str(files["chexpert"]))
    prepared = prepare(cfg, seed=0)
    table = prepared.studies
    assert prepared.images.shape[1] == 1
    assert (table["label_source"] == "chexpert_csv").all()
    second = table.set_index("id").loc["dicom1"]
    assert second["Cardiomegaly"] == 1 and np.isnan(second["Edema"])


def edit_annotation(files, edit) -> dict:
    payload = json.loads(files["annotation"].read_text())
    edit(payload)
    files["annotation"].write_text(json.dumps(payload))
    return payload


@pytest.mark.parametrize("edit,message,kind", [
    (lambda a: a["train"][0].update(image_path=["../../etc/passwd", "x/1.png"]),
     "escapes the image folder", "image_outside_folder"),
    (lambda a: a["train"][1].update(image_path=["missing/0.png", "missing/1.png"]),
     "does not exist", "missing_image"),
    (lambda a: a["val"][0].update(split="holdout"), "unknown split 'holdout'", "bad_split"),
    (lambda a: a["val"][0].update(split="test"), "listed under 'val'", "split_mismatch"),
    (lambda a: a["test"][0].pop("report"), "non-string 'report'", "bad_report"),
    (lambda a: a["test"][0].update(image_path=[]), "non-empty list of strings",
     "bad_image_path"),
    (lambda a: a["test"][1].update(image_path=["x.png"]), "data.views asks for view 1",
     "too_few_images"),
    (lambda a: a["train"][2].pop("id"), "missing or empty 'id'", "missing_id"),
    (lambda a: a["train"].__setitem__(2, "CXR2"), "entry must be an object", "bad_entry"),
])
def test_bad_records_name_file_record_and_problem(tmp_path, edit, message, kind):
    files = make_r2gen(tmp_path)
    edit_annotation(files, edit)
    with pytest.raises(RecordError, match=message) as info:
        load_studies(r2gen_cfg(files), Rejections(allow=False))
    assert str(files["annotation"]) in str(info.value)
    assert "record " in str(info.value)
    assert info.value.kind == kind


def test_skip_bad_records_lists_each_with_its_reason(tmp_path):
    files = make_r2gen(tmp_path)
    edit_annotation(files, lambda a: (a["train"][0].update(image_path=["../x.png", "y"]),
                                       a["train"][1].update(report="  ..  ")))
    prepared = prepare(r2gen_cfg(files, skip_bad_records=True), seed=0)
    problems = [row["problem"] for row in prepared.rejections.rows]
    assert len(prepared.studies) == 8 and len(problems) == 2
    assert any("escapes" in p for p in problems)
    assert any("empty report" in p for p in problems)


def test_empty_report_and_duplicate_id_are_errors(tmp_path):
    files = make_r2gen(tmp_path)
    edit_annotation(files, lambda a: a["train"][1].update(report=" . "))
    with pytest.raises(RecordError, match="empty report after cleaning"):
        prepare(r2gen_cfg(files), seed=0)
    files = make_r2gen(tmp_path / "dup")
    edit_annotation(files, lambda a: a["val"][0].update(id=a["train"][0]["id"]))
    with pytest.raises(RecordError, match="duplicate id"):
        prepare(r2gen_cfg(files), seed=0)


def test_unreadable_image_names_record(tmp_path):
    files = make_r2gen(tmp_path)
    payload = json.loads(files["annotation"].read_text())
    broken = files["images"] / payload["test"][0]["image_path"][0]
    broken.write_bytes(b"not a png")
    with pytest.raises(RecordError, match="unreadable image") as info:
        prepare(r2gen_cfg(files), seed=0)
    assert payload["test"][0]["id"] in str(info.value)
    assert info.value.kind == "unreadable_image"


@pytest.mark.parametrize("content,message", [
    ("{not json", "not valid JSON"), ("[]", "expected an object"),
    ('{"train": [], "extra": []}', "unknown split"), ('{"train": {}}', "must be a list"),
])
def test_malformed_annotation_files(tmp_path, content, message):
    files = make_r2gen(tmp_path)
    files["annotation"].write_text(content)
    with pytest.raises(ValueError, match=message):
        load_studies(r2gen_cfg(files), Rejections(allow=False))


def test_missing_chexpert_labels_for_a_study(tmp_path):
    files = make_r2gen(tmp_path, "mimic_cxr")
    table = files["chexpert"].read_text().splitlines()
    files["chexpert"].write_text("\n".join(table[:-1]) + "\n")  # drop the last study's labels
    cfg = r2gen_cfg(files, dataset="mimic_cxr", views=[0], chexpert_csv=str(files["chexpert"]))
    with pytest.raises(RecordError, match="no CheXpert labels") as info:
        load_studies(cfg, Rejections(allow=False))
    assert info.value.kind == "missing_labels"


def test_unknown_source_and_missing_paths(tmp_path):
    with pytest.raises(ValueError, match="data.source: expected one of"):
        data_cfg(source="chexpert")
    unchecked = dataclasses.replace(data_cfg(), source="chexpert")  # bypasses the schema
    with pytest.raises(ValueError, match="unknown source"):
        load_studies(unchecked, Rejections(allow=False))
    with pytest.raises(ValueError, match="data.annotation"):
        data_cfg(source="r2gen")


OPENI_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation><uId id="CXR{n}"/><MedlineCitation><Article><Abstract>
<AbstractText Label="FINDINGS">{findings}</AbstractText>
<AbstractText Label="IMPRESSION">Normal.</AbstractText></Abstract></Article></MedlineCitation>
<MeSH><major>normal</major></MeSH>
{images}</eCitation>"""


def test_openi_folder_source(tmp_path):
    from PIL import Image

    reports, pngs = tmp_path / "xml", tmp_path / "png"
    reports.mkdir()
    pngs.mkdir()
    for n in range(12):
        ids = [f"CXR{n}_IM-{n}-{k}" for k in range(2 if n != 11 else 1)]
        findings = "" if n == 10 else "The heart is normal. No effusion."
        images = "".join(f'<parentImage id="{i}"/>' for i in ids)
        (reports / f"{n}.xml").write_text(OPENI_XML.format(n=n, findings=findings, images=images))
        for i in ids:
            Image.fromarray(np.full((20, 20), n * 10, np.uint8)).save(pngs / f"{i}.png")
    cfg = data_cfg(source="openi", reports=str(reports), image_dir=str(pngs))
    prepared = prepare(cfg, seed=1)
    assert len(prepared.studies) == 10  # one without findings, one with a single image
    assert sum(prepared.rejections.excluded.values()) == 2
    assert set(prepared.studies["split"]) == {"train", "val", "test"}
