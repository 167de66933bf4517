"""Ray Tune as the engine of a tuned study's trials on Ray: one Tuner per arm, ASHAScheduler, the study's trials.

`run_tune_trials` runs the trials of one arm of one cell as Ray Tune trials (`tune.Tuner` with
`tune.with_resources`, an `ASHAScheduler` counting epochs on the validation accuracy, `FailureConfig` retrying a trial
whose worker died). The trials are the study's own proposals (`tune.grid_search` over the trial numbers: the same
seeded random search as the local backend), their run rows made by the driver before the Tuner starts. Each trial
trains through `ray_backend.train_events` (the one execution path of every run) and sends its events to the
driver over a Ray queue; the driver writes them into the run store as they come (its single writer), so trials show
on Live and Runs while they train, and reports each validation accuracy to Tune (`tune.report`), whose ASHA stops a
trial below its rung. A trial Tune retried resumes from its run folder's training state; a resumed study makes a new
Tuner for the trials not settled (the store knows them), so settled trials never run again. A study stopped while
an arm tunes ends the experiment (a Tune `Stopper`): its unsettled trials end `interrupted`, to be continued.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..runs.recorder import StoreWriter
from ..status import RunStatus
from ..train import FAILED, STOPPED
from ..train.checkpoint import RESUME_NAME
from .ray_backend import RayBackend, _Stream, train_events

logger = logging.getLogger(__name__)

METRIC, TIME_ATTR = "val_acc", "epoch"  # what a trial reports to Tune after each validation evaluation
STOP_CHECK_SECONDS = 1.0  # how often the driver asks whether the study was stopped while an arm tunes
STOPPED_NOTE = "interrupted: the study was stopped while this arm was tuned; `study resume` continues the trial"


# experiment name -> the trials Tune ended, as (trial number, last reported epoch): filled by `TrialEnded` on the
# Tune controller's thread, read by the driver's loop (both in the driver process)
_TRIAL_ENDS: dict[str, queue.SimpleQueue] = {}


def trial_end_callback(experiment: str) -> Any:
    """A Tune `Callback` that tells the driver each trial Tune has ended (`on_trial_complete`), so that a trial ASHA
    stopped is recorded `stopped` at once, not when its arm's experiment ends (Tune kills its worker: the run sends
    no end event of its own). It holds only the experiment's name (Tune pickles its run config with the Tuner)."""
    from ray.tune import Callback  # optional heavy dependency (pip install .[ray])

    class TrialEnded(Callback):
        def __init__(self, name: str) -> None:
            self.name = name

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            sink = _TRIAL_ENDS.get(self.name)
            if sink is not None and trial.config and "trial" in trial.config:
                sink.put((int(trial.config["trial"]), (trial.last_result or {}).get(TIME_ATTR)))

    return TrialEnded(experiment)


def study_stopper(flag: Path) -> Any:
    """A Tune `Stopper` that ends the whole experiment once the file `flag` exists (the driver writes it when the
    study is stopped). A file, not an Event: Tune pickles its run config with the Tuner (ray.cloudpickle)."""
    from ray.tune.stopper import Stopper  # optional heavy dependency (pip install .[ray])

    class StudyStopped(Stopper):
        def __init__(self, path: str) -> None:
            self.path = path

        def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
            return False  # no single trial: ASHA prunes those

        def stop_all(self) -> bool:
            return os.path.exists(self.path)

    return StudyStopped(str(flag))


def tune_trial(config: dict[str, Any], plan: dict[int, tuple[str, dict[str, Any], str]], events: Any,
               flush_seconds: float, callbacks: Any, data_loader: Any, epochs: int) -> None:
    """The Tune trainable: trains trial `config["trial"]` of `plan` (trial -> run id, run config, run folder) and
    puts its event batches on the `events` queue as (run id, batch); each validation evaluation is reported to Tune
    (`val_acc`, `epoch`), the last epoch's once the run has ended (Tune's ASHA stops a trial that reaches `max_t`,
    which must not cut the run short of its end). A failed run raises, so Tune records the failure (and retries it,
    per FailureConfig)."""
    from ray import tune  # optional heavy dependency (pip install .[ray]); this runs on a Ray worker

    run_id, run_config, run_dir = plan[int(config["trial"])]
    resume = (Path(run_dir) / RESUME_NAME).exists()  # a retried trial continues from its training state
    last: dict[str, float] | None = None
    for batch in train_events(run_config, run_dir, resume, flush_seconds, callbacks, data_loader):
        events.put((run_id, batch))
        for event in batch:
            if event[0] == "eval" and event[2].get("split") == "val" and event[2].get("acc_cls") is not None:
                metrics = {METRIC: float(event[2]["acc_cls"]), TIME_ATTR: float(event[2].get("epoch") or 0.0)}
                if metrics[TIME_ATTR] >= epochs:
                    last = metrics
                else:
                    tune.report(metrics)
            elif event[0] == "end" and event[1]["status"] == FAILED:
                raise RuntimeError(f"run {run_id} failed: {event[1].get('error')}")
    if last is not None:
        tune.report(last)


def pruned_note(epoch: float | None) -> str:
    """The error text of a trial's run that ASHA stopped."""
    return f"stopped by ASHA (Ray Tune) after epoch {epoch:g}" if epoch is not None else "stopped by ASHA (Ray Tune)"


class _Writer:
    """The driver's side of a Tune arm: writes each trial's events through the RayBackend's stream writer."""

    def __init__(self, backend: RayBackend, on_retry: Callable[[str], None],
                 on_end: Callable[[str], None] | None = None) -> None:
        self.be, self.on_retry, self.on_end = backend, on_retry, on_end
        self.streams: dict[str, Any] = {}
        self.ended: dict[str, dict[str, Any]] = {}  # run id -> its end event
        self.stopped: dict[str, str] = {}  # run id -> why ASHA stopped it (recorded as Tune ended it)

    def write(self, run_id: str, batch: list[tuple]) -> None:
        s = self.streams.get(run_id)
        if s is not None and any(e[0] == "start" for e in batch) and s.started:  # Tune retried it on a new worker
            self.be.manager.store.finish(run_id, RunStatus.INTERRUPTED, "interrupted: its Ray worker died; Ray Tune "
                                         "retries the trial from its last training state", time.time())
            self.on_retry(run_id)
            s = None
        if s is None:
            s = self.streams[run_id] = _Stream(run_id, None, StoreWriter(self.be.manager.store, run_id,
                                                                        flush_every=10_000, flush_seconds=3600.0))
        for event in batch:
            if event[0] == "start":
                s.started = True
                m = self.be.manager
                m.store.claim(run_id, m.token, m.pid, m.host, time.time())
                s.writer.record_start(event[1])
            elif event[0] == "step":
                s.writer.on_step_end(None, event[1], event[2])
            elif event[0] == "eval":
                s.writer.on_eval_end(None, event[1], event[2])
            elif event[0] == "phase":
                s.writer.on_phase(None, event[1], event[2], event[3])
            elif event[0] == "end":
                self.ended[run_id] = event[1]
        s.writer.flush()
        ended = self.ended.get(run_id) if batch[-1][0] == "end" else None
        if ended is not None and ended["status"] != FAILED:  # recorded now (a failure may still be retried)
            self.be.manager.store.finish(run_id, ended["status"], ended.get("error"), time.time(),
                                         note=ended.get("note"))
            if self.on_end is not None:
                self.on_end(run_id)

    def pruned(self, run_id: str, epoch: float | None) -> None:
        """A trial Tune ended before its last epoch without an end event of its run: ASHA stopped it."""
        if run_id in self.ended or run_id in self.stopped:
            return
        self.stopped[run_id] = pruned_note(epoch)
        self.be.manager.store.finish(run_id, STOPPED, self.stopped[run_id], time.time())
        if self.on_end is not None:
            self.on_end(run_id)


def run_tune_trials(backend: RayBackend, plan: dict[int, tuple[str, dict[str, Any], str]], *, name: str,
                    storage: Path, epochs: int, scheduler: str, grace_period: int, reduction_factor: int,
                    retries: int, on_retry: Callable[[str], None],
                    should_stop: Callable[[], bool] | None = None,
                    on_end: Callable[[str], None] | None = None) -> dict[int, tuple[str, str | None]]:
    """Run the trials of `plan` (trial -> run id of a queued run, its config, its folder) as one Ray Tune
    experiment; returns trial -> (outcome, error): `completed`, `pruned` (ASHA stopped it; its run ends `stopped`),
    `failed` or `lost` (after `retries` retries), or `interrupted` (the study was stopped before it ended).

    Args:
        backend: The study's RayBackend (its Ray connection, resources per trial, store view and callbacks).
        name, storage: The Tune experiment's name and folder (`storage/name`).
        epochs: A trial's length (ASHA's max_t).
        scheduler: "asha" (Tune's ASHAScheduler on `val_acc` per epoch) or "none".
        on_retry: Called with a run id that Tune retried after its worker died (the driver records the attempt).
        should_stop: Asked every `STOP_CHECK_SECONDS`; True ends the experiment: trials in flight or not yet
            started end `interrupted` (resumable), those that ended keep their outcome.
        on_end: Called with a run id as its trial's run ends (the driver's progress), on its own or stopped by
            ASHA; each is recorded in the run store at that moment.
    """
    from ray import tune  # optional heavy dependency (pip install .[ray])
    from ray.tune.schedulers import ASHAScheduler  # the scheduler of `scheduler: asha`
    from ray.util.queue import Queue  # the trials' events, back to the driver

    events = Queue()
    writer = _Writer(backend, on_retry, on_end)
    flag = Path(storage) / f"{name}.stop"  # written by this driver when the study is stopped
    flag.unlink(missing_ok=True)  # a flag of an earlier session of this study, which the resume continues
    trainable = tune.with_resources(
        tune.with_parameters(tune_trial, plan=plan, events=events, flush_seconds=backend.flush_seconds,
                             callbacks=backend.callbacks, data_loader=backend.data_loader, epochs=epochs),
        {"cpu": backend.cpus_per_trial, "gpu": backend.gpus_per_trial})
    asha = (ASHAScheduler(time_attr=TIME_ATTR, max_t=epochs, grace_period=grace_period,
                          reduction_factor=reduction_factor) if scheduler == "asha" else None)
    tuner = tune.Tuner(
        trainable, param_space={"trial": tune.grid_search(sorted(plan))},
        tune_config=tune.TuneConfig(metric=METRIC, mode="max", scheduler=asha,
                                    max_concurrent_trials=backend.concurrency),
        run_config=tune.RunConfig(name=name, storage_path=str(Path(storage).resolve()), verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=retries),
                                  stop=study_stopper(flag.resolve()), callbacks=[trial_end_callback(name)]))
    trial_ends = _TRIAL_ENDS[name] = queue.SimpleQueue()
    box: dict[str, Any] = {}

    def fit() -> None:
        try:
            box["results"] = tuner.fit()
        except BaseException as exc:  # kept for the driver to raise
            box["error"] = exc

    thread = threading.Thread(target=fit, name="gist-ray-tune", daemon=True)
    thread.start()
    stopping, checked = False, time.monotonic()
    ended_by_tune: list[tuple[int, float | None]] = []  # (trial, last epoch) that Tune ended, not yet looked at
    while thread.is_alive() or events.qsize():
        if not stopping and should_stop is not None and time.monotonic() - checked >= STOP_CHECK_SECONDS:
            checked = time.monotonic()
            if should_stop():
                stopping = True
                flag.parent.mkdir(parents=True, exist_ok=True)
                flag.touch()
                logger.info("%s: the study was stopped; ending the Ray Tune experiment", name)
        try:
            run_id, batch = events.get(timeout=0.2)
        except Exception:  # ray.util.queue.Empty: nothing arrived within the wait
            run_id = batch = None
        if batch is not None:
            writer.write(run_id, batch)
        while not trial_ends.empty():
            ended_by_tune.append(trial_ends.get())
        if ended_by_tune and not events.qsize():  # every event sent before Tune ended them is written by now
            for trial, epoch in ended_by_tune:  # cut short without an end event of their own: ASHA stopped them
                if trial in plan and (epoch is None or epoch < epochs) and not stopping:
                    writer.pruned(plan[trial][0], epoch)
            ended_by_tune.clear()
    _TRIAL_ENDS.pop(name, None)
    thread.join()
    flag.unlink(missing_ok=True)
    if "error" in box:
        raise box["error"]
    out: dict[int, tuple[str, str | None]] = {}
    by_trial = {int(r.config["trial"]): r for r in box["results"] if r.config}  # none: stopped before it started
    for trial, (run_id, _, _) in plan.items():
        result, ended = by_trial.get(trial), writer.ended.get(run_id)
        if ended is not None and ended["status"] != FAILED:  # recorded as it ended (`_Writer.write`)
            out[trial] = (ended["status"], ended.get("error"))
            continue
        if run_id in writer.stopped:  # ASHA stopped it, recorded as Tune ended it (`_Writer.pruned`)
            out[trial] = ("pruned", writer.stopped[run_id])
            continue
        if stopping and ended is None:  # in flight or never started when the study stopped: continued on resume
            status = outcome = RunStatus.INTERRUPTED
            error = STOPPED_NOTE
        elif result is not None and result.error is None and ended is None:
            status, outcome = STOPPED, "pruned"
            error = pruned_note((result.metrics or {}).get(TIME_ATTR))
        else:
            status = outcome = FAILED
            error = (ended or {}).get("error") or (str(result.error).splitlines()[0] if result is not None
                                                   and result.error is not None else "the trial ended without a "
                                                   "result")
        backend.manager.store.finish(run_id, status, error, time.time())
        out[trial] = (outcome, error)
    return out


__all__ = ["METRIC", "STOPPED_NOTE", "TIME_ATTR", "pruned_note", "run_tune_trials", "study_stopper",
           "trial_end_callback", "tune_trial"]
