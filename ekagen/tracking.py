"""MLflow logging for DVC stages: one parent run per DVC experiment, one nested run per stage.

DVC's metrics files stay the source of truth; MLflow is the place to compare runs. The parent
run is the row a user compares: it holds the parameters that differ from the baseline commit's
``params.yaml`` and the headline metrics the stages hand it (:func:`log_headline`), and it lasts
from its first stage to its last. The store
defaults to ``sqlite:///<project root>/mlflow.db`` where the project root is the *original*
repository even inside ``dvc exp run --temp`` / queued runs (which execute in a copy under
``.dvc/tmp/exps``), so those runs' records are not lost with their temporary folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

EXPERIMENT = "ekagen"
_METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-./:]+")
_TEMP_EXP_MARKER = (".dvc", "tmp", "exps")
#: sections that cannot change a result, so never part of what an experiment changed
_UNTRACKED_SECTIONS = ("runtime",)
PARENT_TAG, HEADLINE_PREFIX = "ekagen.parent", "headline."


def project_root(start: str | Path | None = None) -> Path:
    """The DVC root holding ``start`` (default: cwd), escaping DVC's temporary exp copies."""
    path = Path(start or os.getcwd()).resolve()
    parts = path.parts
    for i in range(len(parts) - len(_TEMP_EXP_MARKER)):
        if parts[i : i + len(_TEMP_EXP_MARKER)] == _TEMP_EXP_MARKER:
            return Path(*parts[:i])
    for candidate in (path, *path.parents):
        if (candidate / ".dvc").is_dir():
            return candidate
    return path


def tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the sqlite store under the project root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None


def _flatten(node: Any, key: str = "") -> dict[str, Any]:
    if isinstance(node, Mapping):
        flat: dict[str, Any] = {}
        for sub, value in node.items():
            flat.update(_flatten(value, f"{key}.{sub}" if key else str(sub)))
        return flat
    return {key: node}


def changed_params(params_file: str | Path = "params.yaml") -> dict[str, str] | None:
    """The parameters of ``params_file`` that differ from the baseline commit's copy of it
    (``DVC_EXP_BASELINE_REV``, set by ``dvc exp run``, else ``HEAD``), as dotted keys; a key
    the baseline lacks or that was removed counts as changed (``<absent>``). None when there
    is no baseline to compare with (no git, or the file is not committed)."""
    path = Path(params_file)
    if not path.is_file():
        return None
    baseline_rev = os.environ.get("DVC_EXP_BASELINE_REV") or "HEAD"
    baseline_text = _git("show", f"{baseline_rev}:{path.as_posix()}")
    if baseline_text is None:
        return None
    current = _flatten(yaml.safe_load(path.read_text()) or {})
    baseline = _flatten(yaml.safe_load(baseline_text) or {})
    changed: dict[str, str] = {}
    for key in sorted(set(current) | set(baseline)):
        if key.split(".")[0] in _UNTRACKED_SECTIONS:
            continue
        if current.get(key, "<absent>") != baseline.get(key, "<absent>"):
            changed[key] = str(current.get(key, "<absent>"))
    return changed


def experiment_name(changes: Mapping[str, str] | None = None) -> str:
    """DVC's experiment name (set by ``dvc exp run``), else ``workspace@<git revision>``,
    with ``+<hash>`` of the parameter ``changes`` when the workspace's params.yaml differs
    from HEAD's, so edited and unedited workspace runs do not share one parent run."""
    name = os.environ.get("DVC_EXP_NAME")
    if name:
        return name
    rev = (_git("rev-parse", "--short", "HEAD") or "").strip() or "nogit"
    if changes:
        digest = hashlib.sha1(repr(sorted(changes.items())).encode()).hexdigest()[:7]
        return f"workspace@{rev}+{digest}"
    return f"workspace@{rev}"


def _parent_run_id(client: Any, experiment_id: str, name: str,
                   changes: Mapping[str, str] | None) -> str:
    """Find or create the parent run that groups every stage of one DVC experiment; a new
    one gets the changed parameters (MLflow parameters cannot change once logged, and the
    name already differs for differing changes)."""
    escaped = name.replace("'", "''")
    found = client.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = 'true' and "
                               f"tags.`dvc.experiment` = '{escaped}'", max_results=1)
    if found:
        return found[0].info.run_id
    tags = {PARENT_TAG: "true", "dvc.experiment": name,
            "ekagen.changed_params": ("unknown (no git baseline)" if changes is None
                                      else ", ".join(changes) or "none")}
    run = client.create_run(experiment_id, run_name=name, tags=tags)
    if changes:
        from mlflow.entities import Param

        client.log_batch(run.info.run_id, params=[Param(k, v[:500]) for k, v in
                                                  changes.items()])
    client.set_terminated(run.info.run_id)
    return run.info.run_id


@contextmanager
def stage_run(stage: str, params: Mapping[str, Any], round_key: str | None = None) -> Iterator[Any]:
    """Open an MLflow run for one stage, nested under the experiment's parent run.

    Yields the ``mlflow`` module so the stage can ``log_metrics``/``log_artifact`` inside.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    import mlflow  # imported lazily: it is slow to import and only stages need it

    mlflow.set_tracking_uri(tracking_uri())
    experiment = mlflow.set_experiment(EXPERIMENT)
    client = mlflow.MlflowClient()
    changes = changed_params()
    exp_name = experiment_name(changes)
    parent_id = _parent_run_id(client, experiment.experiment_id, exp_name, changes)
    tags = {"dvc.experiment": exp_name, "dvc.stage": stage, "mlflow.parentRunId": parent_id}
    if round_key is not None:
        tags["gid.round"] = round_key
    run_name = f"{stage}[{round_key}]" if round_key is not None else stage
    with mlflow.start_run(run_name=run_name, tags=tags):
        if params:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        yield mlflow
    # the parent run spans its stages: it ends when its latest stage does
    client.set_terminated(parent_id, end_time=int(time.time() * 1000))


def log_headline(mlflow: Any, metrics: Mapping[str, Any]) -> None:
    """Give the experiment's parent run some of this stage's numbers (as
    ``headline.<key>``), so two experiments compare on one row of the MLflow runs table.
    Called inside :func:`stage_run`; ``mlflow`` None (non-zero DDP ranks) logs nothing."""
    if mlflow is None:
        return
    parent_id = mlflow.active_run().data.tags["mlflow.parentRunId"]
    flat = {HEADLINE_PREFIX + _METRIC_NAME.sub("_", k): float(v)
            for k, v in _flatten(metrics).items()
            if isinstance(v, int | float) and not isinstance(v, bool) and v == v}
    if flat:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        mlflow.MlflowClient().log_batch(
            parent_id, metrics=[Metric(k, v, now, 0) for k, v in flat.items()])


def log_metrics_flat(mlflow: Any, metrics: Mapping[str, Any], prefix: str = "") -> None:
    """Log every numeric leaf of a nested metrics dict under a dotted key."""
    flat: dict[str, float] = {}

    def walk(node: Any, key: str) -> None:
        if isinstance(node, Mapping):
            for sub, value in node.items():
                walk(value, f"{key}.{sub}" if key else str(sub))
        elif isinstance(node, bool):
            flat[key] = float(node)
        elif isinstance(node, int | float):
            flat[key] = float(node)

    walk(metrics, prefix)
    # MLflow accepts letters, digits and _-./: in names; NaN is not loggable
    safe = {_METRIC_NAME.sub("_", k): v for k, v in flat.items() if v == v}
    if safe:
        mlflow.log_metrics(safe)


def epoch_logger(mlflow: Any) -> Any:
    """An engine ``on_epoch_end`` callback logging each epoch's numbers at step = epoch
    (``mlflow`` None, as on non-zero DDP ranks, logs nothing)."""

    def log(record: Mapping[str, Any]) -> None:
        if mlflow is None:
            return
        numeric = {k: float(v) for k, v in record.items()
                   if isinstance(v, int | float) and not isinstance(v, bool) and v == v
                   and k != "epoch"}
        mlflow.log_metrics(numeric, step=int(record["epoch"]))

    return log
