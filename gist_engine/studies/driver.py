"""The study driver: plans a study's runs, submits them to a backend, retries failures, records every attempt.

The driver process is the single writer of the run store. Re-running or resuming a study never runs a completed (or
diverged) run again: interrupted and stopped runs continue from their last training state, failed runs (and runs
whose worker died) are retried up to the spec's `retries`, and then the study goes on without them.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..runs import ACTIVE, RunManager, RunNotFound, RunReader, RunStore, is_id
from ..status import WITH_RESULT, RunStatus
from ..train import FAILED, STOPPED, package_versions
from .backends import BACKENDS
from .loop import DriverLoop, Progress
from .results import study_runs
from .spec import MAX_RUNS, PlannedRun, StudyError, StudySpec, load_study_spec
from .store import RETRYABLE, Root, StudyStore
from .tuned import TunedDriver

logger = logging.getLogger(__name__)

DONE = WITH_RESULT  # a result: never run again
CONTINUED = (RunStatus.INTERRUPTED, STOPPED)  # continued by the next driver session from the run's training state

Key = tuple[int, int, str]  # (cell index, seed, arm)


def _root_dir(root: Root) -> str | Path | None:
    if isinstance(root, RunReader):  # a RunManager too
        return root.root
    if isinstance(root, RunStore):
        return root.path.parent
    return root


def create_study(spec: StudySpec | str | Path | dict[str, Any], root: Root = None, backend: str = "local",
                 new: bool = False, max_runs: int | None = MAX_RUNS) -> str:
    """Store a study (validated first); returns its id. Without `new`, a stored study with exactly this spec is
    returned instead, so running a spec again continues it rather than starting over.

    Args:
        max_runs: The most runs the spec may plan (`load_study_spec`; counted before anything is built).

    Raises:
        StudyError (a ConfigError): a bad spec or backend, or a spec of more than `max_runs` runs, named.
    """
    if backend not in BACKENDS:
        raise StudyError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    spec = load_study_spec(spec, max_runs=max_runs)
    with StudyStore(root) as s:
        found = None if new else s.find(spec)
        if found is not None:
            logger.info("study %s has this spec already: continuing it", found)
            return found
        return s.create(spec, backend, package_versions())


def delete_study(study_id: str, root: Root = None, runs: bool = False) -> None:
    """Forget a study; with `runs`, delete its runs too (through a RunManager view of the store), and the paired
    groups of its cells that no run is left in."""
    with StudyStore(root) as s:
        run_ids = s.delete(study_id)
    if runs and run_ids:
        mgr = root if isinstance(root, RunManager) else RunManager(_root_dir(root), start=False)
        try:
            mine = set(run_ids)
            groups = {snap.group_id for snap in mgr.list() if snap.id in mine} - {None}
            for run_id in run_ids:
                with contextlib.suppress(RunNotFound):  # deleted already (on the Runs page)
                    mgr.delete(run_id)
            mgr.store.delete_empty_groups(groups)
        finally:
            if mgr is not root:
                mgr.shutdown()


def _is_study_id(value: Any, root: Root) -> bool:
    if not (is_id(value, "study") or is_id(value, "group")) or Path(value).exists():  # never a spec file's name
        return False
    with StudyStore(root) as s:
        try:
            s.get(value)
        except StudyError:
            return False
    return True


def run_study(spec_or_id: StudySpec | str | Path | dict[str, Any], root: Root = None, backend: str = "local", *,
              new: bool = False, progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
              poll_seconds: float = 0.5, max_runs: int | None = MAX_RUNS, **options: Any) -> str:
    """Run a study to its end in this process (blocking); returns its id.

    Args:
        spec_or_id: A spec (file, mapping, StudySpec) or a stored study's id (resumed).
        root: The run store's data directory, a RunStore, or a RunManager (the local backend then shares its
            workers).
        backend: A name in BACKENDS: "local" or "ray".
        new: Start a new study even when one with the same spec is stored.
        progress: Called with (settled runs, planned runs) whenever that changes.
        should_stop: Polled between events; True stops the study's runs (resumable) and returns.
        poll_seconds: Longest wait for the backend between checks.
        max_runs: The most runs a new spec may plan (a stored study was counted when it was created).
        options: Backend options: local: workers, data_loader, callbacks, torch_threads; ray: address,
            cpus_per_trial, gpus_per_trial, ship_code, flush_seconds, callbacks, data_loader, init_kwargs.

    Raises:
        StudyError: bad spec, unknown id or backend, a read-only gallery example, a paired group's id (no driver
            runs a group), or runs of the study still active in another process.
    """
    if backend not in BACKENDS:
        raise StudyError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    study_id = (spec_or_id if _is_study_id(spec_or_id, root)
                else create_study(spec_or_id, root, backend, new=new, max_runs=max_runs))
    with StudyStore(root) as s:
        s.refuse_example(study_id, "run")
        s.refuse_group(study_id, "run")
        spec = s.spec(study_id)  # as it was planned (and counted) when it was created
        if isinstance(root, RunManager):
            options.setdefault("manager", root)
        be = BACKENDS[backend](_root_dir(root), **options)
        try:
            driver = TunedDriver if spec.tune is not None else _Driver  # a `tune:` block: trials, then finals
            driver(s, study_id, spec, be, progress, should_stop, poll_seconds).run()
        finally:
            be.close()
    return study_id


def resume_study(study_id: str, root: Root = None, backend: str | None = None, **kwargs: Any) -> str:
    """Continue a stored study (on its last backend unless another is given); see `run_study`.

    Raises:
        StudyError: An unknown id, or a read-only gallery example.
    """
    with StudyStore(root) as s:
        info = s.get(study_id)
        s.refuse_example(study_id, "resume")
    return run_study(study_id, root, backend or info.backend, **kwargs)


def stop_study_cell(study_id: str, cell: int, manager: RunManager) -> list[str]:
    """Stop every queued and running run of one cell of a study in one call; returns their ids (none: empty).

    The queued runs stop first, so that none of them starts when a running one ends (`RunManager.stop`). A plain
    run shared by the cells of gist-only axes (`StudySpec.shared_axes`) belongs to each of them and stops for all.
    A study driver still running sees them `stopped`: resuming the study continues them from their last training
    state.

    Args:
        study_id: The study.
        cell: The cell's index (`study_runs`' `cell` column).
        manager: The RunManager whose store holds the study's runs.

    Raises:
        StudyError: an unknown study, or a cell it does not have (its cells are named).
    """
    runs = study_runs(study_id, manager)
    if cell not in set(runs["cell"]):
        raise StudyError(f"study {study_id} has no cell {cell!r}; its cells are "
                         f"{', '.join(map(str, sorted(set(runs['cell']))))}")
    mine = runs[(runs["cell"] == cell) & runs["status"].isin(ACTIVE)]
    statuses = dict(zip(mine["run_id"], mine["status"], strict=True))  # a shared plain run is listed once
    ordered = sorted(statuses.items(), key=lambda r: r[1] == RunStatus.RUNNING)
    for run_id, _ in ordered:  # queued first
        manager.stop(run_id)
    return [run_id for run_id, _ in ordered]


class _Driver(DriverLoop):
    """One session of a grid study: plans, submits, polls, retries and records (the loop: `DriverLoop`)."""

    def __init__(self, store: StudyStore, study_id: str, spec: StudySpec, backend: Any,
                 progress: Progress | None, should_stop: Callable[[], bool] | None, poll_seconds: float) -> None:
        super().__init__(store, study_id, spec, backend, progress, should_stop, poll_seconds)
        self.planned = {(p.cell.index, p.seed, p.arm): p for p in spec.planned_runs()}
        self.inflight: dict[str, Key] = {}
        self.attempt: dict[Key, int] = {}
        self.retries_used: dict[Key, int] = {}

    def _start(self) -> bool:
        for run_id, resume in self._plan():
            self.be.launch(run_id, resume)
        return False

    # ---------------------------------------------------------------------------------------------- planning
    def _plan(self) -> list[tuple[str, bool]]:
        """Submit the runs never submitted, queue again those to continue or retry; returns what to launch."""
        latest = self.s.latest(self.id)
        fresh: list[Key] = []
        again: list[tuple[Key, dict[str, Any]]] = []
        for key in self.planned:
            row = latest.get(key)
            if row is None or row["status"] is None:  # never submitted, or its run was deleted
                fresh.append(key)
                self.attempt[key] = row["attempt"] if row else 0
                self.retries_used[key] = 0
                continue
            self.attempt[key], self.retries_used[key] = row["attempt"], row["retries_used"]
            status = row["status"]
            if status in DONE:
                self.settled += 1
            elif status in ACTIVE:
                raise StudyError(f"study {self.id}: its run {row['run_id']} is still {status} in another process; "
                                 "let it end (or stop it in `runs`/the app), then resume the study")
            elif status in CONTINUED or (status == FAILED and row["retries_used"] <= self.spec.retries):
                again.append((key, row))
            else:  # failed for good
                self.settled += 1
        launches: dict[Key, tuple[str, bool]] = {}
        launches.update(self._submit(fresh))
        for key, row in again:
            launches[key] = (self._requeue(key, row["run_id"]), True)
        return [launches[k] for k in self.planned if k in launches]  # seed-major: results arrive across the grid

    def _submit(self, keys: list[Key]) -> dict[Key, tuple[str, bool]]:
        """Insert the runs of `keys`: a paired group per cell for seeds that miss both arms (when the cell's plain
        runs are its own), single runs else (a plain run shared by several cells belongs to no cell's group)."""
        mgr, out = self.be.manager, {}
        by_cell: dict[int, list[Key]] = {}
        for key in keys:
            by_cell.setdefault(key[0], []).append(key)
        for cell_keys in by_cell.values():
            cell = self.planned[cell_keys[0]].cell
            seeds = sorted({k[1] for k in cell_keys})
            pairs = [sd for sd in seeds if self.spec.paired and {(cell.index, sd, "plain"), (cell.index, sd, "gist")}
                     <= set(cell_keys) and len(self.planned[(cell.index, sd, "plain")].cells) == 1]
            if pairs:
                group_id = mgr.submit_group(cell.config, pairs, name=f"{self.spec.name}[{cell.label}]")
                for snap in mgr.list(group_id=group_id):
                    key = (cell.index, snap.seed, "gist" if snap.gist_enabled else "plain")
                    out[key] = (self._link(key, snap.id), False)
            for key in cell_keys:
                if key not in out:
                    p: PlannedRun = self.planned[key]
                    out[key] = (self._link(key, mgr.submit(p.config, name=p.config.name)), False)
        return out

    def _requeue(self, key: Key, run_id: str) -> str:
        self.be.manager.resume(run_id)
        return self._link(key, run_id)

    def _link(self, key: Key, run_id: str) -> str:
        self.attempt[key] += 1
        p = self.planned[key]
        self.s.link(self.id, p.cell.index, p.cell.key, p.seed, p.arm, self.attempt[key], run_id, self.be.name)
        self.inflight[run_id] = key
        return run_id

    # --------------------------------------------------------------------------------------------- progress
    def _collect(self, finished: list[tuple[str, str, str | None]], retry: bool = True) -> None:
        for run_id, outcome, error in finished:
            key = self.inflight.pop(run_id, None)
            if key is None:
                continue
            self.s.set_outcome(self.id, run_id, outcome, error)
            self.retries_used[key] += outcome in RETRYABLE
            if retry and outcome in RETRYABLE and self.retries_used[key] <= self.spec.retries:
                logger.warning("study %s: run %s %s; retrying it (retry %d of %d)", self.id, run_id, outcome,
                               self.retries_used[key], self.spec.retries)
                self.be.launch(self._requeue(key, run_id), True)
            else:  # interrupted and stopped runs continue in the next session; anything else is settled
                self.settled += outcome not in CONTINUED
            if outcome in RETRYABLE and self.retries_used[key] > self.spec.retries:
                logger.error("study %s: run %s %s after %d retries; the study goes on without it", self.id,
                             run_id, outcome, self.spec.retries)
        if finished:
            self._report()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.settled, len(self.planned))


class StudyJob:
    """A study driven on a background thread (the app's Studies page): `stop()`, `done`, `wait()`, `error`."""

    def __init__(self, study_id: str) -> None:
        self.study_id = study_id
        self.error: BaseException | None = None
        self.settled, self.planned = 0, 0
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None

    def stop(self) -> None:
        """Ask the driver to stop the study's runs (resumable) and end."""
        self._stop.set()

    @property
    def done(self) -> bool:
        """Whether the driver has ended (finished, stopped or failed: see `error`)."""
        return self.thread is not None and not self.thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the driver ends or `timeout` s pass; returns `done`."""
        if self.thread is not None:
            self.thread.join(timeout)
        return self.done

    def _progress(self, settled: int, planned: int) -> None:
        self.settled, self.planned = settled, planned


def start_study(spec_or_id: StudySpec | str | Path | dict[str, Any], root: Root = None, backend: str = "local",
                **kwargs: Any) -> StudyJob:
    """`run_study` on a background thread; the spec is validated (and the study stored) before this returns.

    Returns:
        A StudyJob whose `study_id` is known at once; a driver failure is kept in `job.error` (and logged).
    """
    if backend not in BACKENDS:
        raise StudyError(f"backend: {backend!r} is not one of {', '.join(BACKENDS)}")
    new, max_runs = kwargs.pop("new", False), kwargs.pop("max_runs", MAX_RUNS)
    study_id = (spec_or_id if _is_study_id(spec_or_id, root)
                else create_study(spec_or_id, root, backend, new=new, max_runs=max_runs))
    with StudyStore(root) as s:
        s.refuse_example(study_id, "run")
        s.refuse_group(study_id, "run")
    job = StudyJob(study_id)

    def target() -> None:
        try:
            run_study(study_id, root, backend, progress=job._progress, should_stop=job._stop.is_set, **kwargs)
        except BaseException as exc:  # kept for the page to show
            job.error = exc
            logger.exception("study %s: the driver failed", study_id)

    job.thread = threading.Thread(target=target, name=f"gist-study-{study_id}", daemon=True)
    job.thread.start()
    return job


__all__ = ["StudyJob", "create_study", "delete_study", "resume_study", "run_study", "start_study"]
