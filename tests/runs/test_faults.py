"""The run store under faults: a full disk, damaged store files, a peer process killed while its run runs."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from gist_engine.cli import main
from gist_engine.runs import RunManager, StoreError
from gist_engine.runs import store as store_module
from gist_engine.runs.store import SCHEMA_VERSION
from tests.runs.helpers import Slow, config, wait_for

ROOT = Path(__file__).resolve().parents[2]


def fill_disk_after(monkeypatch: pytest.MonkeyPatch, mgr: RunManager, writes: int) -> threading.Event:
    """From the `writes`+1-th write on, the store's writes fail as SQLite's do on a full disk, until the returned
    event ("space freed") is set."""
    real, calls, freed = mgr.store.write, [0], threading.Event()

    @contextlib.contextmanager
    def write():
        calls[0] += 1
        if calls[0] > writes and not freed.is_set():
            raise sqlite3.OperationalError("database or disk is full")
        with real() as c:
            yield c

    monkeypatch.setattr(mgr.store, "write", write)
    return freed


@pytest.mark.parametrize("writes", [1, 2, 3])  # the claim, the first metrics, the final status fail
def test_a_full_disk_ends_the_run_failed_at_the_next_heartbeat(manager_factory, monkeypatch, tmp_path, writes):
    mgr = manager_factory(callbacks=lambda cfg, run_dir: [Slow(0.01)])
    freed = fill_disk_after(monkeypatch, mgr, writes)
    run_id = mgr.submit(config("full"))  # write 1
    wait_for(lambda: run_id not in mgr.pool.owned, what="the worker to give up")
    with mgr.store.read() as c:  # nothing could be written yet (the manager shows the failure from memory)
        assert c.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0] in ("queued", "running")
    freed.set()

    def written() -> bool:
        with mgr.store.read() as c:
            return c.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0] == "failed"

    wait_for(written, timeout=10, what="the heartbeat to record the failure")
    assert mgr.get(run_id).error == f"disk full: free space in {tmp_path} and rerun"
    assert mgr.wait(mgr.submit(config("after")), timeout=60).status == "completed"  # the store works again


@pytest.mark.parametrize("writes", [1, 2])  # the claim fails (still queued) / the first metrics fail (running, step 0)
def test_the_live_manager_shows_a_full_disk_at_once_while_it_stays_full(manager_factory, monkeypatch, tmp_path,
                                                                       writes):
    mgr = manager_factory(callbacks=lambda cfg, run_dir: [Slow(0.01)])
    freed = fill_disk_after(monkeypatch, mgr, writes)
    run_id = mgr.submit(config("full", epochs=50))  # write 1
    full = f"disk full: free space in {tmp_path} and rerun"
    snap = mgr.wait(run_id, timeout=60)  # returns although nothing of the failure could be written
    assert (snap.status, snap.error) == ("failed", full)
    with mgr.store.read() as c:  # the store still says what it said before the disk filled
        assert c.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()[0] in ("queued", "running")
    assert [(s.id, s.status, s.error) for s in mgr.list()] == [(run_id, "failed", full)]
    assert [s.id for s in mgr.list(status="failed")] == [run_id] and mgr.list(status="running") == []
    wait_for(lambda: mgr.store_problem == full, timeout=10, what="the heartbeat to find the disk full")
    time.sleep(0.5)  # a few more beats: the failure stays visible while the disk stays full
    assert mgr.get(run_id).status == "failed" and mgr.store_problem == full
    freed.set()
    wait_for(lambda: mgr.store_problem is None, timeout=10, what="a heartbeat that writes again")
    with mgr.store.read() as c:  # now written: the store and the live view agree
        row = c.execute("SELECT status, error FROM runs WHERE id = ?", (run_id,)).fetchone()
    assert tuple(row) == ("failed", full)


def test_a_new_manager_in_the_same_process_records_the_full_disk(manager_factory, monkeypatch, tmp_path):
    first = manager_factory(heartbeat_every=3600)  # its heartbeat never comes: the new manager must do it
    freed = fill_disk_after(monkeypatch, first, 2)
    run_id = first.submit(config("full"))
    wait_for(lambda: run_id not in first.pool.owned, what="the worker to give up")
    freed.set()
    view = manager_factory(start=False)
    snap = view.get(run_id)
    assert snap.status == "failed" and snap.error == f"disk full: free space in {tmp_path} and rerun"


def test_a_run_whose_worker_vanished_is_failed_by_its_own_manager(manager_factory):
    mgr = manager_factory(callbacks=lambda cfg, run_dir: [Slow(0.01)])
    run_id = mgr.submit(config(epochs=200))
    wait_for(lambda: mgr.get(run_id).status == "running", what="the run to start")
    with mgr.pool.cond:
        mgr.pool.owned.discard(run_id)  # as if its worker thread had died without a word
    wait_for(lambda: mgr.get(run_id).status == "failed", timeout=10, what="the heartbeat")
    assert "stopped without recording an outcome" in mgr.get(run_id).error


# ------------------------------------------------------------------------------------------------ damaged store
def _healthy(root: Path) -> bytes:
    mgr = RunManager(root, start=False)
    for i in range(40):
        mgr.submit({**config(f"run {i}"), "name": f"run {i} " + "x" * 1000})
    mgr.shutdown()
    return (root / "runs.sqlite3").read_bytes()


def _truncated(path: Path, good: bytes) -> None:
    path.write_bytes(good[: len(good) // 2])


def _garbage(path: Path, good: bytes) -> None:
    path.write_bytes(os.urandom(8192))


def _empty(path: Path, good: bytes) -> None:
    path.write_bytes(b"")


def _one_page(path: Path, good: bytes) -> None:
    """Garbage over the one page of the index of runs by group, which listing the runs never reads."""
    path.write_bytes(good)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        page = conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = 'runs_by_group'").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    data = bytearray(good)
    data[(page - 1) * size: page * size] = os.urandom(size)
    path.write_bytes(bytes(data))


def _newer(path: Path, good: bytes) -> None:
    path.write_bytes(good)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA user_version = 99")


def _read_only(path: Path, good: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    path.write_bytes(good)

    def connect(self):  # what a file this user may not write gives, also when the tests run as root
        conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        return conn

    monkeypatch.setattr(store_module.RunStore, "_connect", connect)


@pytest.mark.parametrize("damage, says", [
    (_truncated, "is damaged (database disk image is malformed); move runs.sqlite3 and its -wal/-shm files into"),
    (_garbage, "is damaged (file is not a database); move runs.sqlite3"),
    (_empty, "is empty (0 bytes), but a store is never empty once created"),
    (_one_page, "is damaged (Page "),
    (_newer, f"has schema version 99, newer than this gist_engine understands ({SCHEMA_VERSION}); upgrade gist_engine"),
    (_read_only, "is read-only (attempt to write a readonly database); make the file and its folder writable"),
])
def test_a_damaged_store_is_refused_by_name_and_never_replaced(tmp_path, monkeypatch, capsys, damage, says):
    good = _healthy(tmp_path / "good")
    root = tmp_path / "data"
    root.mkdir()
    path = root / "runs.sqlite3"
    args = (path, good, monkeypatch) if damage is _read_only else (path, good)
    damage(*args)
    before = path.read_bytes()
    with pytest.raises(StoreError) as err:
        RunManager(root, start=False)
    assert str(path) in str(err.value) and says in str(err.value)
    assert main(["runs", "--root", str(root), "list"]) == 2
    out, lines = capsys.readouterr(), None
    lines = out.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: run store") and says in lines[0], out.err
    assert "Traceback" not in out.err and out.out == ""
    assert path.read_bytes() == before  # kept as it was: nothing re-created, nothing written


def test_a_data_dir_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "taken").write_text("")
    with pytest.raises(StoreError, match="cannot create the data directory"):
        RunManager(tmp_path / "taken", start=False)


# --------------------------------------------------------------------------------------------------- dead peer
PEER = """
import sys, time
sys.path.insert(0, {root!r})
from gist_engine.runs import RunManager
from gist_engine.train import Callback
from tests.toydata import squares_splits
toy = squares_splits(64, 32)
class Slow(Callback):
    def on_step_end(self, trainer, step, metrics):
        time.sleep(0.05)
mgr = RunManager({data!r}, torch_threads=1, data_loader=lambda c: toy, callbacks=lambda c, d: [Slow()])
rid = mgr.submit({config!r})
while mgr.get(rid).step < 1:
    time.sleep(0.02)
print(rid, flush=True)
time.sleep(300)
"""


def test_a_killed_peer_process_shows_ended_within_a_heartbeat(tmp_path):
    code = textwrap.dedent(PEER).format(root=str(ROOT), data=str(tmp_path), config=config(epochs=1000))
    peer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        run_id = peer.stdout.readline().strip()
        assert run_id, "the peer did not start its run"
        with RunManager(tmp_path, torch_threads=0) as mgr:  # the defaults: a beat every 2 s, stale after 30 s
            assert mgr.get(run_id).status == "running"
            os.kill(peer.pid, signal.SIGKILL)
            peer.wait(10)
            t0 = time.monotonic()
            wait_for(lambda: mgr.get(run_id).status != "running", timeout=5, what="the dead peer's run to end")
            assert time.monotonic() - t0 < 5
            snap = mgr.get(run_id)
            assert snap.status == "interrupted" and f"its process (pid {peer.pid}) ended" in snap.error
    finally:
        if peer.poll() is None:
            peer.kill()
