"""The packaged encoder loads offline and embeds into unit-norm 384-d vectors."""

from __future__ import annotations

import numpy as np
import pytest

from ekagen.knowledge import embedding as emb


def test_default_name_resolves_to_packaged_model() -> None:
    path = emb.resolve_model_path(emb.DEFAULT_MODEL)
    assert (path / "config.json").is_file()
    assert emb.resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == path
    assert emb.resolve_model_path(str(path)) == path.resolve()


def test_unknown_model_is_a_clear_error_without_download() -> None:
    with pytest.raises(FileNotFoundError, match="never downloads"):
        emb.resolve_model_path("some-org/some-model-that-is-not-here")


def test_bad_device_and_batch_size() -> None:
    with pytest.raises(ValueError, match="device"):
        emb.resolve_device("tpu")
    with pytest.raises(ValueError, match="batch_size"):
        emb.embed_texts(["x"], batch_size=0)
    assert emb.resolve_device("auto") in ("cpu", "cuda")


def test_packaged_model_embeds_offline() -> None:
    texts = [
        "the heart is enlarged . there is a small pleural effusion .",
        "cardiomegaly with a small pleural effusion .",
        "the bones are intact . a nasogastric tube is in place .",
        "the heart is enlarged . there is a small pleural effusion .",
    ]
    vectors = emb.embed_texts(texts, batch_size=2, progress=False)
    assert vectors.dtype == np.float32 and vectors.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 2]
    np.testing.assert_allclose(vectors[0], vectors[3], atol=1e-5)  # batching/order invariant
    assert emb.load_encoder() is emb.load_encoder()  # cached per (model, device)
    assert emb.embed_texts([], progress=False).shape == (0, 384)
