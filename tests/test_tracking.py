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


def _git_repo_with_params(root: Path, params: dict) -> Path:
    import subprocess

    import yaml

    root.mkdir(parents=True, exist_ok=True)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "PATH": __import__("os").environ["PATH"]}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    for cmd in (["git", "init", "-q"], ["git", "add", "params.yaml"],
                ["git", "commit", "-qm", "baseline"]):
        subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
    return root


BASE = {"seed": 42, "train": {"lr": 0.001, "epochs": 5}, "runtime": {"workers": 2}}


def test_changed_params_compares_with_the_baseline_commit(monkeypatch, tmp_path):
    import yaml

    repo = _git_repo_with_params(tmp_path / "repo", BASE)
    monkeypatch.chdir(repo)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    assert tracking.changed_params() == {}
    edited = {"seed": 7, "train": {"lr": 0.001, "epochs": 5, "warmup": 2},
              "runtime": {"workers": 1}}
    (repo / "params.yaml").write_text(yaml.safe_dump(edited))
    # runtime cannot change a result, so it is never a changed parameter
    assert tracking.changed_params() == {"seed": "7", "train.warmup": "2"}
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    one = tracking.experiment_name(tracking.changed_params())
    assert one.startswith("workspace@") and "+" in one
    assert tracking.experiment_name({}) == one.split("+")[0]
    assert tracking.experiment_name({"seed": "8"}) != one
    assert tracking.changed_params(repo / "missing.yaml") is None


def test_the_parent_run_holds_changed_params_and_headline_metrics(monkeypatch, tmp_path):
    import time

    import mlflow
    import yaml

    repo = _git_repo_with_params(tmp_path / "repo", BASE)
    monkeypatch.chdir(repo)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    for name, seed in (("exp-a", 1), ("exp-b", 2)):
        monkeypatch.setenv("DVC_EXP_NAME", name)
        (repo / "params.yaml").write_text(yaml.safe_dump({**BASE, "seed": seed}))
        with tracking.stage_run("classifier", {}) as ml:
            tracking.log_headline(ml, {"classifier": {"test_mean_auroc": 0.8 + seed / 100}})
        time.sleep(0.05)
        with tracking.stage_run("evaluate", {}) as ml:
            tracking.log_headline(ml, {"test.ekagen.bleu4": 0.1 * seed, "label": "x",
                                       "test.ekagen.bleu4.low": float("nan")})
    runs = mlflow.search_runs(experiment_names=[tracking.EXPERIMENT])
    parents = runs[runs["tags.ekagen.parent"] == "true"].set_index("tags.dvc.experiment")
    assert sorted(parents.index) == ["exp-a", "exp-b"]
    # one row per experiment: what it changed and what it scored
    assert parents.loc["exp-a", "params.seed"] == "1" and parents.loc["exp-b", "params.seed"] == "2"
    assert parents.loc["exp-b", "tags.ekagen.changed_params"] == "seed"
    assert parents.loc["exp-a", "metrics.headline.test.ekagen.bleu4"] == 0.1
    assert parents.loc["exp-b", "metrics.headline.classifier.test_mean_auroc"] == 0.8 + 2 / 100
    assert "metrics.headline.test.ekagen.bleu4.low" not in parents.columns  # NaN is not logged
    children = runs[runs["tags.dvc.stage"].notna()]
    for name in ("exp-a", "exp-b"):
        mine = children[children["tags.dvc.experiment"] == name]
        # the parent lasts from its first stage to its last, not a few milliseconds
        assert parents.loc[name, "end_time"] >= mine["end_time"].max()
        assert parents.loc[name, "start_time"] <= mine["start_time"].min()
        assert "metrics.headline.test.ekagen.bleu4" not in mine.dropna(axis=1).columns
