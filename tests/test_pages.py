"""Our pages as a person meets them, in headless Chromium: the ``ekagen serve`` demo, the MLflow
UI that ``make ui`` starts, and the HTML gallery of the evaluate stage (tiny profile)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.pages import (
    browser_page,
    demo_write_report,
    free_port,
    group_processes,
    screenshot_dir,
    server,
)
from tests.test_demo import EKAGEN, cli_report, real_cr_dicom

REPO = Path(__file__).resolve().parents[1]


def _files(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*")}


def _images_loaded(page, selector: str) -> list[int]:
    return page.evaluate(f"[...document.querySelectorAll('{selector} img')]"
                         ".filter(i => i.complete).map(i => i.naturalWidth)")


def test_the_demo_page_writes_the_cli_report_for_a_png_and_the_real_dicom(tiny_dag, tmp_path):
    import numpy as np
    from PIL import Image

    root, _ = tiny_dag
    model = root / "data/eval/model"
    cache = np.load(root / "data/prepared/images.npy", mmap_mode="r")
    png = tmp_path / "phantom.png"
    Image.fromarray(np.asarray(cache[2, 0])).save(png)
    notes = tmp_path / "notes.png"
    notes.write_text("a text file, not an image")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    model_files = _files(model)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "serve.log"
    with server([str(EKAGEN), "serve", "--model", str(model), "--port", str(port)], url, cwd,
                log) as proc:
        with browser_page() as page:
            page.goto(url)
            for upload, name in ((png, "png"), (real_cr_dicom(), "dicom")):
                report = demo_write_report(page, [upload])[0]
                assert report == cli_report(model, upload)["report"], name
                # the overlay at the model's size and the 14-bar chart are on the page, loaded
                assert _images_loaded(page, "#overlay") == [256]  # 64 px enlarged 4x
                assert _images_loaded(page, "#chart")[0] >= 600
                assert "Label combination" in page.inner_text("#knowledge")
                page.screenshot(path=str(screenshot_dir(tmp_path) / f"demo_{name}.png"),
                                full_page=True)
            message = demo_write_report(page, [notes], expect_report=False)[0]
            assert "notes.png: unreadable image" in message and "Traceback" not in message
            assert page.input_value("#report textarea") == ""
            hosts = {re.match(r"[a-z]+://([^/]+)/?", u).group(1) for u in page.requested
                     if not u.startswith(("data:", "blob:"))}
            assert hosts == {f"127.0.0.1:{port}"}, hosts  # nothing fetched from outside
        assert not any("node" in c.split()[0] for c in group_processes(proc.pid) if c)
    text = log.read_text()
    cache_dir = Path(re.search(r"uploads cached in (\S+)", text).group(1))
    assert not cache_dir.exists()  # the uploads and rendered images went with the server
    assert list(cwd.iterdir()) == [] and _files(model) == model_files
    assert "Traceback" not in text


def test_the_gallery_shows_every_listed_study_with_its_images(tiny_dag, tmp_path):
    root, _ = tiny_dag
    gallery = root / "metrics/gallery.html"
    generations = pd.read_parquet(root / "data/eval/generations.parquet").set_index("id")
    generations.index = generations.index.astype(str)
    with browser_page(1200, 900) as page:
        page.goto(gallery.as_uri())
        page.wait_for_load_state("load")
        sections = page.evaluate("""[...document.querySelectorAll('section')].map(s => ({
            id: s.querySelector('h3').innerText,
            text: s.querySelector('.text').innerText,
            images: [...s.querySelectorAll('img')].map(i => [i.getAttribute('src'),
                                                           i.complete, i.naturalWidth])}))""")
        links = page.evaluate("[...document.querySelectorAll('[href], [src]')]"
                              ".map(e => e.getAttribute('href') || e.getAttribute('src'))")
        page.screenshot(path=str(screenshot_dir(tmp_path) / "gallery.png"), full_page=True)
    params = yaml.safe_load((root / "params.yaml").read_text())
    assert len(sections) == params["runtime"]["eval_gallery_size"]
    for section in sections:
        row = generations.loc[section["id"]]
        assert f"Generated: {row['generated']}" in section["text"]
        assert f"Reference: {row['reference']}" in section["text"]
        assert row["generated"].strip() and row["reference"].strip()
        assert len(section["images"]) == 2
        for src, complete, width in section["images"]:
            assert complete and width == 64, src  # decoded, not a broken-image icon
    for link in links:  # no broken links: every relative target exists
        assert not link.startswith(("http:", "https:")), link
        assert (gallery.parent / link).is_file(), link


def _mlflow_api(base: str, path: str, body: dict | None = None) -> dict:
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_make_ui_lists_the_stage_runs_under_the_parent_and_the_round_curves(tiny_dag, tmp_path):
    root, env = tiny_dag
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = ["make", "-s", "-C", str(REPO), "ui", f"UI_PORT={port}",
           f"MLFLOW_DB={root / 'mlflow.db'}"]
    with server(cmd, base + "/", REPO, tmp_path / "ui.log", env=env) as proc:
        # only what the UI needs: the mlflow command and one uvicorn worker (besides make and
        # its shell); no job runner, no huey consumers
        processes = [c for c in group_processes(proc.pid) if c]
        assert not [c for c in processes if "jobs" in c or "huey" in c], processes
        pythons = [c for c in processes if "python" in c.split()[0]]
        assert len(pythons) == 2, processes
        experiment = _mlflow_api(base, "experiments/get-by-name?experiment_name=ekagen")
        experiment_id = experiment["experiment"]["experiment_id"]
        runs = _mlflow_api(base, "runs/search", {"experiment_ids": [experiment_id]})["runs"]
        by_name = {r["info"]["run_name"]: r["info"]["run_id"] for r in runs}
        stages = {"prepare", "embed", "pks", "rks", "classifier", "adm", "train[r0]",
                  "train[r1]", "evaluate"}
        assert stages <= set(by_name)
        with browser_page(1400, 900) as page:
            page.goto(f"{base}/#/experiments/{experiment_id}/runs")
            parent_row = page.locator("[role=row]", has_text="workspace@")
            parent_row.wait_for(timeout=60_000)
            parent_row.locator("button[data-component-id*=runnamecellrenderer]").click()
            page.wait_for_function("document.querySelectorAll('[col-id=\"attributes.`Run Name`"
                                   "\"] a').length >= 10", timeout=30_000)
            listed = page.evaluate("[...document.querySelectorAll('[col-id=\"attributes."
                                   "`Run Name`\"] a')].map(a => a.innerText)")
            assert listed[0].startswith("workspace@") and set(listed[1:]) == stages
            page.screenshot(path=str(screenshot_dir(tmp_path) / "mlflow_runs.png"))
            for round_key in ("r0", "r1"):
                run_id = by_name[f"train[{round_key}]"]
                page.goto(f"{base}/#/experiments/{experiment_id}/runs/{run_id}/model-metrics")
                page.wait_for_selector(".js-plotly-plot", timeout=60_000)
                # a chart per per-epoch metric, titled by its own name (not only best.<name>);
                # the page renders charts lazily, so search for each as a user would
                search = page.get_by_placeholder("Search metric charts")
                for metric in ("train_loss", "val_bleu4", "val_ce_micro_f1", "val_mean_length"):
                    search.fill(metric)
                    page.get_by_text(metric, exact=True).first.wait_for(timeout=30_000)
                    assert page.locator(".js-plotly-plot").count() >= 1
                search.fill("val_")
                history = _mlflow_api(base, f"metrics/get-history?run_id={run_id}"
                                            "&metric_key=val_bleu4")["metrics"]
                curve = pd.read_csv(root / f"metrics/train/{round_key}_curve.csv")
                assert [m["step"] for m in history] == curve["epoch"].tolist()
                assert [m["value"] for m in history] == pytest.approx(curve["val_bleu4"])
            page.screenshot(path=str(screenshot_dir(tmp_path) / "mlflow_round.png"))
            assert {u.split("/")[2] for u in page.requested if u.startswith("http")} == {
                f"127.0.0.1:{port}"}
