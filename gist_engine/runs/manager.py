"""The RunManager: queues runs, trains them on worker threads, heartbeats them, recovers a dead process's runs.

Every public method is thread-safe. Writes go through the store's one writer connection (short transactions,
metrics in batches); reads use pooled connections of their own, so polling never waits for training. Torch's
intra-op thread pool is process-wide: a manager that starts its workers caps it (`torch.set_num_threads`, default:
the usable CPUs) and each run picks its count below that cap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
import traceback
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .._io import write_text_atomic
from ..backbones import BackboneError
from ..config import ConfigError, RunConfig, load_run_config, to_dict
from ..data.images import DatasetError
from ..losses import LOSS_TERMS
from ..speed import usable_cpus
from ..train import (
    COMPLETED,
    DIVERGED,
    FAILED,
    STOPPED,
    Callback,
    Trainer,
    load_run_data,
    package_versions,
)
from ..train.checkpoint import CHECKPOINT_NAME, RESUME_NAME, CheckpointError
from .compare import paired_configs
from .export import export_runs
from .ids import check_id, check_name, is_id, new_id, remove_tree
from .pairs import paired_result
from .recorder import StoreWriter
from .store import (
    DB_NAME,
    EndedRun,
    RunError,
    RunSnapshot,
    RunStore,
    data_dir,
    disk_full_message,
    is_disk_full,
)

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

QUEUED, RUNNING, INTERRUPTED = "queued", "running", "interrupted"
STATUSES = (QUEUED, RUNNING, COMPLETED, STOPPED, DIVERGED, FAILED, INTERRUPTED)
ACTIVE = (QUEUED, RUNNING)
RESUMABLE = (INTERRUPTED, STOPPED, FAILED)  # resume continues from resume.safetensors (or restarts without one)
STEP_KEYS = (*LOSS_TERMS, "lr", "images_per_second", "epoch")  # what the Trainer reports every step
RUNS_DIR = "runs"
EXPORTS_DIR = "exports"
RESULT_NAME = "result.json"
INVALID_DIR = ".not-a-run-id"  # the listed folder of a stored row whose id is not a run id (never created)
USER_ERRORS = (ConfigError, BackboneError, DatasetError, CheckpointError)  # stored without a traceback


# The managers alive in this process (token -> manager), so that a new manager can tell a run of a live sibling
# from one whose manager is gone; and the outcomes a worker could not write (run id -> (status, error)), written at
# the next heartbeat or start of any manager in this process that succeeds in writing.
_MANAGERS: weakref.WeakValueDictionary[str, RunManager] = weakref.WeakValueDictionary()
_UNRECORDED: dict[str, tuple[str, str]] = {}
_UNRECORDED_LOCK = threading.Lock()
EXAMPLE_OWNER = "gallery:"  # owner prefix of runs imported from the gallery (read-only; see runs.gallery)


def _loads(text: str | None, default: Any = None) -> Any:
    return json.loads(text) if text else default


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, USER_ERRORS):
        return str(exc)
    return f"{type(exc).__name__}: {exc}\n\n{''.join(traceback.format_exception(exc))}"


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


def _device_key(device: str) -> str:
    """The device a run will occupy (auto -> cuda when present), without failing for a missing GPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class RunManager:
    """Queues runs, trains them on background worker threads and keeps everything in a `RunStore`.

    Args:
        root: The data directory (default `data_dir()`): `root/runs.sqlite3` and `root/runs/<run_id>/`.
        workers_per_device: Runs executing at once per device (cpu, cuda); the rest wait as `queued`.
        start: Start the worker threads now (False: a view, e.g. the CLI, or call `start` later). A manager
            heartbeats the runs it owns (submitted or resumed here) even before its workers start.
        torch_threads: Cap for `torch.set_num_threads` (process-wide), applied when the workers start and again as
            a ceiling after each run's setup (which picks its own count: `train.cpu_threads`, or as many as the
            CPUs are idle); default: the usable CPUs (`speed.usable_cpus`). 0 leaves torch's setting alone.
            Not cores - 1: on 2 CPUs that trained the app's CPU demo on one thread, 146 s against 72 s with
            two while the live page polled (measured); the server's reruns are short and get their share anyway.
        stale_after: Seconds without a heartbeat after which another process's queued/running run counts as dead
            (a dead owner pid on this host counts at once).
        heartbeat_every: Seconds between heartbeats of this manager's queued and running runs.
        flush_every: Steps buffered before the metrics are written (also after `flush_seconds`).
        flush_seconds: Longest time step metrics stay in the buffer.
        data_loader: `f(config) -> DatasetSplits` instead of loading `config.data` (tests, custom data); by default
            the last loaded dataset is reused while the data config, image size and device stay the same.
        callbacks: `f(config, run_dir) -> [Callback, ...]`: extra trainer callbacks for each run (e.g. attention
            snapshots).
    """

    def __init__(self, root: str | Path | None = None, workers_per_device: int = 1, start: bool = True,
                 torch_threads: int | None = None, *, stale_after: float = 30.0, heartbeat_every: float = 2.0,
                 flush_every: int = 50, flush_seconds: float = 0.5,
                 data_loader: Callable[[RunConfig], Any] | None = None,
                 callbacks: Callable[[RunConfig, Path], list[Callback]] | None = None) -> None:
        if workers_per_device < 1:
            raise ValueError(f"workers_per_device must be >= 1, got {workers_per_device}")
        self.root = Path(root) if root is not None else data_dir()
        self.store = RunStore(self.root / DB_NAME)
        self.workers_per_device = workers_per_device
        self.torch_threads = torch_threads
        self.stale_after, self.heartbeat_every = stale_after, heartbeat_every
        self.flush_every, self.flush_seconds = flush_every, flush_seconds
        self.data_loader, self.callbacks = data_loader, callbacks
        self.token, self.pid, self.host = secrets.token_hex(8), os.getpid(), socket.gethostname()
        self._cond = threading.Condition()
        self._queue: deque[str] = deque()  # run ids in submission order
        self._device: dict[str, str] = {}  # run id -> device key, for queued and running runs
        self._busy: dict[str, int] = {}  # device key -> runs executing
        self._running: set[str] = set()
        self._stops: dict[str, str] = {}  # run id -> why it must stop (stopped, interrupted, deleted)
        self._threads: list[threading.Thread] = []  # workers, then the heartbeat
        self._heartbeat_thread: threading.Thread | None = None
        self._thread_cap = 0  # set by start(); a ceiling re-applied after each run's setup
        self._halt = threading.Event()
        self._closing = False
        self._data_lock = threading.Lock()
        self._data_cache: tuple[str, Any] | None = None
        self._versions: dict[str, str] | None = None
        self._owned: set[str] = set()  # runs this manager queued or runs now (added before their row is written)
        self._store_problem: str | None = None  # why the store refuses this manager's writes (disk full), if it does
        _MANAGERS[self.token] = self
        self.recover()
        if start:
            self.start()

    # ------------------------------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Cap torch's threads and start the worker threads and the heartbeat (idempotent)."""
        with self._cond:
            if any(t is not self._heartbeat_thread for t in self._threads) or self._closing:
                return
            cap = self.torch_threads if self.torch_threads is not None else usable_cpus()
            if cap:
                torch.set_num_threads(cap)
            self._thread_cap = cap
            devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
            for i in range(self.workers_per_device * len(devices)):
                worker = threading.Thread(target=self._worker, name=f"gist-run-worker-{i}", daemon=True)
                self._threads.append(worker)
                worker.start()
        self._ensure_heartbeat()

    def _ensure_heartbeat(self) -> None:
        """Start the heartbeat thread once this manager owns runs (or runs workers), so others see it alive."""
        with self._cond:
            if self._heartbeat_thread is None and not self._closing:
                self._heartbeat_thread = threading.Thread(target=self._heartbeat, name="gist-run-heartbeat",
                                                          daemon=True)
                self._threads.append(self._heartbeat_thread)
                self._heartbeat_thread.start()

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop the workers: running runs end as `interrupted` (resumable), queued ones become `interrupted`.

        Args:
            wait: Wait for the worker threads to finish their current step and record the status.
            timeout: Longest wait in seconds (None = as long as it takes).
        """
        with self._cond:
            if self._closing:
                return
            self._closing = True
            queued = list(self._queue)
            self._queue.clear()
            self._owned.difference_update(queued)
            for run_id in self._running:
                self._stops.setdefault(run_id, INTERRUPTED)
            self._cond.notify_all()
        if queued:
            self.store.interrupt_queued(queued, "interrupted: the run manager shut down before it started", time.time())
        self._halt.set()
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            for t in self._threads:
                t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if not any(t.is_alive() for t in self._threads):
            self.store.close()

    def __enter__(self) -> RunManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def recover(self) -> list[str]:
        """Mark runs left `queued`/`running` by a dead owner as ended; returns their ids.

        A run is dead when its heartbeat is older than `stale_after` seconds, its owner process on this host no
        longer exists, or its owner is a manager of this process that no longer handles it (its worker gave up, or
        the manager is gone). It becomes `interrupted` (resumable), or the outcome its worker could not write (e.g.
        `failed`, disk full). Called at start-up (one read; one write only when something is dead) and then at every
        heartbeat, inside the heartbeat's own transaction (see `_heartbeat`): no extra store traffic.
        """
        ended = self._ended(self.store.active_runs(), time.time())
        if ended:
            self.store.end_runs(ended)
            self._forget_recorded(ended)
        return [e[4] for e in ended]

    def _ended(self, rows: Sequence[sqlite3.Row], now: float) -> list[EndedRun]:
        """The dead runs among active `rows`: (status, finished, error, heartbeat, id, owner) update tuples."""
        with self._cond:
            owned = set(self._owned)
        with _UNRECORDED_LOCK:
            unrecorded = dict(_UNRECORDED)
        ended = []
        for r in rows:
            status, why = INTERRUPTED, None
            age = now - (r["heartbeat"] or 0.0)
            mine = r["owner"] == self.token
            if mine and r["id"] in owned:
                continue
            if r["id"] in unrecorded:
                status, why = unrecorded[r["id"]]
            elif mine:
                status, why = FAILED, (f"failed at step {r['step']}: its worker in this process stopped without "
                                       "recording an outcome (see the log); re-run it")
            elif age > self.stale_after:
                why = f"no heartbeat for {age:.0f} s"
            elif r["owner_host"] == self.host and r["owner_pid"] is not None:
                if r["owner_pid"] == self.pid:
                    sibling = _MANAGERS.get(r["owner"] or "")
                    if sibling is None or not sibling._handles(r["id"]):
                        why = "its run manager in this process no longer runs it"
                elif not pid_alive(r["owner_pid"]):
                    why = f"its process (pid {r['owner_pid']}) ended"
            if why is None:
                continue
            if status == INTERRUPTED:
                why = f"interrupted at step {r['step']}: {why}; resume it from its last checkpoint or re-run it"
            ended.append((status, now, why, now, r["id"], r["owner"]))
        return ended

    @staticmethod
    def _forget_recorded(ended: list[EndedRun]) -> None:
        """After `store.end_runs` (or `store.beat`) committed: log each run and drop the outcomes now in the store."""
        with _UNRECORDED_LOCK:
            for e in ended:
                _UNRECORDED.pop(e[4], None)
        for e in ended:
            logger.warning("run %s %s: %s", e[4], e[0], e[2])

    @property
    def store_problem(self) -> str | None:
        """Why the store refuses this manager's writes now (e.g. `disk full: free space in <root> and rerun`), from
        memory: set when a run's write or a heartbeat fails that way, cleared by the next heartbeat that writes.
        None while writes succeed. Runs whose outcome could not be written show it from memory meanwhile
        (`get`, `list`, `wait`)."""
        return self._store_problem

    def _handles(self, run_id: str) -> bool:
        """Whether this manager still queues or runs `run_id` (its workers alive)."""
        with self._cond:
            return run_id in self._owned

    # ----------------------------------------------------------------------------------------------- submit
    def submit(self, config: RunConfig | dict[str, Any], name: str | None = None) -> str:
        """Queue one run; returns its id (status `queued`). Raises ConfigError for an invalid config."""
        cfg = load_run_config(config)
        if name is not None:
            cfg = dataclasses.replace(cfg, name=name)  # the caller's config object stays as it was
        return self._insert([cfg])[0]

    def submit_group(self, config: RunConfig | dict[str, Any], seeds: int | Sequence[int],
                     name: str | None = None) -> str:
        """Queue a paired comparison: the config with GIST off and on for every seed; returns the group id.

        Args:
            config: The base config (its `gist.enabled` is overridden per run).
            seeds: A number of seeds (from `train.seed` on, as `compare`) or an explicit list.
            name: The group's label (also the prefix of its runs' names).
        """
        base = load_run_config(config)
        if name is not None:
            base = dataclasses.replace(base, name=name)  # the caller's config object stays as it was
        if isinstance(seeds, int):
            if seeds < 1:
                raise ConfigError(f"seeds: need at least one seed, got {seeds}")
            seed_list = list(range(base.train.seed, base.train.seed + seeds))
        else:
            seed_list = [int(s) for s in seeds]
            if not seed_list or len(set(seed_list)) != len(seed_list) or min(seed_list) < 0:
                raise ConfigError(f"seeds: need distinct seeds >= 0, got {seed_list}")
        configs = [cfg for seed in seed_list for _, _, cfg in paired_configs(base, 1, first_seed=seed)]
        group_id = new_id("group")
        group = {"id": group_id, "name": base.name or f"{base.method} plain vs GIST", "created": time.time(),
                 "seeds": json.dumps(seed_list), "config": json.dumps(to_dict(base)),
                 "versions": json.dumps(self._package_versions())}
        self._insert(configs, group_id, group)
        return group_id

    def _insert(self, configs: list[RunConfig], group_id: str | None = None,
                group: dict[str, Any] | None = None) -> list[str]:
        """Insert queued runs (and their new group row) in one transaction, then queue them here."""
        now, versions = time.time(), json.dumps(self._package_versions())
        rows = []
        for cfg in configs:
            arm = "gist" if cfg.gist.enabled else "plain"
            name = cfg.name or f"{cfg.method}-{arm}-seed{cfg.train.seed}"
            try:
                check_name(name, "run name")
                if group is not None:
                    check_name(group["name"], "group name")
            except ValueError as exc:  # a newline or an ANSI escape in a name would rewrite the terminal
                raise ConfigError(str(exc)) from None
            rows.append({"id": new_id("run"), "name": name, "created": now, "status": QUEUED, "heartbeat": now,
                         "config": json.dumps(to_dict(cfg)), "seed": cfg.train.seed,
                         "gist_enabled": int(cfg.gist.enabled), "method": cfg.method, "group_id": group_id,
                         "versions": versions, "device": _device_key(cfg.train.device), "owner": self.token,
                         "owner_pid": self.pid, "owner_host": self.host})
        with self._cond:
            self._owned.update(r["id"] for r in rows)
        try:
            self.store.insert_runs(rows, group)
        except BaseException:
            with self._cond:
                self._owned.difference_update(r["id"] for r in rows)
            raise
        with self._cond:
            for r in rows:
                self._queue.append(r["id"])
                self._device[r["id"]] = r["device"]
            self._cond.notify_all()
        self._ensure_heartbeat()
        return [r["id"] for r in rows]

    def _package_versions(self) -> dict[str, str]:
        if self._versions is None:
            self._versions = package_versions()
        return self._versions

    # ---------------------------------------------------------------------------------------------- control
    def stop(self, run_id: str) -> None:
        """Stop a run: a queued one becomes `stopped` at once, a running one within one step.

        A run owned by another process is flagged; that process stops it at its next heartbeat.
        """
        row = self._row(run_id, "status, owner")
        with self._cond:
            dequeued = self._unqueue(run_id)
            if not dequeued and run_id in self._running:
                self._stops.setdefault(run_id, STOPPED)
                return
        if dequeued or (row["status"] == QUEUED and row["owner"] == self.token):
            self.store.stop_queued(run_id, time.time())
        elif row["status"] in ACTIVE:
            self.store.request_stop(run_id)

    def _refuse_example(self, run_id: str, action: str) -> None:
        """RunError when the run is a read-only gallery example."""
        row = self._row(run_id, "name, owner")
        if (row["owner"] or "").startswith(EXAMPLE_OWNER):
            entry = row["owner"].removeprefix(EXAMPLE_OWNER)
            raise RunError(f"cannot {action} {run_id} ({row['name']}): it is a read-only gallery example; "
                           f"remove the whole example with `python -m gist_engine runs gallery remove {entry}` or "
                           "on the Gallery page")

    def delete(self, run_id: str, timeout: float = 60.0, *, examples: bool = False) -> None:
        """Remove a run: stop it first if it runs here, then delete its rows and its directory.

        A gallery example is refused (RunError) unless `examples` (as `gallery.remove_example` does).
        """
        if not examples:
            self._refuse_example(run_id, "delete")
        row = self._row(run_id, "status, owner, owner_pid")
        with self._cond:
            self._unqueue(run_id)
            if run_id in self._running:
                self._stops[run_id] = "deleted"
                deadline = time.monotonic() + timeout
                while run_id in self._running and time.monotonic() < deadline:
                    self._cond.wait(0.1)
                if run_id in self._running:
                    raise RunError(f"run {run_id} did not stop within {timeout:g} s; try again")
            elif row["status"] == RUNNING and row["owner"] != self.token:
                raise RunError(f"run {run_id} is running in another process (pid {row['owner_pid']}); stop it first")
        self.store.delete_run(run_id)
        if is_id(run_id, "run"):  # a row of another id has no folder of its own: nothing else is removed
            try:
                remove_tree(self.run_dir(run_id), self.root / RUNS_DIR)
            except (OSError, ValueError) as exc:
                logger.warning("run %s: its folder was not removed (%s)", run_id, exc)

    def delete_group(self, group_id: str) -> None:
        """Delete a group and all its runs."""
        self._group_row(group_id)
        for snap in self.list(group_id=group_id):
            self.delete(snap.id)
        self.store.delete_group(group_id)

    def resume(self, run_id: str) -> str:
        """Queue an interrupted (or stopped/failed) run again under the same id, from its last training state.

        It continues after the last `train.checkpoint_every` epoch boundary written (`resume.safetensors`); the
        metrics after that step are recorded again. Without a training state it restarts from step 0.
        """
        self._refuse_example(run_id, "resume")
        row = self._row(run_id, "status, device")
        if row["status"] not in RESUMABLE:
            raise RunError(f"run {run_id} is {row['status']}; only {', '.join(RESUMABLE)} runs can be resumed")
        with self._cond:
            self._owned.add(run_id)  # before the row says so: our own liveness check must not take it for dead
        # conditional: two concurrent resumes queue it once
        claimed = self.store.requeue(run_id, self.token, self.pid, self.host, time.time(), RESUMABLE)
        if not claimed:
            with self._cond:
                self._owned.discard(run_id)
            raise RunError(f"run {run_id} changed state meanwhile (now {self.get(run_id).status}); not resumed")
        with self._cond:
            self._queue.append(run_id)
            self._device[run_id] = row["device"] or "cpu"
            self._cond.notify_all()
        self._ensure_heartbeat()
        return run_id

    def rerun(self, run_id: str) -> str:
        """Queue a new run with the same config, name and group; returns the new id (refused for an example)."""
        self._refuse_example(run_id, "re-run")
        row = self._row(run_id, "config, name, group_id")
        cfg = load_run_config(json.loads(row["config"]))
        cfg.name = row["name"]
        return self._insert([cfg], row["group_id"])[0]

    def wait(self, run_id: str, timeout: float | None = None, poll: float = 0.05) -> RunSnapshot:
        """Block until a run is neither queued nor running (or `timeout` s pass); returns its snapshot."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            snap = self.get(run_id)
            if snap.status not in ACTIVE or (deadline is not None and time.monotonic() >= deadline):
                return snap
            with self._cond:
                self._cond.wait(poll)

    # ------------------------------------------------------------------------------------------------ reads
    def run_dir(self, run_id: str) -> Path:
        """The run's directory `root/runs/<run_id>` (checkpoint, training state, result.json, attention snapshots).

        Raises:
            InvalidId: (a RunNotFound) `run_id` is not in the run-id format (`ids.check_id`): no path is built.
        """
        return self.root / RUNS_DIR / check_id(run_id, "run")

    def get(self, run_id: str) -> RunSnapshot:
        """The run's current state; RunNotFound for an unknown id."""
        return self._snapshot(self._row(run_id, "*"))

    def list(self, status: str | None = None, group_id: str | None = None,
             limit: int | None = None) -> list[RunSnapshot]:
        """Runs, newest first, optionally of one status and/or group."""
        if status is not None and status not in STATUSES:
            raise ValueError(f"status: {status!r} is not one of {', '.join(STATUSES)}")
        with _UNRECORDED_LOCK:
            unrecorded = list(_UNRECORDED) if status is not None else []  # their status shows from memory
        rows = self.store.list_runs(status, group_id, limit, also=unrecorded)
        snaps = [self._snapshot(r) for r in rows]
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

    def groups(self) -> list[dict[str, Any]]:
        """Every group, newest first: id, name, created, seeds, config, runs (their ids)."""
        return self.store.groups()

    def group_results(self, group_id: str) -> dict[str, Any]:
        """A group's verdict, from the store: `pairs.paired_result` of its runs (data only; `pairs.format_table`
        prints it, the app draws it).

        Returns:
            `PairedResult.to_dict()` (seeds, delta_acc_cls, delta_best_acc_cls, extra_params, unpaired, replaced,
            arms: the numbers the CLI `compare` prints) plus `paired` (the `PairedResult`), `runs` (snapshots,
            newest first) and `group` (id, name, created, seeds, config). Per seed and arm the newest run counts
            (a re-run replaces the original); unfinished runs show their status and stay out of the statistics.
        """
        group = self._group_row(group_id)
        snaps = self.list(group_id=group_id)
        paired = paired_result(reversed(snaps))  # oldest first, so the newest wins
        return {**paired.to_dict(), "paired": paired, "runs": snaps,
                "group": {"id": group["id"], "name": group["name"], "created": group["created"],
                          "seeds": json.loads(group["seeds"]), "config": json.loads(group["config"])}}

    # ----------------------------------------------------------------------------------------------- export
    def export(self, run_or_group_id: str, to: str = "csv", path: str | Path | None = None) -> Path | str:
        """Export a run or a group as one CSV/Parquet file (plus a JSON sidecar), or to MLflow.

        See `export.export_runs`: `path` defaults to the folder `root/exports/` (for mlflow: `MLFLOW_TRACKING_URI`
        when set, else `root/exports/mlruns`). Returns the data file written or the MLflow run id.
        """
        return export_runs(self, run_or_group_id, self.root / EXPORTS_DIR, to=to, path=path)

    # --------------------------------------------------------------------------------------------- internals
    def _row(self, run_id: str, columns: str) -> sqlite3.Row:
        return self.store.run_row(run_id, columns)

    def _group_row(self, group_id: str) -> sqlite3.Row:
        return self.store.group_row(group_id)

    def is_group(self, some_id: str) -> bool:
        """Whether `some_id` names a group (else it may be a run id)."""
        return self.store.is_group(some_id)

    def _snapshot(self, r: sqlite3.Row) -> RunSnapshot:
        status, step, total, error = r["status"], r["step"], r["total_steps"], r["error"]
        if status in ACTIVE:  # an outcome a worker could not write (disk full) shows from memory until written
            with _UNRECORDED_LOCK:
                status, error = _UNRECORDED.get(r["id"], (status, error))
        progress = 1.0 if status == COMPLETED else (min(1.0, step / total) if total else 0.0)
        rate = r["steps_per_second"]
        eta = (total - step) / rate if status == RUNNING and rate and total > step else None
        # A row whose id is no run id (written by an older importer from a hostile bundle) lists with a folder that
        # never exists inside the data directory, so that it can be seen and removed; no path is built from it.
        run_dir = self.run_dir(r["id"]) if is_id(r["id"], "run") else self.root / RUNS_DIR / INVALID_DIR
        latest = _loads(r["latest"], {})
        phase = latest.pop("phase", None)  # the recorder keeps the trainer's phase beside the step metrics
        example = (r["owner"] or "").startswith(EXAMPLE_OWNER)
        return RunSnapshot(
            id=r["id"], name=r["name"], status=status, created=r["created"], started=r["started"],
            finished=r["finished"], heartbeat=r["heartbeat"], step=step, total_steps=total, progress=progress,
            eta_seconds=eta, epoch=r["epoch"], latest=latest, last_eval=_loads(r["last_eval"]),
            best_acc_cls=r["best_acc_cls"], acc_cls=r["acc_cls"], error=error, config=json.loads(r["config"]),
            seed=r["seed"], gist_enabled=bool(r["gist_enabled"]), method=r["method"], group_id=r["group_id"],
            trainable_params=r["trainable_params"], gist_params=r["gist_params"], run_dir=run_dir,
            versions=_loads(r["versions"], {}), acc_gist=r["acc_gist"], agreement=r["agreement"],
            total_params=r["total_params"], device=r["device"], owner_pid=r["owner_pid"], resumed=r["resumed"],
            has_checkpoint=(run_dir / CHECKPOINT_NAME).exists(), can_resume=status in RESUMABLE and not example,
            phase=phase, example=example)

    def _heartbeat(self) -> None:
        """Every `heartbeat_every` s, one write transaction: beat for this manager's active runs, pick up stop
        requests from other processes, and end dead runs (`_ended`: a dead owner pid is a cheap `kill(pid, 0)`, so
        another process's crash shows within a beat or two), writing any outcome a worker could not write."""
        last_problem = None
        while not self._halt.wait(self.heartbeat_every):
            try:
                rows, ended = self.store.beat(self.token, self._ended)
                flagged = [r["id"] for r in rows if r["owner"] == self.token and r["stop_requested"]]
                if ended:
                    self._forget_recorded(ended)
                for run_id in flagged:
                    self.stop(run_id)
            except (sqlite3.Error, RunError) as exc:  # a busy or closed store, a full disk: try again next beat
                level = logging.DEBUG if str(exc) == last_problem else logging.WARNING  # once, not every beat
                last_problem = str(exc)
                logger.log(level, "run heartbeat skipped (%s); trying again every %g s", exc, self.heartbeat_every)
                if is_disk_full(exc) or isinstance(exc, RunError):  # the user's to fix (a busy store is not)
                    self._store_problem = disk_full_message(self.root) if is_disk_full(exc) else str(exc)
                continue
            last_problem = self._store_problem = None

    def _next(self) -> str | None:
        """The first queued run whose device has a free slot (call with the condition held)."""
        for run_id in self._queue:
            if self._busy.get(self._device[run_id], 0) < self.workers_per_device:
                self._queue.remove(run_id)
                return run_id
        return None

    def _unqueue(self, run_id: str) -> bool:
        """Take a queued run out of this manager's queue (hold `_cond`); False when it was not queued here."""
        if run_id not in self._queue:
            return False
        self._queue.remove(run_id)
        self._device.pop(run_id, None)
        self._owned.discard(run_id)
        return True

    def _worker(self) -> None:
        while True:
            with self._cond:
                run_id = None
                while run_id is None:
                    if self._closing:
                        return
                    run_id = self._next()
                    if run_id is None:
                        self._cond.wait()
                device = self._device[run_id]
                self._busy[device] = self._busy.get(device, 0) + 1
                self._running.add(run_id)
            try:
                self._execute(run_id)
            except Exception:  # the store itself failed; the worker must live on
                logger.exception("run worker: recording run %s failed", run_id)
            finally:
                with self._cond:
                    self._busy[device] -= 1
                    self._running.discard(run_id)
                    self._owned.discard(run_id)
                    self._device.pop(run_id, None)
                    self._stops.pop(run_id, None)
                    self._cond.notify_all()

    def _execute(self, run_id: str) -> None:
        """Train one run and record its outcome; every exception becomes a `failed` status, and an outcome that
        cannot be written (disk full) is kept for the heartbeat to write, so the run never stays `running`."""
        try:
            self._train_and_record(run_id)
        except Exception as exc:  # the store refused a write: claim, metrics or the final status
            error = disk_full_message(self.root) if is_disk_full(exc) else (
                f"failed: its outcome could not be recorded ({type(exc).__name__}: {exc}); re-run it")
            if is_disk_full(exc):
                self._store_problem = error
            with _UNRECORDED_LOCK:
                _UNRECORDED.setdefault(run_id, (FAILED, error))
            logger.error("run %s: %s (recorded in the store once it takes writes again)", run_id, error)

    def _train_and_record(self, run_id: str) -> None:
        config = self.store.claim(run_id, self.token, self.pid, self.host, time.time())
        if config is None:  # no longer queued: stopped or deleted meanwhile
            return
        logger.debug("run %s: started by worker %s", run_id, threading.current_thread().name)
        run_dir = self.run_dir(run_id)
        writer = StoreWriter(self.store, run_id, self.flush_every, self.flush_seconds)
        status, error, result = FAILED, None, None
        try:
            cfg = load_run_config(config)
            extra = self.callbacks(cfg, run_dir) if self.callbacks else []
            resume = run_dir / RESUME_NAME
            trainer = Trainer(cfg, callbacks=[writer, *extra], should_stop=lambda: run_id in self._stops,
                              run_dir=run_dir, resume_from=resume if resume.exists() else None)
            trainer.data = self._load_data(trainer)
            trainer.setup()  # sets torch's threads for the device (speed.configure_device, train.cpu_threads)
            if self._thread_cap and torch.get_num_threads() > self._thread_cap:
                torch.set_num_threads(self._thread_cap)  # the manager's cap is a ceiling: the server stays responsive
            run_dir.mkdir(parents=True, exist_ok=True)
            result = trainer.run()
            status, error = result.status, result.error
            if status in (COMPLETED, DIVERGED):  # nothing left to resume: free the optimizer state's disk space
                (run_dir / RESUME_NAME).unlink(missing_ok=True)
            write_text_atomic(run_dir / RESULT_NAME, json.dumps(result.to_dict(), default=str))
        except USER_ERRORS as exc:  # a bad config, dataset or checkpoint: the message says it all
            status, error = FAILED, _error_text(exc)
            logger.error("run %s failed: %s", run_id, exc)
        except Exception as exc:
            if is_disk_full(exc):  # a metric write or a checkpoint found no space: the message says so
                status, error = FAILED, disk_full_message(self.root)
                logger.error("run %s failed: %s", run_id, error)
            else:
                status, error = FAILED, _error_text(exc)
                logger.exception("run %s failed", run_id)
        finally:
            with contextlib.suppress(Exception):
                writer.flush()
        reason = self._stops.get(run_id)
        if status == STOPPED and reason == INTERRUPTED:
            status, error = INTERRUPTED, "interrupted: the run manager shut down; resume it from its last checkpoint"
        try:
            self.store.finish(run_id, status, error, time.time())
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            with _UNRECORDED_LOCK:  # a completed run whose end cannot be written is not complete in the store
                _UNRECORDED[run_id] = (FAILED, error if status == FAILED and error else disk_full_message(self.root))
            raise
        if result is not None and status == FAILED:  # the trainer's own failures: out of memory, an unreadable image
            logger.error("run %s failed: %s", run_id, error)
        elif status == DIVERGED:
            logger.warning("run %s diverged: %s", run_id, error)
        else:
            logger.info("run %s: %s", run_id, status)

    def _load_data(self, trainer: Trainer) -> Any:
        """The run's dataset: `data_loader(config)`, or the cached last load when it matches."""
        cfg = trainer.config
        if self.data_loader is not None:
            return self.data_loader(cfg)
        probe = cfg.train.probe_size if cfg.train.probe_every else 0  # the accuracy probe's held-out images
        key = json.dumps([to_dict(cfg.data), cfg.backbone, cfg.image_size, str(trainer.device), probe], sort_keys=True)
        with self._data_lock:
            if self._data_cache is not None and self._data_cache[0] == key:
                return self._data_cache[1]
            self._data_cache = None  # free the previous dataset before loading the next
            data = load_run_data(cfg, trainer.device)
            self._data_cache = (key, data)
            return data


__all__ = ["ACTIVE", "EXAMPLE_OWNER", "RESUMABLE", "STATUSES", "STEP_KEYS", "RunManager"]
