"""The classroom load check in its short form: 3 headless Chromium browsers on one app server for 30 s, all on Live
for one run (one reloading, one switching pages): no page error, no server traceback, every session refreshed.

Runs `benchmarks.classroom` (127.0.0.1 only, Debian's /usr/bin/chromium through Playwright) and keeps its report in
tests/artifacts/classroom.txt and classroom.json. Timings are reported, never asserted (a loaded machine).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import classroom

pytest.importorskip("playwright.sync_api")
pytest.importorskip("psutil")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not classroom.CHROMIUM.exists(),
                                 reason="needs Debian's chromium (apt-get install chromium)")]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def test_a_small_classroom_on_live_sees_no_error(tmp_path: Path) -> None:
    report = classroom.run_classroom(browsers=3, seconds=30, workdir=tmp_path, log=None)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "classroom.txt").write_text(classroom.format_report(report) + "\n")
    (ARTIFACTS / "classroom.json").write_text(json.dumps(report, indent=2))
    assert report["page_errors"] == [] and report["http_errors"] == [], classroom.format_report(report)
    assert report["server_tracebacks"] == 0, report["first_traceback"]
    assert report["roles"] == {"live": 1, "switch": 1, "reload": 1}
    assert report["reloads"] >= 1 and report["switches"] >= 1
    assert all(n > 0 for n in report["updates_per_session"]), report["updates_per_session"]  # each one refreshed
    assert report["fragment_ms"]["n"] > 0 and report["update_interval_s"]["n"] > 0
    assert report["steps"]["last"] > report["steps"]["first"]  # the run trained while they watched
    assert report["memory_mb"]["peak"] > 0 and report["load_1min"]["max"] is not None
