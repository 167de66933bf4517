"""The Studies page stops one cell's runs in one click (real RunManager): the cell's queued and training runs stop,
the study records them stopped (Resume study continues them)."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("streamlit")

import gist_engine as ge
from tests.app.test_studies_page import TINY, open_studies, real_manager  # noqa: F401 - real_manager: fixture `mgr`


def test_stop_cell_stops_the_chosen_cells_runs_in_one_click(mgr) -> None:
    at = open_studies(mgr)
    at.session_state["launch_draft"] = {**TINY, "train": {**TINY["train"], "epochs": 400}}  # long enough to catch
    at.text_input(key="studies.values1.gist.temperature").input("1, 3").run()
    at.button(key="studies.start").click().run()
    study_id = ge.list_studies(mgr)[0].id
    deadline = time.monotonic() + 60
    while not any(r.status == "running" for r in mgr.list()) and time.monotonic() < deadline:
        time.sleep(0.2)
    at.run()
    runs = ge.study_runs(study_id, mgr)
    first = runs[runs["cell"] == 0]
    assert at.selectbox(key="studies.cell").value == first["label"].iloc[0]
    button = at.button(key="studies.stop_cell")
    assert not button.disabled, "the first cell has runs queued or training"
    button.click().run()
    assert not at.exception, at.exception
    while any(mgr.get(r).status in ("queued", "running") for r in first["run_id"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert {mgr.get(r).status for r in first["run_id"]} == {"stopped"}, "the cell's GIST run and its plain run"
    at.button(key="studies.stop").click().run()  # the rest of the study, so the test ends here
    assert not at.exception, at.exception
