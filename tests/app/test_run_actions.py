"""AppTests of acting on the run you care about: the run Live opens, a queued run's place and ETA, the paired
launch's total, stopping a group from Compare and Runs, a finished run's adapter download."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
import run_actions
from streamlit.testing.v1 import AppTest

import gist_engine as ge
from tests.app import fakes as app_fakes
from tests.app.test_app import TINY, open_page


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> app_fakes.FakeRunManager:
    monkeypatch.setenv("GIST_DATA_DIR", str(tmp_path))
    return app_fakes.FakeRunManager(tmp_path)


def _texts(at: AppTest) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "warning", "error") for e in at.get(kind))


def _shown(at: AppTest) -> str:
    return next(s for s in at.selectbox if s.label == "Run").value


# ------------------------------------------------------------------------------------------------ live default
def test_live_opens_the_training_run_not_the_newest_queued_one(fake) -> None:
    fake.add(name="old-done")
    training = fake.add(status="running", done=5, name="training")
    fake.add(status="queued", done=0, name="waiting")  # the newest
    at = open_page(fake, "views/live.py")
    assert _shown(at) == training


def test_live_without_a_training_run_opens_the_last_watched_then_the_newest_ended_never_a_queued_one(fake) -> None:
    first = fake.add(name="first-done")
    newest_ended = fake.add(name="second-done")
    fake.add(status="queued", done=0, name="waiting")  # the newest of all
    at = open_page(fake, "views/live.py")
    assert _shown(at) == newest_ended, "a queued run is never the default"
    at = open_page(fake, "views/live.py", run=first)  # watched explicitly ...
    assert _shown(at) == first
    at.switch_page("views/runs.py").run()
    at.query_params.clear()
    at.switch_page("views/live.py").run()  # ... and opened again from the menu, without ?run=
    assert not at.exception, at.exception
    assert _shown(at) == first


def test_default_run_rules() -> None:
    def snap(status):
        return type("S", (), {"status": status})()

    runs = {"q": snap("queued"), "c": snap("completed"), "r": snap("running")}
    assert run_actions.default_run(runs, None) == "r"
    assert run_actions.default_run(runs, "q") == "q", "a run asked for by id is shown, queued or not"
    assert run_actions.default_run({"q": snap("queued"), "c": snap("completed")}, "missing") == "c"
    assert run_actions.default_run({"q": snap("queued")}, None) == "q", "only queued runs: the newest"


# -------------------------------------------------------------------------------------------------- queue place
def test_a_queued_run_shows_its_place_and_when_it_should_start(fake) -> None:
    fake.add(status="running", done=10, name="training")  # eta_seconds 12 s (the fake's measured rate)
    fake.add(status="queued", done=0, name="first-queued")
    second = fake.add(status="queued", done=0, name="second-queued")
    at = open_page(fake, "views/live.py", run=second)
    note = next(i.value for i in at.info if "Queued" in i.value)
    assert "number 2 in line" in note and "after 1 run training now and 1 queued run ahead" in note, note
    assert re.search(r"start in about \d+ (s|min) and end in about \d+ (s|min) \(estimated on this machine\)", note)


def test_duration_reads_at_a_glance() -> None:
    assert [run_actions.duration(s) for s in (0.2, 42, 61, 600, 4800)] == ["1 s", "42 s", "1 min", "10 min",
                                                                          "1 h 20 min"]


# ---------------------------------------------------------------------------------------------- launch totals
def test_the_paired_launch_button_says_how_many_runs_and_how_long(fake) -> None:
    at = open_page(fake, "views/launch.py")
    label = next(b.label for b in at.button if b.label.startswith("Launch plain vs GIST"))
    match = re.fullmatch(r"Launch plain vs GIST × 3 seeds \(6 runs, about (\d+) (s|min) on this machine\)", label)
    assert match, label
    next(n for n in at.number_input if n.label == "Seeds").set_value(2).run()
    label = next(b.label for b in at.button if b.label.startswith("Launch plain vs GIST"))
    assert label.startswith("Launch plain vs GIST × 2 seeds (4 runs, about "), label


# ------------------------------------------------------------------------------------------------- group stop
def _active_group(fake) -> tuple[str, list[str]]:
    gid = fake.add_group(seeds=1)  # two completed runs
    ids = [fake.add(status="running", done=4, group_id=gid), fake.add(status="queued", done=0, group_id=gid)]
    return gid, ids


def test_compare_stops_a_whole_group_in_one_click(fake) -> None:
    gid, ids = _active_group(fake)
    other = fake.add(status="queued", done=0, name="not-in-the-group")
    at = open_page(fake, "views/compare.py", group=gid)
    button = at.button(key="compare.stop_group")
    assert button.label == "Stop the group (2 active)" and not button.disabled
    button.click().run()
    assert not at.exception, at.exception
    assert sorted(fake.stopped) == sorted(ids) and fake.get(other).status == "queued"
    assert at.button(key="compare.stop_group").disabled, "nothing left to stop"


def test_runs_stops_the_group_of_the_selected_rows(fake) -> None:
    _, ids = _active_group(fake)
    at = open_page(fake, "views/runs.py")
    assert at.button(key="runs.stop_group").disabled, "no row selected"
    row = list(at.dataframe[0].value.id).index(ids[0])
    at.session_state["runs.table.0"] = {"selection": {"rows": [row], "columns": []}}  # state.runs_table_key()
    at.run()
    at.button(key="runs.stop_group").click().run()
    assert not at.exception, at.exception
    assert sorted(fake.stopped) == sorted(ids)


# --------------------------------------------------------------------------------------------------- adapter
def _with_checkpoint(fake, run_id: str) -> None:
    """Give a fake run a real checkpoint of the tiny model, as a completed run has."""
    snap = fake.get(run_id)
    cfg = ge.load_run_config({**TINY, "num_classes": 10})
    ge.save_checkpoint(ge.build_model(cfg), snap.run_dir / ge.CHECKPOINT_NAME, cfg)
    fake.runs[run_id] = replace(snap, has_checkpoint=True)


def test_a_finished_run_offers_its_adapter_and_one_without_says_why(fake) -> None:
    done = fake.add(name="done")
    _with_checkpoint(fake, done)
    failed = fake.add(status="failed", error="boom", done=3, name="broken")
    at = open_page(fake, "views/live.py", run=done)
    button = next(b for b in at.get("download_button") if b.label == "Download the adapter (.zip)")
    assert button.proto.deferred_file_id, "packed when clicked (the zip's content: tests/runs/test_group_control.py)"
    at = open_page(fake, "views/live.py", run=failed)
    assert not [b for b in at.get("download_button") if "adapter" in b.label]
    assert "has no checkpoint, so there is no adapter to download (failed" in _texts(at)
    running = fake.add(status="running", done=2, name="busy")
    at = open_page(fake, "views/live.py", run=running)
    assert not [b for b in at.get("download_button") if "adapter" in b.label], "not while it trains"
