"""RunReader: the run store read without torch: runs, metrics, evaluations, groups, their verdict and exports.

What the store-reading pages (Gallery, Compare, Runs, Studies, Live's reading side) and the CLI's listings use: it
imports none of torch, timm or onnx (nor the trainer, the workers or the execution path), so opening a store costs a
SQLite connection, not seconds of imports. `RunManager` is a `RunReader` that also submits, trains, stops and
resumes runs; anything that takes a reader takes a manager too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import records
from .export import export_runs
from .pairs import paired_result
from .records import STATUSES, STEP_KEYS
from .store import DB_NAME, RunSnapshot, RunStore, data_dir

if TYPE_CHECKING:
    import pandas as pd

EXPORTS_DIR = "exports"  # under the data directory: the default target of `export`


class RunReader:
    """Reads a run store: every read method of the `RunManager`, with no workers and no torch.

    Args:
        root: The data directory (default `data_dir()`: `$GIST_DATA_DIR`, else the user data dir), holding
            `runs.sqlite3` and `runs/<run_id>/`. A missing store is created (an empty one, at the current schema).

    Raises:
        StoreError: the store file is damaged or of a newer schema (its message says what to do).
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else data_dir()
        self.store = RunStore(self.root / DB_NAME)

    def close(self) -> None:
        """Close the store's connections (a reader holds no threads; a closed reader reopens nothing)."""
        self.store.close()

    def __enter__(self) -> RunReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def store_problem(self) -> str | None:
        """Why the store refuses writes now; a reader writes nothing, so None (`RunManager` knows of its own)."""
        return None

    # ------------------------------------------------------------------------------------------------ runs
    def run_dir(self, run_id: str) -> Path:
        """The run's directory `root/runs/<run_id>`; InvalidId (a RunNotFound) for an id not in the run-id format
        (no path is built)."""
        return records.run_dir(self.root, run_id)

    def get(self, run_id: str) -> RunSnapshot:
        """The run's current state; RunNotFound for an unknown id."""
        return records.snapshot(self.store.run_row(run_id, "*"), self.root)

    def list(self, status: str | None = None, group_id: str | None = None,
             limit: int | None = None) -> list[RunSnapshot]:
        """Runs, newest first, optionally of one status (a `RunStatus` or its text) and/or group.

        Raises:
            ValueError: `status` is not a run status.
        """
        if status is not None and status not in STATUSES:
            raise ValueError(f"status: {status!r} is not one of {', '.join(STATUSES)}")
        unrecorded = list(records.unrecorded()) if status is not None else []  # their status shows from memory
        rows = self.store.list_runs(status, group_id, limit, also=unrecorded)
        snaps = [records.snapshot(r, self.root) for r in rows]
        if unrecorded:
            snaps = [s for s in snaps if s.status == status][:limit]
        return snaps

    def metrics(self, run_id: str, keys: Sequence[str] | None = None, since_step: int = 0) -> pd.DataFrame:
        """Step metrics with step > `since_step`, ascending: a column `step` and one column per key.

        Args:
            run_id: The run.
            keys: Metric names (default: the keys of the latest step, `STEP_KEYS` first; all of `STEP_KEYS` when
                nothing is recorded yet). A key never recorded gives a column of NaN.
            since_step: Only steps after this one (pass the last step seen to poll incrementally).
        """
        return self.store.metrics_frame(run_id, keys, since_step, STEP_KEYS)

    def evaluations(self, run_id: str) -> pd.DataFrame:
        """Every evaluation of a run: step, epoch, acc_cls, acc_gist, agreement, n, per_class (dict), split."""
        return self.store.evaluations_frame(run_id)

    # ---------------------------------------------------------------------------------------------- groups
    def groups(self) -> list[dict[str, Any]]:
        """Every group, newest first: id, name, created, seeds, config, runs (their ids)."""
        return self.store.groups()

    def is_group(self, some_id: str) -> bool:
        """Whether `some_id` names a group (else it may be a run id)."""
        return self.store.is_group(some_id)

    def group_results(self, group_id: str) -> dict[str, Any]:
        """A group's verdict, from the store: `pairs.paired_result` of its runs (data only; `pairs.format_table`
        prints it, the app draws it).

        Returns:
            `PairedResult.to_dict()` (seeds, delta_acc_cls, delta_best_acc_cls, extra_params, unpaired, replaced,
            arms: the numbers the CLI `compare` prints) plus `paired` (the `PairedResult`), `runs` (snapshots,
            newest first) and `group` (id, name, created, seeds, config). Per seed and arm the newest run counts
            (a re-run replaces the original); unfinished runs show their status and stay out of the statistics.

        Raises:
            RunNotFound: no group of that id.
        """
        group = self.store.group_row(group_id)
        snaps = self.list(group_id=group_id)
        paired = paired_result(reversed(snaps))  # oldest first, so the newest wins
        return {**paired.to_dict(), "paired": paired, "runs": snaps,
                "group": {k: group[k] for k in ("id", "name", "created", "seeds", "config")}}

    # ---------------------------------------------------------------------------------------------- export
    def export(self, run_or_group_id: str, to: str = "csv", path: str | Path | None = None) -> Path | str:
        """Export a run or a group as one CSV/Parquet file (plus a JSON sidecar), or to MLflow.

        See `export.export_runs`: `path` defaults to the folder `root/exports/` (for mlflow: `MLFLOW_TRACKING_URI`
        when set, else `root/exports/mlruns`). Returns the data file written or the MLflow run id.
        """
        return export_runs(self, run_or_group_id, self.root / EXPORTS_DIR, to=to, path=path)


__all__ = ["EXPORTS_DIR", "RunReader"]
