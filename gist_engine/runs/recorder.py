"""The trainer callback that records a run's progress, step metrics and evaluations in the run store."""

from __future__ import annotations

import time
from typing import Any

from ..config import to_dict
from ..train import TRAINING, Callback, Trainer, TrainResult
from ..tuners import count_parameters
from .store import RunStore


class StoreWriter(Callback):
    """Trainer callback that writes a run's metrics and evaluations into the store.

    Step metrics are buffered and written in one transaction every `flush_every` steps or `flush_seconds`
    seconds (and at every evaluation and at the end), so a reader sees whole steps, in order, while the run goes on.

    Args:
        store: The run store (every write goes through its one writer connection).
        run_id: The run's row in `runs`.
        flush_every: Steps buffered before a write.
        flush_seconds: Longest time a step stays in the buffer.
    """

    def __init__(self, store: RunStore, run_id: str, flush_every: int = 50, flush_seconds: float = 0.5) -> None:
        self.store, self.run_id = store, run_id
        self.flush_every, self.flush_seconds = flush_every, flush_seconds
        self.rows: list[tuple[str, int, str, float]] = []
        self.pending = 0
        self.latest: dict[str, float] = {}
        self.phase: dict[str, Any] = {"name": TRAINING, "done": 0, "total": 0}  # what the trainer does now
        self.phase_written = 0.0  # monotonic time of the last write of an evaluation's progress
        self.step = self.step0 = 0
        self.t0 = self.last_flush = time.monotonic()

    def on_train_start(self, trainer: Trainer) -> None:
        """Record the resolved config and sizes; forget metrics past the starting step (a resumed run redoes them)."""
        self.record_start(train_start_info(trainer))

    def record_start(self, info: dict[str, Any]) -> None:
        """`on_train_start` from `train_start_info`'s dict (a run trained in another process reports it)."""
        self.step = self.step0 = info["step"]
        self.t0 = self.last_flush = time.monotonic()
        self.store.record_start(self.run_id, info, self.phase)

    def on_step_end(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        """Buffer the step; write the buffer when it is large or old enough."""
        rid = self.run_id
        self.rows.extend((rid, step, k, float(v)) for k, v in metrics.items())
        self.latest, self.step, self.pending = metrics, step, self.pending + 1
        now = time.monotonic()
        if self.pending >= self.flush_every or now - self.last_flush >= self.flush_seconds:
            self.flush()

    def on_eval_end(self, trainer: Trainer, step: int, metrics: dict[str, Any]) -> None:
        """Write the buffered steps and the evaluation together."""
        self.flush(evaluation=(step, metrics))

    def on_phase(self, trainer: Trainer, phase: str, done: int, total: int) -> None:
        """Record what the trainer does now in the run's `latest` (key `phase`: name, done, total), so a page can
        say "evaluating 500 test images" while no step comes; an evaluation's progress at most every
        `flush_seconds` (its start and end always)."""
        self.phase = {"name": phase, "done": done, "total": total}
        now = time.monotonic()
        if 0 < done < total and now - self.phase_written < self.flush_seconds:
            return
        self.phase_written = now
        self.flush()  # the steps before it first, so the page never sees a phase ahead of its steps
        self.store.set_latest(self.run_id, {**self.latest, "phase": self.phase})

    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None:
        """Write what is left in the buffer."""
        self.flush()

    def flush(self, evaluation: tuple[int, dict[str, Any]] | None = None) -> None:
        """Write the buffered steps (and an evaluation) in one transaction."""
        if not self.rows and evaluation is None:
            return
        rows, self.rows, self.pending = self.rows, [], 0
        now = time.monotonic()
        self.last_flush = now
        rate = (self.step - self.step0) / (now - self.t0) if now > self.t0 and self.step > self.step0 else None
        self.store.append_steps(self.run_id, rows, self.step, float(self.latest.get("epoch", 0.0)),
                                {**self.latest, "phase": self.phase}, rate, evaluation)


def train_start_info(trainer: Trainer) -> dict[str, Any]:
    """What `StoreWriter.record_start` records when a run starts: step, total_steps, config (a dict), parameter
    counts, device and selected_on (the resolved `train.select_on`) (plain values, so a run in another process can
    send them)."""
    trainable, total = count_parameters(trainer.model)
    return {"step": trainer.step, "total_steps": trainer.total_steps, "config": to_dict(trainer.config),
            "trainable_params": trainable, "gist_params": trainer.model.gist_parameter_count(),
            "total_params": total, "device": str(trainer.device), "selected_on": trainer.selected_on}


__all__ = ["StoreWriter", "train_start_info"]
