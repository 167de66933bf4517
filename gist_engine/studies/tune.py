"""Tuned studies: the `tune:` block of a spec, its seeded searches (random, Optuna's TPE) and ASHA's stopping rule.

A tuned study tunes each arm of each cell (plain and GIST separately, the same number of trials) on the validation
split, then trains each arm's best configuration over the study's seeds on the full training split; the cell's
verdict pairs those final runs. This module is the pure part: parsing and validating the block, proposing trial
configurations, and deciding when ASHA stops a trial. The study driver (`studies.driver`) runs the protocol.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import ConfigError, RunConfig, load_run_config, to_dict

# Distribution name -> what its argument is (the spec's words; `Dist.sample` draws them).
DISTRIBUTIONS: dict[str, str] = {
    "loguniform": "[low, high], 0 < low < high: a number drawn uniformly on a log scale",
    "uniform": "[low, high], low < high: a number drawn uniformly",
    "randint": "[low, high], integers, low < high: an integer in [low, high) (high excluded, as numpy and Ray)",
    "choice": "[value, ...]: one of the values, each equally likely",
}
SCHEDULERS: dict[str, str] = {
    "asha": "asynchronous successive halving: a trial whose validation accuracy at a rung (grace_period x "
            "reduction_factor^k epochs) is below the top 1/reduction_factor of the trials that reached that rung "
            "stops there",
    "none": "every trial trains all its epochs",
}
SEARCHES: dict[str, str] = {
    "random": "random search, seeded from the study (the same spec proposes the same trials)",
    "optuna": "Optuna's TPE sampler (pip install optuna), seeded from the study; each proposal learns from the "
              "trials that ended before it",
}
TUNE_KEYS = ("space", "trials", "scheduler", "search", "grace_period", "reduction_factor", "val_size")
# Keys the protocol sets itself, never tuned: the arm switch, the seed, the validation split and the selection.
PROTOCOL_KEYS = ("gist.enabled", "train.seed", "data.val_size", "train.select_on", "train.evaluate_test",
                 "train.early_stop_patience")
MAX_TRIALS = 1_000  # trials per arm and cell
DEFAULT_VAL_SIZE = 200  # VTAB-1k's val200; elsewhere images held out of the train split
GIST_PREFIX, GIST_SWITCH = "gist.", "gist.enabled"

# Run configs of the two phases (set by the study on top of each cell's config): trials select on validation and
# never read the test split; final runs train on the full training split and report the last epoch's test accuracy.
TRIAL_PROTOCOL: dict[str, Any] = {"train.select_on": "val", "train.evaluate_test": False}
FINAL_PROTOCOL: dict[str, Any] = {"data.val_size": 0, "train.select_on": "last", "train.evaluate_test": True,
                                  "train.early_stop_patience": 0}
TRIAL, FINAL = "trial", "final"  # study_runs.role
PRUNED = "pruned"  # study_runs.outcome of a trial ASHA stopped (its run ends `stopped`; never continued)


class TuneError(ConfigError):
    """A `tune:` block that cannot be used; the message names the key (a ConfigError: one line on the CLI)."""


def gist_only(key: str) -> bool:
    """Whether only the GIST arm reads `key` (a gist.* key other than the switch): tuning it leaves plain as is."""
    return key.startswith(GIST_PREFIX) and key != GIST_SWITCH


@dataclass(frozen=True)
class Dist:
    """One axis of the search space: a distribution name of `DISTRIBUTIONS` and its argument list."""

    kind: str
    args: tuple[Any, ...]

    def sample(self, rng: np.random.Generator) -> Any:
        """One draw (a Python number or one of the choices)."""
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.args[0]), math.log(self.args[1]))))
        if self.kind == "uniform":
            return float(rng.uniform(self.args[0], self.args[1]))
        if self.kind == "randint":
            return int(rng.integers(self.args[0], self.args[1]))
        return self.args[int(rng.integers(len(self.args)))]

    def extremes(self) -> list[Any]:
        """The values to check against the run config: both bounds (randint: its largest value), or every choice."""
        if self.kind == "randint":
            return [self.args[0], self.args[1] - 1]
        return list(self.args)

    def to_dict(self) -> dict[str, list[Any]]:
        """The spec's form, e.g. {"loguniform": [0.0001, 0.01]}."""
        return {self.kind: list(self.args)}


@dataclass
class TuneSpec:
    """A parsed `tune:` block.

    Attributes:
        space: Dotted config key -> its distribution.
        trials: Trials per arm and cell (an arm with nothing to tune runs none: see `arm_space`).
        scheduler: A key of `SCHEDULERS`.
        search: A key of `SEARCHES`.
        grace_period: ASHA's first rung, in epochs.
        reduction_factor: ASHA keeps the top 1/reduction_factor of the trials at each rung.
        val_size: `data.val_size` of the trials when the base has none (VTAB-1k: images of val200; elsewhere a
            fixed stratified part of the training split, drawn with data.seed).
    """

    space: dict[str, Dist]
    trials: int = 8
    scheduler: str = "asha"
    search: str = "random"
    grace_period: int = 1
    reduction_factor: int = 3
    val_size: int = DEFAULT_VAL_SIZE

    def arm_space(self, arm: str) -> dict[str, Dist]:
        """The keys an arm tunes: all of them for GIST; for plain those a run with GIST off reads (no gist.* key
        but the switch changes a plain run, so such keys leave the plain arm untuned)."""
        return {k: d for k, d in self.space.items() if arm == "gist" or not gist_only(k)}

    def trials_of(self, arm: str) -> int:
        """Trials an arm runs per cell: `trials`, or 0 when it has nothing to tune (it trains its base config)."""
        return self.trials if self.arm_space(arm) else 0

    def to_dict(self) -> dict[str, Any]:
        """The block as written in a spec (read back to an equal TuneSpec by `parse_tune`)."""
        return {"space": {k: d.to_dict() for k, d in self.space.items()}, "trials": self.trials,
                "scheduler": self.scheduler, "search": self.search, "grace_period": self.grace_period,
                "reduction_factor": self.reduction_factor, "val_size": self.val_size}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _parse_dist(key: str, value: Any) -> Dist:
    where = f"tune.space.{key}"
    if not isinstance(value, Mapping) or len(value) != 1:
        raise TuneError(f"{where}: expected one distribution, e.g. {{loguniform: [1.0e-4, 1.0e-2]}}; distributions: "
                        f"{', '.join(DISTRIBUTIONS)}")
    kind, args = next(iter(value.items()))
    if kind not in DISTRIBUTIONS:
        raise TuneError(f"{where}: unknown distribution {kind!r}; use one of {', '.join(DISTRIBUTIONS)}")
    if not isinstance(args, list) or not args:
        raise TuneError(f"{where}: {kind} takes a list: {DISTRIBUTIONS[kind]}")
    if kind == "choice":
        if len({json.dumps(v, sort_keys=True, default=str) for v in args}) != len(args):
            raise TuneError(f"{where}: choice has repeated values in {args}")
        return Dist(kind, tuple(args))
    if len(args) != 2 or not all(_number(a) for a in args):
        raise TuneError(f"{where}: {kind} takes {DISTRIBUTIONS[kind]}; got {args!r}")
    low, high = args
    if kind == "randint" and not all(isinstance(a, int) for a in args):
        raise TuneError(f"{where}: randint takes integers, got {args!r}")
    if not low < high:
        raise TuneError(f"{where}: {kind} needs low < high, got [{low}, {high}]")
    if kind == "loguniform" and low <= 0:
        raise TuneError(f"{where}: loguniform needs 0 < low, got [{low}, {high}] (use uniform to include 0)")
    return Dist(kind, (low, high))


def _int_option(data: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise TuneError(f"tune.{key}: expected an integer from {low:,} to {high:,}, got {value!r}")
    return value


def parse_tune(data: Any) -> TuneSpec:
    """A TuneSpec from a spec's `tune:` mapping (keys checked by name; config keys are checked by `check_space`).

    Raises:
        TuneError: an unknown key, distribution, scheduler or search; bad bounds; a key the protocol sets.
    """
    if not isinstance(data, Mapping):
        raise TuneError(f"tune: expected a mapping (space, trials, scheduler, search), got {type(data).__name__}")
    unknown = [k for k in data if k not in TUNE_KEYS]
    if unknown:
        raise TuneError(f"unknown tune key {unknown[0]!r}; valid keys: {', '.join(TUNE_KEYS)}")
    space = data.get("space")
    if not isinstance(space, Mapping) or not space:
        raise TuneError("tune.space: give at least one dotted config key and its distribution, e.g. "
                        "train.lr: {loguniform: [1.0e-4, 1.0e-2]}")
    parsed = {}
    for key, value in space.items():
        if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
            raise TuneError(f"tune.space: {key!r} is not a dotted config key (e.g. train.lr)")
        if key in PROTOCOL_KEYS:
            raise TuneError(f"tune.space.{key}: set by the tuning protocol itself (trials on the validation split "
                            "with the study's first seed, selected on validation); it cannot be tuned")
        parsed[key] = _parse_dist(key, value)
    scheduler, search = data.get("scheduler", "asha"), data.get("search", "random")
    if scheduler not in SCHEDULERS:
        raise TuneError(f"tune.scheduler: {scheduler!r} is not one of {', '.join(SCHEDULERS)}")
    if search not in SEARCHES:
        raise TuneError(f"tune.search: {search!r} is not one of {', '.join(SEARCHES)}")
    if search == "optuna" and importlib.util.find_spec("optuna") is None:
        raise TuneError("tune.search: optuna is not installed; pip install optuna (or pip install "
                        "'gist-studio[tune]'), or use search: random")
    return TuneSpec(space=parsed, trials=_int_option(data, "trials", 8, 1, MAX_TRIALS), scheduler=scheduler,
                    search=search, grace_period=_int_option(data, "grace_period", 1, 1, 100_000),
                    reduction_factor=_int_option(data, "reduction_factor", 3, 2, 100),
                    val_size=_int_option(data, "val_size", DEFAULT_VAL_SIZE, 1, 10_000_000))


def tune_trial_count(data: Any) -> int:
    """`trials:` of a raw `tune:` mapping, for counting a spec's size before anything is parsed (1 when malformed:
    `parse_tune` names the problem)."""
    if not isinstance(data, Mapping):
        return 1
    trials = data.get("trials", 8)
    return trials if isinstance(trials, int) and not isinstance(trials, bool) and trials >= 1 else 1


def check_space(tune: TuneSpec, cell_config: Mapping[str, Any], set_key: Any) -> None:
    """Every bound and choice of the space set alone on a cell's config mapping parses as a run config: a key
    that does not exist, or a value out of range, is named.

    Args:
        cell_config: A cell's run config as a mapping (the base with the cell's values).
        set_key: `f(mapping, dotted key, value)` that sets a dotted key (the spec's).

    Raises:
        TuneError: naming the space key, the value and the run config's complaint.
    """
    for key, dist in tune.space.items():
        for value in dist.extremes():
            data = copy.deepcopy(dict(cell_config))
            try:
                set_key(data, key, value)
                load_run_config(data)
            except ConfigError as exc:
                raise TuneError(f"tune.space.{key}: value {value!r}: {exc}") from None


def search_seed(*parts: Any) -> int:
    """A 63-bit seed from JSON-able parts (the spec, the cell): the same parts give the same seed on any machine."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def random_trials(space: Mapping[str, Dist], n: int, seed: int) -> list[dict[str, Any]]:
    """`n` configurations drawn from `space` (every key, in space order, per trial) with numpy's PCG64 seeded by
    `seed`: the same arguments give the same list."""
    rng = np.random.default_rng(seed)
    return [{k: d.sample(rng) for k, d in space.items()} for _ in range(n)]


def apply(config: RunConfig | Mapping[str, Any], settings: Mapping[str, Any], set_key: Any) -> RunConfig:
    """A run config with dotted `settings` set on top (`set_key` as in `check_space`), parsed once."""
    data = to_dict(config) if isinstance(config, RunConfig) else dict(config)
    for key, value in settings.items():
        set_key(data, key, value)
    return load_run_config(data)


class Asha:
    """ASHA's stopping rule (Li et al., "A System for Massively Parallel Hyperparameter Tuning", MLSys 2020), one
    bracket, as Ray Tune's `ASHAScheduler` applies it: rungs at grace_period x reduction_factor^k epochs below
    `max_epochs`; a trial that reaches a rung is compared with the values recorded there by the trials before it,
    and stops when it is below their (1 - 1/reduction_factor) quantile. Asynchronous: nothing waits for a rung to
    fill, so the first trials always go on.

    Args:
        grace_period: The first rung (epochs).
        reduction_factor: Keep the top 1/reduction_factor.
        max_epochs: A trial's full length (no rung at or past it).
    """

    def __init__(self, grace_period: int, reduction_factor: int, max_epochs: int) -> None:
        self.rf = reduction_factor
        self.rungs: list[tuple[int, dict[str, float]]] = []
        t = grace_period
        while t < max_epochs:
            self.rungs.append((t, {}))
            t *= reduction_factor
        self.rungs.reverse()  # highest first, as Ray checks them

    def on_result(self, trial: str, epoch: float, value: float) -> bool:
        """Record a trial's validation accuracy after `epoch` epochs; True when the trial must stop now."""
        for milestone, recorded in self.rungs:
            if epoch < milestone or trial in recorded:
                if epoch >= milestone:
                    return False  # recorded at the highest rung it reached already
                continue
            cutoff = float(np.nanpercentile(list(recorded.values()), (1 - 1 / self.rf) * 100)) if recorded else None
            recorded[trial] = value
            return cutoff is not None and value < cutoff
        return False


class OptunaSearch:
    """Optuna's TPE sampler over a space, asked and told one trial at a time (no Ray needed).

    Args:
        space: The arm's space.
        seed: The sampler's seed (`search_seed`).
        history: (params, value or None) of trials that ended already, told first (a resumed search).

    Raises:
        TuneError: Optuna is not installed.
    """

    def __init__(self, space: Mapping[str, Dist], seed: int,
                 history: Sequence[tuple[Mapping[str, Any], float | None]] = ()) -> None:
        try:
            import optuna  # optional dependency (pip install optuna, or the `tune` extra)
        except ImportError:
            raise TuneError("tune.search: optuna is not installed; pip install optuna (or pip install "
                            "'gist-studio[tune]'), or use search: random") from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.distributions = {k: optuna_distribution(d) for k, d in space.items()}
        self.study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed % 2**32))
        self._pending: list[Any] = []  # trials asked and not told yet
        for params, value in history:
            self.tell(params, value)

    def ask(self) -> dict[str, Any]:
        """The next configuration (space key -> value); `tell` its score when it ends."""
        trial = self.study.ask(self.distributions)
        self._pending.append(trial)
        return dict(trial.params)

    def tell(self, params: Mapping[str, Any], value: float | None) -> None:
        """A trial's best validation accuracy (None: it failed): one asked in this session, else (a trial of an
        earlier session, continued) added to the history."""
        state = self.optuna.trial.TrialState.COMPLETE if value is not None else self.optuna.trial.TrialState.FAIL
        for trial in self._pending:
            if trial.params == dict(params):
                self._pending.remove(trial)
                self.study.tell(trial, value, state=state)
                return
        self.study.add_trial(self.optuna.trial.create_trial(
            params={k: params[k] for k in self.distributions}, distributions=self.distributions, value=value,
            state=state))


def optuna_distribution(dist: Dist) -> Any:
    """The Optuna distribution of a space axis (randint's high is excluded, Optuna's included)."""
    import optuna  # optional dependency, imported by callers that checked it

    if dist.kind == "loguniform":
        return optuna.distributions.FloatDistribution(dist.args[0], dist.args[1], log=True)
    if dist.kind == "uniform":
        return optuna.distributions.FloatDistribution(dist.args[0], dist.args[1])
    if dist.kind == "randint":
        return optuna.distributions.IntDistribution(dist.args[0], dist.args[1] - 1)
    return optuna.distributions.CategoricalDistribution(list(dist.args))


@dataclass
class ArmChoice:
    """What tuning chose for one arm of one cell.

    Attributes:
        values: Space key -> chosen value ({} for an arm with nothing to tune: its base config).
        val_acc: The chosen trial's best validation accuracy (None: no trial ran).
        trial: The chosen trial's index (None: none ran).
        trials: Per trial: trial, run_id, values, val_acc (best), epochs (validation accuracy per epoch), outcome.
    """

    values: dict[str, Any]
    val_acc: float | None = None
    trial: int | None = None
    trials: list[dict[str, Any]] = field(default_factory=list)


def best_trial(trials: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The trial with the highest best validation accuracy (the first of equals); None when none has one."""
    scored = [t for t in trials if t.get("val_acc") is not None and math.isfinite(t["val_acc"])]
    return max(scored, key=lambda t: (t["val_acc"], -t["trial"])) if scored else None


__all__ = ["DISTRIBUTIONS", "FINAL", "FINAL_PROTOCOL", "PROTOCOL_KEYS", "PRUNED", "SCHEDULERS", "SEARCHES", "TRIAL",
           "TRIAL_PROTOCOL", "TUNE_KEYS", "ArmChoice", "Asha", "Dist", "OptunaSearch", "TuneError", "TuneSpec",
           "apply", "best_trial", "check_space", "gist_only", "optuna_distribution", "parse_tune", "random_trials",
           "search_seed", "tune_trial_count"]
