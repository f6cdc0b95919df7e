"""End to end: the real ``dvc.yaml`` run by DVC on the tiny profile in a temporary git repo."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from ekagen.training.engine import cpu_name
from tests.conftest import run_checked as _run
from tests.conftest import tiny_params, write_params


def test_dvc_repro_runs_the_whole_dag_on_the_tiny_profile(tiny_repo):
    root, env = tiny_repo
    _run([sys.executable, "-m", "dvc", "repro"], root, env)
    studies = pd.read_parquet(root / "data/prepared/studies.parquet")
    prepared = json.loads((root / "metrics/prepare.json").read_text())
    assert len(studies) == 40 == prepared["studies"]
    assert prepared["splits"] == {"train": 28, "val": 4, "test": 8}
    assert prepared["excluded_by_rule"]["outside the data.max_studies subset"] == 2955 - 40
    assert (root / "metrics/plots/phantom_contact_sheet.png").stat().st_size > 1000
    knowledge = json.loads((root / "metrics/knowledge.json").read_text())
    assert knowledge["reports_embedded"] == 28
    # the default flat index is exact, and the stage measured it so
    assert knowledge["index_type"] == "IndexFlatIP" and knowledge["index_exact"] is True
    assert knowledge["index_recall_at_1/reports"] == 1.0
    assert knowledge["index_recall_queries/reports"] == 28
    assert not list((root / "data/cache/prepare").iterdir())  # the finished cache moved out
    r1 = json.loads((root / "metrics/train/r1.json").read_text())
    assert r1["teacher"] == "r0" and r1["epochs"] == 1
    evaluation = json.loads((root / "metrics/eval.json").read_text())
    assert evaluation["test_studies"] == 8
    assert "ekagen.meteor" not in evaluation  # the tiny profile needs no Java
    generations = pd.read_parquet(root / "data/eval/generations.parquet")
    test = studies[studies["split"] == "test"]
    assert generations["id"].tolist() == test["id"].tolist()
    assert generations["reference"].tolist() == test["report"].tolist()
    # the stored metrics are the metrics of the stored reports, every system and study scored
    from ekagen.evaluation.run import score_systems

    train_reports = set(studies.loc[studies["split"] == "train", "report"])
    assert generations["most_frequent"].nunique() == 1
    assert set(generations["nearest_neighbour"]) <= train_reports
    systems = {"ekagen": generations["generated"].tolist(),
               "most_frequent": generations["most_frequent"].tolist(),
               "nearest_neighbour": generations["nearest_neighbour"].tolist()}
    rescored = score_systems(systems, generations["reference"].tolist(), meteor=False).flat
    for system in systems:
        for metric in ("bleu4", "rouge_l", "cider", "ce14_micro_f1", "ce14_macro_f1",
                       "ce14_example_f1", "ce5_micro_f1", "ce5_macro_f1", "ce14u_micro_f1",
                       "ce5u_macro_f1"):
            key = f"{system}.{metric}"
            assert evaluation[key] == pytest.approx(rescored[key], abs=1e-6), key
    # paired bootstrap: an interval around every metric of every system, and the differences
    intervals = json.loads((root / "metrics/eval_ci.json").read_text())
    assert intervals["resamples"] == 200 and intervals["studies"] == 8
    assert intervals["ce_labeler"] == "rules" and intervals["seed"] == tiny_params()["seed"]
    for system in (*systems, "knowledge"):
        for metric in ("bleu4", "cider", "ce14_micro_f1", "ce5u_macro_f1"):
            ci = intervals["systems"][system][metric]
            assert ci["value"] == pytest.approx(evaluation[f"{system}.{metric}"], abs=1e-6)
            assert ci["low"] <= ci["value"] + 1e-9 and ci["value"] <= ci["high"] + 1e-9
    assert set(intervals["differences"]) == {"ekagen-most_frequent", "ekagen-nearest_neighbour",
                                             "ekagen-knowledge"}
    difference = intervals["differences"]["ekagen-nearest_neighbour"]["bleu4"]
    assert difference["value"] == pytest.approx(
        evaluation["ekagen.bleu4"] - evaluation["nearest_neighbour.bleu4"], abs=2e-6)
    per_study = pd.read_parquet(root / "data/eval/per_study.parquet")
    assert len(per_study) == 4 * 8 and set(per_study["system"]) == {*systems, "knowledge"}
    ekagen_rows = per_study[per_study["system"] == "ekagen"]
    assert ekagen_rows["id"].tolist() == test["id"].astype(str).tolist()
    assert ekagen_rows["rouge_l"].mean() == pytest.approx(evaluation["ekagen.rouge_l"],
                                                          abs=1e-6)
    assert "<table>" in (root / "metrics/gallery.html").read_text()
    assert (root / "data/eval/model/classifier/thresholds.json").is_file()
    # iek.rule=threshold (the default) with max_hamming -1: the diagnosed combination when the
    # knowledge base holds it, else its nearest known one, never a join or an empty knowledge
    assert tiny_params()["iek"] == {"max_hamming": -1, "rule": "threshold"}
    assert set(generations["knowledge_rule"]) <= {"exact", "nearest"}
    exported = json.loads((root / "data/eval/model/model.json").read_text())
    params = tiny_params()
    assert exported["iek"] == params["iek"] and exported["adm"] == params["adm"]
    # the pipeline's own threshold path (params.yaml's default), not only the Youden stage test
    thresholds = json.loads((root / "data/classifier/thresholds.json").read_text())
    assert thresholds["method"] == params["classifier"]["threshold"] == "fixed:0.5"
    assert thresholds["vector"] == [0.5] * 14
    decode = json.loads((root / "data/eval/model/decode.json").read_text())
    assert decode == params["decode"]
    r0 = json.loads((root / "metrics/train/r0.json").read_text())
    assert r0["seed"] == params["seed"]
    # a CPU trains in fp32 unless amp_cpu opts in, whether or not it has AMX
    assert params["train"]["amp_cpu"] is False and params["classifier"]["amp_cpu"] is False
    classifier_run = json.loads((root / "metrics/classifier.json").read_text())
    for run in (r0, classifier_run):
        assert run["precision"] == "fp32"
        assert run["precision_reason"] == "fp32: a CPU trains in fp32 unless amp_cpu is true"
        # and on how many threads of which CPU, since both move the last digits
        assert run["torch_threads"] == torch.get_num_threads()
        assert run["cpu"] == cpu_name()
    # the experiment's parent run is its row in MLflow: headline metrics with intervals
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("ekagen")
    parent, = client.search_runs([experiment.experiment_id], "tags.`ekagen.parent` = 'true'")
    headline = parent.data.metrics
    ekagen_ci = intervals["systems"]["ekagen"]["ce14_micro_f1"]
    assert headline["headline.test.ekagen.ce14_micro_f1"] == pytest.approx(ekagen_ci["value"])
    assert headline["headline.test.ekagen.ce14_micro_f1.low"] == pytest.approx(ekagen_ci["low"])
    assert headline["headline.test.ekagen-nearest_neighbour.bleu4.high"] == pytest.approx(
        difference["high"])
    classifier = json.loads((root / "metrics/classifier.json").read_text())
    assert headline["headline.classifier.test_mean_auroc"] == pytest.approx(
        classifier["test_mean_auroc"])
    stages = client.search_runs([experiment.experiment_id],
                                f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert {r.data.tags["dvc.stage"] for r in stages} == {
        "prepare", "embed", "pks", "rks", "classifier", "adm", "train", "evaluate"}
    assert parent.info.end_time >= max(r.info.end_time for r in stages)
    again = _run([sys.executable, "-m", "dvc", "repro"], root, env)
    assert "didn't change" in again or "skipping" in again.lower()


def test_cli_generate_on_png_and_dicom_and_evaluate(tiny_repo, tmp_path):
    """`ekagen generate` on files the test writes, with the model folder the DAG exported."""
    import numpy as np
    from PIL import Image

    from tests.data.test_images import _write_dicom

    root, env = tiny_repo
    model = root / "data/eval/model"
    if not model.is_dir():
        _run([sys.executable, "-m", "dvc", "repro"], root, env)
    cache = np.load(root / "data/prepared/images.npy")
    png, dcm = tmp_path / "study.png", tmp_path / "study.dcm"
    Image.fromarray(cache[0, 0]).save(png)
    _write_dicom(dcm, cache[1, 0].astype(np.uint16) * 16)
    cli = [sys.executable, "-m", "ekagen.cli"]
    out = _run([*cli, "generate", "--model", str(model), str(png), str(dcm), "--json",
                "--attention", str(tmp_path / "adm.png")], root, env, stdout_only=True)
    payload = json.loads(out)
    assert [p["images"] for p in payload] == [[str(png)], [str(dcm)]]
    from ekagen.observations import OBSERVATIONS

    thresholds = json.loads((model / "classifier/thresholds.json").read_text())["vector"]
    for p in payload:
        assert p["report"].strip() and list(p["probabilities"]) == list(OBSERVATIONS)
        diagnosed = [o for o, t in zip(OBSERVATIONS, thresholds, strict=True)
                     if p["probabilities"][o] >= round(t, 4) + 1e-4]
        assert set(diagnosed) <= set(p["diagnosis"])
        assert all(p["probabilities"][o] >= t - 1e-4 for o, t in
                   zip(OBSERVATIONS, thresholds, strict=True) if o in p["diagnosis"])
        assert p["knowledge"].startswith("exact:")
    assert (tmp_path / "adm_0.png").is_file() and (tmp_path / "adm_1.png").is_file()
    plain = _run([*cli, "generate", "--model", str(model), str(png)], root, env, True)
    assert plain.strip() == payload[0]["report"]

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image")
    done = subprocess.run([*cli, "generate", "--model", str(model), str(bad)], cwd=root, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "broken.png: unreadable image" in done.stderr
    done = subprocess.run([*cli, "generate", "--model", str(tmp_path), str(png)], cwd=root,
                          env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "incomplete model folder" in done.stderr

    scored = _run([*cli, "evaluate", "--generations",
                   str(root / "data/eval/generations.parquet"), "--no-meteor"], root, env, True)
    metrics = json.loads(scored)["metrics"]
    evaluation = json.loads((root / "metrics/eval.json").read_text())
    assert metrics["system.bleu4"] == pytest.approx(evaluation["ekagen.bleu4"], abs=1e-6)
    assert metrics["system.ce14_micro_f1"] == pytest.approx(evaluation["ekagen.ce14_micro_f1"])


def test_evaluate_stage_with_the_chexbert_labeler(tiny_repo, tmp_path):
    """``evaluate.ce_labeler: chexbert`` on a tiny checkpoint in the public layout: the stage
    labels both sides with it; the reports and the NLG scores do not change."""
    import yaml

    from tests.labeler.tiny_chexbert import write_tiny_chexbert

    root, env = tiny_repo
    checkpoint, bert = write_tiny_chexbert(tmp_path / "chexbert")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["evaluate"].update(ce_labeler="chexbert", chexbert_checkpoint=str(checkpoint),
                              chexbert_bert_dir=str(bert))
    write_params(tmp_path / "params.yaml", params)
    out = tmp_path / "metrics"
    _run([sys.executable, "-m", "stages.evaluate", "--params", str(tmp_path / "params.yaml"),
          "--out", str(tmp_path / "eval"), "--metrics", str(out / "eval.json"),
          "--intervals", str(out / "eval_ci.json"), "--per-class", str(out / "per_class.json"),
          "--f1-table", str(out / "f1.csv"), "--gallery", str(out / "gallery.html"),
          "--no-progress"], root, env)
    rules = json.loads((root / "metrics/eval.json").read_text())
    chexbert = json.loads((out / "eval.json").read_text())
    assert json.loads((out / "eval_ci.json").read_text())["ce_labeler"] == "chexbert"
    assert chexbert["ekagen.bleu4"] == rules["ekagen.bleu4"]
    ce_keys = [k for k in rules if ".ce" in k]
    assert any(chexbert[k] != rules[k] for k in ce_keys)
    generations = pd.read_parquet(tmp_path / "eval/generations.parquet")
    assert generations["generated"].equals(
        pd.read_parquet(root / "data/eval/generations.parquet")["generated"])


def test_cli_writes_exactly_the_evaluate_stage_report_for_a_test_study(tiny_repo, tmp_path):
    """One image -> report path: `ekagen generate --views` on a test study's images, written
    as PNG files, gives the report the evaluate stage scored for that study."""
    import numpy as np
    from PIL import Image

    root, env = tiny_repo
    if not (root / "data/eval/model").is_dir():
        _run([sys.executable, "-m", "dvc", "repro"], root, env)
    studies = pd.read_parquet(root / "data/prepared/studies.parquet")
    cache = np.load(root / "data/prepared/images.npy")
    generations = pd.read_parquet(root / "data/eval/generations.parquet").set_index("id")
    test_rows = np.flatnonzero((studies["split"] == "test").to_numpy())
    for row in test_rows[:3]:
        paths = []
        for view in range(cache.shape[1]):
            paths.append(tmp_path / f"{row}_{view}.png")
            Image.fromarray(cache[row, view]).save(paths[-1])
        out = _run([sys.executable, "-m", "ekagen.cli", "generate", "--model",
                    str(root / "data/eval/model"), "--views", "--json", *map(str, paths)],
                   root, env, stdout_only=True)
        (written,) = json.loads(out)
        expected = generations.loc[studies["id"].iloc[row]]
        assert written["report"] == expected["generated"]
        assert written["knowledge"] == f"{expected['knowledge_rule']}:{expected['knowledge_key']}"


def _round_r0(tiny_repo, tmp_path):
    """The round-0 stage command for the tiny DAG's data (dropout off, 2 epochs, each study
    once), its single-process run done, and a reader of a run's training-loss curve."""
    import csv

    root, env = tiny_repo
    if not (root / "data/adm").is_dir():
        _run([sys.executable, "-m", "dvc", "repro", "adm", "rks"], root, env)
    params = write_params(tmp_path / "params.yaml",
                          tiny_params(model={"dropout": 0.0},
                                      train={"epochs": 2, "findings_repeat": 1}))

    def args(name: str) -> list[str]:
        return ["-m", "stages.train", "--round", "r0", "--params", str(params), "--no-progress",
                "--gid-dir", str(tmp_path / name), "--ckpt-dir", str(tmp_path / f"{name}_ckpt"),
                "--metrics-dir", str(tmp_path / f"{name}_metrics")]

    def curve(name: str) -> list[float]:
        with open(tmp_path / f"{name}_metrics" / "r0_curve.csv") as handle:
            return [float(row["train_loss"]) for row in csv.DictReader(handle)]

    _run([sys.executable, *args("single")], root, env)
    return root, env, args, curve


@pytest.mark.slow
def test_generator_round_under_torchrun_matches_one_process(tiny_repo, tmp_path):
    """2-process DDP on CPU (gloo) with the same global batch gives the same loss curve.

    Both runs draw the same length-grouped global batches, and the loss is a token sum over a
    constant, so the processes' halves add up to the single process's batch (up to float
    rounding). 28 training studies (findings_repeat 1) split evenly: with an odd count the
    sampler pads the last batch with a duplicate, as DistributedSampler does, which on this
    tiny set moves the epoch's mean loss by a few percent."""
    root, env, args, curve = _round_r0(tiny_repo, tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
          *args("ddp")], root, env)
    single, ddp = curve("single"), curve("ddp")
    assert len(single) == len(ddp) == 2
    assert ddp == pytest.approx(single, rel=2e-3)
    assert json.loads((tmp_path / "ddp_metrics" / "r0.json").read_text())["epochs"] == 2


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_generator_round_on_two_torchrun_nodes_matches_one_process(tiny_repo, tmp_path):
    """Two "nodes" on 127.0.0.1 (``--nnodes 2 --nproc-per-node 1``, c10d rendezvous), each a
    separate torchrun in its own process group, train the round the single process trains."""
    import os
    import signal

    root, env, args, curve = _round_r0(tiny_repo, tmp_path)
    endpoint = f"127.0.0.1:{_free_port()}"
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc-per-node=1",
         f"--node-rank={rank}", "--rdzv-backend=c10d", f"--rdzv-endpoint={endpoint}",
         "--rdzv-id=ekagen-test", *args("nodes")],
        cwd=root, env={**env, "MASTER_ADDR": "127.0.0.1"}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True) for rank in (0, 1)]
    try:
        outputs = [node.communicate(timeout=600)[0] for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
    assert [node.returncode for node in nodes] == [0, 0], "\n".join(outputs)

    single, nodes_curve = curve("single"), curve("nodes")
    assert len(single) == len(nodes_curve) == 2
    assert nodes_curve == pytest.approx(single, rel=2e-3)
    from ekagen.training.checkpoint import load_checkpoint

    # it really was one process on each of two nodes
    assert load_checkpoint(tmp_path / "nodes_ckpt" / "r0" / "last.pt")["world_size"] == 2
    assert load_checkpoint(tmp_path / "single_ckpt" / "r0" / "last.pt")["world_size"] == 1
