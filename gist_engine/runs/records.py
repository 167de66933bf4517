"""A run's records: its folder, its new row in the store (from its config) and its `RunSnapshot` (from its row)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from ..config import ConfigError, RunConfig, selection_label, to_dict
from ..losses import LOSS_TERMS
from ..status import RESUMABLE, RunStatus
from ..train import COMPLETED
from ..train.checkpoint import CHECKPOINT_NAME
from . import workers
from .ids import check_id, check_name, is_id, new_id
from .store import RunSnapshot
from .workers import ACTIVE, QUEUED, RUNNING

STATUSES = tuple(RunStatus)  # in the order of a run's life
STEP_KEYS = (*LOSS_TERMS, "lr", "images_per_second", "epoch")  # what the Trainer reports every step
RUNS_DIR = "runs"
INVALID_DIR = ".not-a-run-id"  # the listed folder of a stored row whose id is not a run id (never created)
EXAMPLE_OWNER = "gallery:"  # owner prefix of runs imported from the gallery (read-only; see runs.gallery)


def run_dir(root: Path, run_id: str) -> Path:
    """The run's directory `root/runs/<run_id>` (checkpoint, training state, result.json, attention snapshots).

    Raises:
        InvalidId: (a RunNotFound) `run_id` is not in the run-id format (`ids.check_id`): no path is built.
    """
    return root / RUNS_DIR / check_id(run_id, "run")


def new_run_row(cfg: RunConfig, group_id: str | None, versions: str, owner: tuple[str, int, str],
                now: float) -> dict[str, Any]:
    """The `runs` row of a new queued run: a fresh id, its name (the config's, else `<method>-<arm>-seed<n>`), the
    config as JSON, its group, the device it will occupy and its owner (token, pid, host).

    Raises:
        ConfigError: the run's name holds a control character (it would rewrite the terminal).
    """
    arm = "gist" if cfg.gist.enabled else "plain"
    name = cfg.name or f"{cfg.method}-{arm}-seed{cfg.train.seed}"
    try:
        check_name(name, "run name")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return {"id": new_id("run"), "name": name, "created": now, "status": QUEUED, "heartbeat": now,
            "config": json.dumps(to_dict(cfg)), "seed": cfg.train.seed, "gist_enabled": int(cfg.gist.enabled),
            "method": cfg.method, "group_id": group_id, "versions": versions,
            "device": workers.device_key(cfg.train.device), "owner": owner[0], "owner_pid": owner[1],
            "owner_host": owner[2]}


def _loads(text: str | None, default: Any = None) -> Any:
    return json.loads(text) if text else default


def snapshot(r: sqlite3.Row, root: Path) -> RunSnapshot:
    """The `RunSnapshot` of a stored row; an outcome a worker of this process could not write yet (disk full)
    shows from memory (`workers.unrecorded`) until it is written."""
    status, step, total, error = r["status"], r["step"], r["total_steps"], r["error"]
    if status in ACTIVE:
        status, error = workers.unrecorded([r["id"]]).get(r["id"], (status, error))
    progress = 1.0 if status == COMPLETED else (min(1.0, step / total) if total else 0.0)
    rate = r["steps_per_second"]
    eta = (total - step) / rate if status == RUNNING and rate and total > step else None
    # A row whose id is no run id (written by an older importer from a hostile bundle) lists with a folder that
    # never exists inside the data directory, so that it can be seen and removed; no path is built from it.
    folder = run_dir(root, r["id"]) if is_id(r["id"], "run") else root / RUNS_DIR / INVALID_DIR
    latest = _loads(r["latest"], {})
    phase = latest.pop("phase", None)  # the recorder keeps the trainer's phase beside the step metrics
    example = (r["owner"] or "").startswith(EXAMPLE_OWNER)
    return RunSnapshot(
        id=r["id"], name=r["name"], status=status, created=r["created"], started=r["started"],
        finished=r["finished"], heartbeat=r["heartbeat"], step=step, total_steps=total, progress=progress,
        eta_seconds=eta, epoch=r["epoch"], latest=latest, last_eval=_loads(r["last_eval"]),
        best_acc_cls=r["best_acc_cls"], acc_cls=r["acc_cls"], error=error, config=json.loads(r["config"]),
        seed=r["seed"], gist_enabled=bool(r["gist_enabled"]), method=r["method"], group_id=r["group_id"],
        trainable_params=r["trainable_params"], gist_params=r["gist_params"], run_dir=folder,
        versions=_loads(r["versions"], {}), acc_gist=r["acc_gist"], agreement=r["agreement"],
        total_params=r["total_params"], device=r["device"], owner_pid=r["owner_pid"], resumed=r["resumed"],
        has_checkpoint=(folder / CHECKPOINT_NAME).exists(), can_resume=status in RESUMABLE and not example,
        phase=phase, example=example, selected_on=r["selected_on"], selection=selection_label(r["selected_on"]),
        selected_epoch=r["selected_epoch"], val_acc=r["val_acc"], note=r["note"])


__all__ = ["EXAMPLE_OWNER", "INVALID_DIR", "RESUMABLE", "RUNS_DIR", "STATUSES", "STEP_KEYS", "new_run_row",
           "run_dir", "snapshot"]
