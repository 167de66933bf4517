"""AppTests of the actions that can hurt: search with missing values, deleting, invalid numbers, sizes, labels."""

from __future__ import annotations

import tomllib
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from tests.app import fakes as app_fakes
from tests.app.test_app import APP, TINY, open_page


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> app_fakes.FakeRunManager:
    monkeypatch.setenv("GIST_DATA_DIR", str(tmp_path))
    return app_fakes.seeded(tmp_path)


def _select(at: AppTest, rows: list[int]) -> AppTest:
    gen = at.session_state["runs.generation"] if "runs.generation" in at.session_state else 0
    key = f"runs.table.{gen}"  # state.runs_table_key() of an unfiltered table
    at.session_state[key] = {"selection": {"rows": rows, "columns": []}}
    return at.run()


# ---------------------------------------------------------------------------------------------- runs page
def test_runs_search_with_group_less_runs(fake) -> None:
    assert any(r.group_id is None for r in fake.list()), "the seeded fake has runs outside a group"
    at = open_page(fake, "views/runs.py")
    next(t for t in at.text_input if t.label == "Search").set_value("live").run()
    assert not at.exception, at.exception
    assert list(at.dataframe[0].value.name) == ["live-one"]
    next(t for t in at.text_input if t.label == "Search").set_value("g0001").run()  # the group's id
    assert not at.exception and len(at.dataframe[0].value) == 4 and at.dataframe[0].value.group.notna().all()
    next(t for t in at.text_input if t.label == "Search").set_value("no such run").run()
    assert not at.exception and at.dataframe[0].value.empty


def test_runs_filters_handle_missing_values(fake) -> None:
    fake.add(config={**TINY, "data": {"dataset": "digits"}}, name=None)
    snap = fake.list()[0]
    fake.runs[snap.id] = type(snap)(**{**snap.__dict__, "name": None, "config": {**snap.config, "data": {}}})
    at = open_page(fake, "views/runs.py")
    next(t for t in at.text_input if t.label == "Search").set_value("digits").run()
    assert not at.exception, at.exception
    next(s for s in at.selectbox if s.label == "GIST").set_value("off").run()
    assert not at.exception and not at.dataframe[0].value.GIST.any()


def test_delete_clears_selection_and_confirmation_and_says_what_went(fake) -> None:
    at = open_page(fake, "views/runs.py")
    table = at.dataframe[0].value
    before = len(table)
    at = _select(at, [0, 1])
    delete = next(b for b in at.button if b.label == "Delete selected")
    assert delete.disabled, "no deleting without the confirmation"
    next(c for c in at.checkbox if c.label.startswith("Confirm deleting 2")).check().run()
    next(b for b in at.button if b.label == "Delete selected").click().run()
    assert not at.exception, at.exception
    gone = list(table.id[:2])
    assert not set(gone) & set(fake.runs) and len(fake.runs) == before - 2
    success = [s.value for s in at.success]
    assert any(s.startswith("Deleted 2 runs:") and all(g in s for g in gone) for s in success), success
    assert len(at.dataframe[0].value) == before - 2
    assert next(c for c in at.checkbox if c.label.startswith("Confirm deleting")).label == "Confirm deleting 0 run(s)"
    assert not next(c for c in at.checkbox if c.label.startswith("Confirm deleting")).value
    assert next(b for b in at.button if b.label == "Delete selected").disabled
    at = _select(at, [0])  # a new selection needs a new confirmation
    assert not next(c for c in at.checkbox if c.label.startswith("Confirm deleting")).value
    assert next(b for b in at.button if b.label == "Delete selected").disabled
    assert not at.success, "the message is shown once"
