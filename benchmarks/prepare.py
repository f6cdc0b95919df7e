"""Prepare's image cache: images per second against the number of worker processes.

Writes (once, then reuses) a synthetic MIMIC-format set of ``--studies`` JPGs at
``--source-size`` px, then builds the memory-mapped cache at ``--size`` px from those files
with each worker count in turn, ``--repeats`` times alternating, so machine noise hits every
count alike. Also times the phantom renderer (the default data's image source) the same way.

    python benchmarks/prepare.py [--studies 2000] [--workers 1 2] [--repeats 2]

Prints one JSON object: per source and worker count, the median images/s and the speed-up
over one worker. Each run starts from an empty cache folder; the JPGs stay in the page cache
after the first pass, so this measures decoding and resizing, not a cold disk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ekagen.data.image_cache import build_image_cache
from ekagen.data.records import Rejections
from ekagen.data.synth import write_synthetic_mimic


def file_tasks(folder: Path, studies: int, source_size: int, size: int) -> list[tuple]:
    summary = write_synthetic_mimic(folder, studies, image_size=source_size, seed=0,
                                    workers=os.cpu_count() or 1, progress=False)
    annotation = json.loads(Path(summary["annotation"]).read_text())
    paths = [e["image_path"][0] for split in annotation.values() for e in split]
    return [("file", (summary["image_dir"], [p]), size) for p in paths]


def phantom_tasks(studies: int, size: int) -> list[tuple]:
    labels = [{}, {"Cardiomegaly": 1.0}, {"Pleural Effusion": 1.0, "Edema": -1.0}]
    return [("phantom", (f"b{i}", labels[i % 3], "", 0, [0], "faint"), size)
            for i in range(studies)]


def images_per_second(tasks: list[tuple], workers: int) -> float:
    ids = [str(i) for i in range(len(tasks))]
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        images, failed = build_image_cache(tasks, workers, ids, ids, Rejections(allow=False),
                                           Path(cache))
        seconds = time.perf_counter() - start
        assert not failed and images.shape[0] == len(tasks)
    return images.shape[0] * images.shape[1] / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--source-size", type=int, default=512, help="px of the JPGs written")
    parser.add_argument("--size", type=int, default=224, help="px of the cache")
    parser.add_argument("--phantom-studies", type=int, default=300)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--set", default="", help="folder for the synthetic set (kept)")
    args = parser.parse_args()
    folder = Path(args.set or tempfile.mkdtemp(prefix="ekagen-prepare-bench-"))
    sources = {"jpg": file_tasks(folder, args.studies, args.source_size, args.size),
               "phantom": phantom_tasks(args.phantom_studies, args.size)}
    rates: dict[str, dict[int, list[float]]] = {k: {w: [] for w in args.workers}
                                                for k in sources}
    for _ in range(args.repeats):
        for name, tasks in sources.items():
            for workers in args.workers:
                rates[name][workers].append(images_per_second(tasks, workers))
    result = {"machine": platform.processor() or platform.machine(),
              "cpu_count": os.cpu_count(), "studies": args.studies,
              "source_size": args.source_size, "cache_size": args.size,
              "repeats": args.repeats, "sources": {}}
    for name, by_workers in rates.items():
        base = float(np.median(by_workers[args.workers[0]]))
        result["sources"][name] = {
            str(w): {"images_per_s": round(float(np.median(r)), 1),
                     "speedup": round(float(np.median(r)) / base, 2)}
            for w, r in by_workers.items()}
    if not args.set:
        shutil.rmtree(folder)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
