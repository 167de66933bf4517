"""The Studies page (AppTest): a tiny paired study over one axis on the real RunManager, its grid, matrix, curve,
links and exports; a bad axis value refused by name before anything runs."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
import services
from streamlit.testing.v1 import AppTest

import gist_engine as ge

APP = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"
PAGE = "views/studies.py"
TINY = {"name": "tiny", "backbone": "test_vit", "image_size": 32, "method": "linear", "method_args": {},
        "gist": {"enabled": True}, "data": {"dataset": "digits", "train_size": 48, "test_size": 32},
        "train": {"epochs": 1, "batch_size": 16, "attention_every": 0}}


@pytest.fixture(name="mgr")
def real_manager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ge.RunManager]:
    """A real RunManager (torch's threads left alone) in a fresh data dir that GIST_DATA_DIR points at."""
    monkeypatch.setenv("GIST_DATA_DIR", str(tmp_path))
    manager = services.open_run_manager(tmp_path, torch_threads=0)
    try:
        yield manager
    finally:
        manager.shutdown(timeout=30)


def open_studies(manager: ge.RunManager, **query: str) -> AppTest:
    """The app with `manager` injected and the tiny config as the launch draft, on the Studies page."""
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["gist_manager"] = manager
    at.session_state["launch_draft"] = copy.deepcopy(TINY)
    for key, value in query.items():
        at.query_params[key] = value
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def _texts(at: AppTest, *kinds: str) -> str:
    kinds = kinds or ("markdown", "caption", "info", "error", "warning", "success", "title", "subheader")
    return "\n".join(str(e.value) for kind in kinds for e in at.get(kind))


def test_a_fresh_page_shows_no_error_before_anything_is_typed(mgr) -> None:
    at = open_studies(mgr)
    assert not at.error, [e.value for e in at.error]  # no red "Fix the study first" before the user typed
    assert "Type the values of at least one axis" in _texts(at, "caption")
    assert at.button(key="studies.start").disabled


@pytest.mark.parametrize(("text", "said"), [
    ("base: /etc/passwd\ngrid: {gist.temperature: [1, 3]}\n", "is not a built-in config"),  # reads no file
    ("base: demo_cpu\ngrid: {gist.temperature: [1, 3]}\nseeds: 1000000000000\n", "plans 3,000,000,000,000 runs"),
    ("base: demo_cpu\ngrid: {" + ", ".join(f"{k}: {list(range(1, 11))}" for k in (
        "gist.temperature", "train.lr", "gist.length", "gist.loss_weight")) + "}\n", "plans 10,010 runs"),
    ("name: \"x\\e[2J\"\nbase: demo_cpu\ngrid: {gist.temperature: [1, 3]}\n", "control character"),
    ("grid: " + "[" * 100_000 + "]" * 100_000 + "\n", "nests too deeply"),
])
def test_an_uploaded_spec_is_refused_on_one_line_before_anything_is_built(mgr, text, said) -> None:
    at = open_studies(mgr)
    at.segmented_control(key="studies.source").set_value("Spec file").run()
    assert not at.error, [e.value for e in at.error]
    at.get("file_uploader")[0].upload("spec.yaml", text.encode()).run()
    assert not at.exception, at.exception
    errors = _texts(at, "error")
    assert said in errors and "Fix the study first" in errors, errors
    assert at.button(key="studies.start").disabled and not ge.list_studies(mgr)


def test_an_uploaded_spec_names_a_built_in_config(mgr) -> None:
    at = open_studies(mgr)
    at.segmented_control(key="studies.source").set_value("Spec file").run()
    at.get("file_uploader")[0].upload("mine.yaml", b"base: demo_cpu\ngrid: {gist.temperature: [1, 3]}\n").run()
    assert not at.error, [e.value for e in at.error]
    assert "**mine**: 2 cells × 1 seed: 1 plain run (shared across gist.temperature) + 2 GIST = 3 runs" in _texts(
        at, "caption")
    assert not at.button(key="studies.start").disabled


def test_a_bad_axis_value_is_refused_by_name_before_anything_runs(mgr) -> None:
    at = open_studies(mgr)
    assert at.title[0].value == "Studies" and "No studies yet" in _texts(at, "info")
    assert at.selectbox(key="studies.axis1").value == "gist.temperature", "the first axis offered"
    at.text_input(key="studies.values1.gist.temperature").input("0, 3").run()
    errors = _texts(at, "error")
    assert "grid.gist.temperature: value 0" in errors and "out of range" in errors, errors
    assert at.button(key="studies.start").disabled
    at.text_input(key="studies.values1.gist.temperature").input("1, [3").run()  # not a list: named too
    assert "values of gist.temperature" in _texts(at, "error")
    at.text_input(key="studies.values1.gist.temperature").input("1,,3").run()  # one line, with an example
    said = [e for e in _texts(at, "error").splitlines() if "values of gist.temperature" in e]
    assert said and "write e.g. 1, 2, 3" in said[0], _texts(at, "error")
    at.text_input(key="studies.values1.gist.temperature").input("").run()  # no values: no axis, no study
    assert not at.error and "Type the values of at least one axis" in _texts(at, "caption")
    assert at.button(key="studies.start").disabled
    at.segmented_control(key="studies.source").set_value("Built-in spec").run()
    picker = at.selectbox(key="studies.builtin")
    assert {"temperature", "gist_length", "interaction_loss", "methods", "vtab1k"} <= set(picker.options)
    picker.select_index(picker.options.index("temperature")).run()
    assert not at.error, [e.value for e in at.error]
    assert ("**temperature**: 4 cells × 2 seeds: 2 plain runs (shared across gist.temperature) + 8 GIST = 10 runs"
            in _texts(at, "caption"))
    assert not ge.list_studies(mgr) and not mgr.list(), "nothing stored, nothing ran"


def test_the_page_runs_a_tiny_study_and_shows_its_matrix_curve_and_exports(mgr) -> None:
    start = time.monotonic()
    at = open_studies(mgr)
    at.text_input(key="studies.values1.gist.temperature").input("1, 3").run()
    assert "2 cells × 1 seed: 1 plain run (shared across gist.temperature) + 2 GIST = 3 runs" in _texts(at, "caption")
    assert at.radio(key="studies.backend").options[0] == "local"
    at.button(key="studies.start").click().run()
    assert not at.exception, at.exception
    study_id = at.query_params["study"][0] if isinstance(at.query_params["study"], list) else at.query_params["study"]
    assert [s.id for s in ge.list_studies(mgr)] == [study_id]
    assert at.get("progress"), "the running study's progress"
    while ge.get_study(study_id, mgr).status in ("created", "running") and time.monotonic() - start < 90:
        time.sleep(0.5)
    info = ge.get_study(study_id, mgr)
    assert info.status == "completed" and info.counts["completed"] == 3, info
    at.run()
    assert not at.exception, at.exception
    studies, grid, matrix = (d.value for d in at.dataframe)  # the studies table, the grid, the matrix
    assert list(studies["id"]) == [study_id] and studies["completed"][0] == 3
    assert grid.shape == (2, 2) and all(str(v).startswith("completed") for v in grid.to_numpy().ravel()), grid
    assert list(matrix.columns) == ["GIST - plain"] and len(matrix) == 2, matrix
    assert all(v.startswith(("+", "-")) for v in matrix["GIST - plain"]), "a delta in points per cell"
    charts = at.get("plotly_chart")
    assert len(charts) == 2, "the matrix heatmap and the temperature curve"
    labels = {b.label for b in at.get("download_button")}
    assert {"Download CSV", "Download Markdown", "Download LaTeX"} <= labels
    assert ge.export_study(study_id, "md", root=mgr).startswith("| gist.temperature | GIST - plain |")
    assert time.monotonic() - start < 90

    at.button(key="studies.open_compare").click().run()  # the first cell's runs: its GIST run, the shared plain run
    assert not at.exception, at.exception
    assert at.title[0].value == "Compare plain and GIST" and len(at.query_params["runs"]) == 2
    assert not any("Without a partner" in c.value for c in at.caption), "the shared plain run pairs with the cell's"

    at = open_studies(mgr, study=study_id)
    at.button(key="studies.open_live").click().run()
    assert at.title[0].value == "Live run" and at.query_params["run"]

    at = open_studies(mgr, study=study_id)
    assert at.button(key="studies.delete").disabled, "a confirmation first"
    at.checkbox(key=f"studies.delete_confirm.{study_id}").check().run()
    at.button(key="studies.delete").click().run()
    assert not at.exception, at.exception
    assert not ge.list_studies(mgr) and len(mgr.list()) == 3, "the study is gone, its runs are kept"


def test_a_study_stopped_on_the_page_resumes_to_the_end(mgr) -> None:
    at = open_studies(mgr)
    at.session_state["launch_draft"] = {**TINY, "train": {**TINY["train"], "epochs": 10}}
    at.text_input(key="studies.values1.gist.temperature").input("1, 3").run()
    at.button(key="studies.start").click().run()
    study_id = ge.list_studies(mgr)[0].id
    deadline = time.monotonic() + 60
    at.button(key="studies.stop").click().run()  # at once: its first run is queued or training
    assert not at.exception, at.exception
    info = ge.get_study(study_id, mgr)
    assert info.status == "interrupted" and info.counts.get("completed", 0) < 3, info
    while any(r.status in ("queued", "running") for r in mgr.list()) and time.monotonic() < deadline:
        time.sleep(0.2)
    at.run()
    at.button(key="studies.resume").click().run()
    assert not at.exception, at.exception
    while ge.get_study(study_id, mgr).status in ("created", "running") and time.monotonic() < deadline + 60:
        time.sleep(0.5)
    info = ge.get_study(study_id, mgr)
    assert info.status == "completed" and info.counts["completed"] == 3, info
    assert len(mgr.list()) == 3, "stopped runs continued, none ran twice"


def test_a_tuned_study_shows_its_trials_and_each_arms_choice(mgr, tmp_path) -> None:
    from tests.studies.tuning import ToyData, protocol_for_this_trainer, stand_in_callbacks, tuned_spec

    with protocol_for_this_trainer():
        study_id = ge.run_study(tuned_spec("tuned-page"), tmp_path, "local", data_loader=ToyData(tmp_path / "r.log"),
                                callbacks=stand_in_callbacks, torch_threads=0)
    at = open_studies(mgr, study=study_id)
    assert "Tuning on the validation split" in _texts(at, "subheader")
    table = next(d.value for d in at.dataframe if "chosen" in getattr(d.value, "columns", []))
    assert list(table["arm"]) == ["plain", "GIST"] and set(table["trials"]) == {"2/2"}
    chosen = {t["arm"]: t["values"] for t in ge.study_tuning(study_id, tmp_path)}
    assert list(table["chosen"])[1] == ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                  for k, v in chosen["gist"].items())
    assert at.get("plotly_chart")  # the trial curves
