"""RunManager: concurrency, polling, stop, failures (and their log), restart recovery + resume, groups."""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
import time

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from gist_engine.config import load_run_config
from gist_engine.runs import STEP_KEYS, RunError, RunManager, RunNotFound
from gist_engine.runs.pairs import format_table
from gist_engine.train import Callback, Trainer
from gist_engine.train.checkpoint import RESUME_NAME, CheckpointError, trainable_state
from tests.runs.helpers import Slow, config, wait_for


class DroppedWrites:
    """The writer connection of a killed process: every statement is taken and nothing reaches the file."""

    rowcount = 0

    def execute(self, *args) -> DroppedWrites:
        return self

    executemany = execute

    def fetchall(self) -> list:
        return []

    def fetchone(self) -> None:
        return None


def kill(manager: RunManager, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `manager` behave as if its process had been killed: from now on none of its writes reach the store,
    and its threads end (a running run stops within a step, but nothing of its end is recorded)."""

    @contextlib.contextmanager
    def dropped():
        yield DroppedWrites()

    monkeypatch.setattr(manager.store, "write", dropped)
    manager.shutdown(timeout=30)


# ------------------------------------------------------------------------------------------------------ basics
def test_a_run_records_progress_metrics_evaluations_and_files(manager_factory):
    mgr = manager_factory()
    run_id = mgr.submit(config("one"))
    snap = mgr.wait(run_id, timeout=60)
    assert snap.status == "completed" and snap.error is None, snap.error
    assert snap.step == snap.total_steps == 8 and snap.progress == 1.0 and snap.epoch == pytest.approx(2.0)
    assert snap.name == "one" and snap.config.num_classes == 4 and snap.method == "lora" and snap.gist_enabled
    assert set(snap.latest) == set(STEP_KEYS) and snap.last_eval["step"] == 8
    assert snap.best_acc_cls >= snap.acc_cls and snap.trainable_params > snap.gist_params == 32
    assert snap.has_checkpoint and (snap.run_dir / "result.json").exists() and "torch" in snap.versions
    frame = mgr.metrics(run_id)
    assert list(frame.columns) == ["step", *STEP_KEYS] and frame["step"].tolist() == list(range(1, 9))
    part = mgr.metrics(run_id, keys=["total", "lr"], since_step=5)
    assert list(part.columns) == ["step", "total", "lr"] and part["step"].tolist() == [6, 7, 8]
    assert part["total"].tolist() == frame["total"].tolist()[5:]
    evals = mgr.evaluations(run_id)
    assert evals["step"].tolist() == [4, 8] and set(evals["per_class"][0]) == {"red", "green", "blue", "yellow"}
    assert [s.id for s in mgr.list()] == [run_id] and mgr.list(status="failed") == []
    with pytest.raises(RunNotFound, match="no run 'nope'"):
        mgr.get("nope")
    with pytest.raises(KeyError):
        mgr.metrics("nope")


def test_concurrent_submits_from_many_threads_lose_nothing(manager_factory):
    mgr = manager_factory(start=False)
    ids: list[str] = []
    lock = threading.Lock()

    def submit_many(t: int) -> None:
        for i in range(10):
            run_id = mgr.submit(config(f"t{t}-{i}"))
            with lock:
                ids.append(run_id)

    threads = [threading.Thread(target=submit_many, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == len(set(ids)) == 80
    listed = mgr.list(status="queued")
    assert {s.id for s in listed} == set(ids) and len(mgr.pool.queue) == 80
    assert {s.name for s in listed} == {f"t{t}-{i}" for t in range(8) for i in range(10)}


def test_polling_while_writing_sees_whole_steps_in_order(manager_factory):
    mgr = manager_factory(flush_every=3, callbacks=lambda cfg, run_dir: [Slow(0.004)])
    run_id = mgr.submit(config(epochs=6, batch_size=8))  # 48 steps
    seen: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def poll(reader: int) -> None:
        last, steps = 0, []
        try:
            while True:
                done = mgr.get(run_id).status not in ("queued", "running")
                frame = mgr.metrics(run_id, since_step=last)
                assert not frame[list(STEP_KEYS)].isna().any().any(), "a step was read half-written"
                steps += frame["step"].tolist()
                last = steps[-1] if steps else last
                if done:
                    break
                time.sleep(0.01)  # a poller, not a spinner: tight loops starve the training thread of the GIL
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        seen[reader] = steps

    readers = [threading.Thread(target=poll, args=(i,)) for i in range(4)]
    for t in readers:
        t.start()
    for t in readers:
        t.join(60)
    assert not errors, errors
    for steps in seen.values():
        assert steps == list(range(1, 49))
    assert mgr.get(run_id).status == "completed"


# ------------------------------------------------------------------------------------------ stop and failures
def test_stop_a_queued_run_at_once_and_a_running_one_within_a_step(manager_factory):
    mgr = manager_factory(callbacks=lambda cfg, run_dir: [Slow(0.02)])
    running = mgr.submit(config("long", epochs=50))
    queued = mgr.submit(config("waiting"))
    wait_for(lambda: mgr.get(running).step >= 2, what="the first run to start")
    assert mgr.get(queued).status == "queued"
    mgr.stop(queued)
    assert mgr.get(queued).status == "stopped"
    mgr.stop(running)
    snap = mgr.wait(running, timeout=30)
    assert snap.status == "stopped" and 2 <= snap.step < snap.total_steps
    after = mgr.submit(config("after"))
    assert mgr.wait(after, timeout=60).status == "completed"
    assert mgr.get(queued).step == 0  # never ran


def test_an_exception_in_a_run_fails_it_with_the_traceback_and_the_worker_goes_on(manager_factory):
    class Boom(Callback):
        def on_step_end(self, trainer, step, metrics):
            if step == 2:
                raise RuntimeError("boom in a callback")

    mgr = manager_factory(callbacks=lambda cfg, run_dir: [Boom()] if cfg.name == "bad" else [])
    bad, good = mgr.submit(config("bad")), mgr.submit(config("good"))
    snap = mgr.wait(bad, timeout=60)
    assert snap.status == "failed" and "RuntimeError: boom in a callback" in snap.error
    assert "Traceback" in snap.error and "on_step_end" in snap.error
    assert mgr.metrics(bad)["step"].tolist() == [1, 2]  # what was buffered is kept
    assert mgr.wait(good, timeout=60).status == "completed"
    user_error = mgr.submit(config("cuda", device="cuda")) if not torch.cuda.is_available() else None
    if user_error:
        snap = mgr.wait(user_error, timeout=60)
        assert snap.status == "failed" and "train.device" in snap.error and "Traceback" not in snap.error


def test_a_crashing_run_logs_its_traceback_and_ends_failed(manager_factory, caplog):
    class Crash(Callback):
        def on_step_end(self, trainer, step, metrics):
            if step == 3:
                raise ZeroDivisionError("crash in step 3")

    mgr = manager_factory(callbacks=lambda cfg, run_dir: [Crash()])
    with caplog.at_level(logging.INFO, logger="gist_engine"):
        run_id = mgr.submit(config("crashing"))
        snap = mgr.wait(run_id, timeout=60)
        wait_for(lambda: any(r.getMessage() == f"run {run_id}: failed" for r in caplog.records), what="the log")
    assert snap.status == "failed" and "ZeroDivisionError: crash in step 3" in snap.error
    crash = [r for r in caplog.records if r.levelno == logging.ERROR and r.exc_info]
    assert len(crash) == 1 and crash[0].name == "gist_engine.runs.execute"
    assert crash[0].getMessage() == f"run {run_id} failed" and crash[0].exc_info[0] is ZeroDivisionError
    assert "Traceback" in caplog.text and "on_step_end" in caplog.text and "crash in step 3" in caplog.text


def test_delete_removes_rows_and_directory(manager_factory):
    mgr = manager_factory()
    run_id = mgr.submit(config())
    snap = mgr.wait(run_id, timeout=60)
    assert snap.run_dir.is_dir()
    mgr.delete(run_id)
    assert not snap.run_dir.exists() and mgr.list() == []
    with sqlite3.connect(mgr.store.path) as db:
        assert db.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == 0


# -------------------------------------------------------------------------------------- restart and resume
def test_trainer_resume_continues_bit_for_bit(toy, tmp_path):
    cfg = load_run_config(config(epochs=3, checkpoint_every=1))
    reference = Trainer(cfg, run_dir=tmp_path / "ref", data=toy)
    ref = reference.run()

    class Crash(Callback):
        def on_step_end(self, trainer, step, metrics):
            if step == 6:
                raise KeyboardInterrupt  # dies in epoch 2, after the epoch-1 checkpoint

    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, run_dir=tmp_path / "run", data=toy, callbacks=[Crash()]).run()
    resumed = Trainer(cfg, run_dir=tmp_path / "run", data=toy, resume_from=tmp_path / "run" / RESUME_NAME)
    res = resumed.run()
    assert res.status == "completed" and res.steps == ref.steps == 12
    assert [s["total"] for s in res.history["steps"]] == [s["total"] for s in ref.history["steps"]]
    assert [e["step"] for e in res.history["evals"]] == [4, 8, 12] and res.best_acc_cls == ref.best_acc_cls
    a, b = trainable_state(reference.model), trainable_state(resumed.model)
    assert all(torch.equal(a[k], b[k]) for k in a)
    other = load_run_config(config(epochs=3, checkpoint_every=1, lr=1e-2))
    with pytest.raises(CheckpointError, match="different config"):
        Trainer(other, data=toy, resume_from=tmp_path / "run" / RESUME_NAME).run()


def test_kill_and_restart_marks_interrupted_and_resume_continues_from_the_checkpoint(manager_factory, tmp_path,
                                                                                    monkeypatch):
    gate = threading.Event()

    class HoldInEpoch3(Callback):
        def on_step_end(self, trainer, step, metrics):
            if step == 10:  # epoch 3 of 4; checkpoints were written after epochs 1 and 2
                gate.set()
                wait_for(lambda: first.pool._closing, what="the simulated crash")

    first = manager_factory(callbacks=lambda cfg, run_dir: [HoldInEpoch3()])
    cfg = config("crashy", epochs=4, checkpoint_every=1)
    run_id = first.submit(cfg)
    waiting = first.submit(config("never started"))
    assert gate.wait(60)
    kill(first, monkeypatch)  # no status written: the store still says running / queued
    assert first.get(run_id).status == "running" and first.get(waiting).status == "queued"
    time.sleep(0.3)

    second = manager_factory(stale_after=0.25)
    snap = second.get(run_id)
    assert snap.status == "interrupted" and "no heartbeat" in snap.error and snap.can_resume
    assert second.get(waiting).status == "interrupted"
    assert second.resume(run_id) == run_id
    snap = second.wait(run_id, timeout=60)
    assert snap.status == "completed" and snap.step == 16 and snap.resumed == 1 and snap.error is None
    assert second.evaluations(run_id)["step"].tolist() == [4, 8, 12, 16]
    assert not (snap.run_dir / RESUME_NAME).exists() and snap.has_checkpoint  # nothing left to resume

    reference = second.wait(second.submit(config("reference", epochs=4, checkpoint_every=1)), timeout=60)
    got, want = second.metrics(run_id), second.metrics(reference.id)
    assert got["step"].tolist() == list(range(1, 17))
    pd.testing.assert_frame_equal(got.drop(columns="images_per_second"), want.drop(columns="images_per_second"))
    assert snap.acc_cls == reference.acc_cls and snap.best_acc_cls == reference.best_acc_cls

    again = second.rerun(waiting)
    assert again != waiting and second.wait(again, timeout=60).status == "completed"
    with pytest.raises(RunError, match="only interrupted"):
        second.resume(run_id)


def test_shutdown_interrupts_running_and_queued_runs(manager_factory, tmp_path):
    mgr = manager_factory(callbacks=lambda cfg, run_dir: [Slow(0.02)])
    running, queued = mgr.submit(config(epochs=50)), mgr.submit(config())
    wait_for(lambda: mgr.get(running).step >= 1, what="the run to start")
    mgr.shutdown(timeout=30)
    view = manager_factory(start=False)
    assert view.get(running).status == "interrupted" and view.get(queued).status == "interrupted"


# -------------------------------------------------------------------------------------------------- groups
def test_group_statistics_equal_a_hand_computation(manager_factory):
    mgr = manager_factory()
    group_id = mgr.submit_group({**config(epochs=2), "method": "full"}, seeds=[3, 4, 5], name="cmp")
    group = mgr.groups()[0]
    assert group["id"] == group_id and group["seeds"] == [3, 4, 5] and len(group["runs"]) == 6
    for run_id in group["runs"]:
        assert mgr.wait(run_id, timeout=60).status == "completed"
    res = mgr.group_results(group_id)
    by = {(s.seed, s.gist_enabled): s for s in res["runs"]}
    plain = np.array([by[(s, False)].acc_cls for s in (3, 4, 5)])
    gist = np.array([by[(s, True)].acc_cls for s in (3, 4, 5)])
    d = gist - plain
    got = res["delta_acc_cls"]
    assert got["deltas"] == pytest.approx(d.tolist()) and got["mean"] == pytest.approx(d.mean())
    if d.std(ddof=1) > 0:
        half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
        assert got["std"] == pytest.approx(d.std(ddof=1))
        assert (got["ci_low"], got["ci_high"]) == pytest.approx((d.mean() - half, d.mean() + half))
        assert got["p_value"] == pytest.approx(stats.ttest_rel(gist, plain).pvalue)
    best = np.array([by[(s, True)].best_acc_cls - by[(s, False)].best_acc_cls for s in (3, 4, 5)])
    assert res["delta_best_acc_cls"]["mean"] == pytest.approx(best.mean())
    assert res["extra_params"] == 32 and [r["seed"] for r in res["seeds"]] == [3, 4, 5]
    assert "mean delta" in format_table(res["paired"]) and res["paired"].n == 3
    assert by[(3, True)].name == "cmp-gist-seed3" and by[(3, True)].config.train.seed == 3
