"""The image cache ``prepare`` builds: every study's views decoded once, in parallel.

At MIMIC-CXR scale the cache is larger than memory (270k studies at 224 px are 13.6 GB), and
decoding it takes hours, so it is written row by row into a memory-mapped ``.npy`` file with
a ``done`` flag per study beside it. A killed run leaves both on disk; the next run with the
same tasks opens them again and decodes only the studies not yet flagged, so the work already
done is kept and the result is the same bytes as an uninterrupted run. Rows are flagged only
after their pixels are flushed, so a flag never claims pixels the disk does not hold.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap
from tqdm import tqdm

from ekagen.data.images import ImageError, load_image
from ekagen.data.records import Rejections

#: bump when the rendering or decoding code changes what a task's pixels are
CACHE_VERSION = 1
#: studies decoded between two flushes of the cache (and at most FLUSH_SECONDS apart)
FLUSH_STUDIES = 256
FLUSH_SECONDS = 2.0
#: studies copied at a time when failed rows are dropped from the finished cache
COPY_CHUNK = 1024
IMAGES_NAME, DONE_NAME, FINAL_NAME = "images.npy", "done.npy", "final.npy"


def render_task(task: tuple) -> np.ndarray:
    """One study's views, (views, size, size) uint8; module-level so workers can run it."""
    kind, payload, size = task
    if kind == "phantom":
        from ekagen.data.phantom import render_phantom

        study_id, labels, report, seed, views, uncertain = payload
        return np.stack([render_phantom(study_id, labels, report, size=size, seed=seed,
                                        view=view, uncertain=uncertain).image for view in views])
    root, paths = payload
    return np.stack([load_image(Path(root) / p, size) for p in paths])


def _safe_render(task: tuple) -> np.ndarray | Exception:
    try:
        return render_task(task)
    except ValueError as exc:  # an unreadable image: returned so the parent can name the record
        return exc


def _views(task: tuple) -> int:
    kind, payload, _ = task
    return len(payload[4]) if kind == "phantom" else len(payload[1])


def _cache_shape(tasks: list[tuple], ids: list[str], files: list[str]) -> tuple[int, ...]:
    """(studies, views, size, size), known before anything is decoded."""
    views, size = _views(tasks[0]), tasks[0][2]
    for i, task in enumerate(tasks):
        if _views(task) != views or task[2] != size:
            raise ValueError(f"{files[i]}: record {ids[i]}: has {_views(task)} view(s) at "
                             f"{task[2]} px but record {ids[0]} has {views} at {size} px; "
                             "the image cache needs the same number of views for every study")
    return (len(tasks), views, size, size)


def cache_key(tasks: list[tuple]) -> str:
    """Names a cache by everything that decides its pixels, so a resume never mixes runs."""
    text = json.dumps([CACHE_VERSION, tasks], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ImageStore:
    """The rows being filled: in memory when ``folder`` is None, else memory-mapped there."""

    def __init__(self, shape: tuple[int, ...], folder: Path | None) -> None:
        self.folder = folder
        if folder is None:
            self.images = np.zeros(shape, np.uint8)
            self.done = np.zeros(shape[0], bool)
            return
        folder.mkdir(parents=True, exist_ok=True)
        images, done = folder / IMAGES_NAME, folder / DONE_NAME
        if images.exists() and done.exists():
            try:
                self.images = open_memmap(images, mode="r+")
                self.done = open_memmap(done, mode="r+")
                if self.images.shape == shape and self.done.shape == (shape[0],):
                    return
            except ValueError:  # a header cut short by a kill: start this cache again
                pass
        self.images = open_memmap(images, mode="w+", dtype=np.uint8, shape=shape)
        self.done = open_memmap(done, mode="w+", dtype=bool, shape=(shape[0],))

    def commit(self, rows: list[int]) -> None:
        """Flag ``rows`` as cached, after their pixels have reached the disk."""
        if isinstance(self.images, np.memmap):
            self.images.flush()
        self.done[rows] = True
        if isinstance(self.done, np.memmap):
            self.done.flush()

    def finished(self, failed: list[int]) -> np.ndarray:
        """The cache without the ``failed`` rows, copied in chunks when any failed."""
        if not failed:
            return self.images
        keep = np.setdiff1d(np.arange(len(self.images)), failed)
        shape = (len(keep), *self.images.shape[1:])
        if self.folder is None:
            return self.images[keep]
        final = open_memmap(self.folder / FINAL_NAME, mode="w+", dtype=np.uint8, shape=shape)
        for start in range(0, len(keep), COPY_CHUNK):
            chunk = keep[start : start + COPY_CHUNK]
            final[start : start + len(chunk)] = self.images[chunk]
        final.flush()
        return final


def _outcomes(tasks: list[tuple], pending: list[int],
              workers: int) -> Iterator[tuple[int, np.ndarray | Exception]]:
    if workers > 1 and len(pending) > 1:
        with get_context("spawn").Pool(workers) as pool:
            chunksize = max(1, min(16, len(pending) // (4 * workers)))
            yield from zip(pending, pool.imap(_safe_render, [tasks[i] for i in pending],
                                              chunksize=chunksize), strict=True)
    else:
        for i in pending:
            yield i, _safe_render(tasks[i])


def build_image_cache(tasks: list[tuple], workers: int, ids: list[str], files: list[str],
                      rejections: Rejections,
                      cache_dir: Path | None = None) -> tuple[np.ndarray, list[int]]:
    """Decode or render every study's views over ``workers`` processes.

    Returns the cache without the rows that failed, and those rows; each failure is a
    rejection naming the file and the record. With ``cache_dir`` the cache lives in
    ``cache_dir/<key>/`` (memory-mapped, resumable) and the array returned maps that file.
    """
    if not tasks:
        raise ValueError("no study to cache images for")
    shape = _cache_shape(tasks, ids, files)
    folder = None if cache_dir is None else Path(cache_dir) / cache_key(tasks)
    store = ImageStore(shape, folder)
    already = int(store.done.sum())
    if already:
        print(f"prepare images: resuming, {already} of {len(tasks)} studies already cached "
              f"in {folder}")
    pending = np.flatnonzero(~store.done).tolist()
    failed: list[int] = []
    unflushed: list[int] = []
    last_flush = time.monotonic()
    bar = tqdm(total=len(tasks) * shape[1], initial=already * shape[1], desc="prepare images",
               unit="image", smoothing=0.1)
    try:
        for i, outcome in _outcomes(tasks, pending, workers):
            if isinstance(outcome, Exception):  # rows arrive in order, so rejections do too
                failed.append(i)
                rejections.reject(files[i], ids[i], str(outcome), kind=(
                    outcome.kind if isinstance(outcome, ImageError) else "image_error"))
            else:
                store.images[i] = outcome
                unflushed.append(i)
            bar.update(shape[1])
            if len(unflushed) >= FLUSH_STUDIES or time.monotonic() - last_flush > FLUSH_SECONDS:
                store.commit(unflushed)
                unflushed, last_flush = [], time.monotonic()
    finally:  # a refused record or an interrupt keeps what was decoded before it
        store.commit(unflushed)
        bar.close()
    if len(failed) == len(tasks):
        raise ValueError("no study has a usable image")
    return store.finished(failed), failed
