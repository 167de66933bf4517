"""A run's records: its folder, its `RunSnapshot` (from its row) and the outcomes not written yet; torch-free.

The outcomes a worker of this process could not write (disk full) are kept here, in memory, until a heartbeat
writes them: a snapshot shows them meanwhile, so that a reader in the same process never sees a false `running`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..config import selection_label
from ..files import CHECKPOINT_NAME
from ..loss_terms import LOSS_TERMS
from ..status import ACTIVE, RESUMABLE, RunStatus
from .ids import check_id, is_id
from .store import RunSnapshot

STATUSES = tuple(RunStatus)  # in the order of a run's life
STEP_KEYS = (*LOSS_TERMS, "lr", "images_per_second", "epoch")  # what the Trainer reports every step
RUNS_DIR = "runs"
INVALID_DIR = ".not-a-run-id"  # the listed folder of a stored row whose id is not a run id (never created)
EXAMPLE_OWNER = "gallery:"  # owner prefix of runs imported from the gallery (read-only; see runs.gallery)

# The outcomes a worker of this process could not write (run id -> (status, error)), written at the next heartbeat
# or start of any worker pool in this process that succeeds in writing (`workers.WorkerPool`).
_UNRECORDED: dict[str, tuple[str, str]] = {}
_UNRECORDED_LOCK = threading.Lock()


def unrecorded(run_ids: Iterable[str] | None = None) -> dict[str, tuple[str, str]]:
    """The outcomes (status, error) workers of this process could not write yet, by run id (all, or of `run_ids`)."""
    with _UNRECORDED_LOCK:
        if run_ids is None:
            return dict(_UNRECORDED)
        return {r: _UNRECORDED[r] for r in run_ids if r in _UNRECORDED}


def keep_unrecorded(run_id: str, status: str, error: str, *, replace: bool = True) -> None:
    """Remember an outcome a worker could not write (`replace=False`: unless one is kept already)."""
    with _UNRECORDED_LOCK:
        if replace or run_id not in _UNRECORDED:
            _UNRECORDED[run_id] = (status, error)


def forget_unrecorded(run_ids: Iterable[str]) -> None:
    """Drop the outcomes of `run_ids`: the store holds them now."""
    with _UNRECORDED_LOCK:
        for run_id in run_ids:
            _UNRECORDED.pop(run_id, None)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` of this host exists (`kill(pid, 0)`; True where that is no probe, e.g. Windows)."""
    if os.name != "posix":  # os.kill(pid, 0) is not a probe on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_dir(root: Path, run_id: str) -> Path:
    """The run's directory `root/runs/<run_id>` (checkpoint, training state, result.json, attention snapshots).

    Raises:
        InvalidId: (a RunNotFound) `run_id` is not in the run-id format (`ids.check_id`): no path is built.
    """
    return root / RUNS_DIR / check_id(run_id, "run")


def _loads(text: str | None, default: Any = None) -> Any:
    return json.loads(text) if text else default


def snapshot(r: sqlite3.Row, root: Path) -> RunSnapshot:
    """The `RunSnapshot` of a stored row; an outcome a worker of this process could not write yet (disk full)
    shows from memory (`unrecorded`) until it is written."""
    status, step, total, error = r["status"], r["step"], r["total_steps"], r["error"]
    if status in ACTIVE:
        status, error = unrecorded([r["id"]]).get(r["id"], (status, error))
    progress = 1.0 if status == RunStatus.COMPLETED else (min(1.0, step / total) if total else 0.0)
    rate = r["steps_per_second"]
    eta = (total - step) / rate if status == RunStatus.RUNNING and rate and total > step else None
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
        best_acc_cls=r["best_acc_cls"], acc_cls=r["acc_cls"], error=error, config_dict=json.loads(r["config"]),
        seed=r["seed"], gist_enabled=bool(r["gist_enabled"]), method=r["method"], group_id=r["group_id"],
        trainable_params=r["trainable_params"], gist_params=r["gist_params"], run_dir=folder,
        versions=_loads(r["versions"], {}), acc_gist=r["acc_gist"], agreement=r["agreement"],
        total_params=r["total_params"], device=r["device"], owner_pid=r["owner_pid"], resumed=r["resumed"],
        has_checkpoint=(folder / CHECKPOINT_NAME).exists(), can_resume=status in RESUMABLE and not example,
        phase=phase, example=example, selected_on=r["selected_on"], selection=selection_label(r["selected_on"]),
        selected_epoch=r["selected_epoch"], val_acc=r["val_acc"], note=r["note"])


__all__ = ["ACTIVE", "EXAMPLE_OWNER", "INVALID_DIR", "RESUMABLE", "RUNS_DIR", "STATUSES", "STEP_KEYS",
           "forget_unrecorded", "keep_unrecorded", "pid_alive", "run_dir", "snapshot", "unrecorded"]
