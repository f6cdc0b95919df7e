"""``ekagen serve``: a local web demo of a model folder (``data/eval/model``), built on Gradio.

Gradio is the convention for model demos, and it runs fully offline here: its page, scripts
and fonts ship in the wheel, analytics and the version check are off, server-side rendering
(a Node process) is off, and nothing is shared unless ``--share`` asks for Gradio's tunnel.
It is the optional extra ``demo`` (``pip install -e '.[demo]'``, or ``make serve``), so the
pipeline's install stays lean.

:func:`analyse` is the whole request, without Gradio: uploads are checked (size, count,
decodable), reports come from :func:`ekagen.reporting.report_files`, the same call as
``ekagen generate``, and every problem is an :class:`UploadError` the page shows as a message.
A request writes nothing itself; Gradio keeps uploads and rendered images in its cache, which
:func:`serve` points at a temporary folder it deletes on exit.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ekagen.data.images import ImageError
from ekagen.evaluation.html import overlay_rgb
from ekagen.inference import ReportWriter
from ekagen.observations import OBSERVATIONS
from ekagen.reporting import combination_names, report_files, with_decoding

UPLOAD_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".dicom")
DEFAULT_MAX_UPLOAD_MB = 50.0


class UploadError(ValueError):
    """A request the demo refuses, with the message the page shows."""


@dataclass
class DemoResult:
    report: str
    chart: np.ndarray  # RGB bar chart of the 14 probabilities against their thresholds
    overlay: np.ndarray  # RGB: the uploaded views side by side, ADM tinted red
    knowledge: str  # markdown: the retrieved report(s), the rule and the label combination
    seconds: float  # from the uploaded files to the report
    summary: str  # markdown: diagnosis and time


def _name(path: str | Path) -> str:
    return Path(path).name


def check_uploads(paths: Sequence[str | Path], max_views: int, max_mb: float) -> list[Path]:
    """The uploaded files, or an :class:`UploadError` naming the file and the problem."""
    files = [Path(p) for p in paths or [] if p]
    if not files:
        raise UploadError("Upload a radiograph: PNG, JPEG or DICOM, one image or the views "
                          "of one study.")
    if len(files) > max_views:
        raise UploadError(f"{len(files)} files uploaded, but the model reads at most "
                          f"{max_views} views of one study.")
    for path in files:
        if path.suffix.lower() not in UPLOAD_SUFFIXES:
            raise UploadError(f"{_name(path)}: not a PNG, JPEG or DICOM file "
                              f"(expected one of {', '.join(UPLOAD_SUFFIXES)}).")
        size_mb = path.stat().st_size / 2**20
        if size_mb > max_mb:
            raise UploadError(f"{_name(path)}: {size_mb:.1f} MB is over the {max_mb:g} MB "
                              "upload limit.")
    return files


def probability_chart(probabilities: dict[str, float], thresholds: np.ndarray) -> np.ndarray:
    """DiagnosisBot's 14 probabilities as horizontal bars, each with its threshold marked;
    bars at or over their threshold (diagnosed positive) are red."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = np.array([probabilities[o] for o in OBSERVATIONS])
    positive = values >= thresholds
    fig, ax = plt.subplots(figsize=(6.4, 4.6), dpi=100)
    rows = np.arange(len(OBSERVATIONS))[::-1]
    ax.barh(rows, values, color=np.where(positive, "#d9534f", "#7a9cc6"), height=0.7)
    ax.scatter(thresholds, rows, marker="|", s=300, color="black", zorder=3)
    for row, value in zip(rows, values, strict=True):
        ax.text(min(value + 0.01, 0.9), row, f"{value:.2f}", va="center", fontsize=8)
    ax.set_yticks(rows, OBSERVATIONS, fontsize=9)
    ax.set_xlim(0, 1)
    ax.set_xlabel("DiagnosisBot probability (black tick: threshold; red: at or over it)")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    from PIL import Image

    return np.asarray(Image.open(buffer).convert("RGB"))


def _overlays(pixels: np.ndarray, masks: np.ndarray, views: int) -> np.ndarray:
    """The first ``views`` views with their ADM, side by side, 8 px apart, each enlarged by
    a whole factor (pixels kept sharp) to at least 256 px."""
    factor = -(-256 // pixels.shape[-1])
    tiles = [overlay_rgb(pixels[v], masks[v]).repeat(factor, 0).repeat(factor, 1)
             for v in range(views)]
    gap = np.full((tiles[0].shape[0], 8, 3), 255, dtype=np.uint8)
    row: list[np.ndarray] = []
    for tile in tiles:
        row.extend([tile, gap])
    return np.concatenate(row[:-1], axis=1)


def analyse(writer: ReportWriter, paths: Sequence[str | Path], *, beam_size: int | None = None,
            eos_threshold: float | None = None,
            max_mb: float = DEFAULT_MAX_UPLOAD_MB) -> DemoResult:
    """One request: the uploaded views of one study to everything the page shows; decoding
    settings left None are the model folder's own (``decode.json``)."""
    files = check_uploads(paths, writer.generator.views, max_mb)
    changes: dict[str, Any] = {}
    if beam_size is not None:
        changes["beam_size"] = int(beam_size)
    if eos_threshold is not None:
        changes["eos_threshold"] = float(eos_threshold)
    try:
        settings = with_decoding(writer, **changes)
    except ValueError as exc:
        raise UploadError(f"decoding settings: {exc}") from exc
    start = time.perf_counter()
    try:
        pixels, (report,) = report_files(settings, files, views=True)
    except ImageError as exc:
        message = str(exc)
        for path in files:
            message = message.replace(str(path), path.name)
        raise UploadError(f"{message}. Upload a PNG, JPEG or DICOM radiograph.") from exc
    seconds = time.perf_counter() - start
    beam = settings.decode_cfg.beam_size
    match = report.knowledge
    names = combination_names(match)
    knowledge = (f"**Label combination** ({match.rule}): {', '.join(names) or 'none'}\n\n"
                 f"**Retrieved report(s)** {', '.join(match.report_ids) or '(none)'}:\n\n"
                 f"> {writer.knowledge_text(match) or '(no knowledge)'}")
    summary = (f"**Diagnosis:** {', '.join(report.diagnosis) or 'no finding over threshold'}"
               f"  \n**Time:** {seconds:.2f} s from upload to report on {writer.device.type}, "
               f"{len(files)} view(s), {'greedy' if beam == 1 else f'beam {beam}'}, "
               f"eos threshold {settings.decode_cfg.eos_threshold:g}")
    return DemoResult(report=report.report,
                      chart=probability_chart(report.probabilities, writer.thresholds),
                      overlay=_overlays(pixels[0], report.masks, len(files)),
                      knowledge=knowledge, seconds=seconds, summary=summary)


def build_app(writer: ReportWriter, max_mb: float = DEFAULT_MAX_UPLOAD_MB) -> Any:
    """The Gradio page around :func:`analyse`."""
    import gradio as gr

    default_eos = float(writer.decode_cfg.eos_threshold)

    def run(files: list[str] | None, mode: str, beam: float, eos: float) -> tuple:
        try:
            result = analyse(writer, files or [], beam_size=1 if mode == "greedy" else int(beam),
                             eos_threshold=eos, max_mb=max_mb)
        except UploadError as exc:
            return "", None, None, "", f"**Could not write a report.** {exc}"
        except Exception as exc:  # noqa: BLE001 - the page shows a message, the log the trace
            traceback.print_exc()
            return "", None, None, "", f"**Internal error** ({type(exc).__name__}): {exc}"
        return result.report, result.chart, result.overlay, result.knowledge, result.summary

    with gr.Blocks(title="ekagen demo", analytics_enabled=False,
                   delete_cache=(3600, 3600)) as app:
        gr.Markdown("# ekagen: chest X-ray report generation\nUpload one radiograph, or the "
                    f"views of one study (up to {writer.generator.views}), as PNG, JPEG or "
                    "DICOM. Research code, not for clinical use.")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="Radiograph(s)", file_count="multiple",
                                 file_types=list(UPLOAD_SUFFIXES), elem_id="upload")
                mode = gr.Radio(["greedy", "beam"], value="greedy" if
                                writer.decode_cfg.beam_size == 1 else "beam",
                                label="Decoding", elem_id="mode")
                beam = gr.Slider(2, 8, value=writer.decode_cfg.beam_size
                                 if writer.decode_cfg.beam_size > 1 else 3, step=1,
                                 label="Beam size (beam decoding)", elem_id="beam")
                eos = gr.Slider(0.0, 0.95, value=default_eos, step=0.05,
                                label="End-of-report threshold P(eos)", elem_id="eos")
                button = gr.Button("Write report", variant="primary", elem_id="write")
                status = gr.Markdown(elem_id="status")
            with gr.Column(scale=2):
                report = gr.Textbox(label="Generated report", lines=5, elem_id="report")
                # no share button: it would offer to upload the image to Hugging Face
                overlay = gr.Image(label="Where DiagnosisBot looked (ADM, red)", type="numpy",
                                   height=320, buttons=["download", "fullscreen"],
                                   interactive=False, elem_id="overlay")
                chart = gr.Image(label="DiagnosisBot probabilities and thresholds",
                                 type="numpy", buttons=["download", "fullscreen"],
                                 interactive=False, elem_id="chart")
                knowledge = gr.Markdown(elem_id="knowledge")
        button.click(run, [upload, mode, beam, eos], [report, chart, overlay, knowledge, status])
    return app


def serve(model_dir: str | Path, host: str = "127.0.0.1", port: int = 7860,
          device: str = "auto", max_mb: float = DEFAULT_MAX_UPLOAD_MB,
          share: bool = False) -> None:
    """Load the model folder and serve the page until interrupted."""
    import torch

    from ekagen.training.distributed import select_device

    # Gradio reads its cache folder when first imported: uploads and rendered images go here
    cache = tempfile.mkdtemp(prefix="ekagen-serve-")
    os.environ["GRADIO_TEMP_DIR"] = cache
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    # a kill, or Ctrl-C even where the shell started us ignoring it, cleans the cache up
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            import gradio  # noqa: F401 - before the model loads, to fail fast
        except ImportError as exc:
            raise RuntimeError("the demo needs the optional extra 'demo': pip install -e "
                               "'.[demo]' (or make serve)") from exc
        torch.set_grad_enabled(False)
        writer = ReportWriter.load(model_dir, device=select_device(device))
        app = build_app(writer, max_mb)
        print(f"ekagen serve: {model_dir} on {writer.device}, uploads cached in {cache}",
              flush=True)
        app.launch(server_name=host, server_port=port, share=share, ssr_mode=False,
                   max_file_size=f"{max_mb:g}mb", footer_links=[])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(cache, ignore_errors=True)


def _interrupt(signum: int, frame: Any) -> None:
    """A signal as Ctrl-C: Gradio then closes its server and :func:`serve` its cache."""
    raise KeyboardInterrupt
