"""The gallery: bundles round-trip a store's runs, import is idempotent and read-only, the shipped entries rebuild."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gist_engine import cli
from gist_engine.inspect import list_snapshots, load_snapshot
from gist_engine.runs import RunError, RunManager, format_table
from gist_engine.runs.gallery import (
    EXAMPLE_PREFIX,
    FORMAT,
    MANIFEST_NAME,
    GalleryError,
    bundle_size,
    default_gallery_dir,
    gallery_examples,
    import_gallery,
    import_gallery_entry,
    list_gallery,
    read_index,
    read_manifest,
    remove_gallery_example,
)
from gist_engine.runs.recording import export_bundle
from tests.runs.helpers import config

SHIPPED = default_gallery_dir()
REBUILT = "tiny-digits"  # the shipped entry the suite re-records (seconds; one torch thread: bit-identical)
TIMING_KEYS = {"images_per_second"}  # step metrics that measure the machine, not the model


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, toy):
    """A store with a paired group (1 seed, attention snapshots) and one single run, all completed."""
    root = tmp_path_factory.mktemp("recorded")
    mgr = RunManager(root, torch_threads=0, data_loader=lambda cfg: toy, flush_seconds=0.05)
    gid = mgr.submit_group(config("pair", attention_every=2), 1)
    single = mgr.submit(config("single"))
    for s in mgr.list():
        assert mgr.wait(s.id, timeout=120).status == "completed"
    mgr.ids = {"group": gid, "single": single}
    yield mgr
    mgr.shutdown(timeout=30)


@pytest.fixture(scope="module")
def bundle(recorded, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("gallery") / "pair-and-single"
    return export_bundle(recorded, [recorded.ids["group"], recorded.ids["single"]], out, "pair-and-single",
                         title="A pair and a run", command="python -m gist_engine runs gallery export ...")


def _frames(mgr, run_id):
    metrics = mgr.metrics(run_id)
    return metrics.drop(columns=[c for c in TIMING_KEYS if c in metrics]), mgr.evaluations(run_id)


def test_bundle_layout_and_manifest(bundle, recorded):
    manifest = read_manifest(bundle)
    assert manifest["format"] == FORMAT and manifest["name"] == "pair-and-single"
    assert manifest["command"].startswith("python -m gist_engine runs gallery export")
    assert manifest["machine"]["cores"] >= 1 and manifest["machine"]["cpu"]
    assert manifest["versions"]["gist_engine"] and manifest["versions"]["torch"]
    assert len(manifest["runs"]) == 3 and [g["id"] for g in manifest["groups"]] == [recorded.ids["group"]]
    assert not any(k in r for r in manifest["runs"] for k in ("owner", "owner_pid", "heartbeat"))
    assert manifest["summary"]["groups"][0]["delta_acc_cls"]["n"] == 1
    files = {p.relative_to(bundle).as_posix() for p in bundle.rglob("*") if p.is_file()}
    assert {"manifest.json", "metrics.parquet", "evaluations.parquet"} <= files
    assert not any(f.endswith("resume.safetensors") for f in files)
    assert all(f.split("/")[-1] in ("result.json", "checkpoint.safetensors") or "/attention/" in f
               for f in files if f.startswith("runs/"))
    maps = np.load(next(bundle.glob("runs/*/attention/step_0000002.npz")))
    assert any(maps[k].dtype == np.float16 for k in maps.files)
    assert bundle_size(bundle) < 2_000_000


def test_import_round_trip_preserves_everything(bundle, recorded, manager_factory, tmp_path):
    mgr = manager_factory(root=tmp_path / "fresh", start=False)
    result = import_gallery_entry(mgr, bundle)
    assert result["imported"] and sorted(result["runs"]) == sorted(s.id for s in recorded.list())
    for src in recorded.list():
        dst = mgr.get(src.id)
        assert dst.example and not dst.can_resume and dst.name == EXAMPLE_PREFIX + src.name
        assert (dst.status, dst.acc_cls, dst.best_acc_cls, dst.acc_gist, dst.agreement, dst.step, dst.seed,
                dst.group_id, dst.config, dst.trainable_params) == \
               (src.status, src.acc_cls, src.best_acc_cls, src.acc_gist, src.agreement, src.step, src.seed,
                src.group_id, src.config, src.trainable_params)
        for got, want in zip(_frames(mgr, src.id), _frames(recorded, src.id), strict=True):
            pd.testing.assert_frame_equal(got, want)
        assert list_snapshots(dst.run_dir) == list_snapshots(src.run_dir)
        for step in list_snapshots(src.run_dir):
            a, b = load_snapshot(dst.run_dir, step), load_snapshot(src.run_dir, step)
            np.testing.assert_array_equal(a.cls_maps, b.cls_maps)
            np.testing.assert_array_equal(a.images, b.images)
        assert dst.has_checkpoint == src.has_checkpoint
    gid = recorded.ids["group"]
    assert format_table(mgr.group_results(gid)["paired"]) == format_table(recorded.group_results(gid)["paired"])
    assert mgr.groups()[0]["name"].startswith(EXAMPLE_PREFIX)


def test_import_is_idempotent(bundle, manager_factory, tmp_path):
    mgr = manager_factory(root=tmp_path / "twice", start=False)

    def counts():
        with mgr.store.read() as c:
            return [c.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                    for t in ("runs", "studies", "study_runs", "metrics", "evaluations")]

    assert import_gallery_entry(mgr, bundle)["imported"]
    before = counts()
    assert not import_gallery_entry(mgr, bundle)["imported"]
    assert counts() == before
    assert list(gallery_examples(mgr)) == ["pair-and-single"] and len(gallery_examples(mgr)["pair-and-single"]) == 3


def test_a_re_recorded_bundle_replaces_the_older_example(bundle, recorded, manager_factory, tmp_path):
    mgr = manager_factory(root=tmp_path / "replace", start=False)
    import_gallery_entry(mgr, bundle)
    newer = export_bundle(recorded, [recorded.ids["single"]], tmp_path / "newer" / "pair-and-single",
                          "pair-and-single")
    assert import_gallery_entry(mgr, newer)["imported"]
    assert gallery_examples(mgr) == {"pair-and-single": [recorded.ids["single"]]}
    assert len(mgr.list()) == 1 and mgr.groups() == []


def test_examples_are_read_only(bundle, recorded, manager_factory, tmp_path):
    mgr = manager_factory(root=tmp_path / "readonly", start=False)
    import_gallery_entry(mgr, bundle)
    run_id, gid = recorded.ids["single"], recorded.ids["group"]
    for action in (mgr.delete, mgr.resume, mgr.rerun):
        with pytest.raises(RunError, match=r"read-only gallery example.*runs gallery remove pair-and-single"):
            action(run_id)
    with pytest.raises(RunError, match="read-only gallery example"):
        mgr.delete_group(gid)
    assert len(mgr.list()) == 3 and mgr.run_dir(run_id).is_dir()
    assert sorted(remove_gallery_example(mgr, "pair-and-single")) == sorted(s.id for s in recorded.list())
    assert mgr.list() == [] and mgr.groups() == [] and not mgr.run_dir(run_id).exists()
    with pytest.raises(GalleryError, match="no gallery example"):
        remove_gallery_example(mgr, "pair-and-single")


def test_importing_into_the_recording_store_is_refused(bundle, recorded):
    with pytest.raises(GalleryError, match=r"already in .* as runs of its own"):
        import_gallery_entry(recorded, bundle)


def test_bad_bundles_and_names(tmp_path, recorded):
    with pytest.raises(GalleryError, match="not a gallery bundle"):
        import_gallery_entry(recorded, tmp_path)
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / MANIFEST_NAME).write_text(json.dumps({"format": "gist-studio-gallery/99"}))
    with pytest.raises(GalleryError, match="upgrade gist_engine"):
        import_gallery_entry(recorded, tmp_path / "old")
    with pytest.raises(GalleryError, match="no gallery entry 'nope'"):
        import_gallery_entry(recorded, "nope", gallery_dir=SHIPPED)
    with pytest.raises(GalleryError, match="bundle name"):
        export_bundle(recorded, [recorded.ids["single"]], tmp_path / "x", "bad name!")


def test_cli_list_import_remove(bundle, tmp_path, capsys):
    root, gallery = tmp_path / "cli-store", bundle.parent
    assert cli.main(["runs", "--root", str(root), "gallery", "list", "--gallery", str(gallery)]) == 0
    out = capsys.readouterr().out
    assert "pair-and-single: A pair and a run [not imported]" in out and "command: python -m gist_engine" in out
    assert cli.main(["runs", "--root", str(root), "gallery", "import", "--all", "--gallery", str(gallery)]) == 0
    assert cli.main(["runs", "--root", str(root), "gallery", "import", "pair-and-single", "--gallery",
                     str(gallery)]) == 0
    out = capsys.readouterr().out
    assert "pair-and-single: imported (3 runs" in out and "pair-and-single: already imported" in out
    run_id = read_manifest(bundle)["runs"][0]["id"]
    with RunManager(root, start=False) as mgr:
        assert mgr.get(run_id).example
    assert cli.main(["runs", "--root", str(root), "gallery", "remove", "nope"]) == 2
    assert "error: no gallery example 'nope'" in capsys.readouterr().err
    assert cli.main(["runs", "--root", str(root), "gallery", "remove", "pair-and-single"]) == 0
    assert cli.main(["runs", "--root", str(root), "gallery", "import", "--gallery", str(gallery)]) == 2
    assert "give entry names" in capsys.readouterr().err


def test_cli_export_writes_a_bundle(recorded, tmp_path, capsys):
    args = ["runs", "--root", str(recorded.root), "gallery", "export", recorded.ids["single"], "--name", "one",
            "--out", str(tmp_path), "--title", "One run", "--recorded-command", "python -m gist_engine train ..."]
    assert cli.main(args) == 0
    assert "wrote" in capsys.readouterr().out
    manifest = read_manifest(tmp_path / "one")
    assert manifest["title"] == "One run" and manifest["command"] == "python -m gist_engine train ..."


def test_the_shipped_gallery(tmp_path):
    entries = read_index(SHIPPED)
    bundles = {b["name"]: b for b in list_gallery(SHIPPED)}
    assert [e["name"] for e in entries] == list(bundles)[:len(entries)]
    assert REBUILT in bundles and all(b["recorded"] for b in bundles.values())
    for b in bundles.values():
        assert b["command"] == f"python -m gist_engine runs gallery record {b['name']}"
        entry = next(e for e in entries if e["name"] == b["name"])  # a run recipe (config) or a study (its spec)
        assert (b["recipe"].get("config"), b["recipe"].get("study")) == (entry.get("config"), entry.get("study"))
        assert b["machine"]["cpu"] and b["date"] and b["versions"]["gist_engine"]
        trials = {r["run_id"]: r["outcome"] for r in b.get("study_runs", []) if r.get("role") == "trial"}
        assert all(r["status"] == "completed" and r["acc_cls"] is not None for r in b["summary"]["runs"]
                   if r["id"] not in trials)
        for r in (r for r in b["summary"]["runs"] if r["id"] in trials):  # a tuned study's trials: never tested
            assert r["acc_cls"] is None and (r["status"], trials[r["id"]]) in {("completed", "completed"),
                                                                                ("stopped", "pruned")}
    assert sum(b["size_bytes"] for b in bundles.values()) < 5_000_000
    with RunManager(tmp_path / "all", start=False) as mgr:
        assert all(r["imported"] for r in import_gallery(mgr, SHIPPED))
        assert set(gallery_examples(mgr)) == set(bundles)


def _by_arm(bundle_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A bundle's metrics and evaluations keyed by (seed, gist) instead of run id (ids differ between recordings)."""
    manifest = read_manifest(bundle_dir)
    arm = {r["id"]: f"seed{r['seed']}-{'gist' if r['gist_enabled'] else 'plain'}" for r in manifest["runs"]}
    frames = []
    for name, keys in (("metrics.parquet", ["arm", "step", "key"]), ("evaluations.parquet", ["arm", "step", "split"])):
        frame = pd.read_parquet(bundle_dir / name)
        frame.insert(0, "arm", frame.pop("run_id").map(arm))
        frames.append(frame.sort_values(keys, ignore_index=True))
    return frames[0][~frames[0]["key"].isin(TIMING_KEYS)], frames[1]


def test_a_shipped_entry_rebuilds_from_its_recorded_command(tmp_path, monkeypatch):
    """Re-run the recorded command of the cheapest entry: the numbers it stored are what the product gives now."""
    shipped = SHIPPED / REBUILT
    command = read_manifest(shipped)["command"]
    argv = shlex.split(command)
    assert argv[:3] == ["python", "-m", "gist_engine"]
    monkeypatch.setenv("GIST_DATA_DIR", str(tmp_path / "data"))
    assert cli.main([*argv[3:], "--out", str(tmp_path / "out")]) == 0
    rebuilt = tmp_path / "out" / REBUILT
    (want_m, want_e), (got_m, got_e) = _by_arm(shipped), _by_arm(rebuilt)
    # What was recorded must be reproduced (newer versions may record more keys or evaluations beside it).
    m = want_m.merge(got_m, on=["arm", "step", "key"], how="left", suffixes=("", "_now"))
    assert m["value_now"].notna().all(), "a recorded step metric is missing from the rebuild"
    np.testing.assert_allclose(m["value_now"], m["value"], rtol=1e-6, atol=1e-7)
    e = want_e.merge(got_e, on=["arm", "step", "split"], how="left", suffixes=("", "_now"))
    for col in ("acc_cls", "acc_gist", "agreement", "n"):
        pd.testing.assert_series_equal(e[f"{col}_now"], e[col], check_names=False, check_dtype=False)
    old, new = read_manifest(shipped)["summary"]["runs"], read_manifest(rebuilt)["summary"]["runs"]
    key = lambda r: (r["seed"], r["gist_enabled"])  # noqa: E731
    assert [(key(r), r["acc_cls"], r["acc_gist"], r["step"]) for r in sorted(old, key=key)] == \
           [(key(r), r["acc_cls"], r["acc_gist"], r["step"]) for r in sorted(new, key=key)]
    shutil.rmtree(rebuilt)
