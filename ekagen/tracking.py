"""MLflow logging for DVC stages: one parent run per DVC experiment, one nested run per stage.

DVC's metrics files stay the source of truth; MLflow is the place to compare runs. The store
defaults to ``sqlite:///<project root>/mlflow.db`` where the project root is the *original*
repository even inside ``dvc exp run --temp`` / queued runs (which execute in a copy under
``.dvc/tmp/exps``), so those runs' records are not lost with their temporary folder.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

EXPERIMENT = "ekagen"
_METRIC_NAME = re.compile(r"[^A-Za-z0-9_\-./:]+")
_TEMP_EXP_MARKER = (".dvc", "tmp", "exps")


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


def experiment_name() -> str:
    """DVC's experiment name (set by ``dvc exp run``), else ``workspace@<git revision>``."""
    name = os.environ.get("DVC_EXP_NAME")
    if name:
        return name
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        rev = "nogit"
    return f"workspace@{rev or 'nogit'}"


def _parent_run_id(client: Any, experiment_id: str, name: str) -> str:
    """Find or create the parent run that groups every stage of one DVC experiment."""
    escaped = name.replace("'", "''")
    found = client.search_runs([experiment_id], f"tags.`ekagen.parent` = 'true' and "
                               f"tags.`dvc.experiment` = '{escaped}'", max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(experiment_id, run_name=name,
                            tags={"ekagen.parent": "true", "dvc.experiment": name})
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
    exp_name = experiment_name()
    parent_id = _parent_run_id(client, experiment.experiment_id, exp_name)
    tags = {"dvc.experiment": exp_name, "dvc.stage": stage, "mlflow.parentRunId": parent_id}
    if round_key is not None:
        tags["gid.round"] = round_key
    run_name = f"{stage}[{round_key}]" if round_key is not None else stage
    with mlflow.start_run(run_name=run_name, tags=tags):
        if params:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        yield mlflow


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
