"""One run from its claimed config to `result.json` and its final status: the one execution path of every run.

`execute_run` builds the Trainer with the caller's callbacks (the local workers pass the `StoreWriter`, a Ray task
a callback that streams the same events to its driver), loads the data, trains, frees the optimizer state of a run
that has nothing left to resume, writes `result.json` atomically (`write_result`) and turns every failure into the
run's final status and error text (a user error without a traceback, a full disk as `disk_full_message`, anything
else with its traceback). The caller records that status: the local worker pool in the store, the Ray driver from
the task's last event.
"""

from __future__ import annotations

import json
import logging
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .._io import write_text_atomic
from ..backbones import BackboneError
from ..config import ConfigError, RunConfig, load_run_config, to_dict
from ..data.images import DatasetError
from ..files import RESULT_NAME, RESUME_NAME
from ..status import RunStatus
from ..train import COMPLETED, DIVERGED, FAILED, STOPPED, Callback, Trainer, TrainResult, load_run_data
from ..train.checkpoint import CheckpointError
from .store import disk_full_message, is_disk_full

logger = logging.getLogger(__name__)

INTERRUPTED = RunStatus.INTERRUPTED
USER_ERRORS = (ConfigError, BackboneError, DatasetError, CheckpointError)  # stored without a traceback
INTERRUPTED_ERROR = "interrupted: the run manager shut down; resume it from its last checkpoint"


def error_text(exc: BaseException) -> str:
    """A run's stored error: the message of a user error (bad config, dataset, checkpoint), else the exception's
    type, message and traceback."""
    if isinstance(exc, USER_ERRORS):
        return str(exc)
    return f"{type(exc).__name__}: {exc}\n\n{''.join(traceback.format_exception(exc))}"


def write_result(run_dir: Path, result: dict[str, Any]) -> Path:
    """Write `run_dir/result.json` atomically (`_io.write_text_atomic`: a temp file beside it, then a rename); returns
    its path.

    Raises:
        OSError: the folder cannot be written (e.g. ENOSPC: `store.is_disk_full` tells); no partial file remains.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / RESULT_NAME
    write_text_atomic(path, json.dumps(result, default=str))
    return path


class DataCache:
    """The last loaded dataset, reused while the data config, backbone, image size, device and probe size stay the
    same (one per local run manager; one per Ray worker process, which Ray reuses for the next runs). A dataset
    loaded without its test split (a trial, `train.evaluate_test: false`) is loaded again for a run that evaluates
    the test split; one with it serves a trial too (the trainer drops the test split of such a run unread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entry: tuple[str, Any] | None = None

    def __call__(self, trainer: Trainer) -> Any:
        """The run's `DatasetSplits` (`train.load_run_data` on the trainer's device), cached."""
        cfg = trainer.config
        probe = cfg.train.probe_size if cfg.train.probe_every else 0  # the accuracy probe's held-out images
        key = json.dumps([to_dict(cfg.data), cfg.backbone, cfg.image_size, str(trainer.device), probe], sort_keys=True)
        with self._lock:
            if self._entry is not None and self._entry[0] == key and (
                    self._entry[1].test is not None or not cfg.train.evaluate_test):
                return self._entry[1]
            self._entry = None  # free the previous dataset before loading the next
            data = load_run_data(cfg, trainer.device)
            self._entry = (key, data)
            return data


@dataclass
class Outcome:
    """How a run ended: its final `status` (completed, stopped, diverged, failed, interrupted), the `error` text to
    store (None when there is none) and the TrainResult (None when training did not finish, e.g. a bad config)."""

    status: str
    error: str | None
    result: TrainResult | None = None

    @property
    def note(self) -> str | None:
        """How a completed run ended early (`TrainResult.note`, e.g. an early stop); None otherwise."""
        return self.result.note if self.result is not None else None

    def to_event(self) -> dict[str, Any]:
        """A plain dict for a Ray task's last event: the result without its per-step history (the driver has every
        step already), with the final status and error."""
        out = self.result.to_dict() if self.result is not None else {}
        out.pop("history", None)
        return {**out, "status": self.status, "error": self.error}


def execute_run(config: RunConfig | dict[str, Any], run_dir: Path, *, callbacks: Sequence[Callback] = (),
                extra_callbacks: Callable[[RunConfig, Path], list[Callback]] | None = None,
                stop_reason: Callable[[], str | None] = lambda: None,
                load_data: Callable[[Trainer], Any] | None = None,
                data_loader: Callable[[RunConfig], Any] | None = None, resume: bool = True,
                thread_cap: int = 0, root: Path | None = None) -> Outcome:
    """Train one claimed run and write its `result.json`; never raises for a failure of the run itself.

    Args:
        config: The run's config (a RunConfig or its stored dict; parsed here, a ConfigError fails the run).
        run_dir: The run's folder (checkpoint, training state, result.json); created once the trainer is set up.
        callbacks: Trainer callbacks that record the run (the `StoreWriter`, or a Ray task's event stream).
        extra_callbacks: `f(config, run_dir) -> [Callback, ...]`, e.g. attention snapshots.
        stop_reason: Why the run must stop now (None: go on): "interrupted" makes a stopped run `interrupted`
            (resumable), any other reason `stopped`.
        load_data: `f(trainer) -> DatasetSplits` (default: a fresh `DataCache`).
        data_loader: `f(config) -> DatasetSplits` instead of loading `config.data` (tests, custom data).
        resume: Continue from `run_dir/resume.safetensors` when it exists.
        thread_cap: A ceiling on torch's intra-op threads after the run's own setup (0: none).
        root: The data directory named by a disk-full error (default: the run folder's grandparent).

    Returns:
        The `Outcome`: the status and error to record (the trainer's, or `failed` with `error_text`, or
        `disk_full_message(root)` when a write found no space, the result.json included).
    """
    root = root if root is not None else run_dir.parent.parent
    result = None
    try:
        cfg = load_run_config(config)
        extra = extra_callbacks(cfg, run_dir) if extra_callbacks else []
        state = run_dir / RESUME_NAME
        trainer = Trainer(cfg, callbacks=[*callbacks, *extra], should_stop=lambda: stop_reason() is not None,
                          run_dir=run_dir, resume_from=state if resume and state.exists() else None)
        if data_loader is not None:
            trainer.data = data_loader(cfg)
        else:
            trainer.data = (load_data or DataCache())(trainer)
        trainer.setup()  # sets torch's threads for the device (speed.configure_device, train.cpu_threads)
        if thread_cap and torch.get_num_threads() > thread_cap:
            torch.set_num_threads(thread_cap)  # the caller's cap is a ceiling: the server stays responsive
        run_dir.mkdir(parents=True, exist_ok=True)
        result = trainer.run()
        status, error = result.status, result.error
        if status in (COMPLETED, DIVERGED):  # nothing left to resume: free the optimizer state's disk space
            state.unlink(missing_ok=True)
        write_result(run_dir, result.to_dict())
    except USER_ERRORS as exc:  # a bad config, dataset or checkpoint: the message says it all
        status, error = FAILED, error_text(exc)
        logger.error("run %s failed: %s", run_dir.name, exc)
    except Exception as exc:
        if is_disk_full(exc):  # a metric write, a checkpoint or result.json found no space: the message says so
            status, error = FAILED, disk_full_message(root)
            logger.error("run %s failed: %s", run_dir.name, error)
        else:
            status, error = FAILED, error_text(exc)
            logger.exception("run %s failed", run_dir.name)
    if status == STOPPED and stop_reason() == INTERRUPTED:
        status, error = INTERRUPTED, INTERRUPTED_ERROR
    return Outcome(status, error, result)


__all__ = ["INTERRUPTED_ERROR", "RESULT_NAME", "USER_ERRORS", "DataCache", "Outcome", "error_text", "execute_run",
           "write_result"]
