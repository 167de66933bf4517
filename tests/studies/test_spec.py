"""Study specs: parsed once into cells and runs; unknown keys and bad values refused by name before anything runs."""

from __future__ import annotations

import pytest
import yaml

from gist_engine.cli import main
from gist_engine.config import ConfigError
from gist_engine.data.benchmarks import VTAB1K_GROUPS
from gist_engine.studies import StudyError, load_study_spec
from gist_engine.studies.spec import ARMS, count_runs
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
    # the plain arm ignores gist.temperature: one plain run per rank and seed serves both temperatures
    assert len(runs) == s.planned == 12 and s.seeds == [0, 1] and s.paired and s.retries == 1
    assert s.shared_axes == ["gist.temperature"] and [s.plain_cell(i) for i in range(4)] == [0, 1, 0, 1]
    shared = [(p.seed, p.cells, p.config.name) for p in runs if p.arm == "plain"]
    assert shared == [(0, (0, 2), "tiny[gist.temperature=*, method_args.rank=2]-plain-seed0"),
                      (0, (1, 3), "tiny[gist.temperature=*, method_args.rank=4]-plain-seed0"),
                      (1, (0, 2), "tiny[gist.temperature=*, method_args.rank=2]-plain-seed1"),
                      (1, (1, 3), "tiny[gist.temperature=*, method_args.rank=4]-plain-seed1")]
    gist = sorted((p.cell.index, p.seed) for p in runs if p.arm == "gist")
    assert gist == [(c, sd) for c in range(4) for sd in (0, 1)]
    assert s.size_text == ("4 cells x 2 seeds: 4 plain runs (shared across gist.temperature) + 8 GIST = 12 runs")
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
    specs = {p.stem: load_study_spec(p) for p in sorted(folder.glob("*.yaml"))}
    sizes = {name: len(spec.planned_runs()) + spec.trials for name, spec in specs.items()}
    # the gist-only sweeps train the plain arm once per seed (2 + 8 runs, not 16); methods and VTAB-1k cannot share;
    # tuned_adapter: 8 trials per arm, then 3 seeds x 2 arms; untuned_adapter: its cell without the trials
    assert sizes == {"budget": 6, "gist_length": 10, "interaction_loss": 10, "methods": 16, "peft_methods": 60,
                     "temperature": 10, "tuned_adapter": 22, "untuned_adapter": 6, "vtab1k": 570,
                     "vtab1k_natural": 42}
    assert {p.stem: load_study_spec(p).planned for p in folder.glob("*.yaml")} == sizes
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


@pytest.mark.parametrize(("grid", "shared"), [
    ({"gist.temperature": [1, 3]}, ["gist.temperature"]),
    ({"gist.loss": ["bkld", "kl"], "train.lr": [1e-3, 1e-2]}, ["gist.loss"]),
    ({"gist.enabled": [True, False]}, []),  # the switch itself changes the plain arm's config
    ({"mix": {"a": {"gist.temperature": 1, "gist.loss_weight": 0.5}, "b": {"gist.temperature": 3}}}, ["mix"]),
    ({"mix": {"a": {"gist.temperature": 1, "train.lr": 1e-3}, "b": {"gist.temperature": 3}}}, []),
    ({"gist": [{"temperature": 1}, {"temperature": 3}]}, []),  # a whole section may hold gist.enabled
])
def test_only_axes_of_gist_keys_other_than_the_switch_share_the_plain_arm(grid, shared):
    s = load_study_spec({"name": "share", "base": BASE, "grid": grid, "seeds": 3})
    assert s.shared_axes == shared
    sizes = {axis: len(v) for axis, v in s.grid.items()}
    assert s.planned == count_runs(sizes, 3, ARMS, shared={"plain": shared}) == len(s.planned_runs())
    plain = [p for p in s.planned_runs() if p.arm == "plain"]
    assert sorted(c for p in plain for c in p.cells) == sorted(list(range(s.n_cells)) * 3)  # each cell, each seed


def test_a_temperature_study_of_4_values_and_3_seeds_plans_3_plus_12_runs_and_a_stored_one_keeps_its_plan():
    s = load_study_spec({"name": "t", "base": BASE, "grid": {"gist.temperature": [1, 2, 3, 5]}, "seeds": 3})
    assert s.planned == len(s.planned_runs()) == 15
    assert sum(p.arm == "plain" for p in s.planned_runs()) == 3
    old = s.as_stored(24)  # a study stored before the plain arm was shared: per cell, as it was planned
    assert not old.share_plain and old.planned == len(old.planned_runs()) == 24 and old.plain_cell(3) == 3
    assert s.as_stored(15).share_plain and s.to_dict() == old.to_dict()  # the spec's text does not change
    with pytest.raises(StudyError, match="plans 20 runs, its spec 15 \\(or 24"):
        s.as_stored(20)
