"""The run store's file: versioned schema, migrations, refusal of a newer file."""

from __future__ import annotations

import pytest

from gist_engine.runs import RunStore, StoreError
from gist_engine.runs import store as store_module


def test_schema_is_versioned_and_migrates(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs.sqlite3")
    assert store.version == store_module.SCHEMA_VERSION
    with store.write() as c:
        c.execute("INSERT INTO groups (id, name, created, seeds, config) VALUES ('g1', 'kept', 0, '[]', '{}')")
    store.close()
    current = store_module.SCHEMA_VERSION
    v2 = {**store_module.MIGRATIONS, current + 1: ("ALTER TABLE groups ADD COLUMN note TEXT DEFAULT 'new'",)}
    monkeypatch.setattr(store_module, "MIGRATIONS", v2)
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", current + 1)
    store = RunStore(tmp_path / "runs.sqlite3")
    with store.read() as c:
        assert tuple(c.execute("SELECT name, note FROM groups").fetchone()) == ("kept", "new")
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.version == current + 1
    store.close()
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", current)
    with pytest.raises(StoreError, match="newer"):
        RunStore(tmp_path / "runs.sqlite3")
