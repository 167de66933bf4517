"""GIST - plain against the training budget (AppTest): the chart of a study evaluated after each epoch, on the
Studies page from the store and on the Gallery page from a bundle's manifest; a hostile manifest draws nothing."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("streamlit")
import services
from streamlit.testing.v1 import AppTest

import gist_engine as ge
from gist_engine.studies import export_study_bundle

APP = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"
TINY = {"name": "tiny", "backbone": "test_vit", "image_size": 32, "method": "linear", "method_args": {},
        "gist": {"enabled": True}, "data": {"dataset": "digits", "train_size": 48, "test_size": 32},
        "train": {"epochs": 3, "batch_size": 16, "attention_every": 0, "eval_every": 1, "cpu_threads": 1}}
TITLE = "GIST − plain against the training budget"


@pytest.fixture(scope="module")
def studied(tmp_path_factory) -> Iterator[tuple[Path, str, Path]]:
    """(data dir, study id, gallery folder): a 3-epoch study on 2 paired seeds, run once, and its bundle."""
    root = tmp_path_factory.mktemp("data")
    manager = services.open_run_manager(root, torch_threads=0)
    try:
        study_id = ge.run_study({"name": "tiny-budget", "base": TINY, "grid": {"train.epochs": [3]}, "seeds": 2},
                                manager, "local")
        assert ge.get_study(study_id, manager).status == "completed"
        gallery = tmp_path_factory.mktemp("gallery")
        export_study_bundle(manager, study_id, gallery / "tiny-budget", "tiny-budget", title="Tiny budget")
    finally:
        manager.shutdown(timeout=30)
    yield root, study_id, gallery


def _open(root: Path, page: str, monkeypatch: pytest.MonkeyPatch, **query: str) -> AppTest:
    monkeypatch.setenv("GIST_DATA_DIR", str(root))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.session_state["gist_manager"] = services.open_run_manager(root, torch_threads=0, start=False)
    for key, value in query.items():
        at.query_params[key] = value
    at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _budget_charts(at: AppTest) -> list[list[dict[str, Any]]]:
    """The traces of each budget figure on the page, x and y as lists (plotly 6 writes numpy arrays as base64 typed
    arrays)."""
    def values(v: Any) -> Any:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist() if isinstance(v, dict) else v

    return [[t | {k: values(t[k]) for k in ("x", "y") if k in t} for t in json.loads(c.proto.spec)["data"]]
            for c in at.get("plotly_chart") if TITLE in c.proto.spec]


def _traces(fig: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [t for t in fig if t.get("name") == name]


def test_the_studies_page_draws_the_verdict_after_each_epoch_with_its_band(studied, monkeypatch) -> None:
    root, study_id, _ = studied
    at = _open(root, "views/studies.py", monkeypatch, study=study_id)
    try:
        (fig,) = _budget_charts(at)
        budget = ge.study_budget(study_id, root)
        (delta,) = _traces(fig, "GIST − plain")
        assert delta["x"] == [1.0, 2.0, 3.0] and delta["xaxis"] == "x2"
        assert delta["y"] == pytest.approx([100 * v for v in budget["delta_mean"]])
        bands = [t for t in fig if t.get("fill") == "toself" and t.get("xaxis") == "x2"]
        assert len(bands) == 1 and bands[0]["x"] == [1.0, 2.0, 3.0, 3.0, 2.0, 1.0]
        assert bands[0]["y"] == pytest.approx([100 * v for v in [*budget["delta_ci_high"],
                                                                 *budget["delta_ci_low"][::-1]]])
        assert {t["name"] for t in fig if t.get("name")} == {"plain", "GIST", "GIST − plain"}
        assert any("not a run of that length" in c.value for c in at.caption)
    finally:
        at.session_state["gist_manager"].shutdown(timeout=30)


def test_the_gallery_page_draws_it_from_the_bundle_and_ignores_a_hostile_table(studied, monkeypatch, tmp_path):
    gallery = studied[2]
    monkeypatch.setenv("GIST_GALLERY_DIR", str(gallery))
    manifest = json.loads((gallery / "tiny-budget" / "manifest.json").read_text())
    at = _open(tmp_path, "views/gallery.py", monkeypatch)  # an empty store: nothing imported, the chart is drawn
    try:
        assert [s.value for s in at.subheader] == ["Tiny budget"]
        (fig,) = _budget_charts(at)
        (delta,) = _traces(fig, "GIST − plain")
        assert delta["y"] == pytest.approx([100 * r["delta_mean"] for r in manifest["budget"]])
    finally:
        at.session_state["gist_manager"].shutdown(timeout=30)
    hostile = gallery.parent / "hostile"
    shutil.copytree(gallery / "tiny-budget", hostile / "tiny-budget")
    rows = [{"label": "x", "epoch": "abc", "delta_mean": "1e999"}, {"label": None}, {}]
    (hostile / "tiny-budget" / "manifest.json").write_text(json.dumps(manifest | {"budget": rows}))
    monkeypatch.setenv("GIST_GALLERY_DIR", str(hostile))
    at = _open(tmp_path, "views/gallery.py", monkeypatch)
    try:
        assert [s.value for s in at.subheader] == ["Tiny budget"] and not _budget_charts(at)
    finally:
        at.session_state["gist_manager"].shutdown(timeout=30)
