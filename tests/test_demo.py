"""The demo's request path (:func:`ekagen.demo.analyse`) on the tiny pipeline's model folder:
the same reports as ``ekagen generate``, clear messages for bad uploads, and the ``serve``
subcommand's errors through the installed console script. The page itself: test_pages.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ekagen.demo import UploadError, analyse, check_uploads, probability_chart
from ekagen.observations import OBSERVATIONS

EKAGEN = Path(sys.executable).parent / "ekagen"


def real_cr_dicom() -> Path:
    """The CR chest radiograph (MONOCHROME1) that ships in pydicom-data."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file("RG1_UNCR.dcm", download=False)
    assert path, "pydicom-data's RG1_UNCR.dcm is missing (pip install pydicom-data)"
    return Path(path)


@pytest.fixture(scope="module")
def model(tiny_dag) -> Path:
    return tiny_dag[0] / "data/eval/model"


@pytest.fixture(scope="module")
def writer(model):
    from ekagen.inference import ReportWriter

    return ReportWriter.load(model)


@pytest.fixture(scope="module")
def phantom_png(tiny_dag, tmp_path_factory) -> Path:
    cache = np.load(tiny_dag[0] / "data/prepared/images.npy", mmap_mode="r")
    path = tmp_path_factory.mktemp("uploads") / "phantom.png"
    Image.fromarray(np.asarray(cache[0, 0])).save(path)
    return path


def cli_report(model: Path, *images: Path, extra: tuple[str, ...] = ()) -> dict:
    done = subprocess.run([str(EKAGEN), "generate", "--model", str(model), *map(str, images),
                           "--json", *extra], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    assert len(payload) == 1
    return payload[0]


def test_the_page_writes_the_cli_report_for_a_png_and_the_real_dicom(model, writer, phantom_png):
    dicom = real_cr_dicom()
    for upload in (phantom_png, dicom):
        result = analyse(writer, [upload])
        expected = cli_report(model, upload)
        assert result.report == expected["report"] and result.report.strip()
        assert ", ".join(expected["diagnosis"]) in result.summary or not expected["diagnosis"]
        side = writer.image_size * -(-256 // writer.image_size)
        assert result.overlay.shape == (side, side, 3)
        assert result.chart.ndim == 3 and result.chart.shape[1] > 300
        rule, key = expected["knowledge"].split(":", 1)
        assert f"({rule})" in result.knowledge
        for report_id in expected["knowledge_reports"]:
            assert report_id in result.knowledge
        assert writer.knowledge_text(analyse_match(writer, upload)) in result.knowledge
        assert 0 < result.seconds < 60
    # the views of one study, and other decoding settings, as `generate --views ...`
    views = analyse(writer, [phantom_png, dicom], beam_size=2, eos_threshold=0.3)
    expected = cli_report(model, phantom_png, dicom,
                          extra=("--views", "--beam-size", "2", "--eos-threshold", "0.3"))
    assert views.report == expected["report"]
    assert views.overlay.shape == (side, 2 * side + 8, 3)
    assert "beam 2" in views.summary and "eos threshold 0.3" in views.summary


def analyse_match(writer, upload: Path):
    from ekagen.reporting import report_files

    return report_files(writer, [upload], views=True)[1][0].knowledge


def test_the_overlay_tints_the_attention_mask_of_each_view():
    from ekagen.demo import _overlays

    pixels = np.full((2, 128, 128), 100, dtype=np.uint8)
    masks = np.zeros((2, 128, 128), dtype=bool)
    masks[0, 20:60, 30:90] = True
    overlay = _overlays(pixels, masks, views=2).astype(int)  # enlarged 2x to 256 px
    assert overlay.shape == (256, 256 + 8 + 256, 3)
    left, right = overlay[:, :256], overlay[:, 264:]
    big_mask = masks[0].repeat(2, 0).repeat(2, 1)
    red_excess = left[..., 0] - left[..., 1]
    assert (red_excess[big_mask] > 40).all() and (red_excess[~big_mask] == 0).all()
    assert (right == 100).all() and (overlay[:, 256:264] == 255).all()


def test_the_chart_marks_what_is_over_its_threshold_in_red():
    probabilities = {o: 0.2 for o in OBSERVATIONS}
    below = probability_chart(probabilities, np.full(14, 0.5)).astype(int)
    probabilities["Cardiomegaly"] = 0.9
    over = probability_chart(probabilities, np.full(14, 0.5)).astype(int)

    def red_pixels(image: np.ndarray) -> int:  # the bar colour #d9534f
        return int((np.abs(image - np.array([0xD9, 0x53, 0x4F])).sum(-1) < 30).sum())

    assert red_pixels(below) == 0 and red_pixels(over) > 500


@pytest.mark.parametrize("case", ["text_as_png", "broken_dicom", "too_big", "wrong_suffix",
                                  "too_many_views", "nothing", "bad_setting"])
def test_a_bad_upload_is_a_message_naming_the_file(writer, phantom_png, tmp_path, case):
    if case == "text_as_png":
        path = tmp_path / "notes.png"
        path.write_text("not an image")
        files, expected, kwargs = [path], "notes.png: unreadable image", {}
    elif case == "broken_dicom":
        path = tmp_path / "cut.dcm"
        path.write_bytes(real_cr_dicom().read_bytes()[:4000])  # header without pixels
        files, expected, kwargs = [path], "cut.dcm: unreadable image", {}
    elif case == "too_big":
        files, expected, kwargs = [real_cr_dicom()], "RG1_UNCR.dcm: 6.9 MB is over the 5 MB", {
            "max_mb": 5}
    elif case == "wrong_suffix":
        path = tmp_path / "study.npy"
        path.write_bytes(b"\x93NUMPY")
        files, expected, kwargs = [path], "study.npy: not a PNG, JPEG or DICOM file", {}
    elif case == "too_many_views":
        files = [phantom_png] * (writer.generator.views + 1)
        expected, kwargs = "model reads at most", {}
    elif case == "nothing":
        files, expected, kwargs = [], "Upload a radiograph", {}
    else:
        files, expected, kwargs = [phantom_png], "eos_threshold must be in [0, 1)", {
            "eos_threshold": 1.5}
    with pytest.raises(UploadError) as info:
        analyse(writer, files, **kwargs)
    assert expected in str(info.value)
    assert str(tmp_path) not in str(info.value)  # the upload's own name, not the cache path


def test_check_uploads_accepts_the_views_of_a_study(phantom_png):
    assert check_uploads([phantom_png, str(phantom_png)], 2, 1.0) == [phantom_png] * 2


def test_serve_errors_come_from_the_console_script_without_a_trace(tmp_path, model):
    done = subprocess.run([str(EKAGEN), "serve", "--model", str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "model folder not found" in done.stderr
    assert "Traceback" not in done.stderr
    # without the extra 'demo' the message says how to install it
    hide_gradio = ("import sys; sys.modules['gradio'] = None; from ekagen.cli import main; "
                   f"sys.exit(main(['serve', '--model', {str(model)!r}]))")
    done = subprocess.run([sys.executable, "-c", hide_gradio], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "pip install -e '.[demo]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_make_serve_runs_ekagen_serve_on_the_model_it_is_given(tmp_path):
    repo = Path(__file__).resolve().parents[1]
    done = subprocess.run(["make", "-s", "-C", str(repo), "serve",
                           f"SERVE_MODEL={tmp_path / 'no_model'}"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode != 0
    assert f"{tmp_path / 'no_model'}: model folder not found" in done.stderr
