"""The run store's SQLite file: schema and migrations, the one writer connection behind a lock, pooled readers."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

logger = logging.getLogger(__name__)

DB_NAME = "runs.sqlite3"

# Schema migrations: version -> statements, applied in order inside one transaction; PRAGMA user_version holds the
# version of a store. Add a new version to change the schema; never edit a released one.
SCHEMA_VERSION = 2
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
        for version in range(before + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
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
    phase: dict[str, Any] | None = None  # what the trainer does now: name (training, evaluating, ...), done, total
    example: bool = False  # a read-only gallery example (owner `gallery:<entry>`): no delete, resume or re-run

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (run_dir as a string)."""
        out = dataclasses.asdict(self)
        out["run_dir"] = str(self.run_dir)
        return out


__all__ = ["DB_NAME", "MIGRATIONS", "SCHEMA_VERSION", "RunError", "RunNotFound", "RunSnapshot", "RunStore",
           "StoreError", "StoreFull", "create_store", "damaged", "data_dir", "disk_full_message", "is_disk_full",
           "quick_check", "store_error"]
