"""Phantom radiograph renderer: determinism, anatomy, where findings are drawn, contact sheet."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from ekagen.data.phantom import Phantom, render_phantom, save_contact_sheet
from ekagen.data.phantom_location import extract_locations, locate
from ekagen.observations import OBSERVATIONS

SIZE = 64
FINDINGS = [name for name in OBSERVATIONS if name != "No Finding"]
IDS = [f"CXR{i}" for i in range(6)]


def _diff(a: Phantom, b: Phantom) -> np.ndarray:
    return np.abs(a.image.astype(np.int16) - b.image.astype(np.int16))


def _centre(mask: np.ndarray) -> tuple[float, float]:
    """(row, column) of the mask's centre as fractions of the image size."""
    rows, cols = np.nonzero(mask)
    return rows.mean() / mask.shape[0], cols.mean() / mask.shape[1]


# ----------------------------------------------------------------------------- basics
@pytest.mark.parametrize("size", [32, 64, 96])
def test_shape_and_dtype(size):
    p = render_phantom("CXR1", {"Pleural Effusion": 1.0, "Support Devices": 1.0}, size=size)
    assert p.image.shape == (size, size) and p.image.dtype == np.uint8
    assert set(p.masks) == {"Pleural Effusion", "Support Devices"}
    for mask in p.masks.values():
        assert mask.shape == (size, size) and mask.dtype == bool and mask.any()
    assert 0.3 < p.cardiothoracic_ratio < 0.6
    assert p.image.std() > 20  # a film, not a flat image


def test_deterministic_bytes():
    labels = {"Consolidation": 1.0, "Pneumothorax": -1.0, "Edema": float("nan")}
    a = render_phantom("CXR7", labels, "Right upper lobe consolidation.", size=SIZE, seed=3)
    b = render_phantom("CXR7", dict(labels), "Right upper lobe consolidation.", size=SIZE, seed=3)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.masks.keys() == b.masks.keys()
    for name in a.masks:
        assert np.array_equal(a.masks[name], b.masks[name])
    assert a.cardiothoracic_ratio == b.cardiothoracic_ratio


def test_different_ids_seeds_and_views_differ():
    images = {render_phantom(sid, {}, size=SIZE).image.tobytes() for sid in IDS}
    assert len(images) == len(IDS)
    base = render_phantom("CXR1", {}, size=SIZE)
    assert base.image.tobytes() != render_phantom("CXR1", {}, size=SIZE, seed=1).image.tobytes()
    other_view = render_phantom("CXR1", {}, size=SIZE, view=1)
    assert base.image.tobytes() != other_view.image.tobytes()
    # same patient in another view: the heart is the same size relative to the thorax
    assert abs(base.cardiothoracic_ratio - other_view.cardiothoracic_ratio) < 0.05


def test_anatomy_varies_between_studies():
    ratios = {round(render_phantom(sid, {}, size=96).cardiothoracic_ratio, 3) for sid in IDS}
    assert len(ratios) >= 4


def test_large_size_renders():
    p = render_phantom("CXR1", {"Lung Lesion": 1.0}, "Right upper lobe nodule.", size=512)
    assert p.image.shape == (512, 512)
    assert _centre(p.masks["Lung Lesion"])[0] < 0.5


def test_bad_arguments():
    with pytest.raises(ValueError):
        render_phantom("CXR1", {}, size=SIZE, uncertain="maybe")
    with pytest.raises(ValueError):
        render_phantom("CXR1", {}, size=4)


# ----------------------------------------------------------------------------- labels
def test_negative_blank_and_no_finding_draw_nothing():
    blank = render_phantom("CXR2", {}, size=SIZE)
    negatives = {name: 0.0 for name in OBSERVATIONS}
    missing = {name: math.nan for name in OBSERVATIONS}
    normal = {**negatives, "No Finding": 1.0}
    for labels in (negatives, missing, normal, {"Edema": None}):
        p = render_phantom("CXR2", labels, "No effusion.", size=SIZE)
        assert p.masks == {}
        assert p.image.tobytes() == blank.image.tobytes()


@pytest.mark.parametrize("name", FINDINGS)
def test_each_finding_drawn_with_mask_and_changes_pixels(name):
    for sid in IDS[:3]:
        base = render_phantom(sid, {}, size=SIZE)
        p = render_phantom(sid, {name: 1.0}, size=SIZE)
        assert list(p.masks) == [name]
        mask = p.masks[name]
        assert mask.any() and mask.dtype == bool
        diff = _diff(p, base)
        assert diff[mask].mean() > 4.0, (sid, diff[mask].mean())
        assert diff[mask].mean() > 4 * diff[~mask].mean()


def test_findings_lie_in_the_chest():
    for name in FINDINGS:
        if name == "Support Devices":  # tubes and lines run out of the chest
            continue
        for sid in IDS[:3]:
            row, col = _centre(render_phantom(sid, {name: 1.0}, size=SIZE).masks[name])
            assert 0.1 < row < 0.8 and 0.1 < col < 0.9, (name, sid, row, col)


def test_several_findings_together():
    labels = {name: 1.0 for name in FINDINGS}
    p = render_phantom("CXR3", labels, size=SIZE)
    assert set(p.masks) == set(FINDINGS)
    assert p.cardiothoracic_ratio > 0.5


# ----------------------------------------------------------------------------- uncertain
def test_uncertain_none_skips_and_faint_draws_weaker():
    name = "Consolidation"
    base = render_phantom("CXR4", {}, size=SIZE)
    none = render_phantom("CXR4", {name: -1.0}, size=SIZE, uncertain="none")
    assert none.masks == {} and none.image.tobytes() == base.image.tobytes()
    faint = render_phantom("CXR4", {name: -1.0}, size=SIZE, uncertain="faint")
    full = render_phantom("CXR4", {name: 1.0}, size=SIZE)
    assert name in faint.masks and faint.masks[name].any()
    mask = faint.masks[name] & full.masks[name]
    assert 3.0 < _diff(faint, base)[mask].mean() < _diff(full, base)[mask].mean()


def test_uncertain_cardiomegaly_is_borderline():
    for sid in IDS[:3]:
        faint = render_phantom(sid, {"Cardiomegaly": -1.0}, size=96).cardiothoracic_ratio
        full = render_phantom(sid, {"Cardiomegaly": 1.0}, size=96).cardiothoracic_ratio
        normal = render_phantom(sid, {}, size=96).cardiothoracic_ratio
        assert normal < faint < full


# ----------------------------------------------------------------------------- heart
def test_cardiothoracic_ratio():
    for sid in [f"CTR{i}" for i in range(10)]:
        normal = render_phantom(sid, {}, size=SIZE)
        big = render_phantom(sid, {"Cardiomegaly": 1.0}, size=SIZE)
        assert 0.36 <= normal.cardiothoracic_ratio < 0.49, normal.cardiothoracic_ratio
        assert big.cardiothoracic_ratio > 0.52, big.cardiothoracic_ratio
        heart = big.masks["Cardiomegaly"]
        row, col = _centre(heart)
        assert 0.4 < row < 0.85 and 0.35 < col < 0.7  # low and a little to the patient's left


def test_enlarged_cardiomediastinum_is_upper_mediastinum():
    for sid in IDS[:3]:
        p = render_phantom(sid, {"Enlarged Cardiomediastinum": 1.0}, size=SIZE)
        row, col = _centre(p.masks["Enlarged Cardiomediastinum"])
        assert row < 0.55 and 0.4 < col < 0.6


# ----------------------------------------------------------------------------- report locations
LOCATED = [
    ("Pleural Effusion", "Small right pleural effusion.", "lower", "image-left"),
    ("Pleural Effusion", "Large left pleural effusion.", "lower", "image-right"),
    ("Lung Lesion", "Left upper lobe nodule.", "upper", "image-right"),
    ("Lung Lesion", "Mass in the right lower lobe.", "lower", "image-left"),
    ("Consolidation", "Right upper lobe consolidation.", "upper", "image-left"),
    ("Consolidation", "Consolidation in the left lower lobe.", "lower", "image-right"),
    ("Pneumothorax", "Small right apical pneumothorax.", "upper", "image-left"),
    ("Atelectasis", "Left basilar atelectasis.", "lower", "image-right"),
    ("Pneumonia", "Right upper lobe pneumonia.", "upper", "image-left"),
    ("Lung Opacity", "Opacity in the left upper lobe.", "upper", "image-right"),
    ("Pleural Other", "Right apical pleural thickening.", "upper", "image-left"),
    ("Fracture", "Old fracture of a right lower rib.", "lower", "image-left"),
    ("Lung Opacity", "Retrocardiac opacity.", "lower", "image-right"),
]


@pytest.mark.parametrize(("name", "report", "zone", "side"), LOCATED)
def test_report_location_is_followed(name, report, zone, side):
    for sid in IDS:
        row, col = _centre(render_phantom(sid, {name: 1.0}, report, size=SIZE).masks[name])
        assert (row > 0.5) if zone == "lower" else (row < 0.5), (sid, row)
        assert (col < 0.5) if side == "image-left" else (col > 0.5), (sid, col)


def test_bilateral_report_draws_both_sides():
    for sid in IDS[:3]:
        mask = render_phantom(sid, {"Pleural Effusion": 1.0}, "Bilateral pleural effusions.",
                              size=SIZE).masks["Pleural Effusion"]
        assert mask[:, : SIZE // 2].any() and mask[:, SIZE // 2 :].any()


def test_default_effusion_side_is_deterministic_per_study():
    sides = set()
    for sid in [f"EFF{i}" for i in range(12)]:
        a = render_phantom(sid, {"Pleural Effusion": 1.0}, size=SIZE).masks["Pleural Effusion"]
        b = render_phantom(sid, {"Pleural Effusion": 1.0}, size=SIZE).masks["Pleural Effusion"]
        assert np.array_equal(a, b)
        assert _centre(a)[0] > 0.5  # basal
        sides.add((bool(a[:, : SIZE // 2].any()), bool(a[:, SIZE // 2 :].any())))
    assert len(sides) >= 2  # not always the same side


def test_support_devices_follow_report():
    p = render_phantom("CXR5", {"Support Devices": 1.0}, "Left chest wall pacemaker.", size=96)
    row, col = _centre(p.masks["Support Devices"])
    assert col > 0.45  # generator on the patient's left
    assert p.image[p.masks["Support Devices"]].max() > 200  # metal is bright


# ----------------------------------------------------------------------------- extractor
def test_extractor_reads_side_zone_and_negation():
    loc = locate("Small right pleural effusion. No pneumothorax.", "Pleural Effusion")
    assert loc.side == "right" and loc.size == "small"
    assert locate("Small right pleural effusion. No pneumothorax.", "Pneumothorax").side is None
    loc = locate("Bibasilar atelectasis.", "Atelectasis")
    assert loc.side == "both" and loc.zone == "lower"
    loc = locate("Nodule in the left upper lobe.", "Lung Lesion")
    assert loc.side == "left" and loc.zone == "upper" and loc.lobe == "LUL"
    loc = locate("Retrocardiac opacity.", "Lung Opacity")
    assert loc.side == "left" and loc.zone == "lower" and loc.medial
    loc = locate("Right IJ catheter and a pacemaker.", "Support Devices")
    assert set(loc.devices) == {"line", "pacemaker"}
    assert extract_locations("The lungs are clear without effusion or pneumothorax.") == {}


def test_extractor_uses_the_clause_of_the_mention():
    found = extract_locations("Left lower lobe atelectasis and small right pleural effusion.")
    assert found["Atelectasis"].side == "left"
    assert found["Pleural Effusion"].side == "right"


# ----------------------------------------------------------------------------- contact sheet
def test_contact_sheet_is_a_png(tmp_path):
    path = tmp_path / "sheet" / "phantoms.png"
    save_contact_sheet(path, size=64, seed=1)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.size[0] > 400 and im.size[1] > 400
