"""Study specs: a base run config, a grid of config keys to sweep, seeds and arms, parsed and validated once."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import itertools
import json
import math
import re
import typing
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError, RunConfig, check_nesting, load_run_config, load_yaml, safe_load_yaml, to_dict
from ..runs import check_name, printable
from .tune import TuneError, TuneSpec, check_space, parse_tune

# The keys a study spec may have (anything else is refused by name).
STUDY_KEYS = ("name", "description", "base", "set", "grid", "seeds", "paired", "retries", "tune")
ARMS = ("plain", "gist")
MAX_RUNS = 10_000  # runs a study may plan unless the caller raises the cap (`study run --max-runs N`)
CONFIG_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a built-in config's name (`base: demo_cpu`)
GIST_PREFIX, GIST_SWITCH = "gist.", "gist.enabled"  # a gist.* key but the switch cannot change a plain run


class StudyError(ConfigError):
    """A study spec (or a request about a stored study) that cannot be used; the message names the key or id."""


@dataclass(frozen=True)
class Cell:
    """One point of the grid: the values of every axis and the run config they give (before the arm and seed).

    Attributes:
        index: Position in the grid's cartesian product (row-major, axes in spec order).
        key: A stable text key of the values (JSON of axis -> value), stored with each of the cell's runs.
        values: Axis -> value; for a named axis (a mapping of labels) the value is the label.
        config: The cell's validated RunConfig (recipe resolved); `gist.enabled` and `train.seed` are set per run.
    """

    index: int
    key: str
    values: dict[str, Any]
    config: RunConfig

    @property
    def label(self) -> str:
        """`axis=value, axis=value` (the grid order), for tables and progress bars."""
        return ", ".join(f"{k}={_show(v)}" for k, v in self.values.items()) or "base"


@dataclass(frozen=True)
class PlannedRun:
    """One run of a study: a cell, a seed and an arm (`plain` = GIST off, `gist` = GIST on).

    Attributes:
        cells: The cells whose verdict the run enters: its own cell alone, or, for a plain run shared across the
            values of gist-only axes (`StudySpec.shared_axes`), every cell it serves (`cell` is the first of them).
    """

    cell: Cell
    seed: int
    arm: str
    config: RunConfig
    cells: tuple[int, ...] = ()


@dataclass
class StudySpec:
    """A parsed study: paired sweeps of any config keys over seeds.

    Attributes:
        name: The study's label.
        base: The base run config as a mapping (from `base:` inline or a file, with `set:` applied); a recipe in
            it, or one set by the grid, is resolved per cell.
        grid: Axis -> values. An axis is a dotted config key (`gist.temperature: [1, 2, 3]`) or a named axis whose
            values are labels of mappings of dotted keys set together (`task: {cifar: {recipe: vtab1k/cifar,
            data.dataset: "vtab:/data/cifar"}}`), for keys that must move together.
        seeds: The seeds every cell runs (both arms share each seed: same init of shared weights, same data order).
        paired: Run every cell with GIST off and on (True); False runs only the base's `gist.enabled` arm.
        retries: Times a failed run (or one whose worker died) is tried again before the study goes on without it.
        description: Free text.
        share_plain: Train the plain arm once per seed for all the values of the gist-only axes (`shared_axes`):
            GIST off, no `gist.*` key but `gist.enabled` can change a run. True for every new study; False for a
            study stored before the plain arm was shared (`as_stored`), which keeps its plan. Not part of the
            spec's text (`to_dict`).
        tune: The `tune:` block (`studies.tune.TuneSpec`): each arm of each cell is tuned on the validation split,
            then its best configuration trains over `seeds`; None: a grid study (every run's config is known).
    """

    name: str
    base: dict[str, Any]
    grid: dict[str, list[Any] | dict[str, dict[str, Any]]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    paired: bool = True
    retries: int = 1
    description: str = ""
    share_plain: bool = True
    tune: TuneSpec | None = None

    @property
    def axes(self) -> list[str]:
        """The grid's axes, in spec order."""
        return list(self.grid)

    @property
    def arms(self) -> tuple[str, ...]:
        """The arms each cell runs: ("plain", "gist") when paired, else the base's arm alone."""
        if self.paired:
            return ARMS
        return ("gist",) if load_run_config(self.base).gist.enabled else ("plain",)

    @property
    def n_cells(self) -> int:
        """Cells of the grid, counted (nothing built): the product of the axes' sizes."""
        return math.prod(len(v) for v in self.grid.values())

    @property
    def shared_axes(self) -> list[str]:
        """The axes the plain arm ignores (`plain_shared_axes`), when `share_plain` (never in a tuned study: each
        cell's plain arm is tuned and trained on its own); else none."""
        return plain_shared_axes(self.grid) if self.share_plain and self.tune is None else []

    @property
    def planned(self) -> int:
        """Runs the study plans, counted by `count_runs` (nothing built): one plain run per seed serves every
        value of the `shared_axes`; a tuned study adds its trials (`trials`)."""
        return count_runs({axis: len(v) for axis, v in self.grid.items()}, len(self.seeds), self.arms,
                          shared={"plain": self.shared_axes}) + self.trials

    @property
    def trials(self) -> int:
        """Trial runs of a tuned study (`tune.trials` per tuned arm and cell, with one seed); 0 for a grid study."""
        if self.tune is None:
            return 0
        sizes = {axis: len(v) for axis, v in self.grid.items()}
        return sum(count_runs(sizes, 1, (arm,), trials=self.tune.trials_of(arm)) for arm in self.arms)

    @property
    def size_text(self) -> str:
        """How the run count is made up: '4 cells x 2 seeds x 2 arms = 16 runs', or with a shared plain arm '4 cells
        x 2 seeds: 2 plain runs (shared across gist.temperature) + 8 GIST = 10 runs'."""
        trials = f" + {_count(self.trials, 'trial')}" if self.tune is not None else ""
        return _size_text({axis: len(v) for axis, v in self.grid.items()}, len(self.seeds), self.arms,
                          self.shared_axes) + f"{trials} = {_count(self.planned, 'run')}"

    def plain_cell(self, index: int) -> int:
        """The cell whose plain runs serve cell `index`: itself, or with `shared_axes` the cell with the first value
        of each shared axis and the same values of the others (index arithmetic on the row-major grid)."""
        shared, out, stride = set(self.shared_axes), 0, 1
        for axis, values in reversed(self.grid.items()):
            coordinate = (index // stride) % len(values)
            out += (0 if axis in shared else coordinate) * stride
            stride *= len(values)
        return out

    def as_stored(self, planned: int) -> StudySpec:
        """This spec as a stored study of `planned` runs was planned: a study stored before the plain arm was
        shared planned it per cell (its count tells), and keeps that plan when resumed, shown or imported.

        Raises:
            StudyError: `planned` matches neither plan.
        """
        shared = dataclasses.replace(self, share_plain=True)
        if planned == shared.planned:
            return shared
        per_cell = dataclasses.replace(self, share_plain=False)
        if planned == per_cell.planned:
            return per_cell
        raise StudyError(f"the study plans {planned!r} runs, its spec {shared.planned} (or {per_cell.planned} "
                         "without a shared plain arm); the stored study does not match its spec")

    def cells(self) -> list[Cell]:
        """Every cell of the grid (the cartesian product of the axes' values), validated."""
        choices = [list(v) for v in self.grid.values()]  # a named axis: its labels
        out = []
        for index, combo in enumerate(itertools.product(*choices)):
            values = dict(zip(self.grid, combo, strict=True))
            data = copy.deepcopy(self.base)
            for axis, value in values.items():
                for key, v in _axis_settings(self.grid[axis], axis, value).items():
                    _set_key(data, key, v)
            try:
                config = load_run_config(data)
            except ConfigError as exc:
                where = ", ".join(f"{k}={_show(v)}" for k, v in values.items())
                raise StudyError(f"grid cell {where}: {exc}") from None
            out.append(Cell(index, json.dumps(values, sort_keys=False, default=str), values, config))
        return out

    def planned_runs(self) -> list[PlannedRun]:
        """Every run: seed-major (all cells of the first seed first, so results arrive across the grid), then cell,
        then arm (plain before GIST). A plain run shared across the `shared_axes` comes once per seed, at the first
        cell it serves, with the config of that cell (GIST off: its gist.* values play no part) and a name that
        shows the shared axes as `*` (`temperature[gist.temperature=*]-plain-seed0`)."""
        cells = self.cells()
        serves: dict[int, list[int]] = {}
        for cell in cells:
            serves.setdefault(self.plain_cell(cell.index), []).append(cell.index)
        shared = set(self.shared_axes)
        runs = []
        for seed in self.seeds:
            for cell in cells:
                for arm in self.arms:
                    if arm == "plain" and cell.index not in serves:
                        continue  # served by the plain run of its `plain_cell`
                    served = tuple(serves[cell.index]) if arm == "plain" else (cell.index,)
                    label = cell.label if len(served) == 1 else ", ".join(
                        f"{k}={'*' if k in shared else _show(v)}" for k, v in cell.values.items())
                    cfg = copy.deepcopy(cell.config)
                    cfg.train.seed = seed
                    cfg.gist.enabled = arm == "gist"
                    cfg.name = f"{self.name}[{label}]-{arm}-seed{seed}"
                    runs.append(PlannedRun(cell, seed, arm, cfg, served))
        return runs

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-ready mapping that `load_study_spec` reads back to an equal spec (base inlined)."""
        out = {"name": self.name, "description": self.description, "base": copy.deepcopy(self.base),
               "grid": copy.deepcopy(self.grid), "seeds": list(self.seeds), "paired": self.paired,
               "retries": self.retries}
        if self.tune is not None:  # only then: a grid study's stored text (and `StudyStore.find`) is unchanged
            out["tune"] = self.tune.to_dict()
        return out


def count_runs(axes: Mapping[str, int], seeds: int, arms: Sequence[str] = ARMS, *,
               shared: Mapping[str, Collection[str]] | None = None, trials: int = 1) -> int:
    """Runs a study plans, counted by arithmetic alone (no cell, config or list is built): per arm, the product of
    the sizes of the axes that change that arm's runs, times the trials per cell and the seeds.

    Args:
        axes: Axis -> its number of values (a named axis: its labels), in spec order.
        seeds: Seeds per cell.
        arms: The arms each cell runs (`StudySpec.arms`).
        shared: Arm -> axes that do not change that arm's runs, so one run serves every value of them (e.g.
            {"plain": ["gist.temperature"]}: the plain arm ignores T); default: every arm varies over every axis.
        trials: Configurations tried per cell and seed (hyper-parameter search); 1 for a grid.

    Returns:
        The count (a Python int: exact for any size, e.g. `seeds: 10**12`).
    """
    shared = shared or {}
    return sum(math.prod(n for axis, n in axes.items() if axis not in shared.get(arm, ())) * trials * seeds
               for arm in arms)


def plain_shared_axes(grid: Mapping[str, Any]) -> list[str]:
    """The axes of a grid that cannot change a plain run: every key they set is a `gist.*` key other than
    `gist.enabled` (a key axis such as `gist.temperature`, or a named axis setting only such keys). With GIST off
    the model has no Gist token and the loss no interaction term, so one plain run per seed serves all their values.
    Read from the axes' keys alone (nothing is built)."""
    def gist_only(key: Any) -> bool:
        return isinstance(key, str) and key.startswith(GIST_PREFIX) and key != GIST_SWITCH

    return [axis for axis, values in grid.items()
            if (all(isinstance(v, Mapping) and v and all(gist_only(k) for k in v) for v in values.values())
                if isinstance(values, Mapping) else gist_only(axis))]


def check_study_size(runs: int, max_runs: int | None = MAX_RUNS, detail: str = "") -> int:
    """`runs` itself when it is at most `max_runs` (None: no cap).

    Raises:
        StudyError: naming the count (and `detail`, how it is made up) and how to raise the cap.
    """
    if max_runs is not None and runs > max_runs:
        raise StudyError(f"the study plans {runs:,} runs{f' ({detail})' if detail else ''}, more than the cap of "
                         f"{max_runs:,}; shrink the grid or the seeds, or raise the cap (study run --max-runs N)")
    return runs


def builtin_configs() -> dict[str, Path]:
    """The built-in run configs by name (`demo_cpu` -> assets/configs/demo_cpu.yaml): a checkout's assets, else
    the installed app's (`gist_studio`, located with `importlib.util.find_spec`, never imported)."""
    folder = Path(__file__).resolve().parents[2] / "assets" / "configs"
    if not folder.is_dir():
        found = importlib.util.find_spec("gist_studio")
        if found is not None and found.submodule_search_locations:
            folder = Path(next(iter(found.submodule_search_locations))) / "assets" / "configs"
    files = sorted(folder.glob("*.yaml")) if folder.is_dir() else []
    return {p.stem: p for p in files if CONFIG_NAME.fullmatch(p.stem)}


def _count(n: int, word: str) -> str:
    """(1, 'seed') -> '1 seed'; (2000, 'cell') -> '2,000 cells'."""
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _size_text(axes: Mapping[str, int], seeds: int, arms: Sequence[str], shared: Sequence[str]) -> str:
    """'4 cells x 2 seeds x 2 arms', or with a shared plain arm '4 cells x 2 seeds: 2 plain runs (shared across
    gist.temperature) + 8 GIST'."""
    cells = f"{_count(math.prod(axes.values()), 'cell')} x {_count(seeds, 'seed')}"
    if not shared or "plain" not in arms:
        return f"{cells} x {_count(len(arms), 'arm')}"
    parts = [f"{_count(count_runs(axes, seeds, ('plain',), shared={'plain': shared}), 'plain run')} (shared across "
             f"{', '.join(shared)})"] + ([f"{count_runs(axes, seeds, ('gist',)):,} GIST"] if "gist" in arms else [])
    return f"{cells}: {' + '.join(parts)}"


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _axis_settings(spec: list[Any] | dict[str, dict[str, Any]], axis: str, value: Any) -> dict[str, Any]:
    """The dotted keys one axis value sets: {axis: value} for a key axis, the label's mapping for a named one."""
    return dict(spec[value]) if isinstance(spec, dict) else {axis: value}


def _set_key(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in a nested config mapping (creating the sections), refusing a path through a non-mapping."""
    parts = dotted.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif isinstance(child, RunConfig) or dataclasses.is_dataclass(child):
            child = node[part] = to_dict(child)
        if not isinstance(child, dict):
            raise StudyError(f"grid key {dotted}: {'.'.join(parts[: i + 1])} is not a section of the run config")
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def _check_key(key: str, where: str) -> None:
    if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
        raise StudyError(f"{where}: {key!r} is not a dotted config key (e.g. gist.temperature)")


def _resolve_base(base: Any, origin: Path | None, read_files: bool = True) -> dict[str, Any]:
    """`base:` as a mapping of run-config keys, or the run config file it names (relative to the spec's folder,
    then to the working directory); without `read_files` (a spec from outside, e.g. uploaded to the app) only a
    built-in config's name (`builtin_configs`) or a mapping."""
    if base is None:
        return {}
    if isinstance(base, typing.Mapping):
        return copy.deepcopy(dict(base))
    if not read_files:
        known = builtin_configs()
        if isinstance(base, str) and base in known:
            return load_yaml(known[base])
        shown = f"'{printable(base)}'" if isinstance(base, str) else type(base).__name__
        raise StudyError(f"base: {shown} is not a built-in config; an uploaded spec reads no files: name a built-in "
                         f"config ({', '.join(known) or 'none here'}, e.g. base: demo_cpu) or give the run config "
                         "inline as a mapping")
    if isinstance(base, (str, Path)):
        path = Path(base).expanduser()
        candidates = [path] if path.is_absolute() else [*([origin / path] if origin else []), Path.cwd() / path]
        for candidate in candidates:
            if candidate.is_file():
                return load_yaml(candidate)
        raise StudyError(f"base: no run config file {str(base)!r} (looked in "
                         f"{', '.join(str(c.parent) for c in candidates)}); give a path or an inline mapping")
    raise StudyError(f"base: expected a run config mapping or a file path, got {type(base).__name__} {base!r}")


def _seed_count(seeds: Any) -> int:
    """How many seeds `seeds:` gives (a number, or a list's length), before any list is built; 1 when absent or
    malformed (`_parse_seeds` names the problem)."""
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return max(seeds, 1)
    return len(seeds) if isinstance(seeds, list) and seeds else 1


def _parse_seeds(seeds: Any, first: int) -> list[int]:
    if isinstance(seeds, bool):
        raise StudyError(f"seeds: expected a number of seeds or a list of seeds, got {seeds!r}")
    if isinstance(seeds, int):
        if seeds < 1:
            raise StudyError(f"seeds: need at least one seed, got {seeds}")
        return list(range(first, first + seeds))
    if isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        if len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise StudyError(f"seeds: need distinct seeds >= 0, got {seeds}")
        return list(seeds)
    raise StudyError(f"seeds: expected a number of seeds or a list of seeds >= 0, got {seeds!r}")


def _parse_grid(grid: Any, one_cell: bool = False,
                tuned: bool = False) -> dict[str, list[Any] | dict[str, dict[str, Any]]]:
    if grid is not None and not isinstance(grid, typing.Mapping):
        raise StudyError(f"grid: expected a mapping of config keys to lists of values, got {type(grid).__name__}")
    if not grid and (one_cell or tuned):  # a stored paired group, or a tuned study of one cell: the base is its cell
        return {}
    if not grid:  # an empty file, or a spec without axes, would silently train the base config as a "study"
        raise StudyError("grid: give at least one axis to sweep, e.g. grid: {gist.temperature: [1, 3]} (for plain "
                         "vs GIST over seeds without a sweep: python -m gist_engine compare --config FILE --seeds N)")
    out: dict[str, list[Any] | dict[str, dict[str, Any]]] = {}
    for axis, values in grid.items():
        _check_key(axis, "grid")
        if isinstance(values, typing.Mapping):  # a named axis: label -> {dotted key: value}
            if not values:
                raise StudyError(f"grid.{axis}: a named axis needs at least one label")
            named = {}
            for label, settings in values.items():
                if not isinstance(settings, typing.Mapping) or not settings:
                    raise StudyError(f"grid.{axis}.{label}: expected a mapping of config keys to values")
                for key in settings:
                    _check_key(key, f"grid.{axis}.{label}")
                named[str(label)] = dict(settings)
            out[axis] = named
        elif isinstance(values, list):
            if not values:
                raise StudyError(f"grid.{axis}: needs at least one value")
            if len({json.dumps(v, sort_keys=True, default=str) for v in values}) != len(values):
                raise StudyError(f"grid.{axis}: repeated values in {values}")
            out[axis] = list(values)
        else:
            raise StudyError(f"grid.{axis}: expected a list of values, got {type(values).__name__} {values!r}")
    return out


def _check_axis_values(spec: StudySpec) -> None:
    """Every grid value alone on the base: names a key or value that is wrong whatever the other axes are."""
    for axis, values in spec.grid.items():
        for value in values:
            data = copy.deepcopy(spec.base)
            settings = _axis_settings(values, axis, value)
            for key, v in settings.items():
                _set_key(data, key, v)
            try:
                load_run_config(data)
            except ConfigError as exc:
                raise StudyError(f"grid.{axis}: value {_show(value)}: {exc}") from None


def load_study_spec(source: str | Path | typing.Mapping[str, Any] | StudySpec, *, max_runs: int | None = MAX_RUNS,
                    read_files: bool = True, one_cell: bool = False) -> StudySpec:
    """A validated StudySpec from a YAML file, a mapping, or a spec (returned as it is).

    The spec's size is counted first (`count_runs`: cells x seeds x arms, by arithmetic) and refused above
    `max_runs` before any seed list or cell is built; then every key of the spec, of its base run config and of
    every grid value is checked, and every cell's run config is parsed, so a bad spec is refused by name before
    anything runs.

    Args:
        source: A YAML file, a mapping (nested at most `config.MAX_DEPTH` levels) or a StudySpec.
        max_runs: The most runs the study may plan (default `MAX_RUNS`); None: no cap (a stored study, counted when
            it was created).
        read_files: Whether `base:` may name a run config file; False for a spec from outside (uploaded to the
            app): `base:` is then a built-in config's name (`base: demo_cpu`) or a mapping, and nothing is read
            from the disk besides the built-in configs.
        one_cell: Accept a spec without a grid: the stored spec of a paired group (a study of kind `group`, see
            `runs.store.group_study_row`), whose one cell is the base. A user's spec still needs an axis.

    Raises:
        StudyError: naming the offending key or value, or the count above the cap (a ConfigError, so the CLI
            prints it on one line and exits 2).
    """
    if isinstance(source, StudySpec):
        return source
    data, origin, default_name = _read_spec(source)
    unknown = [k for k in data if k not in STUDY_KEYS]
    if unknown:
        raise StudyError(f"unknown study key {unknown[0]!r}; valid keys: {', '.join(STUDY_KEYS)} "
                         "(run config keys go under base:)")
    paired, retries = data.get("paired", True), data.get("retries", 1)
    if not isinstance(paired, bool):
        raise StudyError(f"paired: expected true or false, got {paired!r}")
    tune = _parse_tune_block(data.get("tune"), paired)
    grid = _parse_grid(data.get("grid"), one_cell, tuned=tune is not None)
    _check_size(grid, data.get("seeds", 1), paired, tune, max_runs)  # before any seed list or cell is built
    base = _resolve_base(data.get("base"), origin, read_files)
    sets = data.get("set") or {}
    if not isinstance(sets, typing.Mapping):
        raise StudyError(f"set: expected a mapping of dotted config keys to values, got {type(sets).__name__}")
    for key, value in sets.items():
        _check_key(key, "set")
        _set_key(base, key, value)
    try:
        base_config = load_run_config(base)
    except ConfigError as exc:
        raise StudyError(f"base: {exc}") from None
    name = data.get("name") or base_config.name or default_name
    try:
        check_name(name, "name")
    except ValueError as exc:  # a newline or an ANSI escape would rewrite the terminal that lists the study
        raise StudyError(str(exc)) from None
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 100:
        raise StudyError(f"retries: expected an integer from 0 to 100, got {retries!r}")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise StudyError(f"description: expected a string, got {description!r}")
    spec = StudySpec(name=name, base=base, grid=grid,
                     seeds=_parse_seeds(data.get("seeds", 1), base_config.train.seed), paired=paired,
                     retries=retries, description=description.strip(), tune=tune)
    _check_cells(spec)
    return spec


def _read_spec(source: Any) -> tuple[dict[str, Any], Path | None, str]:
    """(the spec's mapping, the folder its `base:` path is relative to (None for a mapping), its default name)."""
    if isinstance(source, (str, Path)):
        return load_yaml(source), Path(source).resolve().parent, Path(source).stem
    if isinstance(source, typing.Mapping):
        try:
            return dict(check_nesting(dict(source), "study spec", hint="a spec nests about 5 levels "
                                      "(grid: {axis: [values]})")), None, "study"
        except ConfigError as exc:
            raise StudyError(str(exc)) from None
    raise StudyError(f"study spec: expected a YAML file or a mapping, got {type(source).__name__}")


def _parse_tune_block(block: Any, paired: bool) -> TuneSpec | None:
    """The `tune:` block (None without one); a tuned study must be paired."""
    if block is None:
        return None
    try:
        tune = parse_tune(block)
    except TuneError as exc:
        raise StudyError(str(exc)) from None
    if not paired:
        raise StudyError("tune: a tuned study compares plain and GIST, each tuned with the same budget; remove "
                         "paired: false")
    return tune


def _check_size(grid: dict[str, Any], seeds_value: Any, paired: bool, tune: TuneSpec | None,
                max_runs: int | None) -> None:
    """Refuse a study above `max_runs` runs (`count_runs`, arithmetic only; trials included), and a key both swept
    by the grid and tuned."""
    seeds = _seed_count(seeds_value)
    arms = ARMS if paired else ARMS[:1]  # unpaired: one arm (which one needs the base; the count is the same)
    sizes = {axis: len(values) for axis, values in grid.items()}
    shared = plain_shared_axes(grid) if tune is None else []
    trials = 0 if tune is None else sum(count_runs(sizes, 1, (arm,), trials=tune.trials_of(arm)) for arm in arms)
    check_study_size(count_runs(sizes, seeds, arms, shared={"plain": shared} if paired else None) + trials, max_runs,
                     _size_text(sizes, seeds, arms, shared if paired else [])
                     + (f" + {_count(trials, 'trial')}" if tune is not None else ""))
    if tune is not None:
        overlap = [k for k in tune.space if k in grid or any(
            isinstance(v, dict) and any(k in settings for settings in v.values()) for v in grid.values())]
        if overlap:
            raise StudyError(f"tune.space.{overlap[0]}: also set by the grid; a key is either swept or tuned")


def _check_cells(spec: StudySpec) -> None:
    """Every cell's run config parses (e.g. method_args.rank only where the method has a rank), naming the grid key
    and value when one is wrong on its own; a tuned study's bounds and choices exist and are in range in every
    cell."""
    try:
        cells = spec.cells()
    except StudyError:
        _check_axis_values(spec)
        raise
    if spec.tune is not None:
        for cell in cells:
            try:
                check_space(spec.tune, to_dict(cell.config), _set_key)
            except TuneError as exc:
                where = f" (grid cell {cell.label})" if cell.values else ""
                raise StudyError(f"{exc}{where}") from None


def load_uploaded_spec(data: bytes | str, file_name: str, *, max_runs: int | None = MAX_RUNS) -> StudySpec:
    """A study spec uploaded from outside (the app's spec upload): YAML text read within bounds and validated by
    `load_study_spec` with `read_files=False`, so it reads nothing on the server but the built-in configs.

    Args:
        data: The file's bytes (UTF-8) or text.
        file_name: The uploaded file's name; its stem is the study's name when the spec gives none.
        max_runs: The most runs the spec may plan.

    Raises:
        StudyError: not UTF-8, not YAML, nested too deeply, not a mapping, or any problem `load_study_spec` names;
            one line, naming the file.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        doc = safe_load_yaml(text, file_name)
    except UnicodeDecodeError as exc:
        raise StudyError(f"{printable(file_name)}: not UTF-8 text (byte {exc.start}); give a YAML file") from None
    except ConfigError as exc:
        raise StudyError(printable(str(exc))) from None
    if not isinstance(doc, dict):
        raise StudyError(f"{printable(file_name)}: a study spec is a mapping (name, base, grid, seeds, ...)")
    doc.setdefault("name", Path(file_name).stem)
    return load_study_spec(doc, max_runs=max_runs, read_files=False)


__all__ = ["ARMS", "MAX_RUNS", "STUDY_KEYS", "Cell", "PlannedRun", "StudyError", "StudySpec", "builtin_configs",
           "check_study_size", "count_runs", "load_study_spec", "load_uploaded_spec", "plain_shared_axes"]
