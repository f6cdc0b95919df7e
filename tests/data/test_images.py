import numpy as np
import pytest
from PIL import Image

from ekagen.data.images import load_image, read_grayscale


def _write_dicom(path, pixels, photometric="MONOCHROME2"):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PhotometricInterpretation = "CR", photometric
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 12, 11
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(str(path), enforce_file_format=True)


def test_dicom_is_windowed_and_monochrome1_inverted(tmp_path):
    ramp = np.tile(np.linspace(0, 4000, 50), (40, 1))
    _write_dicom(tmp_path / "a.dcm", ramp)
    _write_dicom(tmp_path / "b.dcm", ramp, "MONOCHROME1")
    a, b = read_grayscale(tmp_path / "a.dcm"), read_grayscale(tmp_path / "b.dcm")
    assert a.dtype == np.uint8 and a.shape == (40, 50)
    assert a[0, 0] < 10 and a[0, -1] > 245
    assert b[0, 0] > 245 and b[0, -1] < 10
    assert load_image(tmp_path / "a.dcm", 16).shape == (16, 16)


def test_unreadable_and_missing_images_name_the_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="bad.png: unreadable image"):
        read_grayscale(bad)
    with pytest.raises(ValueError, match="nope.jpg: image file not found"):
        read_grayscale(tmp_path / "nope.jpg")


def _window(values: np.ndarray) -> np.ndarray:
    """The documented mapping for high-bit-depth images: 0.5/99.5 percentile window."""
    values = values.astype(np.float64)
    lo, hi = np.percentile(values, [0.5, 99.5])
    return (np.clip((values - lo) / (hi - lo), 0, 1) * 255).round().astype(np.uint8)


def _assert_windowed(decoded: np.ndarray, values: np.ndarray) -> None:
    assert decoded.dtype == np.uint8 and decoded.shape == values.shape
    assert (decoded == 255).mean() < 0.02, "saturated to white"
    assert decoded.min() == 0 and decoded.max() == 255
    assert (np.diff(decoded.ravel().astype(int)) >= 0).all(), "not monotone along the ramp"
    assert np.abs(decoded.astype(int) - _window(values)).max() <= 1


def test_16bit_png_is_windowed_not_saturated(tmp_path):
    ramp = np.arange(4096, dtype=np.uint16).reshape(64, 64)  # 12 bits in a 16-bit PNG
    Image.fromarray(ramp).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode == "I;16"
    _assert_windowed(read_grayscale(tmp_path / "a.png"), ramp)


def test_16bit_png_matches_the_dicom_path(tmp_path):
    ramp = np.tile(np.linspace(0, 4000, 50), (40, 1)).round().astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "a.png")
    _write_dicom(tmp_path / "a.dcm", ramp)
    np.testing.assert_array_equal(read_grayscale(tmp_path / "a.png"),
                                  read_grayscale(tmp_path / "a.dcm"))


def test_32bit_integer_and_float_tiffs_are_windowed(tmp_path):
    ramp = np.arange(-1024, 3072, dtype=np.int32).reshape(64, 64)
    Image.fromarray(ramp).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    _assert_windowed(read_grayscale(tmp_path / "i.tif"), ramp)
    unit = (ramp.astype(np.float32) + 1024) / 4095  # floats in [0, 1]: convert("L") gave black
    Image.fromarray(unit).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    _assert_windowed(read_grayscale(tmp_path / "f.tif"), unit)


def test_float_image_with_nan_is_rejected(tmp_path):
    pixels = np.ones((8, 8), np.float32)
    pixels[2, 3] = np.nan
    Image.fromarray(pixels).save(tmp_path / "nan.tif")
    with pytest.raises(ValueError, match=r"nan.tif: unreadable image \(.*non-finite"):
        read_grayscale(tmp_path / "nan.tif")


def test_truncated_16bit_png_is_unreadable(tmp_path):
    Image.fromarray(np.arange(4096, dtype=np.uint16).reshape(64, 64) * 16).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"t.png: unreadable image \("):
        read_grayscale(tmp_path / "t.png")


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P"])
def test_8bit_images_decode_as_before(tmp_path, mode):
    pixels = np.random.default_rng(0).integers(0, 256, (24, 32, 4), dtype=np.uint8)
    image = Image.fromarray(pixels if mode == "RGBA" else pixels[..., :3]).convert(mode)
    image.save(tmp_path / "a.png")
    decoded = read_grayscale(tmp_path / "a.png")
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, np.asarray(image.convert("L")))
    if mode == "L":
        np.testing.assert_array_equal(decoded, np.asarray(image))  # byte-identical round trip
