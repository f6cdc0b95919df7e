"""The projection figure is written, deterministic, and colours reports as documented."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ekagen.data.vocab import Vocabulary
from ekagen.knowledge.pks import build_pks
from ekagen.knowledge.plots import plot_embedding_projection, project_2d, report_groups
from ekagen.knowledge.rks import build_rks
from ekagen.observations import OBSERVATIONS


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


def test_plot_written(tmp_path) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = pd.DataFrame(rng.choice([1.0, 0.0], size=(40, 14), p=[0.2, 0.8]),
                          columns=list(OBSERVATIONS))
    pks = build_pks(x, labels).table
    vocab = Vocabulary.build(["a b"], 1, 8)
    rks = build_rks(pks, x, [str(i) for i in range(40)], ["a b"] * 40, vocab)
    path = plot_embedding_projection(x, labels, pks, rks, tmp_path / "plots" / "kb.png",
                                     max_points=30)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
