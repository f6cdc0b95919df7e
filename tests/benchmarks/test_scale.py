"""benchmarks/scale.py: its slope fit, and one real run of the DAG at two small sizes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks.scale import STAGES, slope
from tests.conftest import REPO


def test_slope_is_the_exponent_of_a_power_law():
    n = [3000, 10000, 30000]
    assert slope(n, [0.5 * x for x in n]) == pytest.approx(1.0)
    assert slope(n, [1e-6 * x**2 for x in n]) == pytest.approx(2.0)
    assert slope(n, [7.0, 7.0, 7.0]) == pytest.approx(0.0, abs=1e-9)


def test_the_stage_list_is_the_dags():
    import yaml

    dag = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    rounds = yaml.safe_load((REPO / "params.yaml").read_text())["gid"]["rounds"]
    names = [s.split()[0] for s in STAGES]
    assert set(names) == set(dag) and [s.split()[1] for s in STAGES if " " in s] == list(rounds)


@pytest.mark.slow
def test_scale_runs_every_stage_at_each_size(tmp_path):
    done = subprocess.run([sys.executable, "benchmarks/scale.py", "--sizes", "120", "240",
                           "--image-size", "32", "--root", str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert list(result["stages"]) == STAGES
    for row in result["stages"].values():
        assert row["n"] == [120, 240] and len(row["seconds"]) == 2
        assert all(s > 0 for s in row["seconds"]) and all(m > 50 for m in row["peak_rss_mb"])
    knowledge = result["approximate_knowledge"]
    assert knowledge["n"] == 240
    assert knowledge["ivf"]["index_type"] == "IndexIVFFlat"
    assert knowledge["hnsw"]["index_type"] == "IndexHNSWFlat"
    # ~235 training reports make about 61 IVF lists, all probed at nprobe 128: exact there;
    # HNSW never is
    assert knowledge["ivf"]["index_exact"] and knowledge["ivf"]["rks_exact_agreement"] == 1.0
    assert not knowledge["hnsw"]["index_exact"]
    # what prepare wrote includes at least its image cache, one 32 x 32 view per study
    for n, written in zip([120, 240], result["stages"]["prepare"]["disk_mb"], strict=True):
        assert written >= n * 32 * 32 / 2**20


def test_replace_keeps_other_sizes_and_refuses_another_profile():
    from benchmarks.scale import combined

    def result(sizes, seconds, size=64):
        return {"image_size": size, "profile": {"train": {"epochs": 1}}, "sizes": sizes,
                "stages": {"prepare": {"n": sizes, "seconds": seconds,
                                       "peak_rss_mb": [100.0] * len(sizes),
                                       "disk_mb": [1.0] * len(sizes)}}}

    old = result([3000, 10000, 30000], [90.0, 10.0, 30.0])
    out = combined(old, result([3000], [3.0]))
    assert out["stages"]["prepare"]["seconds"] == [3.0, 10.0, 30.0]
    assert out["sizes"] == [3000, 10000, 30000] and out["remeasured"] == [3000]
    with pytest.raises(ValueError, match="another image size"):
        combined(old, result([3000], [3.0], size=128))
