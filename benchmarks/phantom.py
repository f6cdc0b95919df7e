"""Phantom renderer speed: mean milliseconds per image over random label vectors.

Usage: python benchmarks/phantom.py [--n 100] [--sizes 256 64]
Prints one JSON object. Runs on one core (the renderer is single-threaded numpy/scipy).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import numpy as np

from ekagen.data.phantom import render_phantom
from ekagen.observations import OBSERVATIONS

REPORTS = ("", "Small right pleural effusion.", "Left upper lobe nodule.",
           "Bibasilar atelectasis.", "Right lower lobe consolidation.")


def random_labels(rng: np.random.Generator) -> dict[str, float]:
    """A label vector: each observation positive 12%, negative 10%, uncertain 5%, else blank."""
    values = rng.choice([1.0, 0.0, -1.0, math.nan], size=len(OBSERVATIONS),
                        p=[0.12, 0.10, 0.05, 0.73])
    return dict(zip(OBSERVATIONS, values.tolist(), strict=True))


def bench(size: int, n: int, seed: int = 0) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    cases = [(f"bench-{i}", random_labels(rng), REPORTS[i % len(REPORTS)]) for i in range(n)]
    render_phantom("warm-up", cases[0][1], size=size)  # fill per-size caches
    times = []
    for study_id, labels, report in cases:
        t0 = time.perf_counter()
        render_phantom(study_id, labels, report, size=size)
        times.append((time.perf_counter() - t0) * 1e3)
    t = np.array(times)
    return {"mean_ms": round(float(t.mean()), 2), "median_ms": round(float(np.median(t)), 2),
            "p95_ms": round(float(np.percentile(t, 95)), 2), "max_ms": round(float(t.max()), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="images per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 64])
    args = parser.parse_args()
    result = {"benchmark": "phantom_render", "images_per_size": args.n,
              "python": platform.python_version(), "numpy": np.__version__}
    for size in args.sizes:
        result[f"size_{size}"] = bench(size, args.n)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
