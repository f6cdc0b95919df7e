import numpy as np
import pytest

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
