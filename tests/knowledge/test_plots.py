"""The projection figure: deterministic, and it shows every group, centre and RKS report."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ekagen.data.vocab import Vocabulary
from ekagen.knowledge.pks import build_pks
from ekagen.knowledge.plots import plot_embedding_projection, project_2d, report_groups
from ekagen.knowledge.rks import build_rks
from ekagen.observations import OBSERVATIONS
from tests.pictures import axes_box, pixels_of, rgb_pixels


def test_report_groups() -> None:
    frame = pd.DataFrame([{"No Finding": 1.0}, {"No Finding": 1.0, "Edema": 1.0},
                          {"Edema": 1.0, "Atelectasis": 1.0}, {"Edema": -1.0}])
    groups = report_groups(frame.reindex(columns=list(OBSERVATIONS)).astype(float))
    assert groups.tolist() == ["No Finding", "Edema", "Atelectasis", "No Finding"]


def test_pca_projection_is_deterministic_and_linear() -> None:
    x = np.random.default_rng(0).standard_normal((30, 6)).astype(np.float32)
    coords, centre = project_2d(x, x[:10].mean(axis=0, keepdims=True))
    again, _ = project_2d(x.copy())
    np.testing.assert_array_equal(coords, again)
    np.testing.assert_allclose(centre[0], coords[:10].mean(axis=0), atol=1e-5)


#: three groups with dark tab20 colours (even indices), so their faint dots are measurable
GROUPS = ["Atelectasis", "Consolidation", "Lung Lesion"]








def _grouped_knowledge(n_per_group: int = 15):
    """Reports in three well-separated clusters, one positive observation per cluster."""
    rng = np.random.default_rng(1)
    rows = np.repeat(np.arange(len(GROUPS)), n_per_group)
    x = (3 * np.eye(len(GROUPS), 8)[rows] + 0.3 * rng.standard_normal((len(rows), 8)))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    labels = pd.DataFrame(0.0, index=range(len(rows)), columns=list(OBSERVATIONS))
    for i, g in enumerate(rows):
        labels.loc[i, GROUPS[g]] = 1.0
    pks = build_pks(x, labels).table
    vocab = Vocabulary.build(["a b"], 1, 8)
    ids = [str(i) for i in range(len(rows))]
    rks = build_rks(pks, x, ids, ["a b"] * len(rows), vocab)
    return x, labels, pks, rks


def test_plot_shows_each_group_its_centre_and_rks_report(tmp_path) -> None:
    from matplotlib import colormaps
    from scipy import ndimage

    x, labels, pks, rks = _grouped_knowledge()
    path = plot_embedding_projection(x, labels, pks, rks, tmp_path / "plots" / "kb.png",
                                     max_points=30)  # < 45 reports: the sampled branch
    rgb = rgb_pixels(path)
    assert rgb.shape == (7 * 120, 9 * 120, 3)  # Figure(figsize=(9, 7), dpi=120)
    assert len(np.unique(rgb.reshape(-1, 3), axis=0)) > 50  # not a blank canvas
    top, bottom, left, right = axes_box(rgb)
    inside = rgb[top + 2 : bottom - 1, left + 2 : right - 1]  # the data area, legend excluded
    assert (inside.min(axis=-1) < 250).mean() > 0.002  # something is drawn in it

    cmap = colormaps["tab20"]
    centre_at, dots_at = {}, {}
    for i, name in enumerate(OBSERVATIONS):
        solid = np.asarray(cmap(i)[:3]) * 255  # PKS X and RKS ring: full opacity
        faded = 0.35 * solid + 0.65 * 255  # report dots: alpha 0.35 over white
        solid_px, faded_px = pixels_of(inside, solid), pixels_of(inside, faded)
        if name in GROUPS:
            assert solid_px.sum() > 100, f"{name}: no PKS centre / RKS report drawn"
            assert faded_px.sum() > 20, f"{name}: no report dots drawn"
            dots_at[name] = np.argwhere(faded_px).mean(axis=0)
            # two blobs of the solid colour: the filled X, and the ring round a black dot
            blobs, count = ndimage.label(solid_px)
            assert count == 2, f"{name}: {count} solid blobs, expected the X and the ring"
            middles = [np.argwhere(blobs == b).mean(axis=0).round().astype(int) for b in (1, 2)]
            kinds = sorted("ring" if inside[r, c].max() < 80 else
                           "X" if pixels_of(inside[r, c], solid) else "?" for r, c in middles)
            assert kinds == ["X", "ring"], f"{name}: {kinds}"
            centre_at[name] = middles
        else:  # no report carries it: no colour of it anywhere in the data area
            # (anti-aliased edges of the other colours can hit a few pixels)
            assert solid_px.sum() + faded_px.sum() < 10, name
    # each group's centre and RKS report are drawn among that group's own reports
    for name, middles in centre_at.items():
        for at in middles:
            assert min(dots_at, key=lambda g: np.linalg.norm(dots_at[g] - at)) == name

    again = plot_embedding_projection(x, labels, pks, rks, tmp_path / "again.png", max_points=30)
    np.testing.assert_array_equal(rgb_pixels(again), rgb)  # seeded sample: the same figure
