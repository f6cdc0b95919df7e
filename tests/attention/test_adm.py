from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from ekagen.attention.adm import (
    AdmResult,
    adm_from_cams,
    apply_adm,
    coverage,
    coverage_summary,
    diagnosis_table,
    dilate,
    load_study_diagnosis,
    pack_masks,
    phantom_regions,
    region_overlap,
    unpack_masks,
    write_adm,
)
from ekagen.attention.gallery import save_gallery
from ekagen.observations import OBSERVATIONS
from tests.pictures import rgb_pixels


def _cams() -> torch.Tensor:
    cams = torch.zeros(2, 3, 16, 16)
    cams[:, 0, 2:5, 2:5] = 0.9  # class 0: top-left blob
    cams[:, 1, 10:13, 10:13] = 0.8  # class 1: bottom-right blob
    cams[:, 2, 6:9, 6:9] = 0.3  # class 2: below the CAM threshold
    return cams


def test_adm_is_the_or_over_predicted_classes():
    predicted = torch.tensor([[True, True, False], [True, False, True]])
    masks = adm_from_cams(_cams(), predicted, cam_threshold=0.5, dilation=0)
    assert masks[0, 3, 3] and masks[0, 11, 11] and masks[0].sum() == 18
    assert masks[1, 3, 3] and not masks[1, 11, 11] and masks[1].sum() == 9  # class 2 too faint


def test_empty_mask_when_nothing_is_predicted():
    masks = adm_from_cams(_cams(), torch.zeros(2, 3, dtype=torch.bool), 0.5, dilation=3)
    assert not masks.any()


def test_dilation_grows_the_mask():
    mask = torch.zeros(1, 16, 16, dtype=torch.bool)
    mask[0, 7, 7] = True
    assert dilate(mask, 0).sum() == 1
    assert dilate(mask, 1).sum() == 9 and dilate(mask, 2).sum() == 25
    grown = adm_from_cams(_cams(), torch.tensor([[True, False, False]] * 2), 0.5, dilation=1)
    assert grown[0].sum() == 25 and grown[0, 1, 1] and not grown[0, 0, 0]


@pytest.mark.parametrize("size", [16, 13])
def test_packbits_round_trip(size):
    rng = np.random.default_rng(0)
    masks = rng.random((3, 2, size, size)) < 0.3
    packed = pack_masks(masks)
    assert packed.dtype == np.uint8 and packed.shape == (3, 2, int(np.ceil(size * size / 8)))
    np.testing.assert_array_equal(unpack_masks(packed, size), masks)
    np.testing.assert_array_equal(unpack_masks(packed[1, 0], size), masks[1, 0])
    np.testing.assert_allclose(coverage(masks), masks.mean(axis=(-1, -2)))


def test_apply_adm_theta_gamma_beta():
    images = torch.full((3, 1, 4, 4), 0.8)
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[0, :, :2] = True  # coverage 0.5 > theta: applied
    masks[1, 0, 0] = True  # coverage 1/16 <= theta: unchanged
    # image 2: empty mask: unchanged
    out = apply_adm(images, masks, theta=0.4, gamma=0.25)
    torch.testing.assert_close(out[0, 0, :, :2], torch.full((4, 2), 0.8))  # beta 1 inside
    torch.testing.assert_close(out[0, 0, :, 2:], torch.full((4, 2), 0.2))  # gamma outside
    torch.testing.assert_close(out[1:], images[1:])
    with_beta = apply_adm(images, masks, theta=0.4, gamma=0.25, beta=0.5)
    torch.testing.assert_close(with_beta[0, 0, :, :2], torch.full((4, 2), 0.4))
    # exactly theta is not "more than theta"
    torch.testing.assert_close(apply_adm(images, masks, theta=0.5, gamma=0.0), images)
    # (B, H, W) images, 3 channels, and masks of another size are handled
    assert apply_adm(images[:, 0], masks, 0.4, 0.25).shape == (3, 4, 4)
    rgb = apply_adm(images.expand(-1, 3, -1, -1), masks, 0.4, 0.25)
    torch.testing.assert_close(rgb[0, 2, :, 3], torch.full((4,), 0.2))
    big = apply_adm(torch.ones(1, 1, 8, 8), masks[:1], 0.4, 0.0)
    assert big[0, 0, :, :4].eq(1).all() and big[0, 0, :, 4:].eq(0).all()


def test_region_overlap_against_chance():
    masks = np.zeros((2, 10, 10), bool)
    regions = np.zeros((2, 10, 10), bool)
    regions[:, :5, :] = True  # half the image
    masks[0, 1:3, 1:3] = True  # fully inside
    masks[1, 6:8, 6:8] = True  # fully outside
    out = region_overlap(masks, regions, seed=0)
    assert out["images_compared"] == 2
    assert out["adm_inside"] == pytest.approx(0.5)
    assert out["expected_random"] == pytest.approx(0.5)
    assert out["ratio_vs_expected"] == pytest.approx(1.0)
    only_inside = region_overlap(masks[:1], regions[:1])
    assert only_inside["adm_inside"] == 1.0 and only_inside["ratio_vs_expected"] == 2.0
    assert 0.0 <= only_inside["shifted_random"] <= 1.0


def test_phantom_regions_union_of_drawn_findings():
    calls = []

    class Fake:
        def __init__(self, masks):
            self.masks = masks

    def render(study_id, labels, report, *, size, seed, view, uncertain):
        calls.append((study_id, report, view, labels["Cardiomegaly"]))
        a = np.zeros((size, size), bool)
        b = np.zeros((size, size), bool)
        a[0, 0], b[1, 1] = True, True
        return Fake({"Cardiomegaly": a, "Pleural Effusion": b})

    table = pd.DataFrame({"id": ["X"], "report": ["heart is big ."],
                          **{o: [1.0 if o == "Cardiomegaly" else np.nan] for o in OBSERVATIONS}})
    regions = phantom_regions(table, [0, 0], [0, 1], 4, 42, "faint", render=render)
    assert regions.shape == (2, 4, 4) and regions[:, 0, 0].all() and regions[:, 1, 1].all()
    assert regions.sum() == 4 and calls == [("X", "heart is big .", 0, 1.0),
                                            ("X", "heart is big .", 1, 1.0)]


def test_diagnosis_table_and_study_diagnosis(tmp_path):
    probs = np.zeros((2, 2, 14), np.float32)
    probs[0, 0, 1], probs[0, 1, 1], probs[1, 1, 9] = 0.9, 0.2, 0.7
    predicted = probs >= 0.5
    masks = np.zeros((2, 2, 8, 8), bool)
    masks[0, 0, :4] = True
    result = AdmResult(pack_masks(masks), probs, predicted, coverage(masks).astype(np.float32), 8)
    studies = pd.DataFrame({"id": ["a", "b"], "split": ["train", "test"]})
    table = diagnosis_table(studies, result)
    assert len(table) == 4 and table["coverage"].tolist() == [0.5, 0, 0, 0]
    write_adm(result, table, tmp_path)
    study = load_study_diagnosis(tmp_path)
    assert study["Cardiomegaly"].tolist() == [1, 0]  # OR over views
    assert study["Pleural Effusion"].tolist() == [0, 1]
    assert study["prob:Cardiomegaly"].tolist() == pytest.approx([0.9, 0.0])  # max over views
    summary = coverage_summary(result.coverage)
    assert summary["fraction_empty"] == 0.75 and summary["images"] == 4




def _square(rgb: np.ndarray, grey: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the region drawn in the flat ``grey`` (rows and columns
    with at least 20 such pixels, so caption anti-aliasing does not count)."""
    hits = (np.abs(rgb - grey).max(axis=-1) <= 1)
    rows = np.flatnonzero(hits.sum(axis=1) >= 20)
    cols = np.flatnonzero(hits.sum(axis=0) >= 20)
    assert len(rows) and len(cols), f"no panel drawn in grey {grey}"
    return rows[0], cols[0], rows[-1] + 1 - rows[0], cols[-1] + 1 - cols[0]


def test_gallery_draws_each_image_with_its_own_mask_in_red(tmp_path):
    greys = (90, 140, 190)  # one flat image per panel, so each panel can be found by colour
    images = np.stack([np.full((16, 16), g, np.uint8) for g in greys])
    masks = np.zeros((3, 16, 16), bool)
    masks[0, 2:6, 8:14] = True  # top right, wider than tall (a transpose would show)
    masks[1, 10:14, 1:5] = True  # bottom left
    # image 2: empty mask, no overlay
    path = save_gallery(tmp_path / "g.png", images, masks, ["a", "b\nsecond line", "c"],
                        columns=2)
    rgb = rgb_pixels(path)
    assert rgb.shape == (2 * 400, 2 * 320, 3)  # 2 x 2 panels of 3.2 x 4.0 in at 100 dpi
    red = (rgb[..., 0] - rgb[..., 1:].max(axis=-1)) > 40
    expected_red = np.zeros(rgb.shape[:2], bool)
    panels = []
    for i, grey in enumerate(greys):
        top, left, height, width = _square(rgb, grey)
        panels.append((top, left))
        assert abs(height - width) <= 2 and width > 200  # the 16 x 16 image, square and large
        cell = width / 16
        if masks[i].any():
            r, c = np.nonzero(masks[i])
            r0, r1 = round(top + r.min() * cell), round(top + (r.max() + 1) * cell)
            c0, c1 = round(left + c.min() * cell), round(left + (c.max() + 1) * cell)
            region = red[r0:r1, c0:c1]
            assert region.mean() > 0.9, f"panel {i}: mask not overlaid in red"
            expected_red[max(r0 - 2, 0) : r1 + 2, max(c0 - 2, 0) : c1 + 2] = True
            area = (r1 - r0) * (c1 - c0)
        else:
            area = 0
        # outside the mask the image is shown unchanged, in its own grey
        shown = np.abs(rgb[top : top + height, left : left + width] - grey).max(axis=-1) <= 1
        assert abs(shown.sum() - (height * width - area)) < 0.03 * height * width, i
    assert red.sum() > 0 and not (red & ~expected_red).any()  # no red outside the masks
    # panels in reading order: 0 | 1 on the first row, 2 below 0
    (t0, l0), (t1, l1), (t2, l2) = panels
    assert abs(t0 - t1) <= 2 and l1 > l0 + 200 and t2 > t0 + 300 and abs(l2 - l0) <= 2
