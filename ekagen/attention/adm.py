"""The Aggregate Discriminative Attention map (ADM): from Grad-CAM maps to stored masks.

For each image, every class the classifier predicts (probability >= its validation threshold),
except classes without a location (``adm.skip_classes``, default No Finding), contributes its
Grad-CAM map thresholded on the *CAM value* (``cam >= cam_threshold``; the
authors thresholded a colour-mapped channel instead). The class masks are OR-ed and the union
is dilated by ``dilation`` pixels with a square structuring element (a max-pool; dilation
distributes over union, so dilating the union equals OR-ing dilated masks). An image with no
predicted (attended) class has an empty mask.

Storage (``data/adm``):

* ``masks.npy``: uint8 (studies, views, ceil(S*S/8)), ``np.packbits`` of each flattened bool
  mask (row-major, big-endian bit order), aligned with the image cache; :func:`unpack_masks`.
* ``diagnosis.parquet``: one row per (study, view): ``study`` (row of studies.parquet and of
  the image cache), ``id``, ``split``, ``view``, ``coverage`` (mask fraction), ``prob:<obs>``
  and ``pred:<obs>`` (0/1) for the 14 observations, and the per-study diagnosis repeated on
  each view row: ``study_prob:<obs>`` = max over the study's views and ``study_pred:<obs>`` =
  OR over views (equivalently ``study_prob >= threshold``). :func:`load_study_diagnosis` gives
  one row per study.
* ``masks.json``: shape, image size, packing and the parameters used.

:func:`apply_adm` is what the report generator's student applies to its input.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from tqdm import tqdm

from ekagen.attention.gradcam import grad_cam
from ekagen.config import AdmConfig
from ekagen.observations import OBSERVATIONS

MASKS_FILE, DIAGNOSIS_FILE, MASKS_META = "masks.npy", "diagnosis.parquet", "masks.json"
FEATURES_FILE = "features.npy"


# ------------------------------------------------------------------------- mask algebra
def dilate(masks: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow bool masks (..., H, W) by ``pixels`` in every direction (square element)."""
    if pixels <= 0:
        return masks.bool()
    shape = masks.shape
    flat = masks.reshape(-1, 1, *shape[-2:]).float()
    grown = F.max_pool2d(flat, kernel_size=2 * pixels + 1, stride=1, padding=pixels)
    return grown.reshape(shape) > 0.5


def adm_from_cams(cams: torch.Tensor, predicted: torch.Tensor, cam_threshold: float,
                  dilation: int) -> torch.Tensor:
    """ADM (B, H, W) bool from per-class maps (B, C, H, W) and predictions (B, C) bool."""
    selected = (cams >= cam_threshold) & predicted.bool()[:, :, None, None]
    union = selected.any(dim=1)
    return dilate(union, dilation) & predicted.bool().any(dim=1)[:, None, None]


def pack_masks(masks: np.ndarray | torch.Tensor) -> np.ndarray:
    """Bool masks (..., H, W) -> uint8 (..., ceil(H*W/8)) via ``np.packbits``."""
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks, dtype=bool)
    return np.packbits(masks.reshape(*masks.shape[:-2], -1), axis=-1)


def unpack_masks(packed: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`pack_masks`: uint8 (..., nbytes) -> bool (..., H, W)."""
    h, w = (size, size) if isinstance(size, int) else size
    bits = np.unpackbits(np.asarray(packed, dtype=np.uint8), axis=-1, count=h * w)
    return bits.reshape(*bits.shape[:-1], h, w).astype(bool)


def coverage(masks: np.ndarray | torch.Tensor) -> np.ndarray:
    """Fraction of each (H, W) mask that is set."""
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks, dtype=bool)
    return masks.reshape(*masks.shape[:-2], -1).mean(axis=-1)


def apply_adm(images: torch.Tensor, masks: torch.Tensor, theta: float, gamma: float,
              beta: float = 1.0) -> torch.Tensor:
    """The student's view of each image: attention outside the mask damped.

    ``images`` (B, C, H, W) or (B, H, W), best in [0, 1] *before* mean/std normalisation so
    that scaling means darkening. ``masks`` (B, H, W) or (B, 1, H, W) bool, resized (nearest)
    when its size differs. Where a mask covers more than ``theta`` of its image, pixels outside
    it are multiplied by ``gamma`` and inside by ``beta`` (default 1: unchanged); other images
    (small or empty masks) are returned unchanged.
    """
    squeeze = images.dim() == 3
    x = images.unsqueeze(1) if squeeze else images
    m = masks if masks.dim() == 4 else masks.unsqueeze(1)
    if m.shape[0] != x.shape[0]:
        raise ValueError(f"{m.shape[0]} masks for {x.shape[0]} images")
    m = m.to(device=x.device, dtype=x.dtype)
    if m.shape[-2:] != x.shape[-2:]:
        m = F.interpolate(m, size=x.shape[-2:], mode="nearest")
    covered = m.flatten(1).mean(dim=1) > theta
    scaled = x * (beta * m + gamma * (1.0 - m))
    out = torch.where(covered[:, None, None, None], scaled, x)
    return out.squeeze(1) if squeeze else out


def adm_views(images: torch.Tensor, masks: torch.Tensor, adm: AdmConfig) -> torch.Tensor:
    """The student's view of every view of ``images`` (B, V, H, W) under the ``adm`` settings
    (unchanged when ``adm.apply`` is off)."""
    if not adm.apply:
        return images
    flat = apply_adm(images.flatten(0, 1), masks.flatten(0, 1), adm.min_coverage,
                     adm.outside_scale, adm.inside_scale)
    return flat.view_as(images)


# ------------------------------------------------------------------------- running it
@dataclass
class AdmResult:
    packed: np.ndarray  # uint8 (studies, views, nbytes)
    probs: np.ndarray  # float32 (studies, views, C)
    predicted: np.ndarray  # bool (studies, views, C)
    coverage: np.ndarray  # float32 (studies, views)
    image_size: int
    #: float16 (studies, views, K): pooled last-stage features, the space of the
    #: nearest-neighbour baseline (saved here so evaluation need not re-run the classifier)
    features: np.ndarray | None = None


def compute_adm(model: torch.nn.Module, images: np.ndarray, thresholds: Sequence[float],
                cam_threshold: float = 0.5, dilation: int = 3, batch_size: int = 32,
                device: torch.device | str = "cpu", progress: bool = True,
                skip_classes: Sequence[int] = ()) -> AdmResult:
    """Predictions and ADM masks for every (study, view) of the image cache ``images``.

    ``predicted`` is the full diagnosis (probability >= threshold); classes in
    ``skip_classes`` (e.g. No Finding, which has no location) are diagnosed but contribute no
    attention map.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    n, views, height, width = images.shape
    if height != width:
        raise ValueError(f"square images expected, got {height}x{width}")
    thr = torch.as_tensor(np.asarray(thresholds, dtype=np.float32), device=device)
    attend = torch.ones(len(thresholds), dtype=torch.bool, device=device)
    attend[list(skip_classes)] = False
    pairs = [(s, v) for s in range(n) for v in range(views)]
    nbytes = math.ceil(height * width / 8)
    packed = np.zeros((n, views, nbytes), dtype=np.uint8)
    classes = len(thresholds)
    probs = np.zeros((n, views, classes), dtype=np.float32)
    predicted = np.zeros((n, views, classes), dtype=bool)
    cover = np.zeros((n, views), dtype=np.float32)
    features: np.ndarray | None = None
    bar = tqdm(range(0, len(pairs), batch_size), desc="adm", unit="batch", disable=not progress)
    for start in bar:
        chunk = pairs[start : start + batch_size]
        s_idx = np.array([s for s, _ in chunk])
        v_idx = np.array([v for _, v in chunk])
        pixels = np.stack([np.asarray(images[s, v]) for s, v in chunk])
        batch = torch.from_numpy(pixels).to(device=device, dtype=torch.float32)
        batch = batch.div_(255.0).unsqueeze(1)
        cams = grad_cam(model, batch, which=lambda p: (p >= thr) & attend)
        masks = adm_from_cams(cams.cams, cams.computed, cam_threshold, dilation)
        packed[s_idx, v_idx] = pack_masks(masks)
        probs[s_idx, v_idx] = cams.probs.cpu().numpy()
        predicted[s_idx, v_idx] = (cams.probs >= thr).cpu().numpy()
        cover[s_idx, v_idx] = coverage(masks)
        if features is None:
            features = np.zeros((n, views, cams.features.shape[1]), dtype=np.float16)
        features[s_idx, v_idx] = cams.features.cpu().numpy().astype(np.float16)
    return AdmResult(packed, probs, predicted, cover, int(height), features)


def study_diagnosis(result: AdmResult) -> tuple[np.ndarray, np.ndarray]:
    """A study's diagnosis from its views: (probabilities = max over views, predicted = OR
    over views), each (studies, classes). A finding seen in one view is a finding."""
    return result.probs.max(axis=1), result.predicted.any(axis=1)


def diagnosis_table(studies: pd.DataFrame, result: AdmResult,
                    names: Sequence[str] = OBSERVATIONS) -> pd.DataFrame:
    """The ``diagnosis.parquet`` table (see the module docstring)."""
    n, views, classes = result.probs.shape
    if len(studies) != n:
        raise ValueError(f"{len(studies)} studies but {n} rows of ADM results")
    study_probs, study_preds = study_diagnosis(result)
    rows = np.repeat(np.arange(n), views)
    view = np.tile(np.arange(views), n)
    table = {
        "study": rows, "id": studies["id"].to_numpy()[rows],
        "split": studies["split"].to_numpy()[rows], "view": view,
        "coverage": result.coverage.reshape(-1),
    }
    flat_probs = result.probs.reshape(-1, classes)
    flat_preds = result.predicted.reshape(-1, classes)
    for c, name in enumerate(names):
        table[f"prob:{name}"] = flat_probs[:, c]
        table[f"pred:{name}"] = flat_preds[:, c].astype(np.int8)
    for c, name in enumerate(names):
        table[f"study_prob:{name}"] = study_probs[rows, c]
        table[f"study_pred:{name}"] = study_preds[rows, c].astype(np.int8)
    return pd.DataFrame(table)


def write_adm(result: AdmResult, table: pd.DataFrame, out_dir: str | Path,
              meta: dict | None = None) -> None:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / MASKS_FILE, result.packed, allow_pickle=False)
    table.to_parquet(out_dir / DIAGNOSIS_FILE, index=False)
    if result.features is not None:
        np.save(out_dir / FEATURES_FILE, result.features, allow_pickle=False)
    info = {"shape": list(result.packed.shape[:2]), "image_size": result.image_size,
            "packing": "np.packbits over each row-major flattened HxW bool mask, axis -1",
            **(meta or {})}
    (out_dir / MASKS_META).write_text(json.dumps(info, indent=2) + "\n")


def load_masks(adm_dir: str | Path, mmap: bool = True) -> tuple[np.ndarray, int]:
    """(packed masks (studies, views, nbytes), image size); unpack rows with unpack_masks."""
    adm_dir = Path(adm_dir)
    meta_path = adm_dir / MASKS_META
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path}: ADM masks missing; run `dvc repro adm`")
    meta = json.loads(meta_path.read_text())
    packed = np.load(adm_dir / MASKS_FILE, mmap_mode="r" if mmap else None, allow_pickle=False)
    return packed, int(meta["image_size"])


def load_study_diagnosis(adm_dir: str | Path,
                         names: Sequence[str] = OBSERVATIONS) -> pd.DataFrame:
    """One row per study (in studies.parquet order): id, split, the 14 predicted labels (0/1,
    columns named as the observations) and ``prob:<obs>`` (max over views)."""
    path = Path(adm_dir) / DIAGNOSIS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: diagnosis missing; run `dvc repro adm`")
    table = pd.read_parquet(path)
    first = table.sort_values(["study", "view"]).drop_duplicates("study", keep="first")
    out = pd.DataFrame({"study": first["study"].to_numpy(), "id": first["id"].to_numpy(),
                        "split": first["split"].to_numpy()})
    for name in names:
        out[name] = first[f"study_pred:{name}"].to_numpy().astype(np.int64)
    for name in names:
        out[f"prob:{name}"] = first[f"study_prob:{name}"].to_numpy()
    return out.reset_index(drop=True)


# ------------------------------------------------------------------------- summaries
def coverage_summary(values: np.ndarray) -> dict:
    """Mean, quantiles and the fraction of empty masks of a coverage array."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.size == 0:
        return {"images": 0}
    q = np.quantile(values, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {"images": int(values.size), "mean": round(float(values.mean()), 6),
            "q05": round(float(q[0]), 6), "q25": round(float(q[1]), 6),
            "median": round(float(q[2]), 6), "q75": round(float(q[3]), 6),
            "q95": round(float(q[4]), 6), "max": round(float(values.max()), 6),
            "fraction_empty": round(float(np.mean(values == 0)), 6)}


def region_overlap(masks: np.ndarray, regions: np.ndarray, seed: int = 0) -> dict:
    """How much of the ADM falls inside the true finding regions, against chance.

    ``masks``, ``regions``: bool (N, H, W). Only images with both a non-empty mask and a
    non-empty region count. Reported (pooled over pixels of those images):

    * ``adm_inside``: fraction of mask pixels inside the region;
    * ``expected_random``: the same for a mask of the same size placed uniformly at random
      (= region area / image area, weighted by mask size);
    * ``shifted_random``: the same for the image's own mask moved by a seeded random circular
      shift (same size and shape, random place);
    * the ratios of ``adm_inside`` to both baselines (1 = no better than chance).
    """
    masks, regions = np.asarray(masks, bool), np.asarray(regions, bool)
    if masks.shape != regions.shape:
        raise ValueError(f"masks {masks.shape} and regions {regions.shape} differ")
    rng = np.random.default_rng(seed)
    mask_px = masks.reshape(len(masks), -1).sum(axis=1)
    region_frac = regions.reshape(len(regions), -1).mean(axis=1)
    use = (mask_px > 0) & (region_frac > 0)
    out: dict = {"images_compared": int(use.sum()),
                 "images_mask_without_region": int(((mask_px > 0) & (region_frac == 0)).sum()),
                 "images_region_without_mask": int(((mask_px == 0) & (region_frac > 0)).sum())}
    if not use.any():
        return out
    inside = np.array([np.sum(masks[i] & regions[i]) for i in np.flatnonzero(use)], float)
    h, w = masks.shape[-2:]
    shifted = []
    for i in np.flatnonzero(use):
        dy, dx = int(rng.integers(h)), int(rng.integers(w))
        shifted.append(np.sum(np.roll(masks[i], (dy, dx), axis=(0, 1)) & regions[i]))
    total = mask_px[use].sum()
    adm = float(inside.sum() / total)
    expected = float((mask_px[use] * region_frac[use]).sum() / total)
    shift = float(np.sum(shifted) / total)
    out.update({
        "adm_inside": round(adm, 6),
        "expected_random": round(expected, 6),
        "shifted_random": round(shift, 6),
        "ratio_vs_expected": round(adm / expected, 4) if expected > 0 else None,
        "ratio_vs_shifted": round(adm / shift, 4) if shift > 0 else None,
        "adm_inside_per_image_mean": round(float(np.mean(inside / mask_px[use])), 6),
        "region_area_mean": round(float(region_frac[use].mean()), 6),
    })
    return out


def phantom_regions(studies: pd.DataFrame, rows: Sequence[int], views: Sequence[int],
                    size: int, seed: int, uncertain: str,
                    render: Callable | None = None) -> np.ndarray:
    """Union of the drawn-finding masks of each (row, view) pair (bool (len(rows), S, S)).

    The phantom is re-rendered exactly as ``prepare`` rendered it: same id, labels, seed, view
    and report text. The renderer reads finding locations from the *raw* report; the table's
    ``raw_report`` column is used when present, else the cleaned ``report`` (which loses a few
    location cues, e.g. "left-sided" -> "leftsided", for about 2 % of IU studies).
    """
    if render is None:
        from ekagen.data.phantom import render_phantom as render
    text = "raw_report" if "raw_report" in studies.columns else "report"
    out = np.zeros((len(rows), size, size), dtype=bool)
    for i, (row, view) in enumerate(zip(rows, views, strict=True)):
        record = studies.iloc[int(row)]
        labels = {name: float(record[name]) for name in OBSERVATIONS}
        phantom = render(record["id"], labels, record[text], size=size, seed=seed,
                         view=int(view), uncertain=uncertain)
        for mask in phantom.masks.values():
            out[i] |= np.asarray(mask, dtype=bool)
    return out
