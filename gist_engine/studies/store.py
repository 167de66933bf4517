"""Studies in the run store: the `studies` and `study_runs` tables (schema versions 2 and 5) and their queries.

A paired group (`RunManager.submit_group`) is a study too: one cell, no grid, both arms over its seeds, no driver;
its row has `kind = 'group'` (schema version 4) and keeps its group id (`g` + 10 hex digits). Listings leave the
groups out unless asked (`list(groups=True)`); a group's status is read from its runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runs.ids import new_id
from ..runs.reader import RunReader
from ..runs.records import EXAMPLE_OWNER, pid_alive
from ..runs.store import DB_NAME, GROUP_KIND, STUDY_KIND, RunStore, data_dir
from ..status import ACTIVE, WITH_RESULT, RunStatus, StudyStatus
from .spec import StudyError, StudySpec, load_study_spec
from .tune import FINAL, PRUNED, TRIAL

CREATED, RUNNING, COMPLETED = StudyStatus.CREATED, StudyStatus.RUNNING, StudyStatus.COMPLETED
INCOMPLETE, INTERRUPTED = StudyStatus.INCOMPLETE, StudyStatus.INTERRUPTED
STUDY_STATUSES = tuple(StudyStatus)
STALE_AFTER = 60.0  # seconds without a driver heartbeat after which a running study counts as interrupted
# What a run's attempt ended as (study_runs.outcome): the run's status, or `lost` when its worker died.
LOST = "lost"
PENDING = "pending"  # study_runs' count of planned runs not submitted yet (no run, so no run status)
RETRYABLE = (RunStatus.FAILED, LOST)  # outcomes that use up one of the spec's retries

Root = str | Path | RunStore | RunReader | None  # a RunManager is a RunReader


@dataclass(frozen=True)
class StudyInfo:
    """A frozen view of one study.

    Attributes:
        counts: Runs by the status of their latest attempt (`queued`, `running`, `completed`, `failed`, ...; a
            trial ASHA stopped counts as `pruned`), trials included, and `pending` for planned runs not submitted
            yet; they add up to `planned`.
        status: created, running, completed (every run completed or diverged), incomplete (settled, some runs
            failed or stopped), interrupted (its driver ended before the end: `study resume` goes on).
        example: The gallery entry it was imported from (its runs are read-only examples: the study cannot be
            deleted, resumed or run again), or None for a study of this store's own.
        kind: `study`, or `group` for a paired group (one cell; launched as "plain vs GIST", never driven: its
            status is running while a run of it is queued or running, then completed or incomplete).
    """

    id: str
    name: str
    created: float
    status: str
    backend: str
    cells: int
    planned: int
    counts: dict[str, int]
    spec: dict[str, Any]
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    owner_pid: int | None = None
    example: str | None = None
    kind: str = STUDY_KIND

    @property
    def settled(self) -> int:
        """Runs that will not run again: completed, diverged, stopped, or failed for good."""
        return sum(v for k, v in self.counts.items() if k not in (PENDING, *ACTIVE, RunStatus.INTERRUPTED))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


def _columns(c: Any, table: str) -> set[str]:
    """The column names of `table` (a constant of this module's)."""
    return {row[1] for row in c.execute(f"PRAGMA table_info({table})").fetchall()}


def _pid_alive(pid: int | None, host: str | None) -> bool:
    if pid is None or host != socket.gethostname():
        return True  # another host's driver: its heartbeat decides
    return pid_alive(pid)


class StudyStore:
    """Study rows over a run store (the same SQLite file; every write through its one writer connection).

    Args:
        root: A data directory (its `runs.sqlite3`, opened and closed by this object), a `RunStore`, a
            `RunReader` or `RunManager` (its store), or None for `data_dir()`.
    """

    def __init__(self, root: Root = None) -> None:
        if isinstance(root, RunReader):
            self.store, self._owned = root.store, False
        elif isinstance(root, RunStore):
            self.store, self._owned = root, False
        else:
            self.store, self._owned = RunStore(Path(root if root is not None else data_dir()) / DB_NAME), True

    def close(self) -> None:
        """Close the store if this object opened it."""
        if self._owned:
            self.store.close()

    def __enter__(self) -> StudyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------ writes
    def create(self, spec: StudySpec, backend: str, versions: dict[str, str]) -> str:
        """Insert a new study (status `created`) recorded with the package `versions` (`train.package_versions`);
        returns its id (`s` + 10 hex digits)."""
        study_id = new_id("study")
        with self.store.write() as c:
            c.execute("INSERT INTO studies (id, name, created, spec, status, backend, cells, planned, versions) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (study_id, spec.name, time.time(), json.dumps(spec.to_dict()), CREATED, backend, spec.n_cells,
                       spec.planned, json.dumps(versions)))
        return study_id

    def find(self, spec: StudySpec) -> str | None:
        """The newest study with exactly this spec, or None; gallery examples are never found (never continued)."""
        text = json.dumps(spec.to_dict())
        with self.store.read() as c:
            rows = c.execute("SELECT id FROM studies WHERE spec = ? AND kind = ? ORDER BY created DESC, rowid DESC",
                             (text, STUDY_KIND)).fetchall()
        return next((r["id"] for r in rows if self.example(r["id"]) is None), None)

    def example(self, study_id: str) -> str | None:
        """The gallery entry whose read-only example the study is (its runs are owned by `gallery:<entry>`), or None."""
        with self.store.read() as c:
            row = c.execute("SELECT r.owner FROM study_runs sr JOIN runs r ON r.id = sr.run_id WHERE sr.study_id = ? "
                            "AND r.owner LIKE ? LIMIT 1", (study_id, EXAMPLE_OWNER + "%")).fetchone()
        return row["owner"].removeprefix(EXAMPLE_OWNER) if row else None

    def refuse_example(self, study_id: str, action: str) -> None:
        """StudyError when the study is a read-only gallery example (`action`: what was asked, e.g. "delete")."""
        entry = self.example(study_id)
        if entry is not None:
            raise StudyError(f"cannot {action} study {study_id}: it is a read-only gallery example; remove the whole "
                             f"example with `python -m gist_engine runs gallery remove {entry}` or on the Gallery "
                             "page, or run its spec as a new study")

    def refuse_group(self, study_id: str, action: str) -> None:
        """StudyError when the id is a paired group's (a study of kind `group`): it has no driver to run or resume
        (`action`: what was asked, e.g. "resume")."""
        if self.get(study_id).kind == GROUP_KIND:
            raise StudyError(f"cannot {action} {study_id}: it is a paired group (a one-cell study without a driver); "
                             "resume its runs one by one (`runs resume ID`, or the Runs page), or run a study spec")

    def set_status(self, study_id: str, status: str, error: str | None = None, finished: float | None = None) -> None:
        """Record the study's state; `running` also records this process as its driver; an end state records
        `finished` (unix time; default now).

        Raises:
            StudyError: `running` asked while another live driver (this process or another, heartbeat fresh) runs it.
        """
        now = time.time()
        with self.store.write() as c:
            if status == RUNNING:
                row = c.execute("SELECT status, owner_pid, owner_host, heartbeat FROM studies WHERE id = ?",
                                (study_id,)).fetchone()
                if (row is not None and row["status"] == RUNNING and _pid_alive(row["owner_pid"], row["owner_host"])
                        and now - (row["heartbeat"] or 0.0) <= STALE_AFTER):
                    raise StudyError(f"study {study_id} is already running (its driver is process "
                                     f"{row['owner_pid']} on {row['owner_host']}); watch it with `study show "
                                     f"{study_id}` or the Studies page, or stop it before resuming")
                c.execute("UPDATE studies SET status = ?, started = COALESCE(started, ?), heartbeat = ?, "
                          "finished = NULL, error = NULL, owner_pid = ?, owner_host = ? WHERE id = ?",
                          (status, now, now, os.getpid(), socket.gethostname(), study_id))
            else:
                c.execute("UPDATE studies SET status = ?, finished = ?, heartbeat = ?, error = ? WHERE id = ?",
                          (status, now if finished is None else finished, now, error, study_id))

    def set_backend(self, study_id: str, backend: str) -> None:
        """The backend the study's driver uses now."""
        with self.store.write() as c:
            c.execute("UPDATE studies SET backend = ? WHERE id = ?", (backend, study_id))

    def heartbeat(self, study_id: str) -> None:
        """The driver is alive."""
        with self.store.write() as c:
            c.execute("UPDATE studies SET heartbeat = ? WHERE id = ?", (time.time(), study_id))

    def link(self, study_id: str, cell: int, cell_key: str, seed: int, arm: str, attempt: int, run_id: str,
             backend: str, *, role: str = FINAL, trial: int = 0, params: dict[str, Any] | None = None) -> None:
        """Record attempt `attempt` (from 1) of a planned run as run `run_id`: a final run (`role` "final", the
        verdict's) or trial `trial` of a tuned study (`role` "trial", with the `params` it tries; a final run of a
        tuned study keeps its arm's chosen values there)."""
        with self.store.write() as c:
            c.execute("INSERT INTO study_runs (study_id, cell, cell_key, seed, arm, attempt, run_id, created, backend, "
                      "role, trial, params) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (study_id, cell, cell_key, seed, arm, attempt, run_id, time.time(), backend, role, trial,
                       None if params is None else json.dumps(params)))

    def set_outcome(self, study_id: str, run_id: str, outcome: str, error: str | None = None) -> None:
        """What the latest attempt of run `run_id` ended as (a run status, or `lost`)."""
        with self.store.write() as c:
            c.execute("UPDATE study_runs SET outcome = ?, error = ? WHERE study_id = ? AND run_id = ? AND attempt = "
                      "(SELECT MAX(attempt) FROM study_runs WHERE study_id = ? AND run_id = ?)",
                      (outcome, error, study_id, run_id, study_id, run_id))

    def delete(self, study_id: str, *, examples: bool = False) -> list[str]:
        """Remove the study and its links (not its runs); returns the ids of the runs it linked.

        A gallery example is refused (StudyError) unless `examples` (as removing the gallery example does).
        """
        self.get(study_id)
        if not examples:
            self.refuse_example(study_id, "delete")
        with self.store.write() as c:
            runs = [r[0] for r in c.execute("SELECT DISTINCT run_id FROM study_runs WHERE study_id = ?",
                                            (study_id,)).fetchall()]
            c.execute("DELETE FROM study_runs WHERE study_id = ?", (study_id,))
            c.execute("DELETE FROM studies WHERE id = ?", (study_id,))
        return runs

    def import_rows(self, study: dict[str, Any], links: list[dict[str, Any]]) -> int:
        """Insert a study's row and its `study_runs` rows read from a bundle, where missing (INSERT OR IGNORE), in
        one transaction; keys that are no column of the table are dropped (a bundle of another release). Returns the
        number of rows added."""
        added = 0
        with self.store.write() as c:
            columns = _columns(c, "studies")
            row = {k: v for k, v in study.items() if k in columns}
            added += c.execute(f"INSERT OR IGNORE INTO studies ({', '.join(row)}) VALUES "
                               f"({', '.join('?' * len(row))})", list(row.values())).rowcount
            link_columns = _columns(c, "study_runs")
            for link in links:
                r = {k: v for k, v in link.items() if k in link_columns}
                added += c.execute(f"INSERT OR IGNORE INTO study_runs ({', '.join(r)}) VALUES "
                                   f"({', '.join('?' * len(r))})", list(r.values())).rowcount
        return added

    # ------------------------------------------------------------------------------------------------- reads
    def exists(self, study_id: str) -> bool:
        """Whether a study with that id is in the store."""
        with self.store.read() as c:
            return c.execute("SELECT 1 FROM studies WHERE id = ?", (study_id,)).fetchone() is not None

    def export_rows(self, study_id: str) -> tuple[dict[str, Any], list[dict[str, Any]], list[str]]:
        """In one read snapshot: the study's row, its `study_runs` rows (by cell, seed, arm, attempt) and the ids
        of its runs still in the store (oldest first).

        Raises:
            StudyError: No study with that id.
        """
        with self.store.read() as c:
            study = c.execute("SELECT * FROM studies WHERE id = ?", (study_id,)).fetchone()
            if study is None:
                raise StudyError(f"no study {study_id!r} in {self.store.path}; `study list` shows the studies")
            links = [dict(r) for r in c.execute(
                "SELECT * FROM study_runs WHERE study_id = ? ORDER BY cell, role, trial, seed, arm, attempt",
                (study_id,))]
            run_ids = [r["id"] for r in c.execute(
                "SELECT DISTINCT r.id FROM study_runs sr JOIN runs r ON r.id = sr.run_id WHERE sr.study_id = ? "
                "ORDER BY r.created, r.rowid", (study_id,))]
        return dict(study), links, run_ids

    def studies_of_runs(self, run_ids: list[str]) -> list[str]:
        """The ids of the studies that link any of `run_ids`."""
        with self.store.read() as c:
            return [r[0] for r in c.execute(f"SELECT DISTINCT study_id FROM study_runs WHERE run_id IN "
                                            f"({', '.join('?' * len(run_ids))})", run_ids).fetchall()]

    def attempts(self, study_id: str, role: str | None = FINAL) -> list[dict[str, Any]]:
        """Every attempt of every run of the study (of one `role`: "final", the default, or "trial"; None: both),
        with the run's current state (None fields for a deleted run): cell, cell_key, seed, arm, role, trial,
        params (a dict or None), attempt, run_id, backend, outcome, error, status, acc_cls, best_acc_cls, acc_gist,
        agreement, step, total_steps, epoch, run_error."""
        where = "" if role is None else " AND sr.role = ?"
        with self.store.read() as c:
            rows = c.execute(
                "SELECT sr.cell, sr.cell_key, sr.seed, sr.arm, sr.role, sr.trial, sr.params, sr.attempt, sr.run_id, "
                "sr.backend, sr.outcome, sr.error, r.status, r.acc_cls, r.best_acc_cls, r.acc_gist, r.agreement, "
                "r.step, r.total_steps, r.epoch, r.error AS run_error, r.group_id FROM study_runs sr LEFT JOIN runs r "
                f"ON r.id = sr.run_id WHERE sr.study_id = ?{where} ORDER BY sr.cell, sr.role, sr.trial, sr.seed, "
                "sr.arm, sr.attempt", (study_id, *([] if role is None else [role]))).fetchall()
        out = [dict(r) for r in rows]
        for r in out:
            r["params"] = None if r["params"] is None else json.loads(r["params"])
        return out

    def latest_trials(self, study_id: str) -> dict[tuple[int, str, int], dict[str, Any]]:
        """(cell, arm, trial) -> the latest attempt of a tuned study's trial (see `attempts`), plus `retries_used`."""
        out: dict[tuple[int, str, int], dict[str, Any]] = {}
        for row in self.attempts(study_id, TRIAL):
            key = (row["cell"], row["arm"], row["trial"])
            used = out[key]["retries_used"] if key in out else 0
            row["retries_used"] = used + (row["outcome"] in RETRYABLE)
            out[key] = row
        return out

    def val_curves(self, run_ids: list[str]) -> dict[str, list[tuple[float, float]]]:
        """Run id -> its validation evaluations (epoch, acc_cls), by epoch: a trial's curve (split "val")."""
        if not run_ids:
            return {}
        out: dict[str, list[tuple[float, float]]] = {r: [] for r in run_ids}
        with self.store.read() as c:
            for r in c.execute(f"SELECT run_id, epoch, acc_cls FROM evaluations WHERE split = 'val' AND run_id IN "
                               f"({', '.join('?' * len(run_ids))}) ORDER BY run_id, epoch, step", run_ids):
                if r["acc_cls"] is not None:
                    out[r["run_id"]].append((float(r["epoch"] or 0.0), float(r["acc_cls"])))
        return out

    def latest(self, study_id: str) -> dict[tuple[int, int, str], dict[str, Any]]:
        """(cell, seed, arm) -> the latest attempt of its final run (see `attempts`), plus `retries_used` (failed or
        lost tries)."""
        out: dict[tuple[int, int, str], dict[str, Any]] = {}
        for row in self.attempts(study_id):
            key = (row["cell"], row["seed"], row["arm"])
            used = out[key]["retries_used"] if key in out else 0
            row["retries_used"] = used + (row["outcome"] in RETRYABLE)
            out[key] = row
        return out

    def get(self, study_id: str) -> StudyInfo:
        """The study's current state; StudyError naming the id when there is none."""
        with self.store.read() as c:
            row = c.execute("SELECT * FROM studies WHERE id = ?", (study_id,)).fetchone()
        if row is None:
            raise StudyError(f"no study {study_id!r} in {self.store.path}; `study list` shows the studies")
        return self._info(row)

    def spec(self, study_id: str) -> StudySpec:
        """The stored study's spec as it was planned (`StudySpec.as_stored`: a study stored before the plain arm was
        shared keeps its per-cell plain runs); counted when it was created, so no cap applies. A paired group's spec
        has no grid: its one cell is its base config.

        Raises:
            StudyError: an unknown id, or a stored spec that no longer parses or does not match its run count.
        """
        info = self.get(study_id)
        return load_study_spec(info.spec, max_runs=None, one_cell=info.kind == GROUP_KIND).as_stored(info.planned)

    def list(self, groups: bool = False) -> list[StudyInfo]:
        """Every study, newest first; with `groups`, the paired groups (kind `group`) among them."""
        kinds = (STUDY_KIND, GROUP_KIND) if groups else (STUDY_KIND,)
        with self.store.read() as c:
            rows = c.execute(f"SELECT * FROM studies WHERE kind IN ({', '.join('?' * len(kinds))}) "
                             "ORDER BY created DESC, rowid DESC", kinds).fetchall()
        return [self._info(r) for r in rows]

    def _info(self, row: Any) -> StudyInfo:
        counts: dict[str, int] = {}
        for r in [*self.latest(row["id"]).values(), *self.latest_trials(row["id"]).values()]:
            status = PRUNED if r["outcome"] == PRUNED else r["status"] or "deleted"
            counts[status] = counts.get(status, 0) + 1
        counts["pending"] = max(0, row["planned"] - sum(counts.values()))
        status, kind = row["status"], row["kind"]
        if kind == GROUP_KIND:
            status = _group_status(counts)
        elif status == RUNNING and (not _pid_alive(row["owner_pid"], row["owner_host"])
                                    or time.time() - (row["heartbeat"] or 0.0) > STALE_AFTER):
            status = INTERRUPTED
        return StudyInfo(id=row["id"], name=row["name"], created=row["created"], status=status,
                         backend=row["backend"], cells=row["cells"], planned=row["planned"], counts=counts,
                         spec=json.loads(row["spec"]), started=row["started"], finished=row["finished"],
                         error=row["error"], owner_pid=row["owner_pid"], example=self.example(row["id"]), kind=kind)


def _group_status(counts: dict[str, int]) -> str:
    """A paired group's status from its runs' (`StudyInfo.counts`): running while one is queued or running,
    completed when every planned run completed or diverged, else incomplete (created when it has no runs yet)."""
    if any(counts.get(s, 0) for s in ACTIVE):
        return RUNNING
    if not any(v for k, v in counts.items() if k != "pending"):
        return CREATED
    settled = sum(counts.get(s, 0) for s in WITH_RESULT)
    return COMPLETED if settled and settled == sum(counts.values()) else INCOMPLETE


def list_studies(root: Root = None, groups: bool = False) -> list[StudyInfo]:
    """Every study in the run store under `root`, newest first; with `groups`, the paired groups (one-cell studies
    of kind `group`) among them."""
    with StudyStore(root) as s:
        return s.list(groups)


def get_study(study_id: str, root: Root = None) -> StudyInfo:
    """One study's state (StudyError for an unknown id)."""
    with StudyStore(root) as s:
        return s.get(study_id)


__all__ = ["STUDY_STATUSES", "Root", "StudyInfo", "StudyStore", "get_study", "list_studies"]
