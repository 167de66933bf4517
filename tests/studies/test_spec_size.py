"""A study's size is counted before it is built; specs are bounded; names are text; an uploaded spec reads no files."""

from __future__ import annotations

import json
import sqlite3

import pytest
import yaml

from gist_engine import cli
from gist_engine.runs import RunManager
from gist_engine.studies import (
    MAX_RUNS,
    StudyError,
    count_runs,
    create_study,
    get_study,
    load_study_spec,
    load_uploaded_spec,
)
from gist_engine.studies import spec as spec_module
from tests.runs.helpers import config
from tests.studies.helpers import spec as tiny_spec

SIX_AXES = {f"train.lr{i}": list(range(10)) for i in range(6)}  # 10^6 cells (keys never checked: counted first)
THOUSAND = {"train.lr": list(range(1, 1001))}  # 1,000 cells


@pytest.fixture
def nothing_built(monkeypatch):
    """Fail the test if a cell, a run config or a seed list is built."""
    def fail(*args, **kwargs):
        raise AssertionError("built before the size was counted")
    monkeypatch.setattr(spec_module.StudySpec, "cells", fail)
    monkeypatch.setattr(spec_module, "_parse_seeds", fail)
    monkeypatch.setattr(spec_module, "load_run_config", fail)


def test_count_runs_is_arithmetic_and_knows_shared_arms_and_trials() -> None:
    axes = {"gist.temperature": 4, "train.lr": 3}
    assert count_runs(axes, 2) == 4 * 3 * 2 * 2
    assert count_runs(axes, 2, ("gist",)) == 24
    assert count_runs(axes, 2, shared={"plain": ["gist.temperature"]}) == 3 * 2 + 12 * 2  # one plain run per T
    assert count_runs(axes, 1, trials=5) == 12 * 5 * 2
    assert count_runs({}, 3) == 6  # no axis: one cell
    assert count_runs({"a": 10} | {f"b{i}": 10 for i in range(5)}, 10**12) == 10**6 * 10**12 * 2  # exact, instant


@pytest.mark.parametrize(("grid", "seeds", "count"), [
    (SIX_AXES, 1, "2,000,000"),
    (THOUSAND, 1000, "2,000,000"),
    ({"gist.temperature": [1, 3]}, 10**12, "3,000,000,000,000"),  # one plain run per seed serves both T
])
def test_a_huge_spec_is_refused_by_its_count_before_anything_is_built(nothing_built, grid, seeds, count) -> None:
    with pytest.raises(StudyError, match=f"plans {count} runs .*more than the cap of 10,000.*--max-runs"):
        load_study_spec({"name": "huge", "base": {}, "grid": grid, "seeds": seeds})


def test_the_cap_can_be_raised_and_the_store_keeps_the_count(tmp_path) -> None:
    data = tiny_spec() | {"seeds": 3}
    planned = load_study_spec(data).planned
    with pytest.raises(StudyError, match=f"plans {planned} runs"):
        load_study_spec(data, max_runs=planned - 1)
    study_id = create_study(data, tmp_path, max_runs=planned)
    info = get_study(study_id, tmp_path)
    assert info.planned == planned == len(load_study_spec(data).planned_runs()) and info.cells == 4
    assert MAX_RUNS == 10_000


def test_study_run_refuses_a_huge_spec_on_one_line_and_max_runs_raises_it(tmp_path, capsys, nothing_built) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(yaml.safe_dump({"name": "huge", "grid": SIX_AXES}))
    assert cli.main(["study", "run", str(path), "--root", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plans 2,000,000 runs (1,000,000 cells x 1 seed x 2 arms)" in err, err
    assert cli.main(["study", "run", str(path), "--root", str(tmp_path / "data"), "--max-runs", "1999999"]) == 2
    assert "more than the cap of 1,999,999" in capsys.readouterr().err


def test_a_deeply_nested_spec_is_one_error_line(tmp_path, capsys) -> None:
    deep: dict = {}
    node = deep
    for _ in range(100_000):
        node["a"] = {}
        node = node["a"]
    with pytest.raises(StudyError, match="nests more than 32 levels"):
        load_study_spec({"name": "deep", "base": deep, "grid": {"gist.temperature": [1]}})
    path = tmp_path / "deep.yaml"
    path.write_text("grid: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert cli.main(["study", "run", str(path), "--root", str(tmp_path / "data")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nests too deeply" in err, err


# ------------------------------------------------------------------------------------------------ names
@pytest.mark.parametrize("name", ["x\n\x1b[2J\x1b[31mERROR fake", "tab\there", "bell\x07", "del\x7f", "sep\u2028"])
def test_control_characters_in_a_new_name_are_refused(tmp_path, name) -> None:
    with pytest.raises(StudyError, match="control character"):
        load_study_spec(tiny_spec() | {"name": name})
    with RunManager(tmp_path, start=False) as mgr:
        with pytest.raises(Exception, match="control character") as info:
            mgr.submit(config("ok"), name=name)
        assert type(info.value).__name__ == "ConfigError"
        with pytest.raises(Exception, match="control character"):
            mgr.submit_group(config("ok"), 1, name=name)
        assert not mgr.list(), "nothing stored"


def test_a_stored_name_is_printed_escaped(tmp_path, capsys) -> None:
    study_id = create_study(tiny_spec(), tmp_path)
    with RunManager(tmp_path, start=False) as mgr:
        run_id = mgr.submit(config("ok"))
        mgr.stop(run_id)
    hostile = "x\n\x1b[2J\x1b[31mERROR: fake"  # a store written by an older version, or by hand
    with sqlite3.connect(tmp_path / "runs.sqlite3") as c:
        c.execute("UPDATE studies SET name = ?", (hostile,))
        c.execute("UPDATE runs SET name = ?", (hostile,))
    for args in (["study", "list", "--root", str(tmp_path)], ["study", "show", study_id, "--root", str(tmp_path)],
                 ["runs", "--root", str(tmp_path), "list"], ["runs", "--root", str(tmp_path), "show", run_id]):
        assert cli.main(args) == 0
        out = capsys.readouterr().out
        assert "\x1b" not in out and "ERROR: fake" in out and "\\x1b[2J" in out, (args, out)
        assert not any(line.startswith("\x1b") or line.startswith("[31m") for line in out.splitlines())
    assert cli.main(["study", "list", "--root", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["name"] == hostile  # JSON keeps the text, escaped by JSON


# ------------------------------------------------------------------------------------------------ uploads
@pytest.mark.parametrize("base", ["/etc/passwd", "../configs/demo_cpu.yaml", "demo_cpu.yaml", "~/x.yaml", 7])
def test_an_uploaded_spec_reads_no_file(base, monkeypatch) -> None:
    opened = []
    monkeypatch.setattr(spec_module, "load_yaml", lambda p: opened.append(p) or {})
    text = yaml.safe_dump({"base": base, "grid": {"gist.temperature": [1, 3]}})
    with pytest.raises(StudyError, match="is not a built-in config; an uploaded spec reads no files"):
        load_uploaded_spec(text.encode(), "spec.yaml")
    assert not opened


def test_an_uploaded_spec_names_a_built_in_config_or_inlines_one() -> None:
    spec = load_uploaded_spec(b"base: demo_cpu\ngrid: {gist.temperature: [1, 3]}\n", "mine.yaml")
    assert spec.name == "mine" and spec.base["backbone"] == "dinov2_s14" and spec.planned == 3
    inline = load_uploaded_spec(yaml.safe_dump(tiny_spec()).encode(), "x.yaml")
    assert inline.planned == load_study_spec(tiny_spec()).planned
    for bad, said in ((b"\xff\xfe", "not UTF-8"), (b"[1, 2]", "a study spec is a mapping"),
                      (b"grid: [", "not valid YAML"), (b"name: \"a\\e[2J\"\ngrid: {gist.temperature: [1]}",
                                                       "control character")):
        with pytest.raises(StudyError, match=said):
            load_uploaded_spec(bad, "spec.yaml")


def test_a_spec_file_on_the_cli_still_reads_its_base(tmp_path) -> None:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_spec()["base"]))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec() | {"base": "base.yaml"}))
    assert load_study_spec(spec).base == tiny_spec()["base"]
