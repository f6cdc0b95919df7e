"""PKS: centres are raw means of the reports positive for a key; keys and sub-centres."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ekagen.knowledge.pks import (
    build_pks,
    centres_matrix,
    combination_key,
    key_bits,
    positive_mask,
)
from ekagen.observations import OBSERVATIONS


def unit_vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def random_labels(n: int, seed: int = 0) -> pd.DataFrame:
    values = np.random.default_rng(seed).choice([1.0, 0.0, -1.0, np.nan], size=(n, 14),
                                                p=[0.3, 0.3, 0.2, 0.2])
    return pd.DataFrame(values, columns=list(OBSERVATIONS))


def test_positive_mask_counts_only_ones() -> None:
    frame = pd.DataFrame([[1.0, 0.0, -1.0, np.nan] + [0.0] * 10], columns=list(OBSERVATIONS))
    frame["extra"] = "ignored"
    assert positive_mask(frame)[0, :4].tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="lacks"):
        positive_mask(frame.drop(columns=["Fracture"]))
    with pytest.raises(ValueError, match="shape"):
        positive_mask(np.zeros((2, 3)))


def test_keys_round_trip() -> None:
    bits = np.zeros(14, dtype=bool)
    bits[[1, 9]] = True
    key = combination_key(bits)
    assert key == "01000000010000"
    assert key_bits(key).astype(bool).tolist() == bits.tolist()
    with pytest.raises(ValueError):
        key_bits("012")


def test_observation_centres_are_means_and_skips_are_reported() -> None:
    x, labels = unit_vectors(60), random_labels(60)
    labels["Fracture"] = 0.0  # nobody positive: skipped, not an error
    result = build_pks(x, labels, combinations=False)
    assert result.skipped == ["Fracture"]
    table = result.table
    assert list(table["key"]) == [o for o in OBSERVATIONS if o != "Fracture"]
    assert set(table["level"]) == {"observation"} and (table["sub"] == 0).all()
    pos = positive_mask(labels)
    for _, row in table.iterrows():
        members = np.flatnonzero(pos[:, OBSERVATIONS.index(row["key"])])
        np.testing.assert_array_equal(row["members"], members)
        assert row["support"] == len(members)
        np.testing.assert_allclose(row["centre"], x[members].mean(axis=0), atol=1e-6)
        assert row["centre"].dtype == np.float32
    # raw means: not re-normalised
    assert (np.linalg.norm(centres_matrix(table), axis=1) < 0.999).all()


def test_combinations_respect_min_support() -> None:
    x = unit_vectors(7)
    rows = ([{"Cardiomegaly": 1.0}] * 3 + [{"Cardiomegaly": 1.0, "Edema": -1.0}]
            + [{"No Finding": 1.0}] * 2 + [{"Edema": 1.0}])
    labels = pd.DataFrame(rows).reindex(columns=list(OBSERVATIONS)).astype(float)
    table = build_pks(x, labels, min_support=2).table
    combos = table[table["level"] == "combination"]
    cardio, normal = "01000000000000", "00000000100000"
    assert list(combos["key"]) == [cardio, normal]  # support 4 then 2; Edema alone (1) dropped
    assert list(combos["support"]) == [4, 2]  # uncertain Edema counts as not positive
    np.testing.assert_allclose(combos.iloc[0]["centre"], x[:4].mean(axis=0), atol=1e-6)
    np.testing.assert_array_equal(combos.iloc[1]["members"], [4, 5])
    everything = build_pks(x, labels, min_support=1).table
    assert (everything["level"] == "combination").sum() == 3


def test_sub_centres_deterministic_means_and_clipped() -> None:
    rng = np.random.default_rng(3)
    # two well-separated modes of Cardiomegaly reports, plus one Edema report
    a = rng.normal(0, 0.05, (10, 8)) + np.eye(8)[0]
    b = rng.normal(0, 0.05, (6, 8)) + np.eye(8)[1]
    x = np.vstack([a, b, np.eye(8)[2:3]]).astype(np.float32)
    labels = pd.DataFrame([{"Cardiomegaly": 1.0}] * 16 + [{"Edema": 1.0}])
    labels = labels.reindex(columns=list(OBSERVATIONS)).astype(float)
    first = build_pks(x, labels, n_sub_centres=2, combinations=False, seed=7).table
    second = build_pks(x, labels, n_sub_centres=2, combinations=False, seed=7).table
    pd.testing.assert_frame_equal(first.drop(columns=["centre", "members"]),
                                  second.drop(columns=["centre", "members"]))
    np.testing.assert_array_equal(centres_matrix(first), centres_matrix(second))
    assert list(first["key"]) == ["Cardiomegaly#0", "Cardiomegaly#1", "Edema#0"]
    assert list(first["sub"]) == [0, 1, 0] and list(first["support"]) == [10, 6, 1]
    np.testing.assert_allclose(first.iloc[0]["centre"], a.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose(first.iloc[1]["centre"], b.mean(axis=0), atol=1e-5)
    assert len(first.iloc[1]["members"]) == 16  # RKS may pick any Cardiomegaly report


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="label rows"):
        build_pks(unit_vectors(3), random_labels(4))
    with pytest.raises(ValueError, match="at least 1"):
        build_pks(unit_vectors(3), random_labels(3), min_support=0)


def test_parquet_round_trip(tmp_path) -> None:
    table = build_pks(unit_vectors(30), random_labels(30)).table
    table.to_parquet(tmp_path / "pks.parquet")
    back = pd.read_parquet(tmp_path / "pks.parquet")
    np.testing.assert_array_equal(centres_matrix(back), centres_matrix(table))
    assert list(back["key"]) == list(table["key"])
