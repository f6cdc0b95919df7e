"""Phantom chest radiographs rendered from a study's 14 CheXpert labels (and its report).

The default dataset pairs real IU X-Ray report text with these images. Each image is a
procedural PA chest film (see :mod:`ekagen.data.phantom_anatomy`) on which every positive
observation is drawn where a radiologist would look for it (:mod:`ekagen.data.phantom_findings`),
on the side and in the zone the report names (:mod:`ekagen.data.phantom_location`). The masks of
where each finding was drawn let Grad-CAM attention be checked against the truth.

Rendering is deterministic: the anatomy comes from ``(study_id, seed)``, the acquisition
(positioning, exposure, noise) from ``(study_id, seed, view)`` and each finding from
``(study_id, seed, observation)``, all through ``numpy.random.default_rng`` seeded with a
BLAKE2 hash; so the same study rendered with and without a finding differs only where the
finding was drawn.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from ekagen.data import phantom_findings as fnd
from ekagen.data.phantom_anatomy import (
    F32,
    Frame,
    Layers,
    Mods,
    render_anatomy,
    sample_anatomy,
    smooth_noise,
)
from ekagen.data.phantom_location import extract_locations
from ekagen.observations import OBSERVATIONS

UNCERTAIN_MODES = ("faint", "none")
FAINT = 0.5  # strength of an uncertain finding drawn with uncertain="faint"


@dataclass
class Phantom:
    """One rendered radiograph."""

    image: np.ndarray  # (size, size) uint8, frontal PA view, patient's right on image left
    masks: dict[str, np.ndarray]  # observation -> (size, size) bool, where it was drawn
    cardiothoracic_ratio: float  # measured from the drawn heart and thorax widths


@dataclass(frozen=True)
class Acquisition:
    """How one view was taken: positioning, exposure and detector noise."""

    angle: float
    tx: float
    ty: float
    scale: float
    exposure: float
    gamma: float
    lo: float
    hi: float
    noise: float
    mottle: float
    blur: float


def stable_rng(*parts: object) -> np.random.Generator:
    """A generator seeded from a stable hash of ``parts`` (never Python's ``hash()``)."""
    key = "|".join(str(p) for p in parts).encode()
    return np.random.default_rng(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(),
                                                "little"))


def sample_acquisition(rng: np.random.Generator) -> Acquisition:
    u = rng.uniform
    return Acquisition(angle=math.radians(u(-3.5, 3.5)), tx=u(-0.05, 0.05), ty=u(-0.04, 0.06),
                       scale=u(0.92, 1.04), exposure=u(1.35, 1.9), gamma=u(0.85, 1.2),
                       lo=u(0.0, 0.07), hi=u(0.9, 1.02), noise=u(0.012, 0.035),
                       mottle=u(0.005, 0.02), blur=u(0.35, 0.8))


def _strengths(labels: Mapping[str, float], uncertain: str) -> dict[str, float]:
    out = {}
    for name in OBSERVATIONS:
        value = labels.get(name)
        try:
            value = float(value) if value is not None else math.nan
        except (TypeError, ValueError):
            value = math.nan
        if value == 1.0:
            out[name] = 1.0
        elif value == -1.0 and uncertain == "faint":
            out[name] = FAINT
    out.pop("No Finding", None)
    return out


def compose(layers: Layers, acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
    """Turn density layers into an 8-bit film: attenuation, blur, noise, window, gamma."""
    one = F32(1.0)
    fill = np.clip(layers.fill, 0.0, 1.0)
    air = layers.air * (one - layers.heart) * (one - fill) + layers.lucent
    vis = layers.lung * (one - F32(0.85) * layers.heart) * (one - fill) * layers.keep
    size = layers.tissue.shape[0]
    texture = F32(0.035) * vis * smooth_noise(rng, size, max(4, min(40, size // 8)))
    dens = (layers.tissue - F32(0.7) * air + layers.bone + F32(0.13) * layers.vessels * vis
            + layers.soft_extra + layers.extra + F32(1.4) * layers.metal
            - F32(0.3) * layers.airway + texture)
    img = one - np.exp(F32(-acq.exposure) * np.maximum(dens, F32(0.0)))
    sigma = acq.blur * size / 256.0
    if sigma > 0.3:
        img = ndimage.gaussian_filter(img, sigma, truncate=2.5)
    img = img + F32(acq.mottle) * smooth_noise(rng, size, 12)
    noise = acq.noise * min(1.0, size / 256.0) ** 0.5  # smaller films bin more photons
    img = img + F32(noise) * np.sqrt(np.maximum(img, F32(0.02))) * rng.standard_normal(
        img.shape, dtype=F32)
    img = np.clip((img - F32(acq.lo)) * F32(1.0 / (acq.hi - acq.lo)), 0.0, 1.0)
    img = img ** F32(acq.gamma)
    return (img * F32(255.0) + F32(0.5)).astype(np.uint8)


def measure_ctr(layers: Layers) -> float:
    """Widest heart extent over the widest inner thorax (lung) extent, in pixel columns."""
    heart_cols = np.flatnonzero(layers.heart_mask.any(axis=0))
    lung_cols = np.flatnonzero((layers.lung > 0.5).any(axis=0))
    if len(heart_cols) == 0 or len(lung_cols) < 2:
        return float("nan")
    return float((heart_cols[-1] - heart_cols[0] + 1) / (lung_cols[-1] - lung_cols[0] + 1))


def render_phantom(study_id: str, labels: Mapping[str, float], report: str = "", *,
                   size: int = 256, seed: int = 0, view: int = 0,
                   uncertain: str = "faint") -> Phantom:
    """Render one PA phantom radiograph of a study.

    ``labels`` maps observation names to CheXpert values (1 positive, 0 negative, -1 uncertain,
    NaN or missing: not mentioned). Positive findings are drawn at full strength. Uncertain ones
    depend on ``uncertain``: ``"faint"`` draws them at half strength (half the opacity, a
    borderline cardiothoracic ratio of about 0.50-0.54, a smaller pneumothorax, ...) and still
    returns their mask; ``"none"`` does not draw them. Negative, blank and "No Finding" labels
    draw nothing. Side and zone follow ``report`` when it states them (e.g. "small right pleural
    effusion"); otherwise each finding has a default site chosen deterministically per study
    (table in :mod:`ekagen.data.phantom_findings`).
    ``view`` is another acquisition of the same study: same patient, different positioning,
    exposure and noise.
    """
    if uncertain not in UNCERTAIN_MODES:
        raise ValueError(f"uncertain must be one of {UNCERTAIN_MODES}, got {uncertain!r}")
    if not 16 <= int(size) <= 2048:
        raise ValueError(f"size must be between 16 and 2048, got {size}")
    size = int(size)
    strengths = _strengths(labels, uncertain)
    locations = extract_locations(report) if strengths and report else {}
    anatomy = sample_anatomy(stable_rng(study_id, seed, "anatomy"))
    acq = sample_acquisition(stable_rng(study_id, seed, view, "acquisition"))
    frame = Frame(size, math.cos(acq.angle), math.sin(acq.angle), acq.tx, acq.ty, acq.scale)
    rngs = {name: stable_rng(study_id, seed, name) for name in strengths}
    mods = Mods()
    for name, strength in strengths.items():
        fnd.plan(name, anatomy, mods, locations.get(name), rngs[name], strength)
    layers = render_anatomy(anatomy, frame, mods)
    masks = {}
    for name, strength in strengths.items():
        masks[name] = fnd.draw(name, anatomy, layers, locations.get(name), rngs[name], strength)
    image = compose(layers, acq, stable_rng(study_id, seed, view, "noise"))
    return Phantom(image=image, masks=masks, cardiothoracic_ratio=measure_ctr(layers))


#: One panel per finding for :func:`save_contact_sheet`: (title, labels, illustrative report).
CONTACT_PANELS: tuple[tuple[str, dict[str, float], str], ...] = (
    ("Normal", {"No Finding": 1.0}, ""),
    ("Atelectasis", {"Atelectasis": 1.0}, "Left basilar plate-like atelectasis."),
    ("Cardiomegaly", {"Cardiomegaly": 1.0}, "The heart is enlarged."),
    ("Consolidation", {"Consolidation": 1.0}, "Right lower lobe consolidation."),
    ("Edema", {"Edema": 1.0}, "Bilateral perihilar edema."),
    ("Enlarged Cardiomediastinum", {"Enlarged Cardiomediastinum": 1.0},
     "The mediastinum is widened."),
    ("Fracture", {"Fracture": 1.0}, "Healed left lateral rib fracture."),
    ("Lung Lesion", {"Lung Lesion": 1.0}, "Left upper lobe nodule."),
    ("Normal", {"No Finding": 1.0}, ""),
    ("Lung Opacity", {"Lung Opacity": 1.0}, "Hazy opacity in the right mid lung."),
    ("Pleural Effusion", {"Pleural Effusion": 1.0}, "Moderate right pleural effusion."),
    ("Pleural Other", {"Pleural Other": 1.0}, "Left apical pleural thickening."),
    ("Pneumonia", {"Pneumonia": 1.0}, "Right upper lobe pneumonia."),
    ("Pneumothorax", {"Pneumothorax": 1.0}, "Moderate left pneumothorax."),
    ("Support Devices", {"Support Devices": 1.0}, "Left chest wall pacemaker with leads."),
    ("Normal", {"No Finding": 1.0}, ""),
)


def save_contact_sheet(path: str | Path, *, size: int = 256, seed: int = 0,
                       outlines: bool = False) -> None:
    """Write a PNG grid: one phantom per finding (captioned) and three normal studies.

    Each panel is a different synthetic study with one positive label and an illustrative report
    stating its side and zone; ``outlines=True`` also draws each finding's mask contour in red.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols = 4
    rows = math.ceil(len(CONTACT_PANELS) / cols)
    fig = Figure(figsize=(cols * 3.0, rows * 3.6), dpi=max(80, min(200, size * 0.45)))
    FigureCanvasAgg(fig)
    for i, (title, labels, report) in enumerate(CONTACT_PANELS):
        ax = fig.add_subplot(rows, cols, i + 1)
        phantom = render_phantom(f"contact-sheet-{i}", labels, report, size=size, seed=seed)
        ax.imshow(phantom.image, cmap="gray", vmin=0, vmax=255, interpolation="lanczos")
        if outlines:
            for mask in phantom.masks.values():
                ax.contour(mask.astype(float), levels=[0.5], colors="red", linewidths=0.6)
        ax.set_title(title, fontsize=10, fontweight="bold")
        caption = report or f"no finding (CTR {phantom.cardiothoracic_ratio:.2f})"
        if title == "Cardiomegaly":
            caption += f" CTR {phantom.cardiothoracic_ratio:.2f}"
        ax.text(0.5, -0.03, caption, transform=ax.transAxes, ha="center", va="top", fontsize=7,
                wrap=True)
        ax.set_axis_off()
    fig.suptitle("EKAGen phantom radiographs (PA view: patient's right on image left)",
                 fontsize=11)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.03, top=0.93, wspace=0.04, hspace=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
