"""The run store's SQLite file: schema and migrations, the one writer connection behind a lock, pooled readers."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

logger = logging.getLogger(__name__)

DB_NAME = "runs.sqlite3"

# Schema migrations: version -> statements, applied in order inside one transaction; PRAGMA user_version holds the
# version of a store. Add a new version to change the schema; never edit a released one.
SCHEMA_VERSION = 1
MIGRATIONS: dict[int, tuple[str, ...]] = {
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
}


class RunError(RuntimeError):
    """A run-store request that cannot be done (wrong state, missing optional package); the message says why."""


class RunNotFound(RunError, KeyError):
    """No run (or group) with that id in the store."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "run not found"


class StoreError(RunError):
    """The store file cannot be used (written by a newer version, corrupt)."""


def data_dir() -> Path:
    """Where runs are kept: `$GIST_DATA_DIR`, else the user data directory of "gist-studio"."""
    return Path(os.environ.get("GIST_DATA_DIR") or platformdirs.user_data_dir("gist-studio"))


class RunStore:
    """The SQLite file: one writer connection behind a lock, a pool of reader connections; WAL and a busy timeout.

    Args:
        path: The database file (created, with its folder, when missing; migrated to `SCHEMA_VERSION`).
        busy_timeout: Seconds a statement waits for another process's lock before failing.
    """

    def __init__(self, path: str | Path, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        self._pool: list[sqlite3.Connection] = []
        self._pool_lock = threading.Lock()
        self._writer = self._connect()
        self._writer.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
        self.migrate()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
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
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.execute("PRAGMA user_version").fetchone()[0]
                if before > SCHEMA_VERSION:
                    raise StoreError(f"{self.path} has schema version {before}, newer than this gist_engine "
                                     f"understands ({SCHEMA_VERSION}); upgrade gist_engine or use another data dir")
                for version in range(before + 1, SCHEMA_VERSION + 1):
                    for statement in MIGRATIONS[version]:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version = {version}")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
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
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A pooled reader connection inside one read transaction (a consistent snapshot of the store)."""
        with self._pool_lock:
            conn = self._pool.pop() if self._pool else None
        if conn is None:
            conn = self._connect()
        try:
            conn.execute("BEGIN")
            yield conn
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")
            with self._pool_lock:
                self._pool.append(conn)

    def close(self) -> None:
        """Close every connection (the store object must not be used afterwards)."""
        with self._lock, self._pool_lock:
            for conn in [self._writer, *self._pool]:
                conn.close()
            self._pool.clear()


@dataclass(frozen=True)
class RunSnapshot:
    """A frozen view of one run, read from the store (safe to keep and pass between threads)."""

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
    config: dict[str, Any]
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
    example: bool = False  # a read-only gallery example (owner `gallery:<entry>`): no delete, resume or re-run

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (run_dir as a string)."""
        out = dataclasses.asdict(self)
        out["run_dir"] = str(self.run_dir)
        return out


__all__ = ["DB_NAME", "MIGRATIONS", "SCHEMA_VERSION", "RunError", "RunNotFound", "RunSnapshot", "RunStore",
           "StoreError", "data_dir"]
