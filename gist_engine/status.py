"""A run's status: one enum for the store, the trainer, the workers, Ray, the CLI and the app.

`RunStatus` is a `str` enum (PEP 663's `StrEnum`), so a member equals its stored text (`RunStatus.COMPLETED ==
"completed"`), is written to SQLite and JSON as that text, and a status read back from the store as a plain string
compares equal to its member. This module imports nothing of the package: reading the store never needs torch.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """Where a run is in its life. Active runs change; ended runs do not (until resumed).

    - ``queued``: waiting for a worker (a device slot);
    - ``running``: a worker is training or evaluating it (its heartbeat is fresh);
    - ``completed``: trained all its epochs and evaluated;
    - ``stopped``: a user stopped it (its training state is kept: it can resume);
    - ``diverged``: a non-finite loss, or a loss past `train.DIVERGENCE_GROWTH` times chance level (the reason is in
      the run's error);
    - ``failed``: an error ended it (the error is in the run's error);
    - ``interrupted``: its worker died (a crash, a killed process, a closed app); it can resume.
    """

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"
    DIVERGED = "diverged"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def active(self) -> bool:
        """Whether the run still changes (queued or running)."""
        return self in ACTIVE

    @property
    def ended(self) -> bool:
        """Whether the run has ended (any status but queued and running)."""
        return self in ENDED

    @property
    def resumable(self) -> bool:
        """Whether `resume` continues it (interrupted, stopped or failed: from resume.safetensors, or anew)."""
        return self in RESUMABLE


class StudyStatus(StrEnum):
    """Where a study is in its life (a study's status, not a run's; stored as its text, like `RunStatus`).

    - ``created``: stored, no driver has run it yet;
    - ``running``: a driver is submitting and watching its runs (its heartbeat is fresh);
    - ``completed``: every planned run completed or diverged;
    - ``incomplete``: settled, but some runs failed or stopped for good;
    - ``interrupted``: its driver ended before the end (`study resume` goes on).
    """

    CREATED = "created"
    RUNNING = "running"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    INTERRUPTED = "interrupted"


# The sets, as tuples in a fixed order (messages list them): `status in ACTIVE` works for members and stored text.
ACTIVE = (RunStatus.QUEUED, RunStatus.RUNNING)
ENDED = tuple(s for s in RunStatus if s not in ACTIVE)
RESUMABLE = (RunStatus.INTERRUPTED, RunStatus.STOPPED, RunStatus.FAILED)
WITH_RESULT = (RunStatus.COMPLETED, RunStatus.DIVERGED)  # ended with their evaluation: a verdict counts them

__all__ = ["ACTIVE", "ENDED", "RESUMABLE", "WITH_RESULT", "RunStatus", "StudyStatus"]
