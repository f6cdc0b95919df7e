from pathlib import Path

from ekagen import tracking


def test_project_root_escapes_dvc_temp_experiment_copies(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".dvc" / "tmp" / "exps" / "tmpabc" / ".dvc").mkdir(parents=True)
    inner = repo / ".dvc" / "tmp" / "exps" / "tmpabc"
    (repo / "stages").mkdir()
    assert tracking.project_root(inner) == repo.resolve()
    assert tracking.project_root(repo / "stages") == repo.resolve()


def test_tracking_uri_prefers_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.tracking_uri() == "http://127.0.0.1:5999"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    (tmp_path / ".dvc").mkdir()
    monkeypatch.chdir(tmp_path)
    assert tracking.tracking_uri() == f"sqlite:///{Path(tmp_path).resolve() / 'mlflow.db'}"


def test_stage_runs_nest_under_one_parent_per_experiment(monkeypatch, tmp_path):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    monkeypatch.setenv("DVC_EXP_NAME", "exp-one")
    with tracking.stage_run("prepare", {"data.image_size": 64}) as ml:
        tracking.log_metrics_flat(ml, {"splits": {"train": 3}, "name": "x", "nan": float("nan"),
                                  "odd (key)": 2})
    with tracking.stage_run("train", {}, round_key="r1"):
        pass
    runs = mlflow.search_runs(experiment_names=[tracking.EXPERIMENT])
    parents = runs[runs["tags.ekagen.parent"] == "true"]
    children = runs[runs["tags.dvc.stage"].notna()]
    assert len(parents) == 1 and len(children) == 2
    assert set(children["tags.mlflow.parentRunId"]) == {parents["run_id"].iloc[0]}
    assert children.set_index("tags.dvc.stage").loc["prepare", "metrics.splits.train"] == 3
    assert children.set_index("tags.dvc.stage").loc["train", "tags.gid.round"] == "r1"
