"""Reading radiographs (PNG, JPEG, DICOM) into square 8-bit grayscale arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

DICOM_SUFFIXES = (".dcm", ".dicom")


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom

    ds = pydicom.dcmread(str(path))
    pixels = ds.pixel_array.astype(np.float32)
    if pixels.ndim == 3:  # multi-frame or colour: the first frame, luminance
        pixels = pixels[0] if pixels.shape[-1] not in (3, 4) else pixels[..., :3].mean(-1)
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    pixels = pixels * slope + float(getattr(ds, "RescaleIntercept", 0) or 0)
    lo, hi = np.percentile(pixels, [0.5, 99.5])
    pixels = np.clip((pixels - lo) / max(hi - lo, 1e-6), 0, 1)
    if getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1":
        pixels = 1.0 - pixels  # MONOCHROME1 stores bone dark; radiographs show it bright
    return (pixels * 255).round().astype(np.uint8)


def read_grayscale(path: str | Path) -> np.ndarray:
    """Decode an image file to a 2-D uint8 array; errors name the file."""
    path = Path(path)
    try:
        if path.suffix.lower() in DICOM_SUFFIXES:
            return _read_dicom(path)
        with Image.open(path) as image:
            return np.asarray(image.convert("L"))
    except FileNotFoundError as exc:
        raise ValueError(f"{path}: image file not found") from exc
    except (UnidentifiedImageError, OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"{path}: unreadable image ({exc})") from exc


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size`` with antialiasing (no crop: chest films fill the frame)."""
    if image.shape == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR,
                                                    reducing_gap=2.0))


def load_image(path: str | Path, size: int) -> np.ndarray:
    return resize_square(read_grayscale(path), size)
