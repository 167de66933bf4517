"""The local worker pool: a queue, device slots, worker threads, the heartbeat and the recovery of dead runs.

Each worker takes the first queued run whose device has a free slot, claims it in the store and trains it through
`execute.execute_run` (the one execution path, which a Ray task uses too) with a `StoreWriter`, then records its
final status. The heartbeat (one write transaction every `heartbeat_every` s) keeps this pool's runs alive in the
store, forwards stop requests from other processes, and ends the runs whose owner is gone. An outcome a worker could
not write (disk full) is kept in memory (`records.unrecorded`) and written by the next heartbeat that can.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError, RunConfig, to_dict
from ..speed import usable_cpus
from ..status import ACTIVE, RunStatus
from ..train import DIVERGED, FAILED, STOPPED, Callback
from . import execute
from .ids import check_name, new_id
from .recorder import StoreWriter
from .records import forget_unrecorded, keep_unrecorded, pid_alive, unrecorded
from .store import EndedRun, RunError, RunStore, disk_full_message, is_disk_full

logger = logging.getLogger(__name__)

QUEUED, RUNNING, INTERRUPTED = RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.INTERRUPTED

# The pools alive in this process (token -> pool), so that a new pool can tell a run of a live sibling from one whose
# pool is gone. The outcomes a worker could not write are kept in `records` (`keep_unrecorded`), where a snapshot
# reads them.
_POOLS: weakref.WeakValueDictionary[str, WorkerPool] = weakref.WeakValueDictionary()


def device_key(device: str) -> str:
    """The device a run will occupy (auto -> cuda when present), without failing for a missing GPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


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
            "device": device_key(cfg.train.device), "owner": owner[0], "owner_pid": owner[1],
            "owner_host": owner[2]}



class WorkerPool:
    """Queues runs and trains them on worker threads, `workers_per_device` at once per device (cpu, cuda).

    Args: as `RunManager`'s of the same names; `run_dir(run_id)` gives a run's folder. Thread-safe: `cond` guards
    the queue, the slots and the owned set.
    """

    def __init__(self, root: Path, store: RunStore, run_dir: Callable[[str], Path], *, workers_per_device: int,
                 torch_threads: int | None, stale_after: float, heartbeat_every: float, flush_every: int,
                 flush_seconds: float, data_loader: Callable[[RunConfig], Any] | None,
                 callbacks: Callable[[RunConfig, Path], list[Callback]] | None) -> None:
        self.root, self.store, self.run_dir = root, store, run_dir
        self.workers_per_device, self.torch_threads = workers_per_device, torch_threads
        self.stale_after, self.heartbeat_every = stale_after, heartbeat_every
        self.flush_every, self.flush_seconds = flush_every, flush_seconds
        self.data_loader, self.callbacks = data_loader, callbacks
        self.token, self.pid, self.host = secrets.token_hex(8), os.getpid(), socket.gethostname()
        self.cond = threading.Condition()
        self.queue: deque[str] = deque()  # run ids in submission order
        self.owned: set[str] = set()  # runs this pool queued or runs now (added before their row is written)
        self.running: set[str] = set()
        self.stops: dict[str, str] = {}  # run id -> why it must stop (stopped, interrupted, deleted)
        self._device: dict[str, str] = {}  # run id -> device key, for queued and running runs
        self._busy: dict[str, int] = {}  # device key -> runs executing
        self._threads: list[threading.Thread] = []  # workers, then the heartbeat
        self._heartbeat_thread: threading.Thread | None = None
        self._thread_cap = 0  # set by start(); a ceiling re-applied after each run's setup
        self._halt = threading.Event()
        self._closing = False
        self._data = execute.DataCache()  # the last dataset, reused by the next run with the same data
        self.store_problem: str | None = None  # why the store refuses this pool's writes (disk full), if it does
        _POOLS[self.token] = self

    # ------------------------------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Cap torch's threads and start the worker threads and the heartbeat (idempotent)."""
        with self.cond:
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
        self.ensure_heartbeat()

    def ensure_heartbeat(self) -> None:
        """Start the heartbeat thread once this pool owns runs (or runs workers), so others see it alive."""
        with self.cond:
            if self._heartbeat_thread is None and not self._closing:
                self._heartbeat_thread = threading.Thread(target=self._heartbeat, name="gist-run-heartbeat",
                                                          daemon=True)
                self._threads.append(self._heartbeat_thread)
                self._heartbeat_thread.start()

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Running runs end `interrupted` (resumable) within a step, queued ones become `interrupted` at once; then
        (`wait`) join the threads for at most `timeout` s and close the store once none is left."""
        with self.cond:
            if self._closing:
                return
            self._closing = True
            queued = list(self.queue)
            self.queue.clear()
            self.owned.difference_update(queued)
            for run_id in self.running:
                self.stops.setdefault(run_id, INTERRUPTED)
            self.cond.notify_all()
        if queued:
            self.store.interrupt_queued(queued, "interrupted: the run manager shut down before it started", time.time())
        self._halt.set()
        if wait:
            deadline = None if timeout is None else time.monotonic() + timeout
            for t in self._threads:
                t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if not any(t.is_alive() for t in self._threads):
            self.store.close()

    # ------------------------------------------------------------------------------------------------ queue
    def own(self, run_ids: Iterable[str]) -> None:
        """Mark runs as this pool's before their rows say so (our own liveness check must not take them for dead)."""
        with self.cond:
            self.owned.update(run_ids)

    def disown(self, run_ids: Iterable[str]) -> None:
        """Undo `own` (the insert or requeue failed)."""
        with self.cond:
            self.owned.difference_update(run_ids)

    def enqueue(self, runs: Sequence[tuple[str, str]]) -> None:
        """Queue owned runs, (run id, device key) each, in order, and start the heartbeat."""
        with self.cond:
            for run_id, device in runs:
                self.queue.append(run_id)
                self._device[run_id] = device
            self.cond.notify_all()
        self.ensure_heartbeat()

    def unqueue(self, run_id: str) -> bool:
        """Take a queued run out of this pool's queue; False when it was not queued here."""
        with self.cond:
            if run_id not in self.queue:
                return False
            self.queue.remove(run_id)
            self._device.pop(run_id, None)
            self.owned.discard(run_id)
            return True

    def handles(self, run_id: str) -> bool:
        """Whether this pool still queues or runs `run_id` (its workers alive)."""
        with self.cond:
            return run_id in self.owned

    def stop(self, run_id: str) -> None:
        """Stop a run: a queued one becomes `stopped` at once, a running one here within one step; a run owned by
        another process is flagged, and that process stops it at its next heartbeat."""
        row = self.store.run_row(run_id, "status, owner")
        with self.cond:  # an RLock: unqueue takes it again
            dequeued = self.unqueue(run_id)
            if not dequeued and run_id in self.running:
                self.stops.setdefault(run_id, STOPPED)
                return
        if dequeued or (row["status"] == QUEUED and row["owner"] == self.token):
            self.store.stop_queued(run_id, time.time())
        elif row["status"] in ACTIVE:
            self.store.request_stop(run_id)

    def stop_here(self, run_id: str, why: str, timeout: float) -> bool:
        """Take `run_id` out of the queue, or stop it for `why` (e.g. deleted) and wait until its worker let it go;
        False when it runs here still after `timeout` s. True at once for a run this pool does not handle."""
        with self.cond:
            self.unqueue(run_id)
            if run_id not in self.running:
                return True
            self.stops[run_id] = why
            deadline = time.monotonic() + timeout
            while run_id in self.running and time.monotonic() < deadline:
                self.cond.wait(0.1)
            return run_id not in self.running

    def pause(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking when a run of this pool ends (`RunManager.wait`'s poll)."""
        with self.cond:
            self.cond.wait(seconds)

    # --------------------------------------------------------------------------------------------- recovery
    def recover(self) -> list[str]:
        """Mark runs left `queued`/`running` by a dead owner as ended; returns their ids (see `RunManager.recover`)."""
        ended = self.ended(self.store.active_runs(), time.time())
        if ended:
            self.store.end_runs(ended)
            self._forget_recorded(ended)
        return [e[4] for e in ended]

    def ended(self, rows: Sequence[sqlite3.Row], now: float) -> list[EndedRun]:
        """The dead runs among active `rows`: (status, finished, error, heartbeat, id, owner) update tuples."""
        with self.cond:
            owned = set(self.owned)
        outcomes = unrecorded()
        ended = []
        for r in rows:
            status, why = INTERRUPTED, None
            age = now - (r["heartbeat"] or 0.0)
            mine = r["owner"] == self.token
            if mine and r["id"] in owned:
                continue
            if r["id"] in outcomes:
                status, why = outcomes[r["id"]]
            elif mine:
                status, why = FAILED, (f"failed at step {r['step']}: its worker in this process stopped without "
                                       "recording an outcome (see the log); re-run it")
            elif age > self.stale_after:
                why = f"no heartbeat for {age:.0f} s"
            elif r["owner_host"] == self.host and r["owner_pid"] is not None:
                if r["owner_pid"] == self.pid:
                    sibling = _POOLS.get(r["owner"] or "")
                    if sibling is None or not sibling.handles(r["id"]):
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
        forget_unrecorded(e[4] for e in ended)
        for e in ended:
            logger.warning("run %s %s: %s", e[4], e[0], e[2])

    def _heartbeat(self) -> None:
        """Every `heartbeat_every` s, one write transaction: beat for this pool's active runs, pick up stop requests
        from other processes, and end dead runs (`ended`: a dead owner pid is a cheap `kill(pid, 0)`, so another
        process's crash shows within a beat or two), writing any outcome a worker could not write."""
        last_problem = None
        while not self._halt.wait(self.heartbeat_every):
            try:
                rows, ended = self.store.beat(self.token, self.ended)
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
                    self.store_problem = disk_full_message(self.root) if is_disk_full(exc) else str(exc)
                continue
            last_problem = self.store_problem = None

    # ---------------------------------------------------------------------------------------------- workers
    def _next(self) -> str | None:
        """The first queued run whose device has a free slot (call with the condition held)."""
        for run_id in self.queue:
            if self._busy.get(self._device[run_id], 0) < self.workers_per_device:
                self.queue.remove(run_id)
                return run_id
        return None

    def _worker(self) -> None:
        while True:
            with self.cond:
                run_id = None
                while run_id is None:
                    if self._closing:
                        return
                    run_id = self._next()
                    if run_id is None:
                        self.cond.wait()
                device = self._device[run_id]
                self._busy[device] = self._busy.get(device, 0) + 1
                self.running.add(run_id)
            try:
                self._execute(run_id)
            except Exception:  # the store itself failed; the worker must live on
                logger.exception("run worker: recording run %s failed", run_id)
            finally:
                with self.cond:
                    self._busy[device] -= 1
                    self.running.discard(run_id)
                    self.owned.discard(run_id)
                    self._device.pop(run_id, None)
                    self.stops.pop(run_id, None)
                    self.cond.notify_all()

    def _execute(self, run_id: str) -> None:
        """Train one run and record its outcome; every exception becomes a `failed` status, and an outcome that
        cannot be written (disk full) is kept for the heartbeat to write, so the run never stays `running`."""
        try:
            self._train_and_record(run_id)
        except Exception as exc:  # the store refused a write: claim, metrics or the final status
            error = disk_full_message(self.root) if is_disk_full(exc) else (
                f"failed: its outcome could not be recorded ({type(exc).__name__}: {exc}); re-run it")
            if is_disk_full(exc):
                self.store_problem = error
            keep_unrecorded(run_id, FAILED, error, replace=False)
            logger.error("run %s: %s (recorded in the store once it takes writes again)", run_id, error)

    def _train_and_record(self, run_id: str) -> None:
        """Claim the run, train it through `execute.execute_run` with a `StoreWriter`, record its final status."""
        config = self.store.claim(run_id, self.token, self.pid, self.host, time.time())
        if config is None:  # no longer queued: stopped or deleted meanwhile
            return
        logger.debug("run %s: started by worker %s", run_id, threading.current_thread().name)
        writer = StoreWriter(self.store, run_id, self.flush_every, self.flush_seconds)
        try:
            outcome = execute.execute_run(config, self.run_dir(run_id), callbacks=[writer],
                                          extra_callbacks=self.callbacks, stop_reason=lambda: self.stops.get(run_id),
                                          load_data=self._data, data_loader=self.data_loader,
                                          thread_cap=self._thread_cap, root=self.root)
        finally:
            with contextlib.suppress(Exception):
                writer.flush()
        status, error = outcome.status, outcome.error
        try:
            self.store.finish(run_id, status, error, time.time(), note=outcome.note)
        except Exception as exc:
            if not is_disk_full(exc):
                raise
            # a completed run whose end cannot be written is not complete in the store
            keep_unrecorded(run_id, FAILED, error if status == FAILED and error else disk_full_message(self.root))
            raise
        if outcome.result is not None and status == FAILED:  # the trainer's own failures: out of memory, ...
            logger.error("run %s failed: %s", run_id, error)
        elif status == DIVERGED:
            logger.warning("run %s diverged: %s", run_id, error)
        else:
            logger.info("run %s: %s", run_id, status)


__all__ = ["ACTIVE", "WorkerPool", "device_key", "new_run_row", "pid_alive", "unrecorded"]
