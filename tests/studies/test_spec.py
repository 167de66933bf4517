"""Study specs: parsed once into cells and runs; unknown keys and bad values refused by name before anything runs."""

from __future__ import annotations

import pytest
import yaml

from gist_engine.cli import main
from gist_engine.config import ConfigError
from gist_engine.data.benchmarks import VTAB1K_GROUPS
from gist_engine.studies import StudyError, load_study_spec
from tests.studies.helpers import BASE, spec


def test_cells_are_the_cartesian_product_and_every_cell_runs_both_arms_per_seed():
    s = load_study_spec(spec())
    cells = s.cells()
    assert [c.values for c in cells] == [{"gist.temperature": 1, "method_args.rank": 2},
                                         {"gist.temperature": 1, "method_args.rank": 4},
                                         {"gist.temperature": 3, "method_args.rank": 2},
                                         {"gist.temperature": 3, "method_args.rank": 4}]
    assert cells[3].config.gist.temperature == 3.0 and cells[3].config.method_args.rank == 4
    runs = s.planned_runs()
    assert len(runs) == 16 and s.seeds == [0, 1] and s.paired and s.retries == 1
    plain, gist = runs[0], runs[1]  # seed-major, plain before GIST: same seed, only gist.enabled differs
    assert (plain.arm, gist.arm, plain.seed, gist.seed) == ("plain", "gist", 0, 0)
    assert not plain.config.gist.enabled and gist.config.gist.enabled
    assert plain.config.train.seed == gist.config.train.seed == 0


def test_base_file_set_named_axis_and_seed_list(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({
        "base": "base.yaml", "set": {"train.lr": 0.01}, "seeds": [3, 7], "paired": False,
        "grid": {"task": {"a": {"gist.length": 2, "train.epochs": 1}, "b": {"gist.length": 4}}}}))
    s = load_study_spec(path)
    assert s.name == "study" and s.seeds == [3, 7] and s.arms == ("gist",)
    a, b = s.cells()
    assert a.values == {"task": "a"} and a.config.gist.length == 2 and a.config.train.epochs == 1
    assert b.config.gist.length == 4 and b.config.train.epochs == 2 and b.config.train.lr == 0.01
    assert len(s.planned_runs()) == 4
    assert load_study_spec(s.to_dict()) == s  # what the store keeps reads back the same


def test_a_grid_cell_may_need_another_axis():
    s = load_study_spec({"base": {"method": "adapter"}, "grid": {"method": ["lora"], "method_args.rank": [2, 8]}})
    assert [c.config.method_args.rank for c in s.cells()] == [2, 8]


@pytest.mark.parametrize(("change", "named"), [
    ({"gird": {}}, "unknown study key 'gird'"),
    ({"base": {**BASE, "bogus": 1}}, "base: unknown config key 'bogus'"),
    ({"grid": {"gist.temprature": [1, 2]}}, "grid.gist.temprature: value 1: unknown config key 'gist.temprature'"),
    ({"grid": {"gist.temperature": [1, -2]}}, "grid.gist.temperature: value -2: gist.temperature: -2.0 is out of"),
    ({"grid": {"gist.loss": ["bkld", "kld"]}}, "grid.gist.loss: value kld: gist.loss: 'kld' is not one of"),
    ({"grid": {"method_args.rank": [2], "method": ["lora", "adapter"]}},
     "grid cell method_args.rank=2, method=adapter: unknown config key 'method_args.rank'"),
    ({"grid": {"gist.temperature": []}}, "grid.gist.temperature: needs at least one value"),
    ({"grid": {"gist.temperature": 3}}, "grid.gist.temperature: expected a list"),
    ({"grid": {}}, "grid: give at least one axis to sweep"),
    ({"grid": None}, "grid: give at least one axis to sweep"),
    ({"seeds": 0}, "seeds: need at least one seed"),
    ({"retries": -1}, "retries: expected an integer"),
    ({"paired": "yes"}, "paired: expected true or false"),
    ({"base": "no/such/file.yaml"}, "base: no run config file"),
])
def test_a_bad_spec_is_refused_by_name(change, named):
    data = spec()
    data["grid"] = {"gist.temperature": [1], "method_args.rank": [2]}
    data.update(change)
    with pytest.raises(StudyError) as info:
        load_study_spec(data)
    assert named in str(info.value)
    assert isinstance(info.value, ConfigError)  # the CLI prints `error: ...` and exits 2


def test_the_built_in_studies_parse_and_are_installed_with_the_assets():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "assets" / "studies"
    sizes = {p.stem: len(load_study_spec(p).planned_runs()) for p in sorted(folder.glob("*.yaml"))}
    assert sizes == {"gist_length": 16, "interaction_loss": 16, "methods": 16, "peft_methods": 60, "temperature": 16,
                     "vtab1k": 570, "vtab1k_natural": 42}
    vtab = load_study_spec(folder / "vtab1k.yaml")
    cells = {tuple(c.values.values()): c.config for c in vtab.cells()}
    cifar = cells[("cifar", "lora")]
    assert cifar.recipe == "vtab1k/cifar" and cifar.num_classes == 100 and cifar.train.lr == 5e-3
    assert cifar.method == "lora" and cifar.data.dataset == "vtab1k:/data/vtab-1k/cifar" and vtab.seeds == [42, 43, 44]
    natural = {tuple(c.values.values()): c.config for c in load_study_spec(folder / "vtab1k_natural.yaml").cells()}
    assert sorted(t for (t,) in natural) == sorted(VTAB1K_GROUPS["natural"])
    svhn = natural[("svhn",)]
    assert (svhn.method, svhn.method_args.variant, svhn.num_classes, svhn.train.lr) == ("adapter", "gist", 10, 1e-2)
    setup = (folder.parents[1] / "setup.py").read_text()
    assert '"gist_studio.assets": "assets"' in setup and '"**/*.yaml"' in setup  # assets/studies/ is package data


def test_an_empty_spec_file_is_refused_before_anything_runs(tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert main(["study", "run", str(empty), "--root", str(tmp_path / "data")]) == 2
    out, err = capsys.readouterr()
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: grid: give at least one axis to sweep")
    assert "study " not in out  # no study was created, nothing trained
