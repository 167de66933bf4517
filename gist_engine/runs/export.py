"""Export stored runs and groups: one CSV/Parquet table (+ a JSON sidecar) per run or group, or to MLflow.

MLflow is an optional extra (`pip install mlflow`); it is imported only when an export to it is asked for.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..status import RunStatus
from .ids import check_id
from .store import RunError, RunSnapshot

if TYPE_CHECKING:
    import pandas as pd

EXPORT_FORMATS = ("csv", "parquet", "mlflow")
RUN_COLUMNS = ("run_id", "name", "seed", "gist_enabled", "status")  # in front of each row of a group's table
EXPERIMENT = "gist-studio"
MAX_PARAMS, MAX_METRICS = 100, 1000  # MLflow's log_batch limits per request
MLFLOW_STATUS = {RunStatus.COMPLETED: "FINISHED", RunStatus.STOPPED: "KILLED", RunStatus.INTERRUPTED: "KILLED",
                 RunStatus.FAILED: "FAILED", RunStatus.DIVERGED: "FAILED"}  # MLflow's RunStatus names


class RunSource(Protocol):
    """What an export reads from a run store (`RunManager` provides it)."""

    def is_group(self, some_id: str) -> bool: ...

    def get(self, run_id: str) -> RunSnapshot: ...

    def metrics(self, run_id: str, keys: Sequence[str] | None = None, since_step: int = 0) -> pd.DataFrame: ...

    def evaluations(self, run_id: str) -> pd.DataFrame: ...

    def group_results(self, group_id: str) -> dict[str, Any]: ...


# ----------------------------------------------------------------------------------------------- tables
def export_runs(source: RunSource, run_or_group_id: str, exports_dir: str | Path, to: str = "csv",
                path: str | Path | None = None) -> Path | str:
    """Export a run or a group as one CSV/Parquet file (plus a JSON sidecar), or to MLflow.

    Args:
        source: The store to read (a `RunManager`).
        run_or_group_id: A run id or a group id.
        exports_dir: The default target folder.
        to: `csv` or `parquet` (via pandas), or `mlflow` (optional package).
        path: The file to write, or a folder for `<id>.<ext>` (default `exports_dir`); for mlflow, the tracking
            folder or URI (default: `MLFLOW_TRACKING_URI` when set, else the folder `exports_dir/mlruns`, not
            MLflow's own default of a database in the working directory).

    Returns:
        The data file written (csv, parquet) or the MLflow run id (the parent run's for a group).

    Raises:
        ValueError: An unknown format. RunNotFound: no such run or group. RunError: mlflow is not installed.

    The file has one row per step: `step`, the step metrics and, at evaluation steps, `eval_epoch`,
    `eval_acc_cls`, `eval_acc_gist`, `eval_agreement`, `eval_n`, `eval_per_class` (JSON text) of the test split,
    the same `val_*` columns of the validation split when the run evaluated one, and `selection`: how the run's
    reported accuracy was selected (`config.selection_label`, e.g. "selected on test (optimistic)"); a group's
    file stacks its runs with `run_id`, `name`, `seed`, `gist_enabled`, `status` in front (see
    `read_export`). The sidecar `<file>.json` holds the run's snapshot (with `selected_on`, `selection`,
    `selected_epoch`, `val_acc`, `note`), or the group's statistics (`group_results`' JSON-ready part) and its
    runs' snapshots.
    """
    if to not in EXPORT_FORMATS:
        raise ValueError(f"to: {to!r} is not one of {', '.join(EXPORT_FORMATS)}")
    is_group = source.is_group(run_or_group_id)
    if not is_group:
        check_id(run_or_group_id, "run")  # it names the file written below: never a path
        source.get(run_or_group_id)  # RunNotFound for an unknown id
    else:
        check_id(run_or_group_id, "group")
    if to == "mlflow":
        fn = export_group_to_mlflow if is_group else export_run_to_mlflow
        if path is None and not os.environ.get("MLFLOW_TRACKING_URI"):
            path = Path(exports_dir) / "mlruns"
        return fn(source, run_or_group_id, path)
    import pandas as pd  # on use: pandas adds 0.3-0.7 s to `import gist_engine`, and training needs no tables

    out = Path(path) if path is not None else Path(exports_dir)
    if out.suffix.lower() != f".{to}":
        out = out / f"{run_or_group_id}.{to}"
    out.parent.mkdir(parents=True, exist_ok=True)
    if is_group:
        res = source.group_results(run_or_group_id)
        snaps = res["runs"]
        frame = pd.concat([export_frame(source, s.id).assign(
            run_id=s.id, name=s.name, seed=s.seed, gist_enabled=s.gist_enabled, status=s.status)
            for s in snaps], ignore_index=True) if snaps else pd.DataFrame({"step": []})
        front = [c for c in RUN_COLUMNS if c in frame]
        frame = frame[front + [c for c in frame.columns if c not in front]]
        side = {k: v for k, v in res.items() if k not in ("runs", "paired")}
        side["runs"] = [s.to_dict() for s in snaps]
    else:
        frame, side = export_frame(source, run_or_group_id), source.get(run_or_group_id).to_dict()
    if to == "csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    out.with_name(out.name + ".json").write_text(json.dumps(side, indent=2, default=str))
    return out


# The evaluation splits an export carries, each with its column prefix (the accuracy probe's rows only draw curves)
EXPORTED_SPLITS = {"test": "eval", "val": "val"}


def export_frame(source: RunSource, run_id: str) -> pd.DataFrame:
    """A run's metrics per step, outer-joined on the step with its test evaluations (`eval_*` columns) and its
    validation evaluations (`val_*`, when it has any), and its `selection` label."""
    all_evals = source.evaluations(run_id)
    frame = source.metrics(run_id)
    for split, prefix in EXPORTED_SPLITS.items():
        evals = all_evals[all_evals["split"] == split].drop(columns="split")
        if split != "test" and evals.empty:
            continue
        evals["per_class"] = [json.dumps(v) for v in evals["per_class"]]
        evals = evals.rename(columns={c: f"{prefix}_{c}" for c in evals.columns if c != "step"})
        frame = frame.merge(evals, on="step", how="outer")
    frame = frame.sort_values("step", ignore_index=True)
    frame["selection"] = source.get(run_id).selection
    return frame


def read_export(path: str | Path) -> dict[str, pd.DataFrame]:
    """Split an exported file back into `metrics` and `evaluations` (the test split's) frames (as
    `RunManager.metrics` and `RunManager.evaluations` return them, plus `run_id` for a group's file), and
    `validations` (the validation split's, the same columns; empty when no run of the file evaluated one)."""
    import pandas as pd  # on use: pandas adds 0.3-0.7 s to `import gist_engine`, and training needs no tables

    path = Path(path)
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    key = ["run_id"] if "run_id" in frame else []
    out = {}
    for name, prefix in (("evaluations", "eval_"), ("validations", "val_")):
        columns = [c for c in frame.columns if c.startswith(prefix)]
        if not columns:
            out[name] = pd.DataFrame(columns=[*key, "step"])
            continue
        evals = frame[[*key, "step", *columns]]
        evals = evals[evals[f"{prefix}acc_cls"].notna()].rename(columns=lambda c, p=prefix: c.removeprefix(p))
        evals = evals.astype({"n": "int64"}).reset_index(drop=True)
        evals["per_class"] = [json.loads(v) for v in evals["per_class"]]
        out[name] = evals
    steps = [c for c in frame.columns if c not in ("name", "seed", "gist_enabled", "status", "selection")
             and not c.startswith(("eval_", "val_"))]
    return {"metrics": frame[steps].dropna(subset=[c for c in steps if c not in ("run_id", "step")], how="all")
            .reset_index(drop=True), **out}


# ----------------------------------------------------------------------------------------------- MLflow
def _mlflow() -> Any:
    """The mlflow module (optional heavy dependency, imported on use), or a RunError that says how to get it."""
    try:
        import mlflow  # optional: `pip install mlflow` (the `mlflow` extra); heavy, so imported on use only
        import mlflow.entities
        import mlflow.tracking
    except ImportError:
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
    mlflow = _mlflow()  # a clear error when the optional package is missing
    uri = None
    if path is not None:
        uri = str(path) if "://" in str(path) or str(path).startswith("file:") else Path(path).resolve().as_uri()
    if (uri or os.environ.get("MLFLOW_TRACKING_URI", "file:")).startswith("file:"):
        # MLflow 3 refuses its folder store unless asked for it; a folder is what `--to mlflow --out DIR` promises
        # (`mlflow ui --backend-store-uri DIR` reads it). A database URI (sqlite:///...) is passed through as is.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = mlflow.tracking.MlflowClient(tracking_uri=uri) if uri else mlflow.tracking.MlflowClient()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(EXPERIMENT)
    return client, experiment_id


def _log_run(client: Any, experiment_id: str, source: RunSource, run_id: str, parent: str | None = None) -> str:
    entities = _mlflow().entities
    snap = source.get(run_id)
    tags = {"gist_studio.run_id": snap.id, "gist_studio.status": snap.status}
    if snap.selection:  # how acc_cls was selected: "selected on test (optimistic)", ...
        tags["gist_studio.selection"] = snap.selection
    if snap.note:
        tags["gist_studio.note"] = snap.note
    if snap.group_id:
        tags["gist_studio.group_id"] = snap.group_id
    if parent:
        tags["mlflow.parentRunId"] = parent
    run = client.create_run(experiment_id, run_name=snap.name, tags=tags)
    mid = run.info.run_id
    params = [entities.Param(k, v) for k, v in flatten(snap.config_dict).items()]
    for i in range(0, len(params), MAX_PARAMS):
        client.log_batch(mid, params=params[i:i + MAX_PARAMS])
    stamp = int((snap.started or snap.created) * 1000)
    metrics = []
    frame = source.metrics(run_id)
    for key in frame.columns.drop("step"):
        metrics += [entities.Metric(key, float(v), stamp, int(s))
                    for s, v in zip(frame["step"], frame[key], strict=True) if math.isfinite(v)]
    for _, row in source.evaluations(run_id).iterrows():
        for key in ("acc_cls", "acc_gist", "agreement"):
            if row[key] is not None and math.isfinite(row[key]):
                prefix = "eval" if row["split"] == "test" else row["split"]  # probe_acc_cls: the accuracy probe
                metrics.append(entities.Metric(f"{prefix}_{key}", float(row[key]), stamp, int(row["step"])))
    end = int(snap.step)
    for key, value in (("acc_cls", snap.acc_cls), ("best_acc_cls", snap.best_acc_cls), ("val_acc", snap.val_acc),
                       ("selected_epoch", snap.selected_epoch)):  # the run's summary, as the store holds it
        if value is not None and math.isfinite(value):
            metrics.append(entities.Metric(key, float(value), stamp, end))
    for i in range(0, len(metrics), MAX_METRICS):
        client.log_batch(mid, metrics=metrics[i:i + MAX_METRICS])
    for name in ("checkpoint.safetensors", "result.json"):
        if (snap.run_dir / name).exists():
            client.log_artifact(mid, str(snap.run_dir / name))
    client.set_terminated(mid, status=MLFLOW_STATUS.get(snap.status, "FINISHED"),
                          end_time=int((snap.finished or time.time()) * 1000))
    return mid


def export_run_to_mlflow(source: RunSource, run_id: str, path: str | Path | None = None) -> str:
    """One MLflow run: flattened config as params, every step metric and evaluation, checkpoint + result.json.

    Returns:
        The MLflow run id.
    """
    client, experiment_id = _client(path)
    return _log_run(client, experiment_id, source, run_id)


def export_group_to_mlflow(source: RunSource, group_id: str, path: str | Path | None = None) -> str:
    """A parent MLflow run with the paired statistics and one nested run per member; returns the parent's id."""
    client, experiment_id = _client(path)
    entities = _mlflow().entities
    res = source.group_results(group_id)
    parent = client.create_run(experiment_id, run_name=res["group"]["name"],
                               tags={"gist_studio.group_id": group_id}).info.run_id
    params = [entities.Param(k, v) for k, v in flatten(res["group"]["config"]).items()]
    params.append(entities.Param("seeds", str(res["group"]["seeds"])))
    for i in range(0, len(params), MAX_PARAMS):
        client.log_batch(parent, params=params[i:i + MAX_PARAMS])
    now = int(time.time() * 1000)
    metrics = []
    for key in ("delta_acc_cls", "delta_best_acc_cls"):
        for stat, value in (res.get(key) or {}).items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                metrics.append(entities.Metric(f"{key}_{stat}", float(value), now, 0))
    if metrics:
        client.log_batch(parent, metrics=metrics)
    for snap in res["runs"]:
        _log_run(client, experiment_id, source, snap.id, parent=parent)
    client.set_terminated(parent)
    return parent


__all__ = ["EXPORTED_SPLITS", "EXPORT_FORMATS", "RunSource", "export_frame", "export_group_to_mlflow",
           "export_run_to_mlflow", "export_runs", "flatten", "read_export"]
