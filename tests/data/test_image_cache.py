"""The prepare image cache: memory-mapped, parallel, and resumable after a kill."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from ekagen.data.image_cache import DONE_NAME, IMAGES_NAME, build_image_cache, cache_key
from ekagen.data.records import Rejections
from tests.conftest import REPO, tiny_params, write_params


def _phantom_tasks(n: int, size: int = 32) -> list[tuple]:
    labels = {"Cardiomegaly": 1.0, "Pleural Effusion": 0.0}
    return [("phantom", (f"s{i}", labels if i % 2 else {}, "the heart is enlarged .", 3,
                         [0], "faint"), size) for i in range(n)]


def _build(tasks: list[tuple], workers: int = 1, cache_dir: Path | None = None):
    ids = [t[1][0] if t[0] == "phantom" else t[1][1][0] for t in tasks]
    rejections = Rejections(allow=True)
    images, failed = build_image_cache(tasks, workers, ids, ["f"] * len(tasks), rejections,
                                       cache_dir)
    return images, failed, rejections


def test_memory_mapped_cache_is_the_in_memory_cache_and_the_bytes_np_save_writes(tmp_path):
    tasks = _phantom_tasks(7)
    in_memory, _, _ = _build(tasks)
    mapped, failed, _ = _build(tasks, cache_dir=tmp_path / "cache")
    assert failed == [] and isinstance(mapped, np.memmap)
    np.testing.assert_array_equal(mapped, in_memory)
    assert in_memory[1].std() > 0 and not np.array_equal(in_memory[0], in_memory[1])
    np.save(tmp_path / "saved.npy", in_memory)
    assert Path(mapped.filename).read_bytes() == (tmp_path / "saved.npy").read_bytes()


def test_failed_rows_are_dropped_from_the_mapped_cache_as_from_the_in_memory_one(tmp_path):
    for i, value in enumerate((10, 200, 90)):
        Image.fromarray(np.full((20, 20), value, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    names = ["0.png", "bad.png", "1.png", "gone.png", "2.png"]
    tasks = [("file", (str(tmp_path), [name]), 8) for name in names]
    in_memory, failed, rejections = _build(tasks)
    mapped, failed_mapped, _ = _build(tasks, cache_dir=tmp_path / "cache")
    assert failed == failed_mapped == [1, 3]
    assert [r["record"] for r in rejections.rows] == ["bad.png", "gone.png"]
    assert mapped.shape == (3, 1, 8, 8) and Path(mapped.filename).name == "final.npy"
    np.testing.assert_array_equal(mapped, in_memory)
    assert [int(mapped[i, 0, 0, 0]) for i in range(3)] == [10, 200, 90]


def test_two_workers_decode_the_same_pixels_in_the_same_order():
    tasks = _phantom_tasks(6)
    serial, _, _ = _build(tasks)
    parallel, _, _ = _build(tasks, workers=2)
    np.testing.assert_array_equal(parallel, serial)


def test_a_cache_only_resumes_from_the_same_tasks_and_a_torn_file_starts_again(tmp_path):
    tasks = _phantom_tasks(4)
    assert cache_key(tasks) == cache_key(_phantom_tasks(4))
    assert cache_key(tasks) != cache_key(_phantom_tasks(4, size=16))
    folder = tmp_path / cache_key(tasks)
    folder.mkdir()
    (folder / IMAGES_NAME).write_bytes(b"\x93NUMPY")  # killed while writing the header
    (folder / DONE_NAME).write_bytes(b"")
    images, _, _ = _build(tasks, cache_dir=tmp_path)
    np.testing.assert_array_equal(images, _build(tasks)[0])


def test_studies_with_different_view_counts_are_named():
    tasks = _phantom_tasks(2)
    kind, payload, size = tasks[1]
    tasks[1] = (kind, (*payload[:4], [0, 1], payload[5]), size)
    with pytest.raises(ValueError, match=r"^f: record s1: has 2 view\(s\) at 32 px but record "
                                         r"s0 has 1"):
        _build(tasks)


#: runs the real prepare stage, flushing every 2 studies, and SIGKILLs itself at the 15th
KILLED_RUN = """
import os, signal, sys
import ekagen.data.image_cache as cache
cache.FLUSH_STUDIES, cache.FLUSH_SECONDS = 2, 1e9
render, calls = cache.render_task, [0]
def render_then_die(task):
    calls[0] += 1
    if calls[0] == 15:
        os.kill(os.getpid(), signal.SIGKILL)
    return render(task)
cache.render_task = render_then_die
from stages.prepare import main
main(sys.argv[1:])
"""


def _stage_args(params: Path, out: Path, cache: Path) -> list[str]:
    return ["--params", str(params), "--out", str(out), "--cache-dir", str(cache),
            "--metrics", str(out.parent / f"{out.name}.json"),
            "--contact-sheet", str(out.parent / f"{out.name}.png")]


def test_a_killed_prepare_resumes_from_its_cache_and_ends_identical(tmp_path):
    params = write_params(tmp_path / "params.yaml", tiny_params(
        data={"max_studies": 30, "image_size": 32}, runtime={"workers": 1}))
    stage = [sys.executable, "-m", "stages.prepare"]
    whole = subprocess.run([*stage, *_stage_args(params, tmp_path / "whole", tmp_path / "c1")],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert whole.returncode == 0, whole.stderr
    assert not list((tmp_path / "c1").iterdir()), "a finished cache leaves no resume folder"

    args = _stage_args(params, tmp_path / "resumed", tmp_path / "c2")
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, *args], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr
    [folder] = (tmp_path / "c2").iterdir()
    assert int(np.load(folder / DONE_NAME).sum()) == 14  # flushed in pairs before the kill

    resumed = subprocess.run([*stage, *args], cwd=REPO, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming, 14 of 30 studies already cached" in resumed.stdout
    for name in ("images.npy", "studies.parquet", "vocab.json"):
        assert (tmp_path / "resumed" / name).read_bytes() == \
            (tmp_path / "whole" / name).read_bytes(), name
    assert len(pd.read_parquet(tmp_path / "resumed" / "studies.parquet")) == 30
    assert not folder.exists()
