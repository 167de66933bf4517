"""The run store's query methods against a real SQLite file (WAL): runs, claims, heartbeats, metrics, evaluations,
groups, the gallery's rows, and the study store's; two processes where it matters (claims, a read during a write)."""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from gist_engine.runs import RunNotFound, RunStore
from gist_engine.runs.store import DB_NAME, EVAL_COLUMNS
from gist_engine.studies.store import StudyStore


def run_row(run_id: str, **fields) -> dict:
    """A `runs` row as the manager inserts it (queued, owned by `me`)."""
    return {"id": run_id, "name": f"n-{run_id}", "created": fields.pop("created", time.time()), "status": "queued",
            "heartbeat": time.time(), "config": json.dumps({"seed": 0, "id": run_id}), "seed": 0, "gist_enabled": 1,
            "method": "linear", "group_id": None, "versions": "{}", "device": "cpu", "owner": "me",
            "owner_pid": 1, "owner_host": "h", **fields}


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / DB_NAME)
    yield s
    s.close()


def test_the_store_is_a_wal_file(store):
    with store.read() as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_insert_get_list_and_groups(store):
    group = {"id": "g1", "name": "pair", "created": 1.0, "seeds": "[0, 1]", "config": '{"method": "linear"}',
             "versions": "{}"}
    store.insert_runs([run_row("a", created=1.0, group_id="g1"), run_row("b", created=2.0, group_id="g1"),
                       run_row("c", created=3.0)], group)
    assert store.run_row("a", "name, status")["name"] == "n-a"
    assert store.run_config("b") == {"seed": 0, "id": "b"}
    assert [r["id"] for r in store.list_runs()] == ["c", "b", "a"]  # newest first
    assert [r["id"] for r in store.list_runs(group_id="g1")] == ["b", "a"]
    assert [r["id"] for r in store.list_runs(limit=1)] == ["c"]
    store.finish("a", "completed", None, 5.0)
    assert [r["id"] for r in store.list_runs(status="completed")] == ["a"]
    assert [r["id"] for r in store.list_runs(status="completed", also=["c"])] == ["c", "a"]
    assert store.groups() == [{"id": "g1", "name": "pair", "created": 1.0, "seeds": [0, 1],
                               "config": {"method": "linear"}, "runs": ["a", "b"]}]
    assert store.is_group("g1") and not store.is_group("a")
    assert store.group_row("g1")["name"] == "pair"
    with pytest.raises(RunNotFound, match="no run 'zz'"):
        store.run_row("zz")
    with pytest.raises(RunNotFound, match="no group 'zz'"):
        store.group_row("zz")
    with pytest.raises(Exception, match="UNIQUE"):  # one transaction: the new run of a clashing batch is not kept
        store.insert_runs([run_row("d"), run_row("a")])
    assert [r["id"] for r in store.list_runs()] == ["c", "b", "a"]


def test_claim_finish_stop_and_requeue(store):
    store.insert_runs([run_row("a"), run_row("b"), run_row("c")])
    assert store.claim("a", "w1", 11, "host", 100.0) == {"seed": 0, "id": "a"}
    assert store.claim("a", "w2", 12, "host", 101.0) is None  # running already: nothing changes
    row = store.run_row("a")
    assert (row["status"], row["owner"], row["owner_pid"], row["started"]) == ("running", "w1", 11, 100.0)
    assert store.claim("nope", "w1", 11, "host", 100.0) is None
    store.request_stop("a")
    store.stop_queued("b", 102.0)
    store.stop_queued("a", 102.0)  # running: not touched
    assert store.run_row("b", "status")["status"] == "stopped"
    assert store.run_row("a", "status")["status"] == "running"
    assert sorted(store.stop_flagged(["a", "b", "c"])) == ["a", "b"]
    store.finish("a", "failed", "boom", 103.0)
    row = store.run_row("a")
    assert (row["status"], row["error"], row["finished"], row["stop_requested"]) == ("failed", "boom", 103.0, 0)
    assert store.run_statuses(["a", "c", "gone"]) == {"a": ("failed", "boom"), "c": ("queued", None)}
    assert store.requeue("a", "w3", 13, "h2", 104.0, ("failed", "stopped"))
    assert not store.requeue("a", "w4", 14, "h2", 105.0, ("failed", "stopped"))  # queued now: not twice
    row = store.run_row("a")
    assert (row["status"], row["owner"], row["resumed"], row["error"]) == ("queued", "w3", 1, None)
    assert store.claim("a", "w3", 13, "h2", 106.0) is not None
    assert store.run_row("a", "started")["started"] == 100.0  # started once
    store.interrupt_queued(["a", "c"], "shut down", 107.0)
    assert store.run_statuses(["a", "c"]) == {"a": ("running", None), "c": ("interrupted", "shut down")}


def test_beat_and_end_runs_only_touch_active_runs_of_that_owner(store):
    store.insert_runs([run_row("a", owner="me", heartbeat=0.0), run_row("b", owner="other", heartbeat=0.0),
                       run_row("c", owner="me", status="completed", heartbeat=0.0)])
    seen = []

    def find_ended(rows, now):
        seen.append(sorted(r["id"] for r in rows))
        return [("interrupted", now, "dead", now, "b", "other"), ("interrupted", now, "dead", now, "a", "not-me")]

    rows, ended = store.beat("me", find_ended)
    assert seen == [["a", "b"]] and len(rows) == 2 and len(ended) == 2
    assert store.run_row("a", "heartbeat")["heartbeat"] > 0  # beaten
    assert store.run_row("c", "heartbeat")["heartbeat"] == 0.0  # not active: not beaten
    assert store.run_statuses(["a", "b"]) == {"a": ("queued", None), "b": ("interrupted", "dead")}  # owner checked
    assert sorted(r["id"] for r in store.active_runs()) == ["a"]
    store.end_runs([("failed", 1.0, "gone", 1.0, "a", "me"), ("failed", 1.0, "gone", 1.0, "c", "me")])
    assert store.run_statuses(["a", "c"]) == {"a": ("failed", "gone"), "c": ("completed", None)}


def test_steps_evaluations_and_frames(store):
    store.insert_runs([run_row("a")])
    store.append_steps("a", [("a", s, k, float(s * 10 + i)) for s in (1, 2, 3) for i, k in enumerate(("loss", "lr"))],
                       3, 0.5, {"loss": 30.0, "lr": 31.0, "phase": {"name": "training"}}, 2.0)
    row = store.run_row("a")
    assert (row["step"], row["epoch"], row["steps_per_second"]) == (3, 0.5, 2.0)
    frame = store.metrics_frame("a", default_keys=("lr", "epoch"))  # keys of `latest`, the default keys first
    assert list(frame.columns) == ["step", "lr", "loss"] and list(frame["step"]) == [1, 2, 3]
    assert list(frame["loss"]) == [10.0, 20.0, 30.0]
    since = store.metrics_frame("a", keys=["loss", "never"], since_step=2)
    assert list(since["step"]) == [3] and since["loss"][0] == 30.0 and math.isnan(since["never"][0])
    assert str(since["step"].dtype) == "int64"
    store.append_steps("a", [], 3, 0.5, {}, None, evaluation=(3, {"epoch": 0.5, "acc_cls": 40.0, "acc_gist": 30.0,
                                                                  "agreement": 0.5, "n": 10, "per_class": {"0": 1}}))
    store.append_steps("a", [], 3, 0.5, {}, None, evaluation=(4, {"split": "probe", "acc_cls": 99.0}))
    store.append_steps("a", [("a", 5, "loss", 1.0)], 5, 1.0, {"loss": 1.0}, None,
                       evaluation=(5, {"epoch": 1.0, "acc_cls": 35.0}))
    row = store.run_row("a")
    assert (row["acc_cls"], row["best_acc_cls"], row["step"]) == (35.0, 40.0, 5)  # probe evaluations draw only
    assert json.loads(row["last_eval"])["step"] == 5
    evals = store.evaluations_frame("a")
    assert list(evals["step"]) == [3, 4, 5] and evals["per_class"][0] == {"0": 1} and math.isnan(evals["acc_gist"][2])
    with pytest.raises(RunNotFound):
        store.metrics_frame("zz")
    with pytest.raises(RunNotFound):
        store.evaluations_frame("zz")
    # a resume from step 3 forgets what came after and sets the summary from what is left
    info = {"step": 3, "total_steps": 10, "config": {"x": 1}, "trainable_params": 5, "gist_params": 1,
            "total_params": 50, "device": "cpu"}
    store.record_start("a", info, {"name": "training", "done": 0, "total": 0})
    row = store.run_row("a")
    assert list(store.metrics_frame("a", keys=["loss"])["step"]) == [1, 2, 3]
    assert list(store.evaluations_frame("a")["step"]) == [3]
    assert (row["acc_cls"], row["best_acc_cls"], row["total_steps"], row["step"]) == (40.0, 40.0, 10, 3)
    assert json.loads(row["latest"]) == {"loss": 30.0, "lr": 31.0, "phase": {"name": "training", "done": 0,
                                                                             "total": 0}}
    assert json.loads(row["config"]) == {"x": 1}
    store.set_latest("a", {"loss": 2.0, "phase": {"name": "evaluating"}})
    assert json.loads(store.run_row("a", "latest")["latest"])["phase"] == {"name": "evaluating"}
    store.delete_run("a")
    with pytest.raises(RunNotFound):
        store.run_row("a")
    assert store.export_rows(["a"]) == ([], [], [], [])  # its metrics and evaluations went with it


def test_export_rows_import_into_another_store_and_empty_groups(store, tmp_path):
    group = {"id": "g1", "name": "pair", "created": 1.0, "seeds": "[0]", "config": "{}", "versions": "{}"}
    store.insert_runs([run_row("a", group_id="g1"), run_row("b")], group)
    store.append_steps("a", [("a", 1, "loss", 0.5)], 1, 0.1, {"loss": 0.5}, None,
                       evaluation=(1, {"acc_cls": 50.0, "n": 4}))
    runs, groups, metrics, evals = store.export_rows(["a", "b"])
    assert [r["id"] for r in runs] == ["a", "b"] and [g["id"] for g in groups] == ["g1"]
    assert metrics == [("a", 1, "loss", 0.5)] and len(evals) == 1 and len(evals[0]) == len(EVAL_COLUMNS)
    other = RunStore(tmp_path / "other" / DB_NAME)
    try:
        other.import_rows([g | {"unknown_column": 1} for g in groups],
                          [r | {"owner": "gallery:x", "from_a_newer_release": 2} for r in runs], metrics, evals)
        assert other.export_rows(["a", "b"])[2:] == (metrics, evals)
        assert other.runs_owned_like("gallery:") == [("a", "gallery:x"), ("b", "gallery:x")]
        assert other.not_owned_by(["a", "b"], ["g1"], "gallery:x") == []
        assert store.not_owned_by(["a", "b"], ["g1"], "gallery:x") == ["a", "b", "g1"]
        with pytest.raises(Exception, match="UNIQUE"):  # one transaction: the group replaced is rolled back too
            other.import_rows([group | {"name": "renamed"}], runs, [], [])
        assert other.group_row("g1")["name"] == "pair"
        other.delete_run("a")
        other.delete_empty_groups(["g1"])
        assert not other.is_group("g1")
    finally:
        other.close()
    store.delete_empty_groups(["g1"])  # run a still belongs to it
    assert store.is_group("g1")


def test_study_store_rows(store):
    store.insert_runs([run_row("a"), run_row("b")])
    with StudyStore(store) as s:
        study = {"id": "s1", "name": "t", "created": 1.0, "spec": "{}", "status": "completed", "backend": "local",
                 "cells": 1, "planned": 2, "not_a_column": 3}
        links = [{"study_id": "s1", "cell": 0, "cell_key": "k", "seed": 0, "arm": arm, "attempt": 1, "run_id": rid,
                  "created": 1.0} for arm, rid in (("plain", "a"), ("gist", "b"))]
        assert s.import_rows(study, links) == 3
        assert s.import_rows(study, links) == 0  # present: nothing added
        assert s.exists("s1") and not s.exists("s2")
        row, exported, run_ids = s.export_rows("s1")
        assert row["name"] == "t" and [r["arm"] for r in exported] == ["gist", "plain"] and run_ids == ["a", "b"]
        assert s.studies_of_runs(["b", "zz"]) == ["s1"] and s.studies_of_runs(["zz"]) == []


# --------------------------------------------------------------------------------------------- two processes
def _claim_all(path: str, owner: str, ids: list[str], barrier, out) -> None:
    """One process: meet the other at `barrier`, then try to claim every run; puts (owner, ids claimed) on `out`."""
    store = RunStore(path)
    barrier.wait()
    out.put((owner, [rid for rid in ids if store.claim(rid, owner, 0, "h", time.time()) is not None]))
    store.close()


def _read_during_write(path: str, ready, go, out) -> None:
    """One process: open the store (opening writes: the schema check), say `ready`, then at `go` read the metrics
    while the parent holds a write transaction open; puts (steps, seconds)."""
    store = RunStore(path)
    ready.set()
    go.wait(240)
    t0 = time.monotonic()
    steps = list(store.metrics_frame("a", keys=["loss"])["step"])
    out.put((steps, time.monotonic() - t0))
    store.close()


def test_two_processes_claiming_the_same_runs_claim_each_once(store):
    ids = [f"r{i:02d}" for i in range(30)]
    store.insert_runs([run_row(rid) for rid in ids])
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_claim_all, args=(str(store.path), f"w{i}", ids, barrier, out), daemon=True)
             for i in range(2)]
    for p in procs:
        p.start()
    claimed = dict(out.get(timeout=240) for _ in procs)
    for p in procs:
        p.join(30)
    assert sorted(claimed["w0"] + claimed["w1"]) == ids and not set(claimed["w0"]) & set(claimed["w1"])
    owners = {rid: store.run_row(rid, "owner")["owner"] for rid in ids}
    assert all(owners[rid] == w for w, got in claimed.items() for rid in got)


def test_another_process_reads_committed_steps_while_a_write_is_open(store):
    store.insert_runs([run_row("a")])
    store.append_steps("a", [("a", 1, "loss", 1.0)], 1, 0.0, {"loss": 1.0}, None)
    ctx = mp.get_context("spawn")
    ready, go, out = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=_read_during_write, args=(str(store.path), ready, go, out), daemon=True)
    proc.start()
    assert ready.wait(240)
    with store.write() as c:  # an open write transaction (WAL: readers are not blocked and see the last commit)
        c.execute("INSERT INTO metrics (run_id, step, key, value) VALUES ('a', 2, 'loss', 2.0)")
        go.set()
        steps, seconds = out.get(timeout=240)
    proc.join(30)
    assert steps == [1]
    assert seconds < store.busy_timeout  # never waited for the writer's lock
    assert list(store.metrics_frame("a", keys=["loss"])["step"]) == [1, 2]


def test_no_query_builds_sql_from_a_hostile_id(store):
    store.insert_runs([run_row("a")])
    hostile = "a' OR '1'='1"
    with pytest.raises(RunNotFound):
        store.run_row(hostile)
    assert store.run_statuses([hostile]) == {} and store.stop_flagged([hostile]) == []
    assert store.claim(hostile, "w", 0, "h", 1.0) is None
    store.delete_run(hostile)
    assert Path(store.path).exists() and store.run_row("a")["id"] == "a"
