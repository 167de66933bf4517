"""A damaged run store: every page that needs the RunManager shows the store's message, never the exception."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"


def test_the_runs_page_shows_a_damaged_store_by_name(tmp_path, monkeypatch):
    monkeypatch.setenv("GIST_DATA_DIR", str(tmp_path))
    (tmp_path / "runs.sqlite3").write_bytes(b"not a database" * 600)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.switch_page("views/runs.py").run()
    assert not at.exception, at.exception
    assert any("is damaged (file is not a database)" in e.value and str(tmp_path) in e.value for e in at.error)
