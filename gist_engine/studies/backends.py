"""Study backends: where a study's runs execute. `local`: the RunManager's worker threads; `ray`: Ray tasks.

A backend holds a RunManager over the study's run store. The driver inserts every run through it (queued rows,
owned and heartbeated by this process), `launch`es it, and `poll`s for finished runs. Either way the runs are
ordinary rows of the run store, written by this process only.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..config import RunConfig
from ..runs import ACTIVE, RunManager
from ..train import Callback, Trainer
from .ray_backend import RayBackend

logger = logging.getLogger(__name__)


class Backend(Protocol):
    """What the study driver needs of a backend."""

    name: str
    manager: RunManager  # inserts, resumes and reads the runs (never trains them for a remote backend)

    on_eval: Callable[[str, dict[str, Any]], None] | None  # set by a tuned study's driver: each evaluation, as it ends

    def launch(self, run_id: str, resume: bool) -> None:
        """Start executing a queued run (`resume`: from its training state when it has one)."""

    def poll(self, timeout: float) -> list[tuple[str, str, str | None]]:
        """Wait up to `timeout` s; returns (run_id, outcome, error) of runs that ended since the last call."""

    def stop(self) -> None:
        """Stop every run in flight (they end `interrupted`, resumable)."""

    def close(self) -> None:
        """Release the backend (a manager it created, a Ray connection it opened)."""


class _EvalHook(Callback):
    """Passes a run's evaluations to its backend's `on_eval` on the training thread, as they end (a tuned study's
    scheduler decides there whether the trial goes on, before its next step)."""

    def __init__(self, backend: LocalBackend, run_id: str) -> None:
        self.backend, self.run_id = backend, run_id

    def on_eval_end(self, trainer: Trainer, step: int, metrics: dict[str, Any]) -> None:
        hook = self.backend.on_eval
        if hook is not None:
            hook(self.run_id, metrics)


class LocalBackend:
    """Runs on this machine: the RunManager's worker threads (`workers` runs at once per device).

    Args:
        root: The data directory (ignored when `manager` is given).
        manager: A started RunManager to share (the app's); its workers train the study's runs beside other runs.
        workers: Runs at once per device for a manager created here (default 1: on a CPU, one run with all its
            threads beats two runs sharing them).
        data_loader, callbacks, torch_threads: Passed to a RunManager created here (see RunManager).
    """

    name = "local"

    def __init__(self, root: str | Path | None = None, *, manager: RunManager | None = None, workers: int = 1,
                 data_loader: Callable[[RunConfig], Any] | None = None,
                 callbacks: Callable[[RunConfig, Path], list[Callback]] | None = None,
                 torch_threads: int | None = None, **_: Any) -> None:
        self._owned = manager is None
        self.on_eval: Callable[[str, dict[str, Any]], None] | None = None
        self.concurrency = workers  # runs at once (a tuned study launches no more trials than this)

        def with_hook(config: RunConfig, run_dir: Path) -> list[Callback]:
            return [*(callbacks(config, run_dir) if callbacks else []), _EvalHook(self, Path(run_dir).name)]

        self.manager = manager if manager is not None else RunManager(
            root, workers_per_device=workers, data_loader=data_loader, callbacks=with_hook,
            torch_threads=torch_threads)
        self.manager.start()
        self._inflight: set[str] = set()

    def launch(self, run_id: str, resume: bool) -> None:
        """The manager queued the run when it was inserted (or resumed); nothing more to do."""
        self._inflight.add(run_id)

    def poll(self, timeout: float) -> list[tuple[str, str, str | None]]:
        """Runs of this study that are no longer queued or running (one read of the store)."""
        deadline = time.monotonic() + timeout
        while True:
            done = []
            if self._inflight:
                ids = sorted(self._inflight)
                found = self.manager.store.run_statuses(ids)
                for run_id in ids:
                    r = found.get(run_id)
                    if r is None:  # deleted meanwhile
                        done.append((run_id, "deleted", "the run was deleted"))
                    elif r[0] not in ACTIVE:
                        done.append((run_id, *r))
            for run_id, _, _ in done:
                self._inflight.discard(run_id)
            if done or time.monotonic() >= deadline:
                return done
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def stop(self) -> None:
        """Stop this study's queued and running runs: a manager created here shuts down (runs end `interrupted`);
        a shared one stops them (`stopped`, continued by `study resume`)."""
        if self._owned:
            self.manager.shutdown(timeout=60)
        else:
            for run_id in list(self._inflight):
                self.manager.stop(run_id)

    def close(self) -> None:
        """Shut down a manager created here (a shared one goes on)."""
        if self._owned:
            self.manager.shutdown(timeout=60)


def ray_available() -> bool:
    """Whether Ray is installed (`pip install .[ray]`)."""
    return importlib.util.find_spec("ray") is not None


# Backend name -> class; every class takes (root, **options) and ignores options it has no use for.
BACKENDS: dict[str, type] = {"local": LocalBackend, "ray": RayBackend}


__all__ = ["BACKENDS", "Backend", "LocalBackend", "RayBackend", "ray_available"]
