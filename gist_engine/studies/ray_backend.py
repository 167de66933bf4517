"""The `ray` study backend: every run is a Ray task that streams its events back; the driver writes the store.

Each run is one Ray task (a generator, `num_cpus`/`num_gpus` per trial) that trains on a worker through the one
execution path of every run (`runs.execute.execute_run`, which also writes its `result.json`) and yields batches of
events (start, steps, evaluations, end) every `flush_seconds`. The driver reads the
streams (`ray.wait` on the generators) and writes them through `StoreWriter`, the same callback a local run uses,
so the run store has one writer and the app shows Ray runs like local ones while they train. A worker that dies
ends its run `interrupted` (outcome `lost`); the driver retries it from its last training state
(`resume.safetensors`, written every `train.checkpoint_every` epochs) when the run directory is shared.
Workers build datasets and backbones from the same registry; the package itself is shipped with the task
(`runtime_env` py_modules) unless `ship_code` is off.
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ..config import ConfigError, RunConfig
from ..runs import RunManager, execute
from ..runs.execute import DataCache
from ..runs.recorder import StoreWriter, train_start_info
from ..status import RunStatus
from ..train import FAILED, STOPPED, Callback, Trainer
from .store import LOST

logger = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # gist_engine/, shipped to the workers
INTERRUPTED = RunStatus.INTERRUPTED


class _Events(Callback):
    """Trainer callback on the worker: puts the run's events on a thread-safe queue."""

    def __init__(self, events: queue.Queue) -> None:
        self.events = events

    def on_train_start(self, trainer: Trainer) -> None:
        info = train_start_info(trainer)
        info["worker"] = f"{socket.gethostname()}:{os.getpid()}"
        self.events.put(("start", info))

    def on_step_end(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        self.events.put(("step", step, dict(metrics), time.time()))

    def on_eval_end(self, trainer: Trainer, step: int, metrics: dict[str, Any]) -> None:
        self.events.put(("eval", step, dict(metrics)))

    def on_phase(self, trainer: Trainer, phase: str, done: int, total: int) -> None:
        self.events.put(("phase", phase, done, total))


_data = DataCache()  # a worker process's last dataset: Ray reuses workers for the next runs


def train_events(config: dict[str, Any], run_dir: str, resume: bool, flush_seconds: float = 0.2,
                 callbacks: Callable[[RunConfig, Path], list[Callback]] | None = None,
                 data_loader: Callable[[RunConfig], Any] | None = None) -> Iterator[list[tuple]]:
    """Train one run here and yield its events in batches (the body of the Ray task; usable without Ray).

    Yields:
        Lists of events: ("start", info) with `train_start_info`'s dict and `worker`; ("step", step, metrics,
        unix time of the step); ("eval", step, metrics); ("phase", name, done, total); and last ("end", result):
        `execute.Outcome.to_event()`, the TrainResult's dict (no history) with the final status and error, or only
        those two when the run could not start.
    """
    events: queue.Queue = queue.Queue()
    stop = threading.Event()  # set when the task is cancelled (the study stops, a stop is requested)

    def target() -> None:
        try:
            outcome = execute.execute_run(config, Path(run_dir), callbacks=[_Events(events)],
                                          extra_callbacks=callbacks, stop_reason=lambda: STOPPED if stop.is_set()
                                          else None, load_data=_data, data_loader=data_loader, resume=resume)
            events.put(("end", outcome.to_event()))
        except BaseException as exc:  # beyond a run's own failures (execute_run's): still the run's error
            events.put(("end", {"status": FAILED, "error": execute.error_text(exc)}))

    thread = threading.Thread(target=target, name="gist-ray-run", daemon=True)
    thread.start()
    batch: list[tuple] = []
    last = time.monotonic()
    try:
        while True:
            try:
                event = events.get(timeout=flush_seconds)
            except queue.Empty:
                event = None
            if event is not None:
                batch.append(event)
                if event[0] == "end":
                    yield batch
                    return
            if batch and (event is None or event[0] != "step" or time.monotonic() - last >= flush_seconds):
                yield batch
                batch, last = [], time.monotonic()
    finally:  # cancelled (KeyboardInterrupt) or closed: the trainer stops within a step, its worker is free again
        stop.set()
        thread.join(timeout=60)


class _Stream:
    """The driver's side of one run: its generator and the StoreWriter it feeds."""

    def __init__(self, run_id: str, generator: Any, writer: StoreWriter) -> None:
        self.run_id, self.generator, self.writer = run_id, generator, writer
        self.started = False
        self.stopping: str | None = None


class RayBackend:
    """Runs every run as a Ray task with `cpus_per_trial` CPUs and `gpus_per_trial` GPUs.

    Args:
        root: The data directory of the run store (the driver's; run directories are `root/runs/<id>` on every
            node: share it, e.g. over NFS, for checkpoints to survive a node and for `study resume` to continue).
        address: `ray.init(address=...)`: None starts a local Ray (unless one is initialised already), "auto" joins
            the cluster this machine belongs to, "ray://host:10001" a remote one.
        cpus_per_trial, gpus_per_trial: Ray resources of each run (a GPU run should set train.device to cuda or
            auto).
        ship_code: Send this gist_engine package to the workers (`runtime_env` py_modules, set when this backend
            starts the Ray connection); default: when joining a cluster (`address` given). A local Ray's workers
            import it from the driver's sys.path.
        flush_seconds: Longest time a step waits on its worker before it is sent to the driver.
        callbacks, data_loader: As RunManager's; run on the worker (they must pickle).
        init_kwargs: More `ray.init` arguments (e.g. num_cpus for a local Ray).
        tune_engine: Run a tuned study's trials (random search) with Ray Tune (`studies.ray_tune`); False: as Ray
            tasks like any run, with the driver's search and ASHA (as with `search: optuna`).
    """

    name = "ray"

    def __init__(self, root: str | Path | None = None, *, address: str | None = None, cpus_per_trial: float = 1.0,
                 gpus_per_trial: float = 0.0, ship_code: bool | None = None, flush_seconds: float = 0.2,
                 callbacks: Callable[[RunConfig, Path], list[Callback]] | None = None,
                 data_loader: Callable[[RunConfig], Any] | None = None, init_kwargs: dict[str, Any] | None = None,
                 manager: RunManager | None = None, tune_engine: bool = True, **_: Any) -> None:
        try:
            import ray  # optional heavy dependency (pip install .[ray]); imported only by this backend
        except ImportError:
            raise ConfigError("backend ray: Ray is not installed; pip install 'gist-studio[ray]' (or pip install "
                              "ray), or use the local backend") from None
        self.ray = ray
        if cpus_per_trial <= 0 or gpus_per_trial < 0:
            raise ConfigError(f"cpus_per_trial must be > 0 and gpus_per_trial >= 0, got {cpus_per_trial} and "
                              f"{gpus_per_trial}")
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            if ship_code is None:  # a local Ray's workers get the driver's sys.path; a cluster's nodes need the code
                ship_code = address is not None
            kwargs = {"include_dashboard": False, "logging_level": logging.WARNING, **(init_kwargs or {})}
            if ship_code:  # py_modules of a local folder: only at the job level (ray.init), not per task
                kwargs["runtime_env"] = {**kwargs.get("runtime_env", {}), "py_modules": [str(PACKAGE_DIR)]}
            ray.init(address=address, **kwargs)
        # A view of the store that never trains: it inserts and heartbeats the runs; a shared manager (the app's)
        # would also train them on its own workers.
        root = manager.root if manager is not None else root
        self.manager = RunManager(root, start=False)
        self._task = ray.remote(train_events).options(
            num_cpus=cpus_per_trial, num_gpus=gpus_per_trial, max_retries=0, num_returns="streaming")
        self.flush_seconds, self.callbacks, self.data_loader = flush_seconds, callbacks, data_loader
        self.cpus_per_trial, self.gpus_per_trial, self.tune_engine = cpus_per_trial, gpus_per_trial, tune_engine
        self._streams: dict[Any, _Stream] = {}  # generator -> stream
        self.on_eval: Callable[[str, dict[str, Any]], None] | None = None  # a tuned study's: each evaluation read
        resources = ray.cluster_resources()  # runs that fit at once (a tuned study launches no more trials)
        self.concurrency = max(1, int(min(resources.get("CPU", 1.0) // cpus_per_trial,
                                          resources.get("GPU", 0.0) // gpus_per_trial if gpus_per_trial else 1e9)))
        self.latencies: list[float] = []  # seconds from a step on its worker to its row in the store
        self._stop_checked = 0.0

    # -------------------------------------------------------------------------------------------------- runs
    def launch(self, run_id: str, resume: bool) -> None:
        """Submit the queued run as a Ray task (it stays `queued` until its worker reports the start)."""
        config = self.manager.store.run_config(run_id)
        generator = self._task.remote(config, str(self.manager.run_dir(run_id)), resume, self.flush_seconds,
                                      self.callbacks, self.data_loader)
        writer = StoreWriter(self.manager.store, run_id, flush_every=10_000, flush_seconds=3600.0)
        self._streams[generator] = _Stream(run_id, generator, writer)

    def poll(self, timeout: float) -> list[tuple[str, str, str | None]]:
        """Read every event that arrives within `timeout` s into the store; returns the runs that ended."""
        done: list[tuple[str, str, str | None]] = []
        deadline = time.monotonic() + timeout
        self._honour_stop_requests()
        while self._streams and not done:
            left = max(0.0, deadline - time.monotonic())
            ready, _ = self.ray.wait(list(self._streams), num_returns=1, timeout=left)
            for generator in ready:
                outcome = self._read(self._streams[generator])
                if outcome is not None:
                    self._streams.pop(generator)
                    done.append(outcome)
            if time.monotonic() >= deadline:
                break
        if not self._streams and not done and timeout:
            time.sleep(min(timeout, 0.05))
        return done

    def _honour_stop_requests(self) -> None:
        """Cancel the tasks of runs whose stop was asked for (the app's Stop button, `RunManager.stop` elsewhere)."""
        if time.monotonic() - self._stop_checked < 1.0 or not self._streams:
            return
        self._stop_checked = time.monotonic()
        by_id = {s.run_id: s for s in self._streams.values() if s.stopping is None}
        if not by_id:
            return
        ids = sorted(by_id)
        for run_id in self.manager.store.stop_flagged(ids):
            s = by_id[run_id]
            s.stopping = STOPPED
            self.ray.cancel(s.generator)
            logger.info("run %s: stop requested; cancelling its Ray task", run_id)

    def _read(self, s: _Stream) -> tuple[str, str, str | None] | None:
        """Write one batch of a stream's events; (run_id, outcome, error) when the run ended."""
        try:
            batch = self.ray.get(next(s.generator))
        except StopIteration:
            return self._finish(s, FAILED, "the Ray task ended without a result")
        except self.ray.exceptions.TaskCancelledError:
            if s.stopping == STOPPED:
                return self._finish(s, STOPPED, None)
            return self._finish(s, INTERRUPTED, "interrupted: the study's driver stopped the run; `study resume` "
                                                "continues it")
        except self.ray.exceptions.RayError as exc:  # the worker died (killed, out of memory, node lost)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return self._finish(s, INTERRUPTED, f"interrupted: its Ray worker died ({type(exc).__name__}: "
                                                f"{first})", outcome=LOST)
        ended = None
        for event in batch:
            kind = event[0]
            if kind == "start":
                self._mark_running(s, event[1])
            elif kind == "step":
                s.writer.on_step_end(None, event[1], event[2])
            elif kind == "eval":
                s.writer.on_eval_end(None, event[1], event[2])
                if self.on_eval is not None:
                    self.on_eval(s.run_id, event[2])
            elif kind == "phase":
                s.writer.on_phase(None, event[1], event[2], event[3])
            elif kind == "end":
                ended = event[1]
        s.writer.flush()
        now = time.time()
        self.latencies.extend(now - e[3] for e in batch if e[0] == "step")
        if ended is None:
            return None
        return self._finish(s, ended["status"], ended.get("error"), note=ended.get("note"))

    def _mark_running(self, s: _Stream, info: dict[str, Any]) -> None:
        s.started = True
        m = self.manager
        if m.store.claim(s.run_id, m.token, m.pid, m.host, time.time()) is None:  # stopped or deleted while it waited
            s.stopping = STOPPED
            self.ray.cancel(s.generator)
            return
        s.writer.record_start(info)
        logger.debug("run %s: started on Ray worker %s", s.run_id, info.get("worker"))

    def _finish(self, s: _Stream, status: str, error: str | None, outcome: str | None = None,
                note: str | None = None) -> tuple[str, str, str | None]:
        try:
            s.writer.flush()
        except Exception:  # what could not be written is lost with the worker; the status still is recorded
            logger.exception("run %s: writing its last metrics failed", s.run_id)
        self.manager.store.finish(s.run_id, status, error, time.time(), note=note)
        if status == FAILED:
            logger.error("run %s failed: %s", s.run_id, (error or "").splitlines()[0] if error else "")
        elif outcome == LOST:
            logger.warning("run %s: %s", s.run_id, error)
        else:
            logger.info("run %s: %s", s.run_id, status)
        return s.run_id, outcome or status, error

    def stop(self) -> None:
        """Cancel every task in flight; their runs end `interrupted` (resumable)."""
        for generator, s in list(self._streams.items()):
            s.stopping = INTERRUPTED
            self.ray.cancel(generator, force=False)
        deadline = time.monotonic() + 30
        while self._streams and time.monotonic() < deadline:
            self.poll(0.5)
        for s in list(self._streams.values()):  # never answered: record it as interrupted anyway
            self._finish(s, INTERRUPTED, "interrupted: the study's driver stopped")
        self._streams.clear()

    def close(self) -> None:
        """Stop what still runs, shut the store view down, and disconnect from a Ray this backend started."""
        if self._streams:
            self.stop()
        if self.latencies:
            lat = sorted(self.latencies)
            logger.info("ray: %d steps streamed; a step reached the run store %.3f s (median; 95th percentile "
                        "%.3f s) after it ran on its worker", len(lat), lat[len(lat) // 2],
                        lat[min(len(lat) - 1, int(0.95 * len(lat)))])
        self.manager.shutdown()
        if self._owns_ray:
            self.ray.shutdown()


__all__ = ["PACKAGE_DIR", "RayBackend", "train_events"]
