"""Every pipeline stage's cost against the number of studies, on a synthetic MIMIC-format set.

For each N in ``--sizes`` it writes an ``ekagen synth`` set of N studies (R2Gen ``mimic_cxr``
annotation.json, CheXpert CSV, phantom JPGs), then runs the real stages on it in DVC order
(``python -m stages.<name>``, each in its own process), in a work folder of its own. Per
stage it records wall time, the peak RSS of the stage's process tree (``wait4``) and the
megabytes its outputs added on disk.

The model is the tests' tiny profile at ``--image-size`` px and every training stage runs
one epoch of ``STEPS`` optimiser steps (``max_steps``) whatever N is, so what grows with N is
data handling: loading, caching, backbone features and Grad-CAM/ADM over every image,
knowledge lookup, validation and test decoding, the baselines and the metrics. The slope of
each stage is the least-squares slope of log seconds on log N: 1 is linear, above 1.15 is
flagged superlinear.

    python benchmarks/scale.py [--sizes 3000 10000 30000] [--image-size 64] [--root DIR]

Prints the result as JSON, and with ``--write`` stores it in ``metrics/scale.json`` and draws
``metrics/plots/scale.png`` (log-log, with a slope-1 reference line).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = ["prepare", "embed", "pks", "rks", "classifier", "adm", "train r0", "train r1",
          "evaluate"]
SUPERLINEAR = 1.15
STEPS = 20  # optimiser steps of each training stage, whatever N is
#: the tests' tiny model, so that 30k studies fit the 2-core budget; data sizes stay real
PROFILE = {
    "data": {"source": "r2gen", "dataset": "mimic_cxr", "views": [0], "min_freq": 10},
    "model": {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "heads": 4, "ffn": 64},
    "classifier": {"epochs": 1, "max_steps": STEPS},
    "train": {"epochs": 1, "findings_repeat": 1, "max_steps": STEPS},
    "decode": {"max_length": 60},
    "evaluate": {"meteor": False},
    "runtime": {"workers": 2, "adm_gallery_size": 4, "eval_gallery_size": 3},
}


def merged(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(
            out.get(key), dict) else value
    return out


def folder_mb(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                pass
    return total / 2**20


def run_stage(command: list[str], cwd: Path, env: dict, log: Path) -> tuple[float, float]:
    """(seconds, peak RSS MB of the process and the children it waited for)."""
    start = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        tail = log.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(command)} failed ({code}) in {cwd}:\n{tail}")
    return seconds, usage.ru_maxrss / 1024  # KiB on Linux


def slope(n: list[int], values: list[float]) -> float:
    return float(np.polyfit(np.log(n), np.log(np.maximum(values, 1e-3)), 1)[0])


def approximate_knowledge(work: Path, env: dict) -> dict:
    """The rks stage run again on ``work``'s embeddings through an IVF and an HNSW index
    (built by the embed stage's code with the run's ``embed`` parameters): each one's
    recall@1 against the exact scan and its agreement with exact RKS."""
    from ekagen.config import EmbedConfig, replace, section
    from ekagen.knowledge.index import build_configured_index, save_index
    from ekagen.knowledge.store import INDEX_FILE, read_embeddings

    embed = section(yaml.safe_load((work / "params.yaml").read_text()), "embed", EmbedConfig)
    _, vectors = read_embeddings(work / "data/knowledge/embeddings.parquet")
    out = {}
    for kind in ("ivf", "hnsw"):
        folder = work / f"knowledge_{kind}"
        shutil.rmtree(folder, ignore_errors=True)
        shutil.copytree(work / "data/knowledge", folder)
        save_index(build_configured_index(vectors, replace(embed, index=kind), use_gpu=False),
                   folder / INDEX_FILE)
        metrics = work / f"knowledge_{kind}.json"
        run_stage([sys.executable, "-m", "stages.rks", "--params", "params.yaml",
                   "--knowledge", str(folder), "--metrics", str(metrics),
                   "--plot", str(work / f"knowledge_{kind}.png")], work, env,
                  work / f"rks_{kind}.log")
        found = json.loads(metrics.read_text())
        setting = "nprobe" if kind == "ivf" else "ef_search"
        out[kind] = {setting: getattr(embed, setting),
                     **{k: v for k, v in found.items()
                        if k.startswith("index_") or k == "rks_exact_agreement"}}
    return out


def combined(old: dict, new: dict) -> dict:
    """``old`` with the sizes ``new`` measured replaced by ``new``'s rows."""
    if old["image_size"] != new["image_size"] or old["profile"] != new["profile"]:
        raise ValueError("--replace: that result was measured with another image size or "
                         "profile; rerun every size instead")
    out = {**old, "sizes": sorted(set(old["sizes"]) | set(new["sizes"])),
           "remeasured": sorted(set(old.get("remeasured", [])) | set(new["sizes"]))}
    for name, row in out["stages"].items():
        fresh = new["stages"][name]
        merged_rows = {n: (row["seconds"][i], row["peak_rss_mb"][i], row["disk_mb"][i])
                       for i, n in enumerate(row["n"])}
        merged_rows.update({n: (fresh["seconds"][i], fresh["peak_rss_mb"][i],
                                fresh["disk_mb"][i]) for i, n in enumerate(fresh["n"])})
        order = sorted(merged_rows)
        out["stages"][name] = {"n": order,
                               "seconds": [merged_rows[n][0] for n in order],
                               "peak_rss_mb": [merged_rows[n][1] for n in order],
                               "disk_mb": [merged_rows[n][2] for n in order]}
    return out


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, row in result["stages"].items():
        ax.loglog(row["n"], row["seconds"], marker="o", label=f"{name} ({row['slope']:.2f})")
    n = np.array(result["sizes"], float)
    total = np.array([sum(r["seconds"][i] for r in result["stages"].values())
                      for i in range(len(n))])
    ax.loglog(n, total[0] * n / n[0], "k--", label="slope 1 (through the total)")
    ax.loglog(n, total, "k-", lw=2, label=f"all stages ({slope(list(n), list(total)):.2f})")
    ax.set_xlabel("studies (N)")
    ax.set_ylabel("wall seconds")
    ax.set_title("ekagen stage cost against N (synthetic MIMIC format, 2 CPU cores)")
    ax.legend(fontsize=7, ncol=2)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 10000, 30000])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--root", default="", help="work folder (kept); default: a temp one")
    parser.add_argument("--replace", default="",
                        help="a result JSON of this script: rerun only --sizes (say, one a "
                             "busy machine disturbed) and keep its other sizes")
    parser.add_argument("--write", action="store_true",
                        help="write metrics/scale.json and metrics/plots/scale.png")
    args = parser.parse_args()
    sizes = sorted(set(args.sizes))
    if sizes[0] < 100:
        parser.error("--sizes must each be at least 100 studies")
    root = Path(args.root or tempfile.mkdtemp(prefix="ekagen-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1",
           "HF_HUB_OFFLINE": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    base = merged(yaml.safe_load((REPO / "params.yaml").read_text()), PROFILE)
    result: dict = {"sizes": sizes, "image_size": args.image_size, "profile": PROFILE,
                    "machine": platform.processor() or platform.machine(),
                    "cpu_count": os.cpu_count(), "synth_seconds": [],
                    "stages": {name: {"n": [], "seconds": [], "peak_rss_mb": [], "disk_mb": []}
                               for name in STAGES}}
    for n in sizes:
        synth = root / f"synth{n}"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "ekagen.cli", "synth", "--studies", str(n),
                        "--image-size", str(args.image_size), "--out", str(synth),
                        "--workers", str(os.cpu_count() or 1)], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        result["synth_seconds"].append(round(time.perf_counter() - start, 1))
        work = root / f"n{n}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        params = merged(base, {"data": {"image_size": args.image_size,
            "annotation": str(synth / "annotation.json"), "image_dir": str(synth / "images"),
            "chexpert_csv": str(synth / "mimic-cxr-2.0.0-chexpert.csv")}})
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        for name in STAGES:
            module, *rest = name.split()
            command = [sys.executable, "-m", f"stages.{module}", "--params", "params.yaml",
                       *(["--round", rest[0]] if rest else [])]
            before = folder_mb(work)
            seconds, rss = run_stage(command, work, env, work / f"{name.replace(' ', '_')}.log")
            row = result["stages"][name]
            row["n"].append(n)
            row["seconds"].append(round(seconds, 2))
            row["peak_rss_mb"].append(round(rss, 1))
            row["disk_mb"].append(round(folder_mb(work) - before, 1))
            print(f"N={n} {name}: {seconds:.1f} s, {rss:.0f} MB", file=sys.stderr, flush=True)
    if args.replace:
        result = combined(json.loads(Path(args.replace).read_text()), result)
    else:
        result["approximate_knowledge"] = {"n": sizes[-1], **approximate_knowledge(
            root / f"n{sizes[-1]}", env)}
    for row in result["stages"].values():
        row["slope"] = round(slope(row["n"], row["seconds"]), 3)
        row["rss_slope"] = round(slope(row["n"], row["peak_rss_mb"]), 3)
    result["superlinear"] = [k for k, r in result["stages"].items() if r["slope"] > SUPERLINEAR]
    if args.write:
        (REPO / "metrics" / "scale.json").write_text(json.dumps(result, indent=1) + "\n")
        plot(result, REPO / "metrics" / "plots" / "scale.png")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
