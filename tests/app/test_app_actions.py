"""AppTests of the actions that can hurt: search with missing values, deleting, invalid numbers, sizes, labels."""

from __future__ import annotations

import dataclasses
import tomllib
from collections import Counter
from pathlib import Path

import fmt
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
    gen = at.session_state.get("runs.generation", 0)
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


def test_empty_cells_of_the_runs_table_read_a_dash_and_the_csv_keeps_them_empty(fake) -> None:
    at = open_page(fake, "views/runs.py")
    table = at.dataframe[0].value
    alone = table[table.name == "live-one"]
    assert list(alone.group) == ["—"], "a run outside a group: a dash, not None"
    assert table.group.notna().all() and (table["acc CLS %"].dtype.kind == "f"), "numbers stay numbers"
    csv = next(b for b in at.get("download_button") if b.label == "Export table (CSV)")
    assert "—" not in str(csv.proto), "the export's empty cells stay empty"


def test_runs_filters_handle_missing_values(fake) -> None:
    fake.add(config={**TINY, "data": {"dataset": "digits"}}, name=None)
    snap = fake.list()[0]
    fake.runs[snap.id] = dataclasses.replace(snap, name=None, config_dict={**snap.config_dict, "data": {}})
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


# ---------------------------------------------------------------------------------------------- launch page
class _NumberText:
    """A number box drawn as text (`forms.number_box`), set and read as a number."""

    def __init__(self, box):
        self.box = box

    def set_value(self, value):
        return self.box.set_value(f"{value:g}" if isinstance(value, float) else str(value))

    @property
    def value(self):
        number = fmt.parse_number(self.box.value, is_int=False)
        return int(number) if number is not None and number.is_integer() else number


def _number(at: AppTest, label: str):
    found = next((n for n in at.number_input if n.label == label), None)
    return found if found is not None else _NumberText(next(t for t in at.text_input if t.label == label))


def _button(at: AppTest, label: str):
    return next(b for b in at.button if b.label.startswith(label))


@pytest.mark.parametrize(("label", "value", "reason"), [
    ("Epochs", 0, "train.epochs: 0 is out of range (must be >= 1)"),
    ("Batch size", 1_000_000, "train.batch_size: 1000000 is out of range (must be <= 65536)"),
    ("Train size", -5, "data.train_size: -5 is out of range (must be >= 1)"),
    ("Temperature", 0.0, "gist.temperature: 0.0 is out of range (must be > 0.0)"),
])
def test_invalid_numbers_block_launch_with_the_reason_inline(fake, label: str, value: float, reason: str) -> None:
    at = open_page(fake)
    assert not _button(at, "Launch run").disabled
    _number(at, label).set_value(value).run()
    assert not at.exception, at.exception
    assert _number(at, label).value == value, "the form keeps what was typed"
    errors = [e.value for e in at.error]
    assert f"{label} — {reason}" in errors, errors  # visible text under the field, not a tooltip
    assert _button(at, "Launch run").disabled and _button(at, "Launch plain vs GIST").disabled


@pytest.mark.parametrize(("label", "typed", "reason"), [
    ("Image size (px)", "abc", "Image size (px) — image_size: 'abc' is not a whole number; type a whole number"),
    ("Epochs", "1.5", "Epochs — train.epochs: '1.5' is not a whole number; type a whole number"),
    ("Temperature", "warm", "Temperature — gist.temperature: 'warm' is not a number; type a number, e.g. 3"),
    ("Epochs", "", "Epochs — train.epochs: needs a value (a whole number)"),
])
def test_text_in_a_number_box_gets_a_message_and_blocks_launch(fake, label: str, typed: str, reason: str) -> None:
    at = open_page(fake)
    before = dict(at.session_state["launch_draft"])
    next(t for t in at.text_input if t.label == label).set_value(typed).run()
    assert not at.exception, at.exception
    assert next(t for t in at.text_input if t.label == label).value == typed, "the text stays as typed"
    errors = [e.value for e in at.error]
    assert any(e.startswith(reason) for e in errors), errors
    assert _button(at, "Launch run").disabled and _button(at, "Launch plain vs GIST").disabled
    assert at.session_state["launch_draft"]["image_size"] == before["image_size"], "the page drew on, unchanged"
    next(t for t in at.text_input if t.label == label).set_value("2").run() if label == "Epochs" else None
    if label == "Epochs":
        assert not [e.value for e in at.error] and not _button(at, "Launch run").disabled


def test_numbers_are_parsed_as_typed() -> None:
    assert fmt.parse_number(" 2,000 ", True) == 2000 and fmt.parse_number("2e2", True) == 200
    assert fmt.parse_number("1e-3", False) == 0.001 and fmt.parse_number("", True) is None
    for bad, is_int in (("abc", True), ("1.5", True), ("nan", False), ("inf", False), ("0x10", True)):
        with pytest.raises(ValueError):
            fmt.parse_number(bad, is_int)


def test_a_run_starts_with_the_values_the_form_shows(fake) -> None:
    at = open_page(fake)
    _number(at, "Epochs").set_value(0).run()
    _number(at, "Epochs").set_value(2).run()
    assert not [e.value for e in at.error]
    before = set(fake.runs)
    _button(at, "Launch run").click().run()
    (new,) = set(fake.runs) - before
    assert fake.runs[new].config.train.epochs == 2


def test_seeds_out_of_range_block_the_comparison(fake) -> None:
    at = open_page(fake)
    _number(at, "Seeds").set_value(0).run()
    assert any(e.value.startswith("Seeds — 0 is out of range") for e in at.error)
    assert _button(at, "Launch plain vs GIST").disabled and not _button(at, "Launch run").disabled


def test_engine_config_refuses_zero_epochs() -> None:
    import gist_engine as ge

    with pytest.raises(ge.ConfigError, match=r"train\.epochs: 0 is out of range \(must be >= 1\)"):
        ge.load_run_config({"train": {"epochs": 0}})
    with pytest.raises(ge.ConfigError, match=r"train\.epochs"):
        ge.load_run_config({}, ["train.epochs=0"])
    with pytest.raises(ge.ConfigError, match=r"few_shot .* or train_size, not both"):  # refused before any run
        ge.load_run_config({"data": {"few_shot": 2, "train_size": 20}})


def _upload(root: Path, name: str = "bugs", per_class: int = 10) -> str:
    """A 20-image ImageFolder upload (two classes) in the data dir; its `data.dataset` value."""
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    import gist_engine as ge

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for c, shade in (("ants", 40), ("bees", 200)):
            for i in range(per_class):
                png = io.BytesIO()
                Image.fromarray(np.full((8, 8, 3), shade + i, np.uint8)).save(png, "PNG")
                zf.writestr(f"{c}/{i}.png", png.getvalue())
    report = ge.import_imagefolder_zip(buf.getvalue(), name, root)
    assert report.ok, report.errors
    return report.dataset


def test_oversized_train_size_is_caught_before_launch_and_fitted(fake, tmp_path: Path) -> None:
    dataset = _upload(tmp_path)
    draft = {**TINY, "name": None, "data": {"dataset": dataset, "train_size": 1000, "test_size": 40}}
    at = open_page(fake, draft=draft)
    errors = [e.value for e in at.error]
    assert "Train size — data.train_size is 1,000 but the train split holds 16 images" in errors, errors
    assert "Test size — data.test_size is 40 but the test split holds 4 images" in errors, errors
    assert _button(at, "Launch run").disabled, "blocked before any run"
    fit = _button(at, "Fit the sizes to the dataset")
    assert fit.label == "Fit the sizes to the dataset (Train size 16, Test size 4)"
    fit.click().run()
    assert not at.exception, at.exception
    assert (_number(at, "Train size").value, _number(at, "Test size").value) == (16, 4)
    assert not [e.value for e in at.error] and not _button(at, "Launch run").disabled
    assert any("Available: 16 training and 4 test images" in c.value for c in at.caption)
    before = set(fake.runs)
    _button(at, "Launch run").click().run()
    (new,) = set(fake.runs) - before
    run = fake.runs[new]
    assert (run.config.data.train_size, run.config.data.test_size) == (16, 4)
    assert run.name == "linear · bugs · test_vit", "named after what it trains"


def test_runs_keep_a_preset_name_only_while_the_form_equals_the_preset(fake) -> None:
    at = open_page(fake)
    at.pills[0].set_value("Smoke test (tiny random ViT, seconds)").run()
    assert any("The run is named **smoke-digits-tiny-vit**" in c.value for c in at.caption)
    _number(at, "Epochs").set_value(3).run()
    assert any("The run is named **linear · digits · test_vit**" in c.value for c in at.caption), \
        [c.value for c in at.caption]
    next(t for t in at.text_input if t.label == "Run name").set_value("mine").run()
    before = set(fake.runs)
    _button(at, "Launch run").click().run()
    (new,) = set(fake.runs) - before
    assert fake.runs[new].name == "mine" and fake.runs[new].config.train.epochs == 3


# ---------------------------------------------------------------------------------------------- labels
WIDGETS = ("selectbox", "multiselect", "number_input", "text_input", "text_area", "toggle", "checkbox", "slider",
           "select_slider", "radio", "button", "pills", "segmented_control", "file_uploader", "color_picker",
           "date_input", "time_input")


def _duplicate_labels(at: AppTest) -> list[str]:
    labels = Counter(w.label for kind in WIDGETS for w in at.get(kind) if getattr(w, "label", None))
    return sorted(label for label, n in labels.items() if n > 1)


def test_no_two_fields_share_a_label_on_launch_for_any_method(fake) -> None:
    at = open_page(fake)
    method = next(s for s in at.selectbox if s.label == "Method")
    for name in method.options:
        next(s for s in at.selectbox if s.label == "Method").set_value(name).run()
        assert not at.exception, at.exception
        assert not _duplicate_labels(at), (name, _duplicate_labels(at))
    labels = {w.label for kind in WIDGETS for w in at.get(kind)}
    assert {"Seed", "Data seed", "Gist dropout", "Drop-path rate"} <= labels
    next(s for s in at.selectbox if s.label == "Backbone").set_value("test_bert").run()
    assert not at.exception and not _duplicate_labels(at)


@pytest.mark.parametrize("page", ["views/runs.py", "views/datasets.py", "views/about.py"])
def test_no_two_fields_share_a_label(fake, page: str) -> None:
    at = open_page(fake, page)
    assert not _duplicate_labels(at), _duplicate_labels(at)


# ---------------------------------------------------------------------------------------------- datasets page
def test_uploads_are_listed_newest_first_and_deletable(fake, tmp_path: Path) -> None:
    import os

    old, new = _upload(tmp_path, "older"), _upload(tmp_path, "newer")
    os.utime(old.partition(":")[2], (1_000_000_000, 1_000_000_000))
    at = open_page(fake, "views/datasets.py")
    table = at.dataframe[0].value
    assert list(table.dataset[:2]) == [new, old] and "mnist5k" in list(table.dataset)
    assert table.uploaded.notna().sum() == 2
    delete = next(b for b in at.button if b.label == "Delete upload")
    assert delete.disabled
    next(s for s in at.selectbox if s.label == "Upload to delete").set_value("newer").run()
    assert next(b for b in at.button if b.label == "Delete upload").disabled, "needs the confirmation"
    next(c for c in at.checkbox if c.label.startswith("Confirm deleting newer")).check().run()
    next(b for b in at.button if b.label == "Delete upload").click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["Deleted the upload newer (20 images)."]
    assert not (tmp_path / "datasets" / "newer").exists() and (tmp_path / "datasets" / "older").is_dir()
    assert new not in list(at.dataframe[0].value.dataset)
    assert next(s for s in at.selectbox if s.label == "Upload to delete").value is None
    assert next(b for b in at.button if b.label == "Delete upload").disabled


def test_a_benchmark_folder_is_imported_from_the_datasets_page(fake, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.data.benchmark_files import vtab_task

    data = tmp_path / "data"
    vtab_task(data / "imports" / "suite", "kitti", 4)
    (data / "imports" / "empty").mkdir()
    monkeypatch.setenv("GIST_DATA_DIR", str(data))
    at = open_page(fake, "views/datasets.py")
    pick = next(s for s in at.selectbox if s.label.startswith("Zip or folder in"))
    assert pick.options == ["empty", "suite"], "the page offers only what lies in <data dir>/imports"
    assert not any(t.label.startswith("Zip or folder") for t in at.text_input), "a browser never names a server path"
    pick.set_value("suite")  # a form's values go with its submit button
    next(b for b in at.button if b.label == "Check and install").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert at.success[0].value.startswith("Installed 1 vtab1k dataset(s)")
    row = at.dataframe[-1].value.iloc[0]
    assert (row["dataset"], row["classes"], row["test"]) == ("kitti", 4, 8)
    assert (data / "vtab-1k" / "kitti" / "test.txt").is_file()
    next(s for s in at.selectbox if s.label.startswith("Zip or folder in")).set_value("empty")
    next(b for b in at.button if b.label == "Check and install").click().run()
    assert at.error and not at.exception, "a folder with no benchmark is refused by name"


# ---------------------------------------------------------------------------------------------- offline, themes
def test_page_icon_is_a_local_file_not_a_web_font(fake, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ":material/..." page icon makes the browser fetch the favicon from fonts.gstatic.com (Streamlit 1.67's
    frontend), which fails offline; a file is served by the app's own server."""
    import streamlit

    seen = {}
    real = streamlit.set_page_config
    monkeypatch.setattr(streamlit, "set_page_config", lambda **kw: (seen.update(kw), real(**kw))[1])
    open_page(fake)
    icon = Path(str(seen["page_icon"]))
    assert icon.is_file() and icon.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", seen
    assert "icon.png" in (APP.parents[1] / "setup.py").read_text(), "the icon ships in the wheel"


def test_settings_menu_and_os_theme() -> None:
    config = tomllib.loads((APP.parents[1] / ".streamlit" / "config.toml").read_text())
    assert config["client"]["toolbarMode"] in ("viewer", "auto"), "'minimal' hides the menu and its theme choice"
    theme = config.get("theme", {})
    assert "base" not in theme, "a base would force light or dark"
    assert theme["light"] and theme["dark"], "both variants: the theme follows the system and can be switched"


def test_about_diagram_labels_the_cls_gist_arrow_as_the_bkld(fake) -> None:
    import json

    at = open_page(fake, "views/about.py")
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    texts = [a.get("text", "") for a in spec["layout"]["annotations"]]
    assert "<b>BKLD</b> (bidirectional KL)" in texts, texts
