"""A queued run's place: how many runs are ahead of it on its device and about when it starts (no torch)."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..status import RunStatus
from .store import RunSnapshot

Estimate = Callable[[RunSnapshot], "float | None"]  # a run's whole time in seconds (None: unknown)


@dataclass(frozen=True)
class QueuePlace:
    """Where a queued run waits: `position` 1 starts next; `ahead` the queued runs before it on its device and
    `running` the runs training there now; `wait_seconds` until it starts and `eta_seconds` until it ends (None
    when a run ahead, or the run itself, has no estimate)."""

    position: int
    ahead: tuple[str, ...]
    running: tuple[str, ...]
    wait_seconds: float | None
    eta_seconds: float | None


def _remaining(run: RunSnapshot, estimate: Estimate) -> float | None:
    """Seconds a running run still needs: its measured rate over the steps left (`eta_seconds`), else its estimate
    less the part done."""
    if run.eta_seconds is not None:
        return run.eta_seconds
    whole = estimate(run)
    return None if whole is None else whole * (1.0 - run.progress)


def queue_place(run: RunSnapshot, runs: Iterable[RunSnapshot], estimate: Estimate,
                slots: int = 1) -> QueuePlace | None:
    """The place of a queued run in its device's queue and when it should start and end.

    The queue is taken in submission order (`created`, then id: what the worker pool does for runs submitted in
    this process; a resumed run waits behind those submitted before it was first created, an approximation). The
    runs now `running` on the same device hold its `slots` (`RunManager`'s `workers_per_device`) for their
    remaining time (their measured rate: `RunSnapshot.eta_seconds`); each queued run ahead takes the first slot
    that frees, for its `estimate`.

    Args:
        run: The queued run.
        runs: The runs to consider (e.g. `RunManager.list()`); other devices and ended runs are skipped.
        estimate: A run's whole time in seconds, or None when unknown (e.g. the app's `estimate_run_time`).
        slots: Runs executing at once per device.

    Returns:
        A `QueuePlace`, or None when `run` is not queued.
    """
    if run.status != RunStatus.QUEUED:
        return None
    same = [r for r in runs if r.device == run.device and r.id != run.id]
    running = [r for r in same if r.status == RunStatus.RUNNING]
    ahead = sorted((r for r in same if r.status == RunStatus.QUEUED and (r.created, r.id) < (run.created, run.id)),
                   key=lambda r: (r.created, r.id))
    frees = [_remaining(r, estimate) for r in running]
    wait: float | None = None
    if all(f is not None for f in frees):
        free = [max(0.0, f) for f in frees] + [0.0] * max(0, slots - len(frees))  # when each slot frees
        heapq.heapify(free)
        for r in ahead:
            need = estimate(r)
            if need is None:
                break
            heapq.heappush(free, heapq.heappop(free) + need)  # it starts when the first slot frees
        else:
            wait = free[0]
    own = estimate(run)
    eta = None if wait is None or own is None else wait + own
    return QueuePlace(position=len(ahead) + 1, ahead=tuple(r.id for r in ahead), running=tuple(r.id for r in running),
                      wait_seconds=wait, eta_seconds=eta)


__all__ = ["QueuePlace", "queue_place"]
