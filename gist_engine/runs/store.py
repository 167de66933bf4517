"""The run store's SQLite file: schema and migrations, one writer behind a lock, pooled readers, and every query."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import platformdirs

from ..config import RunConfig, read_stored_config

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

DB_NAME = "runs.sqlite3"

# Schema migrations: version -> steps, applied in order inside one transaction; PRAGMA user_version holds the
# version of a store. A step is an SQL statement, or a function of the connection for a step SQL cannot say alone
# (rows rewritten as JSON). Add a new version to change the schema; never edit a released one.
SCHEMA_VERSION = 5
Migration = str | Callable[[sqlite3.Connection], None]
GROUP_KIND, STUDY_KIND = "group", "study"  # studies.kind: a paired group (one cell, no driver), or a study
GROUP_CELL_KEY = "{}"  # the key of a paired group's one cell: no axis (a study's cell key is the JSON of its values)
ARM_OF_GIST = {0: "plain", 1: "gist"}  # runs.gist_enabled -> study_runs.arm


def _groups_into_studies(conn: sqlite3.Connection) -> None:
    """Migration 4: every row of the former `groups` table becomes a one-cell study of kind `group` (same id, name,
    created time, seeds, config and versions; see `group_study_row`) and each run of the group a `study_runs` row of
    its cell (seed, arm, attempt: the run's order among the group's runs of that seed and arm); then `groups` is
    dropped. `runs.group_id` stays as it was: it names the group's study."""
    groups = conn.execute("SELECT id, name, created, seeds, config, versions FROM groups ORDER BY rowid").fetchall()
    for g in groups:
        row = group_study_row(dict(zip(("id", "name", "created", "seeds", "config", "versions"), g, strict=True)))
        conn.execute(_insert_sql("studies", row), list(row.values()))
    runs = conn.execute("SELECT r.id, r.group_id, r.seed, r.gist_enabled, r.created FROM runs r JOIN groups g ON "
                        "g.id = r.group_id ORDER BY r.created, r.rowid").fetchall()
    _link_group_runs(conn, [dict(zip(("id", "group_id", "seed", "gist_enabled", "created"), r, strict=True))
                            for r in runs])
    conn.execute("DROP TABLE groups")


MIGRATIONS: dict[int, tuple[Migration, ...]] = {
    1: (
        """CREATE TABLE groups (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL,
            seeds TEXT NOT NULL, config TEXT NOT NULL, versions TEXT)""",
        """CREATE TABLE runs (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL, started REAL, finished REAL,
            status TEXT NOT NULL, heartbeat REAL, config TEXT NOT NULL, seed INTEGER NOT NULL,
            gist_enabled INTEGER NOT NULL, method TEXT NOT NULL, group_id TEXT, error TEXT, versions TEXT,
            device TEXT, owner TEXT, owner_pid INTEGER, owner_host TEXT, stop_requested INTEGER NOT NULL DEFAULT 0,
            step INTEGER NOT NULL DEFAULT 0, total_steps INTEGER NOT NULL DEFAULT 0, epoch REAL NOT NULL DEFAULT 0,
            steps_per_second REAL, latest TEXT, last_eval TEXT, acc_cls REAL, best_acc_cls REAL, acc_gist REAL,
            agreement REAL, trainable_params INTEGER, gist_params INTEGER, total_params INTEGER,
            resumed INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX runs_by_status ON runs (status)",
        "CREATE INDEX runs_by_group ON runs (group_id)",
        """CREATE TABLE metrics (
            run_id TEXT NOT NULL, step INTEGER NOT NULL, key TEXT NOT NULL, value REAL,
            PRIMARY KEY (run_id, step, key)) WITHOUT ROWID""",
        """CREATE TABLE evaluations (
            run_id TEXT NOT NULL, step INTEGER NOT NULL, split TEXT NOT NULL, epoch REAL, acc_cls REAL,
            acc_gist REAL, agreement REAL, n INTEGER, per_class TEXT,
            PRIMARY KEY (run_id, step, split)) WITHOUT ROWID""",
    ),
    # Studies (gist_engine.studies): a study's spec and state, and one row per attempt of each of its runs.
    2: (
        """CREATE TABLE studies (
            id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL, spec TEXT NOT NULL,
            status TEXT NOT NULL, backend TEXT NOT NULL, cells INTEGER NOT NULL, planned INTEGER NOT NULL,
            started REAL, finished REAL, heartbeat REAL, error TEXT, owner_pid INTEGER, owner_host TEXT,
            versions TEXT)""",
        """CREATE TABLE study_runs (
            study_id TEXT NOT NULL, cell INTEGER NOT NULL, cell_key TEXT NOT NULL, seed INTEGER NOT NULL,
            arm TEXT NOT NULL, attempt INTEGER NOT NULL, run_id TEXT NOT NULL, created REAL NOT NULL,
            backend TEXT, outcome TEXT, error TEXT,
            PRIMARY KEY (study_id, cell, seed, arm, attempt))""",
        "CREATE INDEX study_runs_by_run ON study_runs (run_id)",
    ),
    # Selection (train.select_on): which evaluation the run's accuracy is (val, test, last), its epoch, the
    # validation accuracy there, and a note on how a completed run ended (early stop). Every run stored before
    # selected the last epoch.
    3: (
        "ALTER TABLE runs ADD COLUMN selected_on TEXT",
        "ALTER TABLE runs ADD COLUMN selected_epoch REAL",
        "ALTER TABLE runs ADD COLUMN val_acc REAL",
        "ALTER TABLE runs ADD COLUMN note TEXT",
        "UPDATE runs SET selected_on = 'last', selected_epoch = json_extract(last_eval, '$.epoch')",
    ),
    # A paired group is a one-cell study: studies.kind tells a group from a study; `groups` moves into
    # studies/study_runs (`_groups_into_studies`) and is dropped.
    4: (
        f"ALTER TABLE studies ADD COLUMN kind TEXT NOT NULL DEFAULT '{STUDY_KIND}'",
        "CREATE INDEX studies_by_kind ON studies (kind, created)",
        _groups_into_studies,
    ),
    # Tuned studies: a study's runs are trials (role 'trial', numbered per cell and arm, with the values they try)
    # or final runs (role 'final', the paired runs of the verdict; every run of a study stored before).
    5: (
        """CREATE TABLE study_runs_new (
            study_id TEXT NOT NULL, cell INTEGER NOT NULL, cell_key TEXT NOT NULL, seed INTEGER NOT NULL,
            arm TEXT NOT NULL, attempt INTEGER NOT NULL, run_id TEXT NOT NULL, created REAL NOT NULL,
            backend TEXT, outcome TEXT, error TEXT, role TEXT NOT NULL DEFAULT 'final',
            trial INTEGER NOT NULL DEFAULT 0, params TEXT,
            PRIMARY KEY (study_id, cell, role, trial, seed, arm, attempt))""",
        """INSERT INTO study_runs_new (study_id, cell, cell_key, seed, arm, attempt, run_id, created, backend, outcome,
            error) SELECT study_id, cell, cell_key, seed, arm, attempt, run_id, created, backend, outcome, error
            FROM study_runs""",
        "DROP TABLE study_runs",
        "ALTER TABLE study_runs_new RENAME TO study_runs",
        "CREATE INDEX study_runs_by_run ON study_runs (run_id)",
    ),
}


class RunError(RuntimeError):
    """A run-store request that cannot be done (wrong state, missing optional package); the message says why."""


class RunNotFound(RunError, KeyError):
    """No run (or group) with that id in the store."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "run not found"


class StoreError(RunError):
    """The store file cannot be used (damaged, read-only, written by a newer version, disk full); the message names
    the file and what to do."""


class StoreFull(StoreError):
    """A write failed because the disk (or the file system's quota) is full."""


def disk_full_message(folder: str | Path) -> str:
    """The one message of a write that failed for want of disk space."""
    return f"disk full: free space in {folder} and rerun"


def is_disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or an exception it came from) is SQLite's SQLITE_FULL or the OS's ENOSPC/EDQUOT."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, StoreFull):
            return True
        if isinstance(exc, sqlite3.Error) and (getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
                                               or "disk is full" in str(exc)):
            return True
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def store_error(exc: sqlite3.Error, path: Path) -> sqlite3.Error | StoreError:
    """A StoreError saying what is wrong with the file `path` and what to do, for the errors a user must act on
    (disk full, damaged, not a database, read-only, cannot open); other errors (busy, locked) are returned as they
    are, for the caller to retry."""
    code, text = getattr(exc, "sqlite_errorcode", None), str(exc)
    if is_disk_full(exc):
        return StoreFull(f"{disk_full_message(path.parent)} (writing {path.name}: {text})")
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or "malformed" in text or "not a database" in text:
        return damaged(path, text)
    if code == sqlite3.SQLITE_READONLY or "readonly" in text:
        return StoreError(f"run store {path} is read-only ({text}); make the file and its folder writable by this "
                          "user, or set GIST_DATA_DIR to another data directory")
    if code == sqlite3.SQLITE_CANTOPEN or "unable to open" in text:
        return StoreError(f"cannot open run store {path} ({text}); check that its folder exists and is writable, "
                          "or set GIST_DATA_DIR to another data directory")
    return exc


def damaged(path: Path, what: str) -> StoreError:
    """The StoreError of a damaged store file `path` (`what`: SQLite's words for the damage)."""
    aside = f"{path.name} and its -wal/-shm files into {path.parent / time.strftime('damaged-%Y%m%d-%H%M%S')}/"
    return StoreError(f"run store {path} is damaged ({what}); move {aside} to start an empty store, "
                      "or restore it from a backup (the run folders beside it are kept)")


def quick_check(conn: sqlite3.Connection, path: Path) -> None:
    """`PRAGMA quick_check` of the store open on `conn`: every page's structure is read, so one damaged page (of any
    table or index) is found at open, not at the first read or write that reaches it (about 0.5 s for a 100 MB store
    on 2 loaded CPU cores; milliseconds for a few MB).

    Raises:
        StoreError: The file is damaged (the first problems SQLite names, e.g. "Page 7: btreeInitPage() returns
            error code 11").
    """
    rows = [r[0] for r in conn.execute("PRAGMA quick_check(3)").fetchall()]
    if rows != ["ok"]:
        lines = [line for row in rows for line in str(row).splitlines() if not line.startswith("***")]
        raise damaged(path, "; ".join(lines[:3])[:300] or "quick_check failed")


def data_dir() -> Path:
    """Where runs are kept: `$GIST_DATA_DIR`, else the user data directory of "gist-studio"."""
    return Path(os.environ.get("GIST_DATA_DIR") or platformdirs.user_data_dir("gist-studio"))


def _migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Apply the missing `MIGRATIONS` to the store open on `conn` in one transaction; returns the version before.

    Raises:
        StoreError: The file has a newer schema than this code knows.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        before = conn.execute("PRAGMA user_version").fetchone()[0]
        if before > SCHEMA_VERSION:
            raise StoreError(f"run store {path} has schema version {before}, newer than this gist_engine "
                             f"understands ({SCHEMA_VERSION}); upgrade gist_engine, or set GIST_DATA_DIR (--root) to "
                             "another data directory")
        for version in sorted(v for v in MIGRATIONS if before < v <= SCHEMA_VERSION):
            for step in MIGRATIONS[version]:
                if callable(step):
                    step(conn)
                else:
                    conn.execute(step)
            conn.execute(f"PRAGMA user_version = {version}")
        if before == SCHEMA_VERSION:  # a write that finds a read-only file now, not at the first run
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        _rollback(conn)
        raise
    return before


BUILDING = ".{name}.new-"  # prefix of a store being built beside `name` (see `create_store`)
STALE_BUILD_SECONDS = 3600.0  # a half-built file older than this was left by a killed process: removed


def create_store(path: Path, busy_timeout: float = 30.0) -> bool:
    """Create the store `path` whole, or leave it to a process that creates it at the same moment.

    The store is built under a private name in the same folder (WAL mode, every migration, closed), then hard-linked
    to `path`, which fails when `path` exists: the first process to link wins and the others drop their copy. So an
    opener never sees a half-made store, and a 0-byte `runs.sqlite3` can only be a damaged one. Half-built files
    of a killed process (older than `STALE_BUILD_SECONDS`) are removed on the way.

    Returns:
        True when `path` now exists (made here or by another process); False when the file system has no hard
        links (nothing is created then; SQLite must create the file in place, without this guarantee).

    Raises:
        sqlite3.Error, OSError: The folder cannot be written (the caller words it).
    """
    prefix = BUILDING.format(name=path.name)
    for old in path.parent.glob(prefix + "*"):
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > STALE_BUILD_SECONDS:
                old.unlink()
    tmp = path.with_name(f"{prefix}{os.getpid()}-{secrets.token_hex(4)}")
    try:
        with contextlib.closing(sqlite3.connect(tmp, timeout=busy_timeout, isolation_level=None)) as conn:
            conn.execute("PRAGMA journal_mode = WAL")
            before = _migrate(conn, path)
        try:
            os.link(tmp, path)
            logger.debug("run store %s: schema version %d -> %d", path, before, SCHEMA_VERSION)
        except FileExistsError:
            logger.debug("run store %s: created by another process at the same moment", path)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EXDEV):
                raise
            logger.debug("run store %s: no hard links here (%s); created in place", path, exc)
            return False
        return True
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-wal"), tmp.with_name(tmp.name + "-shm")):
            leftover.unlink(missing_ok=True)


class RunStore:
    """The SQLite file: one writer connection behind a lock, a pool of reader connections; WAL and a busy timeout.
    Every query on runs, metrics, evaluations and paired groups is one of its methods (one transaction each); no other
    module executes SQL.

    Args:
        path: The database file (created, with its folder, when missing; migrated to `SCHEMA_VERSION`).
        busy_timeout: Seconds a statement waits for another process's lock before failing.
    """

    def __init__(self, path: str | Path, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the data directory {self.path.parent} ({exc.strerror or exc}); give a "
                             "folder (GIST_DATA_DIR, --root) that can be created and written") from None
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._pool: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._in_place = False  # the file system has no hard links: SQLite creates the file where it stands
        try:
            if not self.path.exists():
                self._in_place = not create_store(self.path, busy_timeout)
            if self.path.is_file() and self.path.stat().st_size == 0:  # SQLite would take it for a new store
                raise StoreError(f"run store {self.path} is empty (0 bytes), but a store is never empty once "
                                 "created: it was truncated or a copy of it failed; restore it from a backup, or "
                                 "move it and any -wal/-shm file beside it to another folder to start an empty store")
            self._writer = self._connect()
            quick_check(self._writer, self.path)  # before any write: a damaged page shows now, not at a later write
            self._writer.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
            self.migrate()
        except BaseException as exc:
            self.close()
            if isinstance(exc, sqlite3.Error):
                _raise_store_error(exc, self.path)
            if isinstance(exc, OSError):
                raise StoreError(f"cannot create run store {self.path} ({exc.strerror or exc}); check that its "
                                 "folder is writable, or set GIST_DATA_DIR to another data directory") from exc
            raise

    def _connect(self) -> sqlite3.Connection:
        # mode=rw: SQLite never creates the file here (a store is created aside and linked in whole, see
        # `create_store`), so a store deleted or moved while open is an error, not a new empty store.
        target = self.path if self._in_place else f"{self.path.absolute().as_uri()}?mode=rw"
        conn = sqlite3.connect(target, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False,
                               uri=not self._in_place)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        conn.execute("PRAGMA synchronous = NORMAL")  # with WAL: safe against a killed process, fast commits
        return conn

    def migrate(self) -> int:
        """Bring the file to `SCHEMA_VERSION` (one transaction); returns the version it had before.

        Raises:
            StoreError: The file has a newer schema than this code knows.
        """
        with self._lock:
            before = _migrate(self._writer, self.path)
        if before < SCHEMA_VERSION:
            logger.log(logging.INFO if before else logging.DEBUG, "run store %s: schema version %d -> %d",
                       self.path, before, SCHEMA_VERSION)
        return before

    @property
    def version(self) -> int:
        """The schema version of the file."""
        with self.read() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on an exception) on the writer."""
        with self._lock:
            conn = self._writer
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)  # also after a failed COMMIT (disk full): the writer must stay usable
                    raise
            except sqlite3.Error as exc:
                _raise_store_error(exc, self.path)

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A pooled reader connection inside one read transaction (a consistent snapshot of the store).

        Raises:
            StoreError: The file is damaged or cannot be opened (see `store_error`).
        """
        with self._pool_lock:
            conn = self._pool.pop() if self._pool else None
        try:
            if conn is None:
                conn = self._connect()
            try:
                conn.execute("BEGIN")
                yield conn
            finally:
                if conn.in_transaction:
                    _rollback(conn)  # a read transaction: nothing to commit
                with self._pool_lock:
                    self._pool.append(conn)
        except sqlite3.Error as exc:
            _raise_store_error(exc, self.path)

    def close(self) -> None:
        """Close every connection (the store object must not be used afterwards)."""
        with self._lock, self._pool_lock:
            for conn in [getattr(self, "_writer", None), *self._pool]:
                if conn is not None:
                    conn.close()
            self._pool.clear()

    # ------------------------------------------------------------------------------------------ run queries
    # Every query on `runs`, `metrics`, `evaluations` and paired groups (studies of kind `group`) lives below, one
    # method per purpose; each is one transaction (a write: BEGIN IMMEDIATE on the writer; a read: one snapshot on a
    # pooled reader).

    def insert_runs(self, runs: Sequence[Mapping[str, Any]], group: Mapping[str, Any] | None = None) -> None:
        """Insert new runs (each a mapping of `runs` columns, the same keys in every one) and, when given, their new
        group (id, name, created, seeds and config as JSON text, versions: stored as a one-cell study, see
        `group_study_row`), in one transaction. A run whose `group_id` names a group joins the group's cell in
        `study_runs` (a re-run as the next attempt of its seed and arm).

        Raises:
            sqlite3.IntegrityError: An id exists already (nothing is written).
        """
        with self.write() as c:
            if group:
                row = group_study_row(group)
                c.execute(_insert_sql("studies", row), list(row.values()))
            if runs:
                c.executemany(_insert_sql("runs", runs[0]), [list(r.values()) for r in runs])
                _link_group_runs(c, runs)

    def interrupt_queued(self, run_ids: Sequence[str], error: str, now: float) -> None:
        """Mark the runs that are still `queued` as `interrupted` with `error` (a manager shut down before they
        started)."""
        with self.write() as c:
            c.executemany("UPDATE runs SET status = 'interrupted', finished = ?, error = ? WHERE id = ? "
                          "AND status = 'queued'", [(now, error, rid) for rid in run_ids])

    def active_runs(self) -> list[sqlite3.Row]:
        """The `queued` and `running` runs, with the columns liveness checks read (`ACTIVE_COLUMNS`)."""
        with self.read() as c:
            return _active_rows(c)

    def end_runs(self, ended: Sequence[EndedRun]) -> None:
        """Record runs found dead: each (status, finished, error, heartbeat, id, owner) is written only where the run
        is still active and still has that owner."""
        with self.write() as c:
            _end_runs(c, ended)

    def beat(self, owner: str, find_ended: Callable[[list[sqlite3.Row], float], list[EndedRun]]
             ) -> tuple[list[sqlite3.Row], list[EndedRun]]:
        """One heartbeat transaction: set `heartbeat = now` (the time the transaction began) on `owner`'s active
        runs, read every active run (`ACTIVE_COLUMNS`), and record the dead ones that `find_ended(rows, now)` names
        (as `end_runs`).

        Returns:
            (the active rows read, the ended tuples written).
        """
        with self.write() as c:
            now = time.time()
            c.execute("UPDATE runs SET heartbeat = ? WHERE owner = ? AND status IN ('queued', 'running')", (now, owner))
            rows = _active_rows(c)
            ended = find_ended(rows, now)
            if ended:
                _end_runs(c, ended)
        return rows, ended

    def stop_queued(self, run_id: str, now: float) -> None:
        """A queued run becomes `stopped` (nothing happens when it is no longer queued)."""
        with self.write() as c:
            c.execute("UPDATE runs SET status = 'stopped', finished = ?, error = NULL WHERE id = ? AND status = "
                      "'queued'", (now, run_id))

    def request_stop(self, run_id: str) -> None:
        """Flag a run for its owner to stop at its next heartbeat (`stop_requested = 1`)."""
        with self.write() as c:
            c.execute("UPDATE runs SET stop_requested = 1 WHERE id = ?", (run_id,))

    def requeue(self, run_id: str, owner: str, pid: int, host: str, now: float, from_statuses: Sequence[str]) -> bool:
        """Queue a run again under the same id for `owner` (resume: `resumed` + 1, stop flag and error cleared),
        only when its status is one of `from_statuses`; whether it was (two concurrent resumes queue it once)."""
        marks = ", ".join("?" * len(from_statuses))
        with self.write() as c:
            return c.execute("UPDATE runs SET status = 'queued', heartbeat = ?, owner = ?, owner_pid = ?, "
                             "owner_host = ?, finished = NULL, error = NULL, note = NULL, stop_requested = 0, "
                             "resumed = resumed + 1 "
                             f"WHERE id = ? AND status IN ({marks})",
                             (now, owner, pid, host, run_id, *from_statuses)).rowcount > 0

    def claim(self, run_id: str, owner: str, pid: int, host: str, now: float) -> dict[str, Any] | None:
        """Claim a queued run for a worker of `owner` (status `running`, started once, heartbeat now, owner's pid and
        host, finished and error cleared); returns its stored config (a mapping), or None when the run was no longer
        queued (stopped or deleted meanwhile: nothing changed). The local workers and the Ray driver both claim
        through this."""
        with self.write() as c:
            claimed = c.execute("UPDATE runs SET status = 'running', started = COALESCE(started, ?), heartbeat = ?, "
                                "owner = ?, owner_pid = ?, owner_host = ?, finished = NULL, error = NULL "
                                "WHERE id = ? AND status = 'queued'", (now, now, owner, pid, host, run_id)).rowcount
            row = c.execute("SELECT config FROM runs WHERE id = ?", (run_id,)).fetchone()
        return json.loads(row["config"]) if claimed and row is not None else None

    def finish(self, run_id: str, status: str, error: str | None, now: float, note: str | None = None) -> None:
        """Record a run's outcome: `status`, `error`, `note` (how a completed run ended early, e.g. an early
        stop), finished and heartbeat `now`, stop flag cleared. The local workers and the Ray driver both finish
        through this."""
        with self.write() as c:
            c.execute("UPDATE runs SET status = ?, error = ?, note = ?, finished = ?, heartbeat = ?, "
                      "stop_requested = 0 WHERE id = ?", (status, error, note, now, now, run_id))

    def delete_run(self, run_id: str) -> None:
        """Delete a run's metrics, evaluations and row (one transaction; not its folder)."""
        with self.write() as c:
            for table, col in (("metrics", "run_id"), ("evaluations", "run_id"), ("runs", "id")):
                c.execute(f"DELETE FROM {table} WHERE {col} = ?", (run_id,))

    def delete_group(self, group_id: str) -> None:
        """Delete a group's study row and its `study_runs` rows (not its runs)."""
        with self.write() as c:
            _delete_group(c, group_id)

    def delete_empty_groups(self, group_ids: Iterable[str]) -> None:
        """Delete those groups (their study rows and links) that no run belongs to any more (one transaction)."""
        with self.write() as c:
            for group_id in group_ids:
                if c.execute("SELECT 1 FROM runs WHERE group_id = ?", (group_id,)).fetchone() is None:
                    _delete_group(c, group_id)

    def run_row(self, run_id: str, columns: str = "*") -> sqlite3.Row:
        """One run's row (`columns`: a constant column list of the caller's, never user input).

        Raises:
            RunNotFound: No run with that id.
        """
        with self.read() as c:
            row = c.execute(f"SELECT {columns} FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"no run {run_id!r} in {self.path}")
        return row

    def run_config(self, run_id: str) -> dict[str, Any]:
        """A run's stored config (a mapping).

        Raises:
            RunNotFound: No run with that id.
        """
        return json.loads(self.run_row(run_id, "config")["config"])

    def list_runs(self, status: str | None = None, group_id: str | None = None, limit: int | None = None,
                  also: Sequence[str] = ()) -> list[sqlite3.Row]:
        """Runs' rows, newest first, optionally of one status (or one of the ids `also`, whose status the caller
        knows better) and/or of one group; at most `limit` (applied only without `also`: the caller filters)."""
        where, args = [], []
        if status is not None:
            where.append(f"(status = ? OR id IN ({', '.join('?' * len(also))}))" if also else "status = ?")
            args += [status, *also]
        if group_id is not None:
            where.append("group_id = ?")
            args.append(group_id)
        sql = "SELECT * FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY created DESC, rowid DESC"
        if limit is not None and not also:
            sql += f" LIMIT {int(limit)}"
        with self.read() as c:
            return c.execute(sql, args).fetchall()

    def run_statuses(self, run_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """run id -> (status, error) of those of `run_ids` that exist."""
        with self.read() as c:
            rows = c.execute(f"SELECT id, status, error FROM runs WHERE id IN ({', '.join('?' * len(run_ids))})",
                             list(run_ids)).fetchall()
        return {r["id"]: (r["status"], r["error"]) for r in rows}

    def stop_flagged(self, run_ids: Sequence[str]) -> list[str]:
        """Those of `run_ids` whose stop was asked for (`stop_requested`) or that are `stopped` already."""
        with self.read() as c:
            return [r[0] for r in c.execute(f"SELECT id FROM runs WHERE id IN ({', '.join('?' * len(run_ids))}) AND "
                                            "(stop_requested = 1 OR status = 'stopped')", list(run_ids)).fetchall()]

    def metrics_frame(self, run_id: str, keys: Sequence[str] | None = None, since_step: int = 0,
                      default_keys: Sequence[str] = ()) -> pd.DataFrame:
        """Step metrics with step > `since_step`, ascending: a column `step` (int64) and one float64 column per key
        (NaN where a step has no value; a key never recorded gives a column of NaN). Pivoted inside SQLite, one row
        per step, in one read snapshot.

        Args:
            run_id: The run.
            keys: Metric names (default: the numeric keys of the run's latest step, those of `default_keys` first in
                their order, then the rest sorted; all of `default_keys` when nothing is recorded yet).
            since_step: Only steps after this one (pass the last step seen to poll incrementally).
            default_keys: The trainer's step keys (see `keys`).

        Raises:
            RunNotFound: No run with that id.
        """
        with self.read() as c:
            row = c.execute("SELECT latest FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFound(f"no run {run_id!r} in {self.path}")
            if keys is None:
                recorded = {k for k, v in (json.loads(row["latest"]) if row["latest"] else {}).items()
                            if isinstance(v, (int, float))} or set(default_keys)  # not `phase`, what the trainer does
                keys = [k for k in default_keys if k in recorded] + sorted(recorded - set(default_keys))
            keys = list(keys)
            cur = c.cursor()
            cur.row_factory = None  # plain tuples, not sqlite3.Row, for speed
            pivot = "".join(", MAX(CASE WHEN key = ? THEN value END)" for _ in keys)
            marks = ", ".join("?" * len(keys))
            rows = cur.execute(f"SELECT step{pivot} FROM metrics WHERE run_id = ? AND step > ? AND key IN ({marks}) "
                               "GROUP BY step ORDER BY step", [*keys, run_id, int(since_step), *keys]).fetchall()
        import pandas as pd  # on use: pandas adds 0.3-0.7 s to `import gist_engine`, and training needs no tables

        values = np.array(rows, dtype=np.float64).reshape(len(rows), len(keys) + 1)  # None (NaN, inf) -> nan
        frame = pd.DataFrame(values[:, 1:], columns=keys)
        frame.insert(0, "step", values[:, 0].astype(np.int64))
        return frame

    def evaluations_frame(self, run_id: str) -> pd.DataFrame:
        """Every evaluation of a run, by step and split: step, epoch, acc_cls, acc_gist, agreement (float64, NaN
        without a Gist head), n, per_class (a dict), split.

        Raises:
            RunNotFound: No run with that id.
        """
        cols = ["step", "epoch", "acc_cls", "acc_gist", "agreement", "n", "per_class", "split"]
        with self.read() as c:
            if c.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise RunNotFound(f"no run {run_id!r} in {self.path}")
            rows = c.execute(f"SELECT {', '.join(cols)} FROM evaluations WHERE run_id = ? ORDER BY step, split",
                             (run_id,)).fetchall()
        import pandas as pd  # on use: pandas adds 0.3-0.7 s to `import gist_engine`, and training needs no tables

        df = pd.DataFrame([tuple(r) for r in rows], columns=cols)
        df = df.astype({"step": "int64", "epoch": "float64", "acc_cls": "float64", "acc_gist": "float64",
                        "agreement": "float64"})  # None (no Gist head) -> NaN
        df["per_class"] = [json.loads(v) if v else {} for v in df["per_class"]]
        return df

    def test_evaluations(self, run_ids: Sequence[str]) -> list[tuple[str, int, float | None, float | None]]:
        """(run_id, step, epoch, acc_cls) of every test-split evaluation of these runs (the accuracy probe's left
        out), by run and step, in one read; runs without one (or not in the store) have no rows."""
        if not run_ids:
            return []
        marks = ", ".join("?" * len(run_ids))
        with self.read() as c:
            rows = c.execute(f"SELECT run_id, step, epoch, acc_cls FROM evaluations WHERE run_id IN ({marks}) "
                             "AND split = 'test' ORDER BY run_id, step", list(run_ids)).fetchall()
        return [tuple(r) for r in rows]

    def groups(self) -> list[dict[str, Any]]:
        """Every paired group (a study of kind `group`), newest first: id, name, created, seeds (list), config
        (mapping), runs (the ids of its runs in the store, oldest first)."""
        with self.read() as c:
            rows = c.execute("SELECT id, name, created, spec, versions FROM studies WHERE kind = ? "
                             "ORDER BY created DESC, rowid DESC", (GROUP_KIND,)).fetchall()
            members = c.execute("SELECT DISTINCT sr.study_id, r.id FROM study_runs sr JOIN studies s ON s.id = "
                                "sr.study_id JOIN runs r ON r.id = sr.run_id WHERE s.kind = ? "
                                "ORDER BY r.created, r.rowid", (GROUP_KIND,)).fetchall()
        runs: dict[str, list[str]] = {}
        for m in members:
            runs.setdefault(m["study_id"], []).append(m["id"])
        return [{k: v for k, v in _group_of(r).items() if k != "versions"} | {"runs": runs.get(r["id"], [])}
                for r in rows]

    def group_row(self, group_id: str) -> dict[str, Any]:
        """One group: id, name, created, seeds (list), config (mapping), versions (mapping or None).

        Raises:
            RunNotFound: No group with that id.
        """
        with self.read() as c:
            row = c.execute("SELECT id, name, created, spec, versions FROM studies WHERE id = ? AND kind = ?",
                            (group_id, GROUP_KIND)).fetchone()
        if row is None:
            raise RunNotFound(f"no group {group_id!r} in {self.path}")
        return _group_of(row)

    def is_group(self, some_id: str) -> bool:
        """Whether `some_id` names a paired group."""
        with self.read() as c:
            return c.execute("SELECT 1 FROM studies WHERE id = ? AND kind = ?",
                             (some_id, GROUP_KIND)).fetchone() is not None

    # -------------------------------------------------------------------------------------- the recorder's
    def record_start(self, run_id: str, info: Mapping[str, Any], phase: Mapping[str, Any]) -> None:
        """A run starts (or resumes) at `info["step"]`: forget its metrics and evaluations after that step, and set
        total_steps, step, epoch, latest (the step's metrics and `phase`), config, parameter counts, device,
        selected_on (the resolved `train.select_on`; "last" when `info` lacks it) and heartbeat from `info`
        (`recorder.train_start_info`), then its evaluation summary; one transaction."""
        step = info["step"]
        with self.write() as c:
            c.execute("DELETE FROM metrics WHERE run_id = ? AND step > ?", (run_id, step))
            c.execute("DELETE FROM evaluations WHERE run_id = ? AND step > ?", (run_id, step))
            latest = dict(c.execute("SELECT key, value FROM metrics WHERE run_id = ? AND step = ?",
                                    (run_id, step)).fetchall())
            c.execute("UPDATE runs SET total_steps = ?, step = ?, epoch = ?, latest = ?, config = ?, "
                      "trainable_params = ?, gist_params = ?, total_params = ?, device = ?, selected_on = ?, "
                      "heartbeat = ? WHERE id = ?",
                      (info["total_steps"], step, latest.get("epoch") or 0.0, json.dumps({**latest, "phase": phase}),
                       json.dumps(info["config"]), info["trainable_params"], info["gist_params"],
                       info["total_params"], info["device"], info.get("selected_on", "last"), time.time(), run_id))
            _refresh_eval_summary(c, run_id)

    def set_latest(self, run_id: str, latest: Mapping[str, Any]) -> None:
        """Set a run's `latest` (its last step's metrics and the trainer's phase) and its heartbeat."""
        with self.write() as c:
            c.execute("UPDATE runs SET latest = ?, heartbeat = ? WHERE id = ?", (json.dumps(latest), time.time(),
                                                                                  run_id))

    def append_steps(self, run_id: str, rows: Sequence[tuple[str, int, str, float]], step: int, epoch: float,
                     latest: Mapping[str, Any], rate: float | None,
                     evaluation: tuple[int, Mapping[str, Any]] | None = None) -> None:
        """Write buffered step metrics and, when given, an evaluation, in one transaction (a reader sees whole
        steps). With `rows` ((run_id, step, key, value)): upsert them and set the run's step, epoch, latest,
        steps_per_second (`rate`, steps/s) and heartbeat. With `evaluation` (step, metrics: split (default test),
        epoch, acc_cls, acc_gist, agreement, n, per_class): upsert its row and refresh the run's summary."""
        with self.write() as c:
            if rows:
                c.executemany("INSERT OR REPLACE INTO metrics (run_id, step, key, value) VALUES (?, ?, ?, ?)", rows)
                c.execute("UPDATE runs SET step = ?, epoch = ?, latest = ?, steps_per_second = ?, heartbeat = ? "
                          "WHERE id = ?", (step, float(epoch), json.dumps(latest), rate, time.time(), run_id))
            if evaluation is not None:
                at, m = evaluation
                c.execute("INSERT OR REPLACE INTO evaluations (run_id, step, split, epoch, acc_cls, acc_gist, "
                          "agreement, n, per_class) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                          (run_id, at, m.get("split", "test"), m.get("epoch"), m.get("acc_cls"), m.get("acc_gist"),
                           m.get("agreement"), m.get("n"), json.dumps(m.get("per_class") or {})))
                _refresh_eval_summary(c, run_id)

    # ----------------------------------------------------------------------------------------- the gallery's
    def export_rows(self, run_ids: Sequence[str]) -> tuple[list[dict], list[dict], list[tuple], list[tuple]]:
        """In one read snapshot: the runs' rows (oldest first), their groups (as the bundle format writes them: id,
        name, created, seeds and config as JSON text, versions), their metrics rows (run_id, step, key, value) and
        evaluation rows (`EVAL_COLUMNS`), each ordered by run, step (and key or split)."""
        marks = ", ".join("?" * len(run_ids))
        with self.read() as c:
            runs = [dict(r) for r in c.execute(f"SELECT * FROM runs WHERE id IN ({marks}) ORDER BY created, rowid",
                                               list(run_ids)).fetchall()]
            group_ids = sorted({r["group_id"] for r in runs if r["group_id"]})
            groups = [_bundle_group(r) for r in c.execute(
                f"SELECT id, name, created, spec, versions FROM studies WHERE kind = ? AND id IN "
                f"({', '.join('?' * len(group_ids))}) ORDER BY created, rowid", [GROUP_KIND, *group_ids]).fetchall()]
            metrics = c.execute(f"SELECT run_id, step, key, value FROM metrics WHERE run_id IN ({marks}) "
                                "ORDER BY run_id, step, key", list(run_ids)).fetchall()
            evals = c.execute(f"SELECT {', '.join(EVAL_COLUMNS)} FROM evaluations WHERE run_id IN ({marks}) "
                              "ORDER BY run_id, step, split", list(run_ids)).fetchall()
        return runs, groups, [tuple(r) for r in metrics], [tuple(r) for r in evals]

    def runs_owned_like(self, prefix: str) -> list[tuple[str, str]]:
        """(id, owner) of the runs whose owner starts with `prefix` (e.g. the gallery's examples), oldest first."""
        with self.read() as c:
            rows = c.execute("SELECT id, owner FROM runs WHERE owner LIKE ? ORDER BY created, rowid",
                             (prefix + "%",)).fetchall()
        return [(r["id"], r["owner"]) for r in rows]

    def not_owned_by(self, run_ids: Sequence[str], group_ids: Sequence[str], owner: str) -> list[str]:
        """Those of `run_ids`, then of `group_ids` (groups by their runs), whose runs exist with an owner other than
        `owner` (or none)."""
        with self.read() as c:
            clash = c.execute(f"SELECT id FROM runs WHERE id IN ({', '.join('?' * len(run_ids))}) AND "
                              "(owner IS NULL OR owner != ?)", [*run_ids, owner]).fetchall()
            clash += c.execute(f"SELECT DISTINCT group_id AS id FROM runs WHERE group_id IN "
                               f"({', '.join('?' * len(group_ids))}) AND (owner IS NULL OR owner != ?)",
                               [*group_ids, owner]).fetchall()
        return [r["id"] for r in clash]

    def import_rows(self, groups: Sequence[Mapping[str, Any]], runs: Sequence[Mapping[str, Any]],
                    metrics: Iterable[tuple], evaluations: Iterable[tuple]) -> None:
        """Insert rows read from a bundle, in one transaction: groups (in the bundle format: id, name, created,
        seeds, config, versions; each stored as a one-cell study of kind `group`, replacing a group of the same id
        and its links to runs no longer in the store) and runs (each joining its group's cell), each a mapping
        whose keys that are no column of the table are dropped (a bundle of another release), metrics (run_id,
        step, key, value) and evaluations (`EVAL_COLUMNS`).

        Raises:
            sqlite3.IntegrityError: A run, metric or evaluation exists already, or a group's id is a study's
                (nothing is written).
        """
        with self.write() as c:
            columns = _columns(c, "runs")
            for g in groups:
                if c.execute("SELECT 1 FROM studies WHERE id = ? AND kind != ?", (g["id"], GROUP_KIND)).fetchone():
                    raise sqlite3.IntegrityError(f"UNIQUE constraint failed: group {g['id']} is a study's id")
                c.execute("DELETE FROM study_runs WHERE study_id = ? AND run_id NOT IN (SELECT id FROM runs)",
                          (g["id"],))
                row = group_study_row(g)
                c.execute(_insert_sql("studies", row, "INSERT OR REPLACE"), list(row.values()))
            for r in runs:
                row = {k: v for k, v in r.items() if k in columns}
                c.execute(_insert_sql("runs", row), list(row.values()))
            _link_group_runs(c, runs)
            c.executemany("INSERT INTO metrics (run_id, step, key, value) VALUES (?, ?, ?, ?)", metrics)
            c.executemany(f"INSERT INTO evaluations ({', '.join(EVAL_COLUMNS)}) VALUES "
                          f"({', '.join('?' * len(EVAL_COLUMNS))})", evaluations)


EVAL_COLUMNS = ("run_id", "step", "split", "epoch", "acc_cls", "acc_gist", "agreement", "n", "per_class")
ACTIVE_COLUMNS = "id, owner, owner_pid, owner_host, heartbeat, step, stop_requested"  # what liveness checks read
EndedRun = tuple[str, float, str, float, str, str | None]  # (status, finished, error, heartbeat, id, owner)


def _insert_sql(table: str, row: Mapping[str, Any], verb: str = "INSERT") -> str:
    """`verb INTO table (keys of row) VALUES (?, ...)`; the keys are column names of this module's callers, never
    user input (the gallery keeps only the table's own columns)."""
    return f"{verb} INTO {table} ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})"


def group_study_row(group: Mapping[str, Any]) -> dict[str, Any]:
    """The `studies` row of a paired group given as a row of the former `groups` table (id, name, created, seeds and
    config as JSON text, versions as JSON text or None): a one-cell study of kind `group` whose spec is what
    `StudySpec.to_dict` writes for the group's base config over its seeds, paired, no grid, no retries (a group has
    no driver to retry). Its status stays `created`: a group's status is read from its runs (`StudyStore`).

    A seeds or config text that is not JSON is kept as the text itself (nothing a user recorded is dropped)."""
    seeds, config = _loads(group.get("seeds")), _loads(group.get("config"))
    spec = {"name": group.get("name"), "description": "", "base": config, "grid": {}, "seeds": seeds, "paired": True,
            "retries": 0}
    return {"id": group.get("id"), "name": group.get("name"), "created": group.get("created"), "spec": json.dumps(spec),
            "status": "created", "backend": "local", "cells": 1,
            "planned": len(ARM_OF_GIST) * len(seeds) if isinstance(seeds, list) else 0,
            "versions": group.get("versions"), "kind": GROUP_KIND}


def _group_of(row: Mapping[str, Any]) -> dict[str, Any]:
    """A group-kind `studies` row as the group it is: id, name, created, seeds (list), config (mapping), versions
    (mapping or None)."""
    spec = json.loads(row["spec"])
    versions = row["versions"]
    return {"id": row["id"], "name": row["name"], "created": row["created"], "seeds": spec.get("seeds"),
            "config": spec.get("base"), "versions": _loads(versions) if versions is not None else None}


def _loads(text: Any) -> Any:
    """`text` parsed as JSON, or `text` itself when it is not a JSON text."""
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text


def _link_group_runs(c: sqlite3.Connection, runs: Sequence[Mapping[str, Any]]) -> None:
    """Add each run (id, group_id, seed, gist_enabled, created) that names a group to its group's one cell in
    `study_runs`: arm from gist_enabled, attempt one more than the attempts of that seed and arm so far (a re-run is
    the next attempt, as in a study). Runs of no group, or of an id that is no group's, are left alone."""
    for r in runs:
        if r.get("group_id") is None or c.execute("SELECT 1 FROM studies WHERE id = ? AND kind = ?",
                                                  (r["group_id"], GROUP_KIND)).fetchone() is None:
            continue
        arm = ARM_OF_GIST[int(bool(r["gist_enabled"]))]
        attempt = c.execute("SELECT COALESCE(MAX(attempt), 0) + 1 FROM study_runs WHERE study_id = ? AND cell = 0 "
                            "AND seed = ? AND arm = ?", (r["group_id"], r["seed"], arm)).fetchone()[0]
        c.execute("INSERT INTO study_runs (study_id, cell, cell_key, seed, arm, attempt, run_id, created, backend) "
                  "VALUES (?, 0, ?, ?, ?, ?, ?, ?, 'local')",
                  (r["group_id"], GROUP_CELL_KEY, r["seed"], arm, attempt, r["id"], r["created"]))


def _bundle_group(row: Mapping[str, Any]) -> dict[str, Any]:
    """A group-kind `studies` row in the shape a bundle's `groups` keeps (that of the former `groups` table, which
    every release reads): id, name, created, seeds and config as JSON text, versions."""
    group = _group_of(row)
    return {"id": group["id"], "name": group["name"], "created": group["created"],
            "seeds": json.dumps(group["seeds"]), "config": json.dumps(group["config"]), "versions": row["versions"]}


def _delete_group(c: sqlite3.Connection, group_id: str) -> None:
    """Delete a group's study row and its links, inside the caller's write transaction (a study of kind `study`
    is never touched)."""
    if c.execute("SELECT 1 FROM studies WHERE id = ? AND kind = ?", (group_id, GROUP_KIND)).fetchone() is not None:
        c.execute("DELETE FROM study_runs WHERE study_id = ?", (group_id,))
        c.execute("DELETE FROM studies WHERE id = ?", (group_id,))


def _columns(c: sqlite3.Connection, table: str) -> set[str]:
    """The column names of `table` (a constant of this module's callers)."""
    return {row[1] for row in c.execute(f"PRAGMA table_info({table})").fetchall()}


def _active_rows(c: sqlite3.Connection) -> list[sqlite3.Row]:
    return c.execute(f"SELECT {ACTIVE_COLUMNS} FROM runs WHERE status IN ('queued', 'running')").fetchall()


def _end_runs(c: sqlite3.Connection, ended: Sequence[EndedRun]) -> None:
    c.executemany("UPDATE runs SET status = ?, finished = ?, error = ?, heartbeat = ? WHERE id = ? "
                  "AND owner IS ? AND status IN ('queued', 'running')", ended)


_EVAL_SUMMARY = "SELECT step, epoch, acc_cls, acc_gist, agreement FROM evaluations WHERE run_id = ? AND split = ?"


def _refresh_eval_summary(c: sqlite3.Connection, run_id: str) -> None:
    """Set the run's last_eval (its last test evaluation), best_acc_cls (the best test accuracy), and acc_cls,
    acc_gist, agreement, selected_epoch and val_acc from the evaluation its `selected_on` picks, by the trainer's
    rule: val, the best validation accuracy (the first of equals) and the test evaluation of that step; test, the
    best test accuracy (the first of equals); last, the last test evaluation (the last validation one in a run
    without the test split). The accuracy probe's evaluations (split "probe") only draw curves. Inside the caller's
    write transaction."""
    row = c.execute("SELECT selected_on FROM runs WHERE id = ?", (run_id,)).fetchone()
    selected_on = (row["selected_on"] if row is not None else None) or "last"
    last = c.execute(_EVAL_SUMMARY + " ORDER BY step DESC LIMIT 1", (run_id, "test")).fetchone()
    best = c.execute("SELECT MAX(acc_cls) FROM evaluations WHERE run_id = ? AND split = 'test'",
                     (run_id,)).fetchone()[0]
    if selected_on == "val":
        at = c.execute(_EVAL_SUMMARY + " ORDER BY acc_cls DESC, step ASC LIMIT 1", (run_id, "val")).fetchone()
    elif selected_on == "test":
        at = c.execute(_EVAL_SUMMARY + " ORDER BY acc_cls DESC, step ASC LIMIT 1", (run_id, "test")).fetchone()
    else:
        at = last or c.execute(_EVAL_SUMMARY + " ORDER BY step DESC LIMIT 1", (run_id, "val")).fetchone()
    test = val = None
    if at is not None:
        test = c.execute(_EVAL_SUMMARY + " AND step = ?", (run_id, "test", at["step"])).fetchone()
        val = c.execute(_EVAL_SUMMARY + " AND step = ?", (run_id, "val", at["step"])).fetchone()
    c.execute("UPDATE runs SET last_eval = ?, acc_cls = ?, acc_gist = ?, agreement = ?, best_acc_cls = ?, "
              "selected_epoch = ?, val_acc = ? WHERE id = ?",
              (json.dumps(dict(last)) if last is not None else None, *(
                  (test["acc_cls"], test["acc_gist"], test["agreement"]) if test is not None else (None,) * 3),
               best, at["epoch"] if at is not None else None, val["acc_cls"] if val is not None else None, run_id))

def _raise_store_error(exc: sqlite3.Error, path: Path) -> None:
    """Raise `store_error(exc, path)`: a StoreError from `exc`, or `exc` itself when it is no user's to fix."""
    err = store_error(exc, path)
    if err is exc:
        raise exc
    raise err from exc


def _rollback(conn: sqlite3.Connection) -> None:
    """End the connection's transaction if one is open (SQLite may have rolled it back itself, e.g. disk full)."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


@dataclass(frozen=True)
class RunSnapshot:
    """A frozen view of one run, read from the store (safe to keep and pass between threads).

    `config_dict` is the run's config as stored (a mapping, always readable); `config` is it parsed into a
    `RunConfig` on first use (`config.read_stored_config`: leniently, so a run of another release or of a method
    whose optional library is missing still lists, reads and shows), None when it does not parse, with the reason in
    `config_note`. Listing runs parses nothing (a peft run's config imports peft only when `config` is read).
    """

    id: str
    name: str
    status: str
    created: float
    started: float | None
    finished: float | None
    heartbeat: float | None
    step: int
    total_steps: int
    progress: float
    eta_seconds: float | None
    epoch: float
    latest: dict[str, float]
    last_eval: dict[str, Any] | None
    best_acc_cls: float | None
    acc_cls: float | None
    error: str | None
    config_dict: dict[str, Any]
    seed: int
    gist_enabled: bool
    method: str
    group_id: str | None
    trainable_params: int | None
    gist_params: int | None
    run_dir: Path
    versions: dict[str, str]
    acc_gist: float | None = None
    agreement: float | None = None
    total_params: int | None = None
    device: str | None = None
    owner_pid: int | None = None
    resumed: int = 0
    has_checkpoint: bool = False  # run_dir/checkpoint.safetensors exists (usable with checkpoint.load_model)
    can_resume: bool = False  # `RunManager.resume` applies (it restarts from step 0 without resume.safetensors)
    phase: dict[str, Any] | None = None  # what the trainer does now: name (training, evaluating, ...), done, total
    example: bool = False  # a read-only gallery example (owner `gallery:<entry>`): no delete, resume or re-run
    selected_on: str | None = None  # train.select_on resolved: val, test, last (None: recorded before it existed)
    selection: str | None = None  # how acc_cls was selected, in words (`config.selection_label`)
    selected_epoch: float | None = None  # the epoch acc_cls (and the kept checkpoint) comes from
    val_acc: float | None = None  # validation accuracy at that epoch (None where not evaluated)
    note: str | None = None  # how a completed run ended early (train.early_stop_patience)

    @functools.cached_property
    def _parsed(self) -> tuple[RunConfig | None, str | None]:
        return read_stored_config(self.config_dict)

    @property
    def config(self) -> RunConfig | None:
        """The run's config parsed (once, on first use; shared by the callers of this snapshot: read, never
        change it), or None when the stored config does not parse in this release (see `config_note`)."""
        return self._parsed[0]

    @property
    def config_note(self) -> str | None:
        """Why `config` is None or left keys out (another release's keys, a refused value, a missing optional
        library); None when the stored config parsed as it is."""
        return self._parsed[1]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (run_dir as a string; `config`: the stored mapping, not parsed)."""
        out = dataclasses.asdict(self)
        out = {("config" if k == "config_dict" else k): v for k, v in out.items()}
        out["run_dir"] = str(self.run_dir)
        return out


__all__ = ["ACTIVE_COLUMNS", "DB_NAME", "EVAL_COLUMNS", "GROUP_KIND", "MIGRATIONS", "SCHEMA_VERSION", "STUDY_KIND",
           "EndedRun", "RunError",
           "RunNotFound", "RunSnapshot", "RunStore", "StoreError", "StoreFull", "create_store", "damaged", "data_dir",
           "disk_full_message", "is_disk_full", "quick_check", "store_error"]
