"""The GPU check, on a machine without one: its arguments, its plan, its record of skipped
steps, and its Python half (FLOPs, DDP) on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.sh"
STEPS = ["env", "model", "ddp", "faiss", "pipeline"]


def _script(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_dry_run_prints_the_plan_with_the_arguments_given():
    done = _script("--dry-run", "--studies", "120", "--image-size", "256", "--out", "x")
    assert done.returncode == 0, done.stderr
    plan = json.loads(done.stdout)
    assert plan["steps"] == STEPS
    assert (plan["studies"], plan["image_size"], plan["out"]) == (120, 256, "x")


@pytest.mark.parametrize("args,message", [
    (["--studies", "abc"], "--studies must be a positive integer, got 'abc'"),
    (["--studies", "5"], "--studies must be at least 20"),
    (["--budget-s"], "--budget-s needs a value"),
    (["--wheels", "/no/such/folder"], "--wheels /no/such/folder is not a folder"),
    (["--frobnicate"], "unknown argument '--frobnicate'"),
])
def test_bad_arguments_are_refused_with_the_reason(args, message):
    done = _script(*args, "--dry-run")
    assert done.returncode == 2 and message in done.stderr


def test_a_run_out_of_budget_records_every_step_and_why_it_was_skipped(tmp_path):
    done = _script("--budget-s", "40", "--out", str(tmp_path / "check"),
                   "--python", sys.executable)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "check" / "gpu_check.json").read_text())
    assert [s["step"] for s in result["steps"]] == STEPS
    status = {s["step"]: s for s in result["steps"]}
    assert status["model"] == {"step": "model", "status": "skipped", "reason": "budget spent"}
    assert status["faiss"]["status"] == "skipped" and "GPU" in status["faiss"]["reason"]
    assert status["env"]["status"] != "skipped"  # 40 s left: the 5 s floor is met


def _check(*args: str) -> dict:
    from benchmarks.gpu_check import main

    return main(["--device", "cpu", "--preset", "", "--batch", "2", "--steps", "1",
                 "--matmul-size", "128", "--tokens", "12", *args])


def test_generator_flops_per_study_grow_with_the_image():
    small = _check("--image-size", "32", "--skip-classifier")["generator"]["fp32"]
    large = _check("--image-size", "64", "--skip-classifier")["generator"]["fp32"]
    # the backbone's share grows 4x with the pixel count, the decoder's not at all
    assert 1.5 < large["gflops_per_study"] / small["gflops_per_study"] <= 4.05


def test_one_process_ddp_under_torchrun_is_the_plain_run(tmp_path):
    common = ["--device", "cpu", "--preset", "", "--batch", "2", "--steps", "2",
              "--matmul-size", "128", "--tokens", "12", "--image-size", "32",
              "--skip-classifier"]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node=1", "-m", "benchmarks.gpu_check", *common,
                          "--ddp"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr
    ddp_result = json.loads(ddp.stdout)
    assert ddp_result["ddp"] == {"world_size": 1, "backend": "gloo"}
    plain = _check("--image-size", "32", "--skip-classifier", "--steps", "2")
    for mode, measured in plain["generator"].items():
        assert ddp_result["generator"][mode]["loss_after_steps"] == pytest.approx(
            measured["loss_after_steps"], rel=1e-4)
