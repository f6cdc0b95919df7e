"""The pages of a finished run, timed and photographed: the ``ekagen serve`` demo on
``data/eval/model``, the MLflow UI of ``make ui`` and ``metrics/gallery.html``.

Demo timing: the same test-split phantom is uploaded ``--repeats`` times into a fresh page;
``upload_to_report_s`` is the browser's time from pressing *Write report* until the report
shows (it includes the browser round trip and Gradio's queue), ``server_s`` the time the page
itself reports (files to report: decoding, DiagnosisBot, ADM, knowledge, decoding). The
server's peak memory is the peak resident set (VmHWM) of its Python process after all
requests. Screenshots go to ``metrics/plots/``: ``demo.png`` (the retrieved knowledge report,
verbatim IU X-Ray text, masked), ``mlflow_runs.png``, ``mlflow_round.png`` (committed) and
``gallery.png`` (report text: git-ignored). Prints JSON.

    python benchmarks/pages.py [--repeats 10] [--out metrics/plots]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.pages import browser_page, demo_write_report, free_port, server  # noqa: E402
from tests.test_demo import real_cr_dicom  # noqa: E402

EKAGEN = Path(sys.executable).parent / "ekagen"


def _peak_rss_mb(pid: int) -> float:
    import psutil

    peaks = []
    for process in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        status = Path(f"/proc/{process.pid}/status").read_text()
        peaks.append(int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024)
    return round(max(peaks), 1)


def _close_assistant(page) -> None:
    """MLflow 3 opens an assistant panel beside every page; a screenshot is clearer without."""
    close = page.locator("button[aria-label*='Close' i]")
    if close.count():
        close.first.click()


def demo(out: Path, repeats: int, tmp: Path) -> dict:
    studies = pd.read_parquet(ROOT / "data/prepared/studies.parquet")
    images = np.load(ROOT / "data/prepared/images.npy", mmap_mode="r")
    row = int(np.flatnonzero(studies["split"].to_numpy() == "test")[0])
    png = tmp / f"{studies['id'].iloc[row]}.png"
    Image.fromarray(np.asarray(images[row, 0])).save(png)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    browser_s, server_s, reports = [], [], set()
    with server([str(EKAGEN), "serve", "--model", str(ROOT / "data/eval/model"), "--port",
                 str(port)], url, tmp, tmp / "serve.log") as proc:
        with browser_page(1280, 1000) as page:
            page.goto(url)
            for upload in [png] * repeats + [real_cr_dicom()]:
                report, elapsed = demo_write_report(page, [upload], timeout_ms=300_000)
                if upload == png:
                    browser_s.append(elapsed)
                    reports.add(report)
                    seconds = re.search(r"Time: ([\d.]+) s", page.inner_text("#status"))
                    server_s.append(float(seconds.group(1)))
            page.wait_for_selector("#chart img")
            page.screenshot(path=str(out / "demo.png"), full_page=True,
                            mask=[page.locator("#knowledge blockquote")])
        peak = _peak_rss_mb(proc.pid)
    return {"study": png.stem, "repeats": repeats,
            "upload_to_report_s_median": round(statistics.median(browser_s), 3),
            "server_s_median": round(statistics.median(server_s), 3),
            "server_s_min_max": [min(server_s), max(server_s)],
            "identical_reports": len(reports) == 1, "server_peak_rss_mb": peak}


def mlflow_ui(out: Path, tmp: Path) -> dict:
    import urllib.request

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = ["make", "-s", "-C", str(ROOT), "ui", f"UI_PORT={port}"]
    with server(cmd, base + "/", ROOT, tmp / "ui.log"):
        request = urllib.request.Request(
            f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=ekagen")
        experiment = json.load(urllib.request.urlopen(request))["experiment"]["experiment_id"]
        body = json.dumps({"experiment_ids": [experiment], "order_by": ["start_time DESC"]})
        runs = json.load(urllib.request.urlopen(urllib.request.Request(
            f"{base}/api/2.0/mlflow/runs/search", data=body.encode(),
            headers={"Content-Type": "application/json"})))["runs"]
        r1 = next(r["info"]["run_id"] for r in runs if r["info"]["run_name"] == "train[r1]")
        with browser_page(1400, 900) as page:
            page.goto(f"{base}/#/experiments/{experiment}/runs")
            parent = page.locator("[role=row]", has_text="workspace@").first
            parent.wait_for(timeout=60_000)
            _close_assistant(page)
            parent.locator("button[data-component-id*=runnamecellrenderer]").click()
            time.sleep(2)
            page.screenshot(path=str(out / "mlflow_runs.png"))
            page.goto(f"{base}/#/experiments/{experiment}/runs/{r1}/model-metrics")
            page.wait_for_selector(".js-plotly-plot", timeout=60_000)
            _close_assistant(page)
            page.get_by_placeholder("Search metric charts").fill("val_")
            time.sleep(3)
            page.screenshot(path=str(out / "mlflow_round.png"), full_page=True)
    return {"runs": len(runs)}


def gallery(out: Path) -> dict:
    with browser_page(1200, 900) as page:
        page.goto((ROOT / "metrics/gallery.html").as_uri())
        page.wait_for_load_state("load")
        broken = page.evaluate("[...document.images].filter(i => !i.complete || "
                               "!i.naturalWidth).length")
        page.screenshot(path=str(out / "gallery.png"))
        studies = page.locator("section").count()
    return {"studies": studies, "broken_images": broken}


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", default="metrics/plots")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = {"demo": demo(out, args.repeats, Path(tmp)),
                  "mlflow_ui": mlflow_ui(out, Path(tmp)), "gallery": gallery(out)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
