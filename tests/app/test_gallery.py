"""The Gallery page: lists the shipped entries with their machine and command, imports one, opens and removes it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
import services
from streamlit.testing.v1 import AppTest

import gist_engine as ge

APP = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"
GALLERY = "views/gallery.py"
ENTRY = "tiny-digits"


@pytest.fixture
def mgr(tmp_path, monkeypatch):
    monkeypatch.setenv("GIST_DATA_DIR", str(tmp_path))
    manager = services.open_run_manager(tmp_path, torch_threads=0, start=False)
    yield manager
    manager.shutdown(timeout=30)


def _open(mgr, page: str | None = GALLERY) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["gist_manager"] = mgr
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _page_links(at: AppTest) -> list[str]:
    return [el.proto.label for el in at.get("page_link")]


def test_gallery_lists_entries_imports_one_opens_and_removes_it(mgr):
    bundles = [b for b in ge.list_gallery(services.ASSETS / "gallery") if b["recorded"]]
    at = _open(mgr)
    assert [s.value for s in at.subheader] == [b["title"] for b in bundles]
    assert [c.value for c in at.code] == [b["command"] for b in bundles]
    captions = " ".join(c.value for c in at.caption)
    assert all(b["machine"]["cpu"] in captions and b["date"][:10] in captions for b in bundles)
    assert at.button(key="gallery.import_all").label == f"Import all ({len(bundles)} not imported yet)"

    at.button(key=f"gallery.import.{ENTRY}").click().run()
    assert not at.exception, at.exception
    assert "Imported" in at.success[0].value and ENTRY in ge.gallery_examples(mgr)
    runs = mgr.list()
    assert runs and all(s.example and s.name.startswith("example · ") for s in runs)
    assert not [b for b in at.button if b.key == f"gallery.import.{ENTRY}"]
    assert at.button(key="gallery.import_all").label == f"Import all ({len(bundles) - 1} not imported yet)"

    at.button(key=f"gallery.open.{ENTRY}").click().run()
    assert not at.exception, at.exception
    assert at.query_params.get("group") == runs[0].group_id and at.title[0].value == "Compare plain and GIST"

    at = _open(mgr)
    at.button(key=f"gallery.remove.{ENTRY}").click().run()
    assert not at.exception, at.exception
    assert "Removed" in at.success[0].value and mgr.list() == []
    assert at.button(key=f"gallery.import.{ENTRY}")


def test_an_empty_store_is_offered_the_gallery(mgr):
    at = _open(mgr, page=None)  # the default page: Launch
    assert any("recorded examples" in label for label in _page_links(at))
    at = _open(mgr, page="views/runs.py")
    assert any("recorded examples" in label for label in _page_links(at))


def test_examples_cannot_be_deleted_from_the_runs_store(mgr):
    ge.import_gallery_entry(mgr, services.ASSETS / "gallery" / ENTRY)
    with pytest.raises(ge.RunError, match="read-only gallery example"):
        mgr.delete(mgr.list()[0].id)


def test_a_gallery_study_opens_on_the_studies_page_read_only(mgr):
    bundle = next(b for b in ge.list_gallery(services.ASSETS / "gallery") if b.get("kind") == "study")
    name, study_id = bundle["name"], bundle["study"]["id"]
    at = _open(mgr)
    at.button(key=f"gallery.import.{name}").click().run()
    assert not at.exception, at.exception
    info = ge.get_study(study_id, mgr)
    assert info.example == name and info.status == "completed" and info.name.startswith("example · ")
    at.button(key=f"gallery.open.{name}").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Studies" and at.query_params.get("study") == study_id
    assert len(at.get("plotly_chart")) >= 2  # its matrix and its curve
    assert any("read-only example from the gallery" in c.value for c in at.caption)
    assert not [b for b in at.button if b.key in ("studies.resume", "studies.delete")]


def test_a_recorded_two_seed_interval_is_shown_clipped_with_its_note(mgr):
    bundle = next(b for b in ge.list_gallery(services.ASSETS / "gallery") if b["name"] == "study-temperature")
    wide = [r for r in bundle["results"] if r["n"] == 2 and r["delta_ci_low"] < -1.0]
    assert wide, "the shipped study records a bare 2-seed t-interval below -100 points"
    at = _open(mgr)
    table = next(d.value for d in at.dataframe if "95% CI" in d.value.columns)
    shown = dict(zip(table["cell"], table["95% CI"], strict=True))
    for r in wide:
        assert shown[r["label"]] == f"[-100.00, {100 * r['delta_ci_high']:+.2f}]{ge.FEW_SEEDS_MARK}"
    assert ge.FEW_SEEDS_NOTE in " ".join(c.value for c in at.caption)
def test_a_hostile_bundle_is_refused_on_the_page_with_nothing_changed(mgr, tmp_path, monkeypatch):
    import json
    import shutil

    victim = tmp_path / "outside" / "victim"
    victim.mkdir(parents=True)
    (victim / "keep.txt").write_text("precious")
    gallery = tmp_path / "gallery"
    shutil.copytree(services.ASSETS / "gallery" / ENTRY, gallery / ENTRY)
    manifest = json.loads((gallery / ENTRY / "manifest.json").read_text())
    manifest["runs"][0]["id"] = str(victim)  # an absolute path as a run id: once, the import deleted it
    (gallery / ENTRY / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("GIST_GALLERY_DIR", str(gallery))
    at = _open(mgr)
    at.button(key=f"gallery.import.{ENTRY}").click().run()
    assert not at.exception, at.exception
    errors = " ".join(e.value for e in at.error)
    assert "Not imported" in errors and "is not a run id" in errors, errors
    assert (victim / "keep.txt").read_text() == "precious" and not mgr.list()


@pytest.mark.parametrize("hostile", ["../../../etc", "/etc/passwd", "..\\..\\x", "0123456789\n\x1b[2J"])
def test_a_hostile_id_in_the_url_builds_no_path(mgr, hostile):
    ge.import_gallery_entry(mgr, services.ASSETS / "gallery" / ENTRY)
    for page, key in (("views/live.py", "run"), ("views/attention.py", "run"), ("views/compare.py", "group"),
                      ("views/studies.py", "study")):
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.session_state["gist_manager"] = mgr
        at.query_params[key] = hostile
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        if page == "views/live.py":  # the newest run is shown instead, and its id put in the URL
            assert at.query_params.get(key) != hostile, page
