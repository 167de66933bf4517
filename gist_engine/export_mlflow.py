"""Export stored runs and groups to MLflow (optional extra: `pip install mlflow`): params, metrics, checkpoint."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runs import RunManager

EXPERIMENT = "gist-studio"
MAX_PARAMS, MAX_METRICS = 100, 1000  # MLflow's log_batch limits per request
MLFLOW_STATUS = {"completed": "FINISHED", "stopped": "KILLED", "interrupted": "KILLED", "failed": "FAILED",
                 "diverged": "FAILED"}


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        from .runs import RunError

        raise RunError("export to mlflow needs the optional package mlflow (pip install mlflow); "
                       "csv and parquet exports need nothing extra") from None
    return mlflow


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {"train.lr": "0.001", ...} (MLflow params are flat strings)."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = str(value)[:500]
    return out


def _client(path: str | Path | None) -> tuple[Any, str]:
    _mlflow()  # a clear error when the optional package is missing
    from mlflow.tracking import MlflowClient

    uri = None
    if path is not None:
        uri = str(path) if "://" in str(path) or str(path).startswith("file:") else Path(path).resolve().as_uri()
    if (uri or os.environ.get("MLFLOW_TRACKING_URI", "file:")).startswith("file:"):
        # MLflow 3 refuses its folder store unless asked for it; a folder is what `--to mlflow --out DIR` promises
        # (`mlflow ui --backend-store-uri DIR` reads it). A database URI (sqlite:///...) is passed through as is.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=uri) if uri else MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    return client, experiment_id


def _log_run(client: Any, experiment_id: str, manager: RunManager, run_id: str, parent: str | None = None) -> str:
    from mlflow.entities import Metric, Param

    snap = manager.get(run_id)
    tags = {"gist_studio.run_id": snap.id, "gist_studio.status": snap.status}
    if snap.group_id:
        tags["gist_studio.group_id"] = snap.group_id
    if parent:
        tags["mlflow.parentRunId"] = parent
    run = client.create_run(experiment_id, run_name=snap.name, tags=tags)
    mid = run.info.run_id
    params = [Param(k, v) for k, v in flatten(snap.config).items()]
    for i in range(0, len(params), MAX_PARAMS):
        client.log_batch(mid, params=params[i:i + MAX_PARAMS])
    stamp = int((snap.started or snap.created) * 1000)
    metrics = []
    frame = manager.metrics(run_id)
    for key in frame.columns.drop("step"):
        metrics += [Metric(key, float(v), stamp, int(s)) for s, v in zip(frame["step"], frame[key], strict=True)
                    if math.isfinite(v)]
    for _, row in manager.evaluations(run_id).iterrows():
        for key in ("acc_cls", "acc_gist", "agreement"):
            if row[key] is not None and math.isfinite(row[key]):
                metrics.append(Metric(f"eval_{key}", float(row[key]), stamp, int(row["step"])))
    for i in range(0, len(metrics), MAX_METRICS):
        client.log_batch(mid, metrics=metrics[i:i + MAX_METRICS])
    for name in ("checkpoint.safetensors", "result.json"):
        if (snap.run_dir / name).exists():
            client.log_artifact(mid, str(snap.run_dir / name))
    client.set_terminated(mid, status=MLFLOW_STATUS.get(snap.status, "FINISHED"),
                          end_time=int((snap.finished or time.time()) * 1000))
    return mid


def export_run_to_mlflow(manager: RunManager, run_id: str, path: str | Path | None = None) -> str:
    """One MLflow run: flattened config as params, every step metric and evaluation, checkpoint + result.json.

    Returns:
        The MLflow run id.
    """
    client, experiment_id = _client(path)
    return _log_run(client, experiment_id, manager, run_id)


def export_group_to_mlflow(manager: RunManager, group_id: str, path: str | Path | None = None) -> str:
    """A parent MLflow run with the paired statistics and one nested run per member; returns the parent's id."""
    from mlflow.entities import Metric, Param

    client, experiment_id = _client(path)
    res = manager.group_results(group_id)
    parent = client.create_run(experiment_id, run_name=res["group"]["name"],
                               tags={"gist_studio.group_id": group_id}).info.run_id
    params = [Param(k, v) for k, v in flatten(res["group"]["config"]).items()]
    params.append(Param("seeds", str(res["group"]["seeds"])))
    for i in range(0, len(params), MAX_PARAMS):
        client.log_batch(parent, params=params[i:i + MAX_PARAMS])
    now = int(time.time() * 1000)
    metrics = []
    for key in ("delta_acc_cls", "delta_best_acc_cls"):
        for stat, value in (res.get(key) or {}).items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                metrics.append(Metric(f"{key}_{stat}", float(value), now, 0))
    if metrics:
        client.log_batch(parent, metrics=metrics)
    for snap in res["runs"]:
        _log_run(client, experiment_id, manager, snap.id, parent=parent)
    client.set_terminated(parent)
    return parent
