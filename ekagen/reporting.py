"""Image files to reports: what ``ekagen generate`` and the ``ekagen serve`` demo share.

Both read files with :func:`~ekagen.data.images.load_image` and write through
:meth:`~ekagen.inference.ReportWriter.write`, the evaluate stage's path, so the page, the
command line and the pipeline give the same report for the same image and settings.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from ekagen.config import DecodeConfig, from_dict
from ekagen.data.images import load_image
from ekagen.inference import Report, ReportWriter
from ekagen.knowledge.iek import IEKMatch
from ekagen.knowledge.pks import key_bits
from ekagen.observations import OBSERVATIONS


def with_decoding(writer: ReportWriter, **changes: Any) -> ReportWriter:
    """A view of ``writer`` with some decoding settings changed (checked like params.yaml);
    the models and knowledge are shared, not copied."""
    if not changes:
        return writer
    decode = from_dict(DecodeConfig, {**asdict(writer.decode_cfg), **changes}, "decoding")
    changed = copy.copy(writer)
    changed.decode_cfg = decode
    return changed


def study_pixels(paths: Sequence[str | Path], image_size: int, views: bool) -> np.ndarray:
    """uint8 images (studies, views, S, S): with ``views`` the files are the views of one
    study, otherwise each file is a study of its own (one view, filling every view slot)."""
    if not paths:
        raise ValueError("no image given")
    pixels = np.stack([load_image(p, image_size) for p in paths])
    return pixels[None] if views else pixels[:, None]


def report_files(writer: ReportWriter, paths: Sequence[str | Path], views: bool = False
                 ) -> tuple[np.ndarray, list[Report]]:
    """Reports for image files (PNG, JPEG, TIFF or DICOM), with the decoded images they were
    written from (:func:`study_pixels`), which the callers draw their overlays on."""
    if views and len(paths) > writer.generator.views:
        raise ValueError(f"{len(paths)} views given, but the model reads at most "
                         f"{writer.generator.views} per study")
    pixels = study_pixels(paths, writer.image_size, views)
    return pixels, writer.write(pixels)


def combination_names(match: IEKMatch) -> list[str]:
    """The observations of the label combination a study's knowledge came from."""
    if match.rule in ("exact", "nearest", "nearest_unbounded"):
        return [o for o, bit in zip(OBSERVATIONS, key_bits(match.key), strict=True) if bit]
    return [name for name in match.key.split("+") if name]
