"""One AppTest per page: the real RunManager training a tiny ViT (test_vit, digits, 32 px), a fake for speed."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import fmt
import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")
import services
from streamlit.testing.v1 import AppTest

import gist_engine as ge
from gist_engine.config.recipes import RECIPES
from tests.app import fakes as app_fakes

APP = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"
TINY = {"name": "tiny", "backbone": "test_vit", "image_size": 32, "method": "linear", "method_args": {},
        "gist": {"enabled": True}, "data": {"dataset": "digits", "train_size": 64, "test_size": 40},
        "train": {"epochs": 1, "batch_size": 16, "attention_every": 2}}
TIMEOUT = 60


@contextlib.contextmanager
def _manager(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[ge.RunManager]:
    """A real RunManager (torch's threads left alone) in a fresh data dir that GIST_DATA_DIR points at; shut down
    afterwards."""
    root = tmp_path_factory.mktemp(name)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GIST_DATA_DIR", str(root))
        mgr = services.open_run_manager(root, torch_threads=0)
        try:
            yield mgr
        finally:
            mgr.shutdown(timeout=30)


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory):
    """A real RunManager in its own data dir with a finished run (snapshots), a paired group and a failed run."""
    with _manager(tmp_path_factory, "app_data") as mgr:
        done = mgr.submit(TINY)
        gid = mgr.submit_group({**TINY, "name": "pair"}, 1)
        bad = mgr.submit({**TINY, "name": "too-big", "data": {"dataset": "digits", "train_size": 5000}})
        for run in mgr.list():
            mgr.wait(run.id, timeout=180)
        mgr.ids = {"done": done, "group": gid, "failed": bad}
        yield mgr


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> app_fakes.FakeRunManager:
    monkeypatch.setenv("GIST_DATA_DIR", str(tmp_path))
    return app_fakes.seeded(tmp_path)


def open_page(manager, page: str | None = None, draft: dict | None = None, **query: str | list[str]) -> AppTest:
    """The app with `manager` injected and the tiny config (or `draft`) as the launch draft, on `page`."""
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.session_state["gist_manager"] = manager
    at.session_state["launch_draft"] = copy.deepcopy(draft or TINY)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def _texts(at: AppTest) -> str:
    parts = [e.value for kind in ("markdown", "caption", "info", "error", "warning", "success", "title", "subheader")
             for e in at.get(kind)]
    return "\n".join(map(str, parts))


def test_launch_page_shows_cost_and_launches(real) -> None:
    at = open_page(real)
    assert at.title[0].value == "Launch a run"
    labels = {m.label: m.value for m in at.metric}
    assert labels["GIST adds"] == "+32"  # test_vit: one 32-d Gist token
    assert "Estimated time here" in labels
    assert any("python -m gist_engine train --config tiny.yaml" in c.value for c in at.code)
    assert "Handwritten digits" in _texts(at) and at.image, "the dataset and its thumbnails"
    before = {r.id for r in real.list()}
    next(b for b in at.button if b.label == "Launch run").click().run()
    new = {r.id for r in real.list()} - before
    assert len(new) == 1 and at.title[0].value == "Live run" and at.query_params["run"] in new
    real.wait(new.pop(), timeout=120)


def test_launch_page_refuses_a_name_with_a_control_character(real) -> None:
    at = open_page(real, draft={**TINY, "name": "mine\x1b[2J"})
    before = {r.id for r in real.list()}
    next(b for b in at.button if b.label == "Launch run").click().run()
    assert not at.exception, at.exception
    assert any("Not launched" in e.value and "control character \\x1b" in e.value for e in at.error), at.error
    assert {r.id for r in real.list()} == before, "nothing queued"


def test_launch_page_rejects_bad_options_by_name(fake) -> None:
    at = open_page(fake)
    next(n for n in at.text_input if n.label == "Temperature").set_value("0").run()
    assert any("temperature" in e.value for e in at.error), [e.value for e in at.error]


def test_launch_presets_reset_the_form(fake) -> None:
    at = open_page(fake, draft={**services.demo_config(), "data": {"dataset": "mnist5k", "train_size": 100}})
    assert next(s for s in at.selectbox if s.label == "Backbone").value == "dinov2_s14"
    at.pills[0].set_value("Smoke test (tiny random ViT, seconds)").run()
    assert not at.exception
    assert next(s for s in at.selectbox if s.label == "Backbone").value == "test_vit"
    assert next(s for s in at.selectbox if s.label == "Dataset").value == "digits"
    assert at.session_state["launch_draft"]["train"]["epochs"] == 20


def test_launch_recipe_fills_the_form_and_is_submitted(fake, monkeypatch: pytest.MonkeyPatch) -> None:
    # gist_release and vtab1k/cifar with keys RunConfig has without the training-protocol options
    monkeypatch.setitem(RECIPES, "gist_release", {"backbone": "test_vit", "pretrained": False, "image_size": 32,
                                                  "method": "linear", "train": {"epochs": 7, "batch_size": 16}})
    monkeypatch.setitem(RECIPES, "vtab1k/cifar", {"num_classes": 12, "train": {"lr": 5e-3, "weight_decay": 5e-5}})
    at = open_page(fake)
    recipe = next(s for s in at.selectbox if s.label == "Recipe")
    assert recipe.value is None, "no recipe by default"
    recipe.set_value("vtab1k/cifar").run()
    assert not at.exception, at.exception
    draft = at.session_state["launch_draft"]
    assert draft["recipe"] == "vtab1k/cifar" and draft["train"]["lr"] == 5e-3 and draft["num_classes"] == 12
    assert draft["data"]["dataset"] == "digits", "the dataset stays the user's"
    assert next(s for s in at.selectbox if s.label == "Recipe").value == "vtab1k/cifar"
    before = set(fake.runs)
    next(b for b in at.button if b.label == "Launch run").click().run()
    (new,) = set(fake.runs) - before
    submitted = fake.runs[new].config
    assert submitted.recipe == "vtab1k/cifar" and submitted.train.epochs == 7
    assert (submitted.train.lr, submitted.train.weight_decay, submitted.num_classes) == (5e-3, 5e-5, 12)


def test_launch_paired_comparison_opens_compare(fake) -> None:
    at = open_page(fake)
    groups = set(fake.group_meta)
    next(b for b in at.button if b.label.startswith("Launch plain vs GIST")).click().run()
    assert len(set(fake.group_meta) - groups) == 1
    assert at.title[0].value == "Compare plain and GIST"


def test_live_page_curves_stop_and_reattach(real) -> None:
    run_id = real.submit({**TINY, "name": "long", "train": {"epochs": 500, "batch_size": 16}})
    for _ in range(600):  # wait for a first evaluation (the worker may still finish an earlier run)
        if len(real.evaluations(run_id)):
            break
        real.wait(run_id, timeout=0.1)
    at = open_page(real, "views/live.py", run=run_id)
    assert at.get("progress") and "step" in _texts(at)
    assert len(at.get("plotly_chart")) == 2, "loss terms and accuracy"
    next(b for b in at.button if b.label == "Stop").click().run()
    assert real.wait(run_id, timeout=60).status == "stopped"
    assert at.query_params["run"] == run_id


def test_live_page_redraws_the_curves_only_when_points_arrive(fake) -> None:
    run_id = fake.add(status="running", steps=30, done=3)
    at = open_page(fake, "views/live.py", run=run_id)
    first = at.session_state["live_figures"][run_id]
    assert first[:2] == (3, 0) and len(at.get("plotly_chart")) == 1, "3 steps, no evaluation yet"
    at.run()  # a poll that finds nothing new draws the same figure
    assert at.session_state["live_figures"][run_id][2] is first[2]
    metrics, evals = app_fakes.curves(30, gist=True, seed=0)
    fake.frames[run_id] = (metrics[metrics.step <= 5], evals.iloc[:1])
    at.run()
    now = at.session_state["live_figures"][run_id]
    assert now[:2] == (5, 1) and now[2] is not first[2]
    assert list(now[2].data[0].x) == [1, 2, 3, 4, 5] and len(at.get("plotly_chart")) == 2


def test_streamlit_skips_the_full_gc_after_each_rerun() -> None:
    """Streamlit's default gc.collect(2) after every rerun took ~0.3 s of CPU with the GIL held, once a second
    while the live page polled, and slowed a CPU run beside it (measured: the CPU demo 14.2 -> 17.7 img/s)."""
    config = tomllib.loads((APP.parents[1] / ".streamlit" / "config.toml").read_text())
    assert config["runner"]["postScriptGC"] is False


def test_live_page_shows_a_failed_run_plainly(real) -> None:
    at = open_page(real, "views/live.py", run=real.ids["failed"])
    assert any("train_size=5000" in e.value for e in at.error), [e.value for e in at.error]


def test_compare_page_real_group(real) -> None:
    at = open_page(real, "views/compare.py", group=real.ids["group"])
    labels = {m.label: m.value for m in at.metric}
    assert "GIST − plain" in labels and labels["GIST params"] == "+32"
    assert "Published numbers, not runs of this app" in _texts(at)
    published = at.dataframe[-1].value
    assert "method (published)" in published.columns and len(published) == 10


def test_compare_page_deltas_with_ci(fake) -> None:
    at = open_page(fake, "views/compare.py", group=next(iter(fake.group_meta)))
    assert {m.label: m.value for m in at.metric}["GIST − plain"] == "+2.00 points"
    assert len(at.get("plotly_chart")) == 3  # deltas, overlaid accuracy, overlaid loss
    ids = [r.id for r in fake.list() if r.group_id][:2]
    at = open_page(fake, "views/compare.py", runs=ids)
    assert any(m.label == "GIST − plain" for m in at.metric)


def test_attention_page_snapshots_of_a_real_run(real) -> None:
    at = open_page(real, "views/attention.py", run=real.ids["done"])
    assert at.title[0].value == "Where do CLS and Gist look?"
    assert at.select_slider[0].options == ["0", "2", "4"]  # 4 steps, a snapshot every 2
    captions = [c for img in at.image for c in img.captions]
    assert captions[0] == "input" and captions[1].startswith("CLS → patches, layer 1")
    assert captions[2].startswith("Gist → patches")
    assert at.get("plotly_chart"), "similarity per layer"
    at.select_slider[0].set_value(0).run()
    at.toggle[0].set_value(True).run()  # rollout
    assert not at.exception and any("rollout through layer" in c for img in at.image for c in img.captions)
    next(b for b in at.button if b.label.startswith("Compute Integrated Gradients")).click().run()
    assert not at.exception and any("|IG|" in c for img in at.image for c in img.captions)


def test_attention_page_opens_on_the_newest_trained_run_with_a_black_zero(real) -> None:
    at = open_page(real, "views/attention.py")
    trained = [r.id for r in real.list() if r.status in ("completed", "stopped")]  # newest first
    assert at.selectbox[0].value == trained[0] and at.selectbox[0].options[-1].startswith("Untrained")
    grid = next(c for c in at.get("plotly_chart") if "patch grid" in c.proto.spec)
    # Inferno from black, written as rgb(): the browser replaces "#000004" (a placeholder of Streamlit's theme)
    spec = json.loads(grid.proto.spec)
    for scale in (spec["layout"]["coloraxis"]["colorscale"], *(t["colorscale"] for t in spec["data"])):
        assert scale[0] == [0.0, "rgb(0, 0, 4)"] and not any(c.startswith("#00000") for _, c in scale)


def test_class_label_names_a_class_or_keeps_its_index() -> None:
    assert fmt.class_label(2, ["cat", "dog", "seven"]) == "seven"
    assert fmt.class_label(5, ["cat"]) == "5" and fmt.class_label(1, None) == "1"


def test_attention_page_untrained_and_upload(fake) -> None:
    at = open_page(fake, "views/attention.py", run="untrained")
    assert len(at.image) >= 1 and not at.select_slider  # dataset sample, no snapshots
    at.segmented_control[0].set_value("Upload an image").run()
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(buf, "PNG")
    at.file_uploader[0].upload("x.png", buf.getvalue(), "image/png").run()
    assert not at.exception and next(c for img in at.image for c in img.captions) == "input"


def test_runs_page_filters_and_actions(real) -> None:
    at = open_page(real, "views/runs.py")
    assert len(at.dataframe[0].value) == len(real.list())
    at.multiselect[0].set_value(["failed"]).run()
    assert list(at.dataframe[0].value.status) == ["failed"]
    assert any(b.label == "Export table (CSV)" for b in at.download_button)


def test_datasets_page_upload_validates(fake, tmp_path: Path) -> None:
    at = open_page(fake, "views/datasets.py")
    assert "mnist5k" in list(at.dataframe[0].value.dataset)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for c in ("ants", "bees"):
            for i in range(3):
                png = io.BytesIO()
                Image.fromarray(np.full((8, 8, 3), 60 * i, np.uint8)).save(png, "PNG")
                zf.writestr(f"{c}/{i}.png", png.getvalue())
        zf.writestr("../escape.png", b"x")
    at.file_uploader[0].upload("bugs.zip", buf.getvalue(), "application/zip")
    at.text_input[0].set_value("bugs")
    at.button[0].click().run()
    assert not at.exception
    assert any("Stored 6 images in 2 classes" in s.value for s in at.success)
    assert "escapes" in at.dataframe[-1].value.iloc[0]["reason"]
    assert (tmp_path / "datasets" / "bugs" / "ants").is_dir()
    at.switch_page("views/launch.py").run()
    assert "Uploaded: bugs" in next(s for s in at.selectbox if s.label == "Dataset").options


def test_about_page_draws_the_real_sequence(fake) -> None:
    at = open_page(fake, "views/about.py")
    assert "1 CLS + 1 Gist + 16 patches = 18 tokens" in _texts(at)
    assert at.get("plotly_chart")
    # what the GIST authors published, labelled as theirs (never as a run of this app)
    (paper,) = (d.value for d in at.dataframe)  # the page's one table
    assert list(paper.columns) == ["result (GIST authors)", "number", "where it is published"] and len(paper) == 4
    assert paper["number"][0].startswith("+2.25 points") and list(paper["number"][1:]) == ["74.0 %", "75.6 %",
                                                                                            "77.4 %"]
    assert "The GIST authors' numbers, not runs of this app" in _texts(at)


def test_runs_page_exports_a_run(real) -> None:
    at = open_page(real, "views/runs.py")
    rows = list(at.dataframe[0].value.id)
    at.session_state["runs.table.0"] = {"selection": {"rows": [rows.index(real.ids["done"])], "columns": []}}
    at.run()
    next(b for b in at.button if b.label == "Export to CSV").click().run()
    assert not at.exception and any("Exported to" in s.value for s in at.success)
    assert any(b.label == "Download the CSV" for b in at.download_button)


TEXT_TINY = {"name": "tiny-text", "backbone": "test_bert", "method": "linear", "method_args": {},
             "gist": {"enabled": True}, "data": {"dataset": "bbc_news", "few_shot": 2, "max_length": 32,
                                                 "test_size": 20},
             "train": {"epochs": 1, "batch_size": 8}}


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory):
    """A real RunManager in its own data dir with one finished tiny text run (test_bert on bbc_news, 2-shot)."""
    with _manager(tmp_path_factory, "app_text_data") as mgr:
        run_id = mgr.submit(TEXT_TINY)
        assert mgr.wait(run_id, timeout=180).status == "completed", mgr.get(run_id).error
        mgr.ids = {"done": run_id}
        yield mgr


def test_launch_page_offers_text_backbones_and_datasets(fake) -> None:
    at = open_page(fake)
    backbone = next(s for s in at.selectbox if s.label == "Backbone")
    assert any(o.endswith("(test_bert)") for o in backbone.options)
    assert any(o.endswith("(minilm_l6)") for o in backbone.options)
    assert any(n.label == "Image size (px)" for n in at.text_input)
    backbone.set_value("test_bert").run()
    assert not at.exception, at.exception
    labels = [n.label for n in [*at.number_input, *at.text_input]]
    assert "Max length (tokens)" in labels and "Image size (px)" not in labels
    datasets = next(s for s in at.selectbox if s.label == "Dataset")
    assert datasets.value == "bbc_news" and len(datasets.options) == 2  # the text datasets only (bbc, tweets)
    next(n for n in at.number_input if n.label == "Max length (tokens)").set_value(32).run()
    assert not at.exception, at.exception
    draft = at.session_state["launch_draft"]
    assert draft["backbone"] == "test_bert" and draft["data"]["max_length"] == 32
    assert "documents" in _texts(at) and not at.image, "a text preview, no thumbnails"
    assert {"class", "text"} <= set(at.dataframe[0].value.columns)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["GIST adds"] == "+32" and "Estimated time here" in metrics  # test_bert: 32-d hidden states
    assert "up to 32 tokens" in _texts(at)


def test_attention_page_tokens_of_a_text_run(text_run) -> None:
    at = open_page(text_run, "views/attention.py", draft=TEXT_TINY, run=text_run.ids["done"])
    assert at.title[0].value == "Where do CLS and Gist look?"
    assert at.text_area[0].value, "a test document by default"
    assert "CLS head predicts" in _texts(at)
    charts_ = at.get("plotly_chart")
    assert len(charts_) == 3, "CLS strip, Gist strip, heat map"
    at.text_area[0].set_value("the film was a great success at the box office").run()
    assert not at.exception, at.exception
    at.toggle[0].set_value(True).run()  # rollout
    assert not at.exception, at.exception
    next(s for s in at.selectbox if s.label == "Test document").set_value(1).run()
    assert not at.exception and at.text_area[0].value != "the film was a great success at the box office"
    next(s for s in at.selectbox if s.label == "Head").set_value(1).run()
    assert not at.exception, at.exception
    at.segmented_control[1].set_value("head").run()
    assert not at.exception, at.exception
    assert not at.image, "no image maps for a text model"


def test_launch_page_offers_peft_types_with_forms_from_their_config_fields(fake) -> None:
    at = open_page(fake, draft={**TINY, "method": "peft", "method_args": {"peft_type": "lora"}})
    peft_type = next(s for s in at.selectbox if s.label == "Peft type")
    assert {"lora", "loha", "ia3", "oft", "ln_tuning"} <= set(peft_type.options)
    assert {"R", "Lora alpha", "Use dora", "Use rslora"} <= {n.label for n in [*at.text_input, *at.toggle]}
    next(t for t in at.toggle if t.label == "Use dora").set_value(True).run()
    assert at.session_state["launch_draft"]["method_args"] == {"peft_type": "lora", "use_dora": True}
    peft_type = next(s for s in at.selectbox if s.label == "Peft type")
    peft_type.set_value("loha").run()
    assert not at.exception, at.exception
    labels = {n.label for n in [*at.text_input, *at.toggle, *at.selectbox]}
    assert {"R", "Alpha", "Rank dropout", "Module dropout"} <= labels and "Use dora" not in labels
    next(n for n in at.text_input if n.label == "R").set_value("4").run()
    assert at.session_state["launch_draft"]["method_args"] == {"peft_type": "loha", "r": 4}
    assert any("method: peft" in c.value and "peft_type: loha" in c.value for c in at.code)
