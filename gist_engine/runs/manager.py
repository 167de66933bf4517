"""The RunManager: the one object the app, the CLI and the studies use to submit, watch, stop and resume runs.

A facade: a `RunReader` (every read: runs, metrics, groups, the verdict, exports; no torch) plus the write and
execution side: the worker pool (`workers.WorkerPool`: queue, device slots, threads, heartbeat, recovery) trains runs
through the one execution path (`execute.execute_run`), the store (`store.RunStore`) owns every query, `pairs` the
verdict and `export` the files. Every public method is thread-safe. Writes go through the store's one writer
connection; reads use pooled connections of their own, so polling never waits for training. Torch's intra-op thread
pool is process-wide: a manager that starts its workers caps it (`torch.set_num_threads`, default: the usable CPUs)
and each run picks its count below that cap.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..config import ConfigError, RunConfig, load_run_config, to_dict
from ..files import RESULT_NAME
from ..status import RunStatus
from ..train import Callback, package_versions
from . import workers
from .compare import paired_configs, seed_list
from .ids import check_name, is_id, new_id, remove_tree
from .reader import EXPORTS_DIR, RunReader
from .records import ACTIVE, EXAMPLE_OWNER, RESUMABLE, RUNS_DIR, STATUSES, STEP_KEYS, pid_alive
from .store import RunError, RunSnapshot

logger = logging.getLogger(__name__)


class RunManager(RunReader):
    """Queues runs, trains them on background worker threads and keeps everything in a `RunStore`; reads as its
    `RunReader` base (get, list, metrics, evaluations, groups, group_results, export).

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
        super().__init__(root)
        self.pool = workers.WorkerPool(
            self.root, self.store, self.run_dir, workers_per_device=workers_per_device, torch_threads=torch_threads,
            stale_after=stale_after, heartbeat_every=heartbeat_every, flush_every=flush_every,
            flush_seconds=flush_seconds, data_loader=data_loader, callbacks=callbacks)
        self.token, self.pid, self.host = self.pool.token, self.pool.pid, self.pool.host
        self._versions: dict[str, str] | None = None
        self.recover()
        if start:
            self.start()

    # ------------------------------------------------------------------------------------------ life cycle
    def start(self) -> None:
        """Cap torch's threads and start the worker threads and the heartbeat (idempotent)."""
        self.pool.start()

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> None:
        """Stop the workers: running runs end as `interrupted` (resumable), queued ones become `interrupted`.

        Args:
            wait: Wait for the worker threads to finish their current step and record the status.
            timeout: Longest wait in seconds (None = as long as it takes).
        """
        self.pool.shutdown(wait, timeout)

    def close(self) -> None:
        """As `shutdown()`: the workers stop first, then the store closes."""
        self.shutdown()

    def __enter__(self) -> RunManager:
        return self

    def recover(self) -> list[str]:
        """Mark runs left `queued`/`running` by a dead owner as ended; returns their ids.

        A run is dead when its heartbeat is older than `stale_after` seconds, its owner process on this host no
        longer exists, or its owner is a manager of this process that no longer handles it (its worker gave up, or
        the manager is gone). It becomes `interrupted` (resumable), or the outcome its worker could not write (e.g.
        `failed`, disk full). Called at start-up (one read; one write only when something is dead) and then at every
        heartbeat, inside the heartbeat's own transaction: no extra store traffic.
        """
        return self.pool.recover()

    @property
    def store_problem(self) -> str | None:
        """Why the store refuses this manager's writes now (e.g. `disk full: free space in <root> and rerun`), from
        memory: set when a run's write or a heartbeat fails that way, cleared by the next heartbeat that writes.
        None while writes succeed. Runs whose outcome could not be written show it from memory meanwhile
        (`get`, `list`, `wait`)."""
        return self.pool.store_problem

    # ----------------------------------------------------------------------------------------------- submit
    def submit(self, config: RunConfig | dict[str, Any], name: str | None = None) -> str:
        """Queue one run; returns its id (status `queued`). Raises ConfigError for an invalid config."""
        cfg = load_run_config(config)
        if name is not None:
            cfg = dataclasses.replace(cfg, name=name)  # the caller's config object stays as it was
        return self._insert([cfg])[0]

    def submit_group(self, config: RunConfig | dict[str, Any], seeds: int | Sequence[int],
                     name: str | None = None) -> str:
        """Queue a paired comparison: the config with GIST off and on for every seed; returns the group id (`g` + 10
        hex digits). The store keeps the group as a one-cell study of kind `group` (spec: this config over these
        seeds, paired), each run a `study_runs` row of its cell; `groups`, `group_results` and `delete_group` read
        and remove it as a group.

        Args:
            config: The base config (its `gist.enabled` is overridden per run).
            seeds: A number of seeds (from `train.seed` on, as `compare`) or an explicit list.
            name: The group's label (also the prefix of its runs' names).
        """
        base = load_run_config(config)
        if name is not None:
            base = dataclasses.replace(base, name=name)  # the caller's config object stays as it was
        chosen = seed_list(base.train.seed, seeds)
        configs = [cfg for seed in chosen for _, _, cfg in paired_configs(base, 1, first_seed=seed)]
        group_id = new_id("group")
        group = {"id": group_id, "name": base.name or f"{base.method} plain vs GIST", "created": time.time(),
                 "seeds": json.dumps(chosen), "config": json.dumps(to_dict(base)),
                 "versions": json.dumps(self._package_versions())}
        self._insert(configs, group_id, group)
        return group_id

    def _insert(self, configs: list[RunConfig], group_id: str | None = None,
                group: dict[str, Any] | None = None) -> list[str]:
        """Insert queued runs (and their new group row) in one transaction, then queue them here."""
        now, versions = time.time(), json.dumps(self._package_versions())
        if group is not None:
            try:
                check_name(group["name"], "group name")
            except ValueError as exc:  # a newline or an ANSI escape in a name would rewrite the terminal
                raise ConfigError(str(exc)) from None
        owner = (self.token, self.pid, self.host)
        rows = [workers.new_run_row(cfg, group_id, versions, owner, now) for cfg in configs]
        ids = [r["id"] for r in rows]
        self.pool.own(ids)  # before the rows say so: our own liveness check must not take them for dead
        try:
            self.store.insert_runs(rows, group)
        except BaseException:
            self.pool.disown(ids)
            raise
        self.pool.enqueue([(r["id"], r["device"]) for r in rows])
        return ids

    def _package_versions(self) -> dict[str, str]:
        if self._versions is None:
            self._versions = package_versions()
        return self._versions

    # ---------------------------------------------------------------------------------------------- control
    def stop(self, run_id: str) -> None:
        """Stop a run: a queued one becomes `stopped` at once, a running one within one step.

        A run owned by another process is flagged; that process stops it at its next heartbeat.
        """
        self.pool.stop(run_id)

    def stop_group(self, group_id: str) -> list[str]:
        """Stop every queued and running run of a group in one call; returns their ids (empty: none was active).

        The queued runs stop first, so that none of them starts when a running one ends; a running one stops
        within one step (`stop`). RunNotFound for an unknown group.
        """
        self.store.group_row(group_id)
        active = [s for s in self.list(group_id=group_id) if s.status in ACTIVE]
        for snap in sorted(active, key=lambda s: s.status == RunStatus.RUNNING):  # queued first
            self.stop(snap.id)
        return [s.id for s in active]

    def _refuse_example(self, run_id: str, action: str) -> None:
        """RunError when the run is a read-only gallery example."""
        row = self.store.run_row(run_id, "name, owner")
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
        row = self.store.run_row(run_id, "status, owner, owner_pid")
        if not self.pool.stop_here(run_id, "deleted", timeout):
            raise RunError(f"run {run_id} did not stop within {timeout:g} s; try again")
        if row["status"] == RunStatus.RUNNING and row["owner"] != self.token:
            raise RunError(f"run {run_id} is running in another process (pid {row['owner_pid']}); stop it first")
        self.store.delete_run(run_id)
        if is_id(run_id, "run"):  # a row of another id has no folder of its own: nothing else is removed
            try:
                remove_tree(self.run_dir(run_id), self.root / RUNS_DIR)
            except (OSError, ValueError) as exc:
                logger.warning("run %s: its folder was not removed (%s)", run_id, exc)

    def delete_group(self, group_id: str) -> None:
        """Delete a group and all its runs."""
        self.store.group_row(group_id)
        for snap in self.list(group_id=group_id):
            self.delete(snap.id)
        self.store.delete_group(group_id)

    def resume(self, run_id: str) -> str:
        """Queue an interrupted (or stopped/failed) run again under the same id, from its last training state.

        It continues after the last `train.checkpoint_every` epoch boundary written (`resume.safetensors`); the
        metrics after that step are recorded again. Without a training state it restarts from step 0.
        """
        self._refuse_example(run_id, "resume")
        row = self.store.run_row(run_id, "status, device")
        if row["status"] not in RESUMABLE:
            raise RunError(f"run {run_id} is {row['status']}; only {', '.join(RESUMABLE)} runs can be resumed")
        self.pool.own([run_id])  # before the row says so: our own liveness check must not take it for dead
        # conditional: two concurrent resumes queue it once
        if not self.store.requeue(run_id, self.token, self.pid, self.host, time.time(), RESUMABLE):
            self.pool.disown([run_id])
            raise RunError(f"run {run_id} changed state meanwhile (now {self.get(run_id).status}); not resumed")
        self.pool.enqueue([(run_id, row["device"] or "cpu")])
        return run_id

    def rerun(self, run_id: str) -> str:
        """Queue a new run with the same config, name and group; returns the new id (refused for an example)."""
        self._refuse_example(run_id, "re-run")
        row = self.store.run_row(run_id, "config, name, group_id")
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
            self.pool.pause(poll)


__all__ = ["ACTIVE", "EXAMPLE_OWNER", "EXPORTS_DIR", "RESULT_NAME", "RESUMABLE", "RUNS_DIR", "STATUSES", "STEP_KEYS",
           "RunManager", "pid_alive"]
