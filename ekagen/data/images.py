"""Reading radiographs (PNG, JPEG, TIFF, DICOM) into square 8-bit grayscale arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ekagen.data.records import RejectionKind

DICOM_SUFFIXES = (".dcm", ".dicom")
#: PIL modes holding more than 8 bits per pixel: 16-bit PNG/TIFF, 32-bit integer and float.
HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
#: Window percentiles: a few outlier pixels (burned-in markers, collimator edges) must not
#: compress the contrast of the whole film, as a min..max window would.
WINDOW_PERCENTILES = (0.5, 99.5)


class ImageError(ValueError):
    """An image that cannot be decoded; ``kind`` is its rejection kind (``rejected.csv``)."""

    kind: RejectionKind = "unreadable_image"


class MissingImageError(ImageError):
    kind: RejectionKind = "missing_image"


def window_to_uint8(pixels: np.ndarray, invert: bool = False) -> np.ndarray:
    """Map a high-bit-depth array to uint8 by the image's own 0.5/99.5 percentile window.

    The container's bit depth says little about the data: many 16-bit radiograph PNGs hold
    12-bit values (``/ 65535`` would render them nearly black) and DICOM values are in
    arbitrary rescaled units, so every high-bit-depth image is windowed by its own range,
    the same way for DICOM and 16-bit PNG/TIFF. ``invert`` shows MONOCHROME1 bone bright.
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    if not np.isfinite(pixels).all():
        raise ValueError("non-finite pixel values")
    lo, hi = np.percentile(pixels, WINDOW_PERCENTILES)
    pixels = np.clip((pixels - lo) / max(hi - lo, 1e-6), 0, 1)
    if invert:
        pixels = 1.0 - pixels
    return (pixels * 255).round().astype(np.uint8)


def _read_dicom(path: Path) -> np.ndarray:
    import pydicom

    ds = pydicom.dcmread(str(path))
    pixels = ds.pixel_array.astype(np.float32)
    if pixels.ndim == 3:  # multi-frame or colour: the first frame, luminance
        pixels = pixels[0] if pixels.shape[-1] not in (3, 4) else pixels[..., :3].mean(-1)
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    pixels = pixels * slope + float(getattr(ds, "RescaleIntercept", 0) or 0)
    # MONOCHROME1 stores bone dark; radiographs show it bright
    return window_to_uint8(pixels, getattr(ds, "PhotometricInterpretation", "") == "MONOCHROME1")


def read_grayscale(path: str | Path) -> np.ndarray:
    """Decode an image file to a 2-D uint8 array; errors name the file.

    8-bit images (L, RGB, RGBA, palette) go through PIL's ``convert("L")`` unchanged;
    high-bit-depth ones are windowed (:func:`window_to_uint8`), since ``convert("L")``
    saturates 16-bit values to white and clips floats to black.
    """
    path = Path(path)
    try:
        if path.suffix.lower() in DICOM_SUFFIXES:
            return _read_dicom(path)
        with Image.open(path) as image:
            if image.mode in HIGH_BIT_MODES:
                return window_to_uint8(np.asarray(image))
            return np.asarray(image.convert("L"))
    except FileNotFoundError as exc:
        raise MissingImageError(f"{path}: image file not found") from exc
    except (UnidentifiedImageError, OSError, ValueError, AttributeError) as exc:
        raise ImageError(f"{path}: unreadable image ({exc})") from exc


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to ``size`` x ``size`` with antialiasing (no crop: chest films fill the frame)."""
    if image.shape == (size, size):
        return image
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR,
                                                    reducing_gap=2.0))


def load_image(path: str | Path, size: int) -> np.ndarray:
    return resize_square(read_grayscale(path), size)
