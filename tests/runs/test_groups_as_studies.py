"""Paired groups are one-cell studies: the migration of a store written by the previous release (schema version 2,
a `groups` table), new groups, re-runs, deletion, listings, and the shipped gallery's groups imported."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gist_engine.runs import RunManager, RunNotFound, RunStore
from gist_engine.runs import store as store_module
from gist_engine.runs.gallery import default_gallery_dir, import_gallery_entry, read_manifest
from gist_engine.runs.pairs import format_table
from gist_engine.runs.recording import export_bundle
from gist_engine.runs.store import DB_NAME, GROUP_CELL_KEY, GROUP_KIND
from gist_engine.studies import (
    StudyError,
    StudyStore,
    delete_study,
    get_study,
    list_studies,
    load_study_spec,
    resume_study,
)
from tests.runs.helpers import config

DATA = Path(__file__).parent / "data"
V2_SQL, V2_EXPECTED = DATA / "store_v2_groups.sql", DATA / "store_v2_groups.json"


def v2_store(root: Path) -> Path:
    """The data directory `root` with the version-2 store of `store_v2_groups.sql` (written by that release)."""
    root.mkdir(parents=True)
    with sqlite3.connect(root / DB_NAME) as conn:
        conn.executescript(V2_SQL.read_text(encoding="utf-8"))
        conn.execute("PRAGMA user_version = 2")
    conn.close()
    return root


def table_counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in names}
    conn.close()
    return counts


def verdict(mgr: RunManager, group_id: str) -> dict:
    """What the previous release's fixture recorded of a group, read again: groups() entry, group_results (its
    JSON-ready part), the ids of its runs, format_table."""
    res = mgr.group_results(group_id)
    group = next(g for g in mgr.groups() if g["id"] == group_id)
    return {"group": group, "result": {k: v for k, v in res.items() if k not in ("paired", "runs")},
            "runs": [s.id for s in res["runs"]], "table": format_table(res["paired"])}


def as_text(value) -> str:
    return json.dumps(value, indent=1, default=str, sort_keys=True)  # NaN-safe comparison


# -------------------------------------------------------------------------------------------------- migration
def test_a_store_of_the_previous_release_keeps_every_group_its_runs_and_its_verdict(tmp_path):
    root = v2_store(tmp_path / "old")
    before = table_counts(root / DB_NAME)
    expected = json.loads(V2_EXPECTED.read_text(encoding="utf-8"))
    assert before["groups"] == len(expected) == 8 and before["studies"] == 1  # the temperature study, 4 cell groups

    with RunManager(root, start=False) as mgr:
        assert mgr.store.version == store_module.SCHEMA_VERSION
        assert [g["id"] for g in mgr.groups()] == sorted(expected, key=lambda g: -expected[g]["group"]["created"])
        for group_id, recorded in expected.items():
            assert mgr.is_group(group_id)
            assert as_text(verdict(mgr, group_id)) == as_text(recorded), group_id
        re_run = expected["g6529cf6b3a"]  # "mine": seed 1's GIST run was re-run; the re-run counts
        assert re_run["result"]["replaced"] and len(re_run["runs"]) == 5

        after = table_counts(root / DB_NAME)
        assert "groups" not in after
        for table in ("runs", "metrics", "evaluations"):
            assert after[table] == before[table], table
        assert after["studies"] == before["studies"] + len(expected)
        members = sum(len(g["runs"]) for g in expected.values())
        assert after["study_runs"] == before["study_runs"] + members  # every run of every group linked once

        with StudyStore(mgr) as s:
            for group_id, recorded in expected.items():
                info = s.get(group_id)
                assert (info.kind, info.cells, info.backend, info.name) == (GROUP_KIND, 1, "local",
                                                                           recorded["group"]["name"])
                assert info.created == recorded["group"]["created"]
                assert info.spec["base"] == recorded["group"]["config"]
                assert info.spec["seeds"] == recorded["group"]["seeds"]
                assert info.planned == 2 * len(recorded["group"]["seeds"])
                spec = load_study_spec(info.spec, max_runs=None, one_cell=True).as_stored(info.planned)  # valid
                assert (spec.n_cells, spec.paired, spec.seeds) == (1, True, recorded["group"]["seeds"])
                links = s.attempts(group_id)
                assert {r["cell_key"] for r in links} == {GROUP_CELL_KEY}
                assert {r["run_id"] for r in links if r["status"]} == set(recorded["runs"])
            mine = s.attempts("g6529cf6b3a")
            assert sorted((r["seed"], r["arm"], r["attempt"]) for r in mine) == [
                (0, "gist", 1), (0, "plain", 1), (1, "gist", 1), (1, "gist", 2), (1, "plain", 1)]
            assert s.get("g6529cf6b3a").status == "completed"
            assert s.get("g9506ae8517").status == "incomplete"  # its GIST run was deleted before the upgrade
            assert s.get("g9506ae8517").counts == {"completed": 1, "pending": 1}
            assert s.get("g8e8817b4e9").example == "demo-cpu-3seeds"
            study = s.list()
            assert [i.kind for i in study] == ["study"] and study[0].planned == 16  # the study itself is untouched
            assert len(s.attempts(study[0].id)) == 16
            assert len(s.list(groups=True)) == 1 + len(expected)
        with sqlite3.connect(root / DB_NAME) as conn:  # versions kept as they were stored
            stored = dict(conn.execute("SELECT id, versions FROM studies WHERE kind = 'group'").fetchall())
        conn.close()
    with sqlite3.connect(":memory:") as conn:
        conn.executescript(V2_SQL.read_text(encoding="utf-8"))
        assert dict(conn.execute("SELECT id, versions FROM groups").fetchall()) == stored
    conn.close()

    store = RunStore(root / DB_NAME)  # opened again: nothing migrates twice
    try:
        assert store.migrate() == store_module.SCHEMA_VERSION
    finally:
        store.close()
    assert table_counts(root / DB_NAME) == after


def test_the_migration_keeps_group_rows_that_are_not_json_and_empty_groups(tmp_path):
    path = tmp_path / DB_NAME
    with sqlite3.connect(path) as conn:
        for version in (1, 2):
            for statement in store_module.MIGRATIONS[version]:
                conn.execute(statement)
        conn.execute("PRAGMA user_version = 2")
        conn.execute("INSERT INTO groups VALUES ('gaaaaaaaaaa', 'odd', 1.0, 'not json', '{\"a\": NaN}', NULL)")
        conn.execute("INSERT INTO groups VALUES ('gbbbbbbbbbb', 'empty', 2.0, '[3]', '{}', '{\"torch\": \"x\"}')")
        conn.execute("INSERT INTO runs (id, name, created, status, config, seed, gist_enabled, method, group_id) "
                     "VALUES ('0123456789', 'stray', 3.0, 'completed', '{}', 0, 1, 'lora', 'gcccccccccc')")
    conn.close()
    store = RunStore(path)
    try:
        groups = {g["id"]: g for g in store.groups()}
        assert groups["gaaaaaaaaaa"]["seeds"] == "not json"  # kept as the text it was
        assert json.dumps(groups["gaaaaaaaaaa"]["config"]) == '{"a": NaN}'
        assert groups["gbbbbbbbbbb"] | {"runs": None} == {"id": "gbbbbbbbbbb", "name": "empty", "created": 2.0,
                                                          "seeds": [3], "config": {}, "runs": None}
        assert store.group_row("gbbbbbbbbbb")["versions"] == {"torch": "x"}
        assert not store.is_group("gcccccccccc")  # a run naming no group of the store keeps its column, unlinked
        assert store.run_row("0123456789")["group_id"] == "gcccccccccc"
    finally:
        store.close()


# ---------------------------------------------------------------------------------------------- new groups
def test_a_new_group_is_a_one_cell_study_with_its_runs_linked(tmp_path):
    with RunManager(tmp_path, start=False) as mgr:
        gid = mgr.submit_group(config("pair", epochs=1), seeds=[0, 1])
        assert gid.startswith("g") and len(gid) == 11 and mgr.is_group(gid)
        runs = mgr.list(group_id=gid)
        with StudyStore(mgr) as s:
            info = s.get(gid)
            assert (info.kind, info.cells, info.planned, info.status) == (GROUP_KIND, 1, 4, "running")  # queued
            spec = load_study_spec(info.spec, max_runs=None, one_cell=True)
            assert spec.planned == 4 and spec.seeds == [0, 1] and spec.grid == {}
            planned = sorted((p.seed, p.arm) for p in spec.planned_runs())
            links = s.attempts(gid)
            assert sorted((r["seed"], r["arm"]) for r in links) == planned
            assert {r["run_id"] for r in links} == {r.id for r in runs}
            assert all(r["arm"] == ("gist" if next(x for x in runs if x.id == r["run_id"]).gist_enabled else "plain")
                       for r in links)
            assert s.list() == [] and [i.id for i in s.list(groups=True)] == [gid]
            assert s.find(spec) is None  # `study run` of the same spec starts a study, never continues a group
        mgr.stop(runs[0].id)
        new = mgr.rerun(runs[0].id)
        with StudyStore(mgr) as s:
            latest = s.latest(gid)[(0, runs[0].seed, "gist" if runs[0].gist_enabled else "plain")]
            assert (latest["run_id"], latest["attempt"]) == (new, 2)
        assert [g["runs"] for g in mgr.groups()] == [[r.id for r in reversed(runs)] + [new]]
        with pytest.raises(StudyError, match="paired group"):
            resume_study(gid, tmp_path)
        for r in mgr.list(group_id=gid):
            mgr.stop(r.id)
        mgr.delete_group(gid)
        assert mgr.groups() == [] and not mgr.is_group(gid) and mgr.list() == []
        with pytest.raises(RunNotFound):
            mgr.group_results(gid)
        with StudyStore(mgr) as s:
            assert s.list(groups=True) == [] and s.attempts(gid) == []


def test_study_listings_leave_groups_out_unless_asked(tmp_path):
    with RunManager(tmp_path, start=False) as mgr:
        gid = mgr.submit_group(config("pair", epochs=1), seeds=1)
    assert list_studies(tmp_path) == []
    assert [(s.id, s.kind) for s in list_studies(tmp_path, groups=True)] == [(gid, GROUP_KIND)]
    assert get_study(gid, tmp_path).kind == GROUP_KIND


# ------------------------------------------------------------------------------------------------- gallery
def test_the_shipped_demo_bundle_imports_into_the_new_shape_and_exports_its_groups_as_before(tmp_path):
    bundle = default_gallery_dir() / "demo-cpu-3seeds"
    manifest = read_manifest(bundle)
    (shipped,) = manifest["groups"]
    expected = json.loads(V2_EXPECTED.read_text(encoding="utf-8"))[shipped["id"]]  # its verdict, previous release
    with RunManager(tmp_path / "store", start=False) as mgr:
        assert import_gallery_entry(mgr, bundle)["groups"] == [shipped["id"]]
        assert as_text(verdict(mgr, shipped["id"])) == as_text(expected)
        with StudyStore(mgr) as s:
            info = s.get(shipped["id"])
            assert (info.kind, info.cells, info.planned, info.status, info.example) == (
                GROUP_KIND, 1, 6, "completed", "demo-cpu-3seeds")
            assert sorted((r["seed"], r["arm"], r["attempt"]) for r in s.attempts(shipped["id"])) == [
                (seed, arm, 1) for seed in (0, 1, 2) for arm in ("gist", "plain")]
        out = export_bundle(mgr, [shipped["id"]], tmp_path / "again", "again", checkpoints=False)
        (again,) = read_manifest(out)["groups"]
        assert again["id"] == shipped["id"] and again["name"] == "example · " + shipped["name"]
        for key in ("created", "versions"):
            assert again[key] == shipped[key]
        for key in ("seeds", "config"):
            assert json.loads(again[key]) == json.loads(shipped[key])


def test_deleting_a_study_with_its_runs_takes_its_cells_groups_along(tmp_path):
    with RunManager(tmp_path, start=False) as mgr:
        gid = mgr.submit_group(config("cell", epochs=1), seeds=1)
        kept = mgr.submit_group(config("other", epochs=1), seeds=1)
        with StudyStore(mgr) as s:
            spec = load_study_spec({"name": "t", "base": config("t", epochs=1), "grid": {"gist.temperature": [1]}})
            study_id = s.create(spec, "local", {})
            for snap in mgr.list(group_id=gid):
                arm = "gist" if snap.gist_enabled else "plain"
                s.link(study_id, 0, "k", snap.seed, arm, 1, snap.id, "local")
        for snap in mgr.list():
            mgr.stop(snap.id)
        delete_study(study_id, mgr, runs=True)
        assert [g["id"] for g in mgr.groups()] == [kept] and not mgr.is_group(gid)


def test_a_bundle_group_never_replaces_a_study_of_another_kind(tmp_path):
    store = RunStore(tmp_path / DB_NAME)
    try:
        with StudyStore(store) as s:
            study_id = s.create(load_study_spec({"name": "t", "base": config("t"), "grid": {"gist.temperature": [1]}}),
                                "local", {})
        group = {"id": study_id, "name": "hostile", "created": 1.0, "seeds": "[0]", "config": "{}", "versions": None}
        with pytest.raises(sqlite3.IntegrityError, match="is a study's id"):
            store.import_rows([group], [], [], [])
        with StudyStore(store) as s:
            assert s.get(study_id).name == "t" and s.get(study_id).kind == "study"
        assert store.groups() == []
    finally:
        store.close()
