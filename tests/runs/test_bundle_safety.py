"""Hostile gallery bundles: every traversal form (relative, absolute, Windows separators, a link inside the bundle, a
hostile id in a study bundle) is refused whole, with nothing outside the data directory changed."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import gist_engine.studies  # noqa: F401  (registers the `study` bundle kind)
from gist_engine import cli
from gist_engine.runs import InvalidId, RunManager, RunNotFound, check_id, is_id
from gist_engine.runs.gallery import (
    MANIFEST_NAME,
    GalleryError,
    default_gallery_dir,
    gallery_examples,
    import_gallery_entry,
    remove_gallery_example,
)
from gist_engine.runs.ids import copy_tree, inside, remove_tree

SHIPPED = default_gallery_dir()
RUNS_BUNDLE, STUDY_BUNDLE = "tiny-digits", "study-temperature"


def listing(folder: Path) -> list[tuple[str, int, str]]:
    """Every entry under `folder` (links not followed): relative path, size, kind."""
    out = []
    for dirpath, dirs, files in os.walk(folder, followlinks=False):
        for name in (*dirs, *files):
            p = Path(dirpath) / name
            kind = "link" if p.is_symlink() else "dir" if p.is_dir() else "file"
            out.append((p.relative_to(folder).as_posix(), 0 if kind != "file" else p.stat().st_size, kind))
    return sorted(out)


@pytest.fixture
def place(tmp_path: Path) -> dict[str, Path]:
    """tmp/outside/victim/keep.txt (the sentinel), tmp/data (the data directory), tmp/bundles (copies to spoil)."""
    victim = tmp_path / "outside" / "victim"
    victim.mkdir(parents=True)
    (victim / "keep.txt").write_text("precious")
    (tmp_path / "data").mkdir()
    return {"tmp": tmp_path, "victim": victim, "data": tmp_path / "data", "bundles": tmp_path / "bundles"}


def spoiled(place: dict[str, Path], entry: str, change) -> Path:
    """A copy of a shipped bundle, its manifest (and files) changed by `change(manifest, bundle folder)`."""
    bundle = place["bundles"] / entry
    shutil.copytree(SHIPPED / entry, bundle)
    manifest = json.loads((bundle / MANIFEST_NAME).read_text())
    change(manifest, bundle)
    (bundle / MANIFEST_NAME).write_text(json.dumps(manifest))
    return bundle


def rename_run(manifest: dict, bundle: Path, new_id: str, move_folder: bool = True) -> None:
    """Give the bundle's first run the id `new_id` in the manifest (and its folder that name, when it can)."""
    old = manifest["runs"][0]["id"]
    manifest["runs"][0]["id"] = new_id
    if move_folder and "/" not in new_id and "\\" not in new_id and new_id not in ("", ".", ".."):
        (bundle / "runs" / old).rename(bundle / "runs" / new_id)


def outside_state(place: dict[str, Path]) -> list:
    """What lies outside the data directory (the bundles aside, which the import only reads)."""
    return [e for e in listing(place["tmp"]) if not e[0].startswith(("data", "bundles"))]


def assert_refused(place: dict[str, Path], bundle: Path, match: str) -> None:
    before = outside_state(place)
    with RunManager(place["data"], start=False) as mgr:
        with pytest.raises(GalleryError, match=match):
            import_gallery_entry(mgr, bundle)
        assert not mgr.list() and not gallery_examples(mgr), "nothing imported"
    assert outside_state(place) == before, "nothing outside the data directory changed"
    assert (place["victim"] / "keep.txt").read_text() == "precious"
    assert not (place["data"] / "runs").exists() or not any((place["data"] / "runs").iterdir())


@pytest.mark.parametrize("hostile", [
    "../../outside/victim",  # relative
    "../" * 16 + "VICTIM",  # as many levels up as it takes, then the victim's absolute path
    "VICTIM",  # absolute
    "..\\..\\outside\\victim",  # Windows separators
    "..", ".", "", "0123456789/../..", "0123456789\n", "0123456789" + "\x1b[2J",
])
def test_a_hostile_run_id_is_refused_with_nothing_outside_changed(place, hostile) -> None:
    hostile = hostile.replace("VICTIM", str(place["victim"]).lstrip("/") if hostile.startswith("../")
                              else str(place["victim"]))
    bundle = spoiled(place, RUNS_BUNDLE, lambda m, b: rename_run(m, b, hostile))
    assert_refused(place, bundle, "is not a run id")


def test_the_cli_says_it_on_one_line_and_exits_2(place, capsys) -> None:
    bundle = spoiled(place, RUNS_BUNDLE, lambda m, b: rename_run(m, b, str(place["victim"])))
    before = outside_state(place)
    assert cli.main(["runs", "--root", str(place["data"]), "gallery", "import", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "is not a run id" in err, err
    assert outside_state(place) == before


def test_a_hostile_group_id_or_a_stray_name_is_refused(place) -> None:
    def group(m, b):
        m["groups"] = [{"id": "../../outside/victim", "name": "g"}]
    assert_refused(place, spoiled(place, RUNS_BUNDLE, group), "is not a group id")


@pytest.mark.parametrize("what", ["folder", "file"])
def test_a_link_inside_the_bundle_is_refused(place, what) -> None:
    def link(m, b):
        run = b / "runs" / m["runs"][0]["id"]
        if what == "folder":  # the run's whole folder is a link to the victim
            shutil.rmtree(run)
            run.symlink_to(place["victim"], target_is_directory=True)
        else:  # one file of it is a link to the sentinel
            (run / "result.json").unlink()
            (run / "result.json").symlink_to(place["victim"] / "keep.txt")
    assert_refused(place, spoiled(place, RUNS_BUNDLE, link), "is a link")


def test_an_unexpected_file_or_a_folder_of_another_id_is_refused(place) -> None:
    def extra(m, b):
        (b / "runs" / "ffffffffff").mkdir()  # a run id the manifest does not name
    assert_refused(place, spoiled(place, RUNS_BUNDLE, extra), "unexpected entry")


def test_metrics_of_a_run_outside_the_bundle_are_refused(place) -> None:
    import pandas as pd

    def stray(m, b):
        frame = pd.read_parquet(b / "metrics.parquet")
        frame.loc[0, "run_id"] = "ffffffffff"  # would attach metrics to another run of the store
        frame.to_parquet(b / "metrics.parquet", index=False)
    assert_refused(place, spoiled(place, RUNS_BUNDLE, stray), "not a run of the bundle")


def test_a_deep_manifest_is_one_error_line(place, capsys) -> None:
    bundle = place["bundles"] / "deep"
    bundle.mkdir(parents=True)
    (bundle / MANIFEST_NAME).write_text("[" * 100_000 + "]" * 100_000)
    assert cli.main(["runs", "--root", str(place["data"]), "gallery", "import", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nests too deeply" in err, err


def test_control_characters_in_a_bundled_name_are_refused(place) -> None:
    def name(m, b):
        m["runs"][0]["name"] = "fine\n\x1b[31mERROR: fake"
    assert_refused(place, spoiled(place, RUNS_BUNDLE, name), "control character")


@pytest.mark.parametrize("change", ["study_id", "link_run", "link_study", "planned", "huge_spec"])
def test_a_hostile_study_bundle_is_refused(place, change) -> None:
    def spoil(m, b):
        if change == "study_id":
            m["study"]["id"] = "../../outside/victim"
        elif change == "link_run":  # a study_runs row naming a run outside the bundle
            m["study_runs"][0]["run_id"] = "ffffffffff"
        elif change == "link_study":
            m["study_runs"][0]["study_id"] = "s0000000000"
        elif change == "planned":
            m["study"]["planned"] = 10**12
        else:  # a spec of 10^6 cells: counted, never built
            spec = json.loads(m["study"]["spec"])
            spec["grid"] = {f"train.lr{i}": list(range(10)) for i in range(6)}
            m["study"]["spec"] = json.dumps(spec)
    match = {"study_id": "is not a study id", "planned": "do not match its spec",
             "huge_spec": "plans 4,000,000 runs"}.get(change, "study_runs row")
    assert_refused(place, spoiled(place, STUDY_BUNDLE, spoil), match)


def test_the_shipped_bundles_still_import_and_remove(place) -> None:
    with RunManager(place["data"], start=False) as mgr:
        for entry in (RUNS_BUNDLE, STUDY_BUNDLE):
            assert import_gallery_entry(mgr, SHIPPED / entry)["imported"]
        run_id = gallery_examples(mgr)[RUNS_BUNDLE][0]
        folder = mgr.run_dir(run_id)
        shutil.rmtree(folder)
        folder.symlink_to(place["victim"], target_is_directory=True)  # planted after the import
        remove_gallery_example(mgr, RUNS_BUNDLE)
        assert not folder.exists() and not folder.is_symlink(), "the link itself is removed"
    assert (place["victim"] / "keep.txt").read_text() == "precious", "its target is never touched"


# ---------------------------------------------------------------------------------------------- the id doors
@pytest.mark.parametrize("bad", ["../x", "/etc", "..\\x", "0123456789/..", "ABCDEF0123", "0123456789 ", None, 7])
def test_run_dir_and_the_api_refuse_anything_but_a_run_id(tmp_path, bad) -> None:
    assert not is_id(bad)
    with RunManager(tmp_path, start=False) as mgr:
        with pytest.raises(InvalidId, match="is not a run id"):
            mgr.run_dir(bad)
        if isinstance(bad, str):
            for call in (mgr.get, mgr.delete, mgr.stop, mgr.resume):
                with pytest.raises(RunNotFound):
                    call(bad)
    assert not (tmp_path / "runs").exists(), "no folder was made"


def test_the_cli_refuses_a_hostile_id_on_one_line(tmp_path, capsys) -> None:
    for args in (["runs", "--root", str(tmp_path), "show", "../../etc"],
                 ["study", "show", "--root", str(tmp_path), "../\x1b[2J"]):
        assert cli.main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and "\x1b" not in err, err


def test_ids_round_trip_and_files_stay_inside(tmp_path) -> None:
    assert check_id("1358c12e35") == "1358c12e35" and is_id("g0123456789", "group") and is_id("s0123456789", "study")
    root = tmp_path / "root"
    root.mkdir()
    assert inside(root / "a", root) and not inside(root / ".." / "x", root) and not inside(root, root)
    assert not inside(tmp_path / "x", root)
    with pytest.raises(ValueError, match="not inside"):
        remove_tree(tmp_path / "outside", root)
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("x")
    (src / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match="is a link"):
        copy_tree(src, root / "copy", root)
    assert not (root / "copy").exists()


def test_a_hostile_row_left_by_an_older_importer_lists_and_is_removed_without_touching_its_path(place) -> None:
    import sqlite3

    with RunManager(place["data"], start=False) as mgr:
        import_gallery_entry(mgr, SHIPPED / RUNS_BUNDLE)
        good = gallery_examples(mgr)[RUNS_BUNDLE]
    hostile = str(place["victim"])
    with sqlite3.connect(place["data"] / "runs.sqlite3") as c:  # as the import before ids were checked left it
        c.execute("UPDATE runs SET id = ? WHERE id = ?", (hostile, good[0]))
    with RunManager(place["data"], start=False) as mgr:
        listed = {s.id: s for s in mgr.list()}
        assert hostile in listed and not listed[hostile].run_dir.exists()
        assert inside(listed[hostile].run_dir, place["data"] / "runs")
        assert sorted(remove_gallery_example(mgr, RUNS_BUNDLE)) == sorted([hostile, good[1]])
        assert not mgr.list()
    assert (place["victim"] / "keep.txt").read_text() == "precious"


def test_export_never_replaces_a_folder_it_did_not_write(place) -> None:
    from gist_engine.runs.recording import export_bundle

    with RunManager(place["data"], start=False) as mgr, pytest.raises(GalleryError, match="is not a gallery bundle"):
        export_bundle(mgr, ["0123456789"], place["victim"], "victim")
    assert (place["victim"] / "keep.txt").read_text() == "precious"
