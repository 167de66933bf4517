"""The study driver's loop, shared by both drivers (a grid study's `driver._Driver` and a tuned
study's `tuned.TunedDriver`): mark the study running, launch what the session starts with, then poll the backend,
collect what ended, honour a stop and beat the heartbeat until nothing is in flight, and record how it ended.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..status import WITH_RESULT
from .spec import StudySpec
from .store import COMPLETED as STUDY_COMPLETED
from .store import INCOMPLETE, INTERRUPTED, RUNNING, StudyStore

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0  # how often a running driver tells the store it is alive
Progress = Callable[[int, int], None]  # (settled runs, planned runs)


class DriverLoop:
    """The driver loop of one session of a study; a driver fills in what it launches and how it collects.

    Subclasses implement `_start` (plan and launch; True when the study was stopped already), `_collect(finished,
    retry)` (record runs the backend reports ended: (run id, outcome, error)) and `_report`, and may add
    `_after_poll` (work between polls, e.g. ASHA and launching more runs). `SETTLED` names the run outcomes that
    count as done when the study's end status is decided.
    """

    SETTLED: tuple[str, ...] = WITH_RESULT

    def __init__(self, store: StudyStore, study_id: str, spec: StudySpec, backend: Any, progress: Progress | None,
                 should_stop: Callable[[], bool] | None, poll_seconds: float) -> None:
        self.s, self.id, self.spec, self.be = store, study_id, spec, backend
        self.progress, self.should_stop, self.poll_seconds = progress, should_stop, poll_seconds
        self.inflight: dict[str, Any] = {}  # run id -> the driver's key of the run
        self.settled = 0

    def run(self) -> None:
        """Drive the study until nothing is in flight or it is stopped; its end status: `completed` when every
        planned run settled, `interrupted` when stopped (or on an error of the driver, which is raised),
        `incomplete` otherwise. A session that changed nothing (the same status and run counts, e.g. a completed
        study run again) keeps the study's `finished` time."""
        s = self.s
        before = s.get(self.id)
        s.set_status(self.id, RUNNING)
        s.set_backend(self.id, self.be.name)
        try:
            stopped = self._start()
            self._report()
            beat = time.monotonic()
            while self.inflight and not stopped:
                if self.should_stop is not None and self.should_stop():
                    stopped = True
                    self.be.stop()
                    self._collect(self.be.poll(0.0), retry=False)
                    break
                self._collect(self.be.poll(self.poll_seconds))
                self._after_poll()
                if time.monotonic() - beat >= HEARTBEAT_SECONDS:
                    beat = time.monotonic()
                    s.heartbeat(self.id)
        except BaseException as exc:  # Ctrl-C or a failure of the driver: the runs stop resumable
            s.set_status(self.id, INTERRUPTED, f"{type(exc).__name__}: {exc}")
            raise
        info = s.get(self.id)
        done = sum(info.counts.get(k, 0) for k in self.SETTLED)
        status = INTERRUPTED if stopped else (STUDY_COMPLETED if done == info.planned else INCOMPLETE)
        unchanged = status == before.status and info.counts == before.counts  # e.g. a completed study run again
        s.set_status(self.id, status, finished=before.finished if unchanged else None)
        logger.info("study %s: %s (%s)", self.id, status,
                    ", ".join(f"{v} {k}" for k, v in sorted(info.counts.items()) if v))

    def _start(self) -> bool:
        raise NotImplementedError

    def _collect(self, finished: list[tuple[str, str, str | None]], retry: bool = True) -> None:
        raise NotImplementedError

    def _after_poll(self) -> None:
        """Work between two polls (none by default)."""

    def _report(self) -> None:
        raise NotImplementedError


__all__ = ["HEARTBEAT_SECONDS", "DriverLoop", "Progress"]
