"""A run deleted elsewhere (another tab, the CLI) while a page shows or polls it: the page says so, never crashes."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from tests.app import fakes as app_fakes
from tests.app.test_app import open_page

DELETED = "This run was deleted"


class DeletedAfterGets(app_fakes.FakeRunManager):
    """A fake whose run `victim` is deleted (as by another tab) after the page has read it `gets` times: the next
    read, e.g. the live fragment's poll, finds it gone."""

    victim: str | None = None
    gets = 0
    stale_group: dict | None = None  # listed once more by `groups` after its deletion

    def groups(self) -> list[dict]:
        stale, self.stale_group = self.stale_group, None
        return super().groups() + ([stale] if stale else [])

    def get(self, run_id: str):
        snap = super().get(run_id)
        if run_id == self.victim:
            self.gets -= 1
            if self.gets < 0:
                self.victim = None
                self.delete(run_id)
                return super().get(run_id)  # RunNotFound, as the store says it
        return snap


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> DeletedAfterGets:
    monkeypatch.setenv("GIST_DATA_DIR", str(tmp_path))
    mgr = DeletedAfterGets(tmp_path)
    mgr.add_group()
    mgr.add(status="running", done=10, name="watched")
    return mgr


def _texts(at: AppTest, kind: str) -> str:
    return "\n".join(str(e.value) for e in at.get(kind))


def _no_crash(at: AppTest, caplog: pytest.LogCaptureFixture) -> None:
    assert not at.exception, at.exception
    assert "RunNotFound" not in _texts(at, "error") + _texts(at, "warning")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no traceback logged"


def test_live_says_a_run_deleted_in_another_tab_was_deleted_and_stops_polling_it(fake, caplog) -> None:
    watched = next(r.id for r in fake.list() if r.name == "watched")
    at = open_page(fake, "views/live.py", run=watched)
    assert at.query_params["run"] == watched and not at.warning
    fake.delete(watched)  # another tab deletes it; this page's next poll or rerun finds it gone
    at.run()
    _no_crash(at, caplog)
    assert DELETED in _texts(at, "warning") and watched in _texts(at, "warning")
    assert at.query_params["run"] != watched, "it shows the newest run that is left, not the deleted one"
    for r in fake.list():  # the last runs go too: the page says so, no run to show
        fake.delete(r.id)
    at.run()
    _no_crash(at, caplog)
    assert "No runs yet" in _texts(at, "alert") + _texts(at, "info")


def test_live_fragment_that_polls_a_run_deleted_meanwhile_reruns_the_page_once(fake, caplog) -> None:
    watched = next(r.id for r in fake.list() if r.name == "watched")
    fake.victim, fake.gets = watched, 1  # the page's top reads it; the fragment's first poll finds it deleted
    at = open_page(fake, "views/live.py", run=watched)
    _no_crash(at, caplog)
    assert DELETED in _texts(at, "warning") and watched not in {r.id for r in fake.list()}
    assert at.query_params["run"] != watched


def test_an_unknown_run_id_is_not_called_deleted(fake, caplog) -> None:
    at = open_page(fake, "views/live.py", run="r9999")
    _no_crash(at, caplog)
    assert "No run with id 'r9999'" in _texts(at, "warning") and DELETED not in _texts(at, "warning")


def test_compare_says_a_group_deleted_while_polled_was_deleted(fake, caplog) -> None:
    gid = next(iter(fake.group_meta))
    at = open_page(fake, "views/compare.py", group=gid)
    assert "GIST − plain" in {m.label for m in at.metric}
    fake.stale_group = fake.group_meta.pop(gid)  # deleted between the page's list of groups and the fragment's poll
    for r in fake.list(group_id=gid):
        fake.delete(r.id)
    at.run()
    _no_crash(at, caplog)
    assert f"The group {gid} was deleted" in _texts(at, "warning")
    assert "GIST − plain" not in {m.label for m in at.metric}, "nothing of the deleted group is drawn"


def test_compare_any_runs_with_a_run_deleted_meanwhile(fake, caplog) -> None:
    watched = next(r.id for r in fake.list() if r.name == "watched")
    other = next(r.id for r in fake.list() if r.name != "watched")
    at = open_page(fake, "views/compare.py", runs=[watched, other])
    assert not at.warning
    fake.victim, fake.gets = watched, 0  # the fragment's next read of it finds it deleted
    at.run()
    _no_crash(at, caplog)
    assert "A compared run was deleted" in _texts(at, "warning")


def test_attention_says_the_run_it_showed_was_deleted(fake, caplog) -> None:
    done = next(r.id for r in fake.list() if r.status == "completed")
    at = open_page(fake, "views/attention.py", run=done)
    assert at.query_params["run"] == done
    fake.delete(done)
    at.run()
    _no_crash(at, caplog)
    assert DELETED in _texts(at, "warning") and "newest trained model instead" in _texts(at, "warning")
    fake.victim, fake.gets = next(r.id for r in fake.list() if r.status == "completed"), 0
    at.query_params["run"] = fake.victim  # listed, then gone when the page reads it
    at.run()
    _no_crash(at, caplog)
    assert "No run with id" in _texts(at, "warning") or DELETED in _texts(at, "warning")
