"""The run store's file: versioned schema, migrations, refusal of a newer file, creation raced by many openers."""

from __future__ import annotations

import os
import time

import pytest

from benchmarks import store_race
from gist_engine.runs import RunStore, StoreError
from gist_engine.runs import store as store_module


def test_schema_is_versioned_and_migrates(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite3")
    assert store.version == store_module.SCHEMA_VERSION
    with store.write() as c:
        c.execute("INSERT INTO studies (id, name, created, spec, status, backend, cells, planned) VALUES "
                  "('s1', 'kept', 0, '{}', 'created', 'local', 1, 2)")
    store.close()
    current = store_module.SCHEMA_VERSION
    v2 = {**store_module.MIGRATIONS, current + 1: ("ALTER TABLE studies ADD COLUMN note TEXT DEFAULT 'new'",)}
    monkeypatch.setattr(store_module, "MIGRATIONS", v2)
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", current + 1)
    store = RunStore(tmp_path / "runs.sqlite3")
    with store.read() as c:
        assert tuple(c.execute("SELECT name, note FROM studies").fetchone()) == ("kept", "new")
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.version == current + 1
    store.close()
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", current)
    with pytest.raises(StoreError, match="newer"):
        RunStore(tmp_path / "runs.sqlite3")


# ------------------------------------------------------------------------------------------- creating the store
def test_threads_opening_a_fresh_folder_at_once_all_get_the_store(tmp_path):
    results = store_race._open_at_once(tmp_path / "fresh" / store_module.DB_NAME, threads=16)
    assert results == [("ok", "")] * 16
    assert sorted(p.name for p in (tmp_path / "fresh").iterdir()) == [store_module.DB_NAME]  # no half-built copy


@pytest.mark.slow  # spawns 4 processes that each import gist_engine
def test_processes_and_threads_opening_a_fresh_folder_at_once_are_never_refused(tmp_path):
    result = store_race.race(tmp_path / "race", processes=4, threads=4, rounds=3)
    assert (result["ok"], result["refused"], result["errors"]) == (48, 0, 0), result["messages"]
    for folder in (tmp_path / "race").iterdir():
        store = RunStore(folder / store_module.DB_NAME)
        assert store.version == store_module.SCHEMA_VERSION
        store.close()


def test_a_zero_byte_store_that_nobody_creates_is_still_refused_by_every_opener(tmp_path):
    path = tmp_path / store_module.DB_NAME
    path.write_bytes(b"")
    results = store_race._open_at_once(path, threads=8)
    assert [kind for kind, _ in results] == ["refused"] * 8
    assert all("is empty (0 bytes)" in message for _, message in results)
    assert path.stat().st_size == 0 and sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_a_store_removed_while_open_is_not_recreated_empty(tmp_path):
    path = tmp_path / store_module.DB_NAME
    store = RunStore(path)
    store.close()
    store = RunStore(path)  # no reader connection yet: the next read opens one
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    with pytest.raises(StoreError, match="cannot open run store"), store.read():
        pass
    store.close()
    assert not path.exists()


def test_a_half_built_store_left_by_a_killed_process_is_removed_when_old(tmp_path):
    prefix = store_module.BUILDING.format(name=store_module.DB_NAME)
    old, recent = tmp_path / f"{prefix}111-aaaa", tmp_path / f"{prefix}222-bbbb"
    other = tmp_path / "notes.txt"
    for f in (old, recent, other):
        f.write_bytes(b"x")
    long_ago = time.time() - store_module.STALE_BUILD_SECONDS - 60
    os.utime(old, (long_ago, long_ago))
    os.utime(other, (long_ago, long_ago))
    RunStore(tmp_path / store_module.DB_NAME).close()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([recent.name, other.name, store_module.DB_NAME])
