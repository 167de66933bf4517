"""The verdict of plain vs GIST over seeds: one `PairedResult`, built by one function from any set of runs."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..config import to_dict
from ..status import WITH_RESULT
from .stats import ACCURACY_BOUNDS, Interval, paired_delta, t_interval

ARMS = ("plain", "gist")
DELTA_METRICS = ("acc_cls", "best_acc_cls")  # both arms have them, so GIST - plain is defined
RUN_METRICS = ("acc_cls", "best_acc_cls", "acc_gist", "agreement")  # acc_gist, agreement: the GIST arm only
COUNTED_STATUSES = WITH_RESULT  # a run that ended with its result; stopped/failed/running do not count


@dataclass(frozen=True)
class ArmRun:
    """One run as the verdict reads it.

    Args:
        seed: `train.seed`.
        gist: Whether GIST was on (the GIST arm) or off (the plain arm).
        status: The run's status; only `COUNTED_STATUSES` enter the statistics.
        metrics: Fractions per `RUN_METRICS` key (None: not measured).
        trainable_params: The run's trainable parameters (the parameter cost of GIST is the difference).
        id: The run id (None for a foreground run).
        key: The run's config besides its name, `gist.enabled` and `train.seed` (`pair_key`): runs of one seed,
            arm and key are re-runs of each other; "" when the caller already knows the runs share a config.
        control: What a plain run and a GIST run must share to pair (`control_key`: the config without its name,
            `train.seed` and every `gist.*` key, which cannot change a plain run); None: `key`.
    """

    seed: int
    gist: bool
    status: str
    metrics: Mapping[str, float | None] = field(default_factory=dict)
    trainable_params: int | None = None
    id: str | None = None
    key: str = ""
    control: str | None = None

    @property
    def arm(self) -> str:
        """"gist" or "plain"."""
        return "gist" if self.gist else "plain"

    def value(self, metric: str) -> float | None:
        """The metric when it counts: a finite number of a run that ended with its result, else None."""
        v = self.metrics.get(metric)
        if self.status not in COUNTED_STATUSES or v is None or not math.isfinite(float(v)):
            return None
        return float(v)


@dataclass(frozen=True)
class SeedPair:
    """The plain and the GIST run of one seed (and one config)."""

    seed: int
    plain: ArmRun
    gist: ArmRun

    def delta(self, metric: str) -> float | None:
        """GIST - plain of a metric (a fraction), None unless both runs count."""
        p, g = self.plain.value(metric), self.gist.value(metric)
        return None if p is None or g is None else g - p


@dataclass(frozen=True)
class PairedResult:
    """GIST - plain over paired seeds: the pairs, each metric's delta with its CI and p, the runs left over.

    Attributes:
        pairs: Per seed (and config) its plain and GIST run, sorted by config key then seed.
        deltas: Metric -> `stats.paired_delta`'s dict over the pairs where both runs count (None: no such pair);
            the CI is the t-interval clipped to [-1, 1] (points: [-100, +100]) and carries the 1-2 seed note.
        arms: Arm ("plain", "gist") -> metric -> the arm's mean accuracy with its t-interval clipped to [0, 1],
            over every counted run of that arm (paired or not; None: none counts).
        unpaired: Runs without a partner (no run of the other arm with the same seed and config).
        replaced: Runs a newer run of the same seed, arm and config replaces (a re-run: the newest counts).
        extra_params: Trainable parameters GIST adds (GIST run - plain run of the first pair that has both).
        plain_params: The plain run's trainable parameters in that pair (for the relative cost).
    """

    pairs: tuple[SeedPair, ...]
    deltas: Mapping[str, dict[str, Any] | None]
    arms: Mapping[str, Mapping[str, Interval | None]]
    unpaired: tuple[ArmRun, ...] = ()
    replaced: tuple[ArmRun, ...] = ()
    extra_params: int | None = None
    plain_params: int | None = None

    def delta(self, metric: str = "acc_cls") -> dict[str, Any] | None:
        """The paired delta of a metric (see `deltas`); None before a pair has it.

        Raises:
            KeyError: a metric the result was not built for.
        """
        if metric not in self.deltas:
            raise KeyError(f"no delta for {metric!r}; this result has {', '.join(self.deltas)}")
        return self.deltas[metric]

    @property
    def n(self) -> int:
        """Pairs that count in the final-accuracy delta."""
        d = self.deltas.get("acc_cls")
        return d["n"] if d else 0

    def arm_values(self, arm: str, metric: str) -> list[tuple[int, float]]:
        """(seed, value) of every counted run of one arm, by seed: what `arms[arm][metric]` summarises."""
        return sorted((r.seed, v) for r in self._arm_runs(arm) if (v := r.value(metric)) is not None)

    def _arm_runs(self, arm: str) -> list[ArmRun]:
        """Each run of the arm once (a plain run that serves several GIST configs is in several pairs)."""
        runs = [getattr(p, arm) for p in self.pairs] + [r for r in self.unpaired if r.arm == arm]
        return list({(r.key, r.seed): r for r in runs}.values())

    def seed_rows(self) -> list[dict[str, Any]]:
        """One JSON-ready row per pair: seed, per arm its status, id, trainable parameters and `RUN_METRICS`
        (`plain_acc_cls`, `gist_best_acc_cls`, ...; fractions, None where not measured or not counted)."""
        rows = []
        for p in self.pairs:
            row: dict[str, Any] = {"seed": p.seed}
            for arm in ARMS:
                r: ArmRun = getattr(p, arm)
                metrics = RUN_METRICS if arm == "gist" else DELTA_METRICS
                row.update({f"{arm}_{k}": r.value(k) for k in metrics})
                row.update({f"{arm}_status": r.status, f"{arm}_id": r.id,
                            f"{arm}_trainable_params": r.trainable_params})
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form (compare.json, a group's export sidecar, a gallery manifest): `seeds` (`seed_rows`),
        `delta_<metric>` per delta metric, `extra_params`, `plain_params`, `unpaired` and `replaced` (run ids, or
        "seed N arm" for runs without an id), `arms` (arm -> metric -> n, mean, ci_low, ci_high, clipped, note)."""
        def name(r: ArmRun) -> str:
            return r.id or f"seed {r.seed} {r.arm}"

        out: dict[str, Any] = {"seeds": self.seed_rows()}
        out.update({f"delta_{m}": copy.deepcopy(d) for m, d in self.deltas.items()})
        out.update(extra_params=self.extra_params, plain_params=self.plain_params,
                   unpaired=[name(r) for r in self.unpaired], replaced=[name(r) for r in self.replaced])
        out["arms"] = {arm: {m: None if i is None else {"n": i.n, "mean": i.mean, "ci_low": i.low, "ci_high": i.high,
                                                        "clipped": i.clipped, "note": i.note}
                             for m, i in metrics.items()} for arm, metrics in self.arms.items()}
        return out


def pair_key(config: Mapping[str, Any] | None) -> str:
    """What two runs' configs must share to be a pair: everything but `name`, `gist.enabled` and `train.seed`."""
    if not config:
        return ""
    cfg = copy.deepcopy(dict(config))
    cfg.pop("name", None)
    if isinstance(cfg.get("gist"), dict):
        cfg["gist"].pop("enabled", None)
    if isinstance(cfg.get("train"), dict):
        cfg["train"].pop("seed", None)
    return json.dumps(cfg, sort_keys=True, default=str)


def control_key(config: Mapping[str, Any] | None) -> str:
    """What a plain run's config and a GIST run's must share to pair: everything but `name`, `train.seed` and the
    `gist` section (GIST off, no gist.* key changes a run: a plain run serves every gist.* setting)."""
    if not config:
        return ""
    cfg = copy.deepcopy(dict(config))
    cfg.pop("name", None)
    cfg.pop("gist", None)
    if isinstance(cfg.get("train"), dict):
        cfg["train"].pop("seed", None)
    return json.dumps(cfg, sort_keys=True, default=str)


def _stored_config(run: Any) -> Mapping[str, Any] | None:
    """A run's config as a mapping: a snapshot's `config_dict` (never parsed here: a peft run's parse imports
    peft), else its `config` (a mapping, or a RunConfig written out)."""
    config = getattr(run, "config_dict", None)
    if config is None:
        config = getattr(run, "config", None)
    return config if config is None or isinstance(config, Mapping) else to_dict(config)


def arm_run(run: Any) -> ArmRun:
    """An `ArmRun` from a run snapshot (`RunSnapshot` or any object with its fields: seed, gist_enabled, status,
    acc_cls, best_acc_cls, acc_gist, agreement, trainable_params, id, config_dict or config); an `ArmRun` is
    returned as it is.

    A snapshot's acc_gist/agreement fall back to its `last_eval` (runs recorded before those columns existed).
    """
    if isinstance(run, ArmRun):
        return run
    last = getattr(run, "last_eval", None) or {}
    metrics = {k: getattr(run, k, None) for k in RUN_METRICS}
    for k in ("acc_gist", "agreement"):
        if metrics[k] is None:
            metrics[k] = last.get(k)
    return ArmRun(seed=int(run.seed), gist=bool(run.gist_enabled), status=str(run.status), metrics=metrics,
                  trainable_params=getattr(run, "trainable_params", None), id=getattr(run, "id", None),
                  key=pair_key(_stored_config(run)), control=control_key(_stored_config(run)))


def paired_result(runs: Iterable[Any], metrics: Iterable[str] = DELTA_METRICS, confidence: float = 0.95
                  ) -> PairedResult:
    """The verdict of any set of runs: pair them, take GIST - plain per metric with its CI and p.

    Runs pair when they share the seed and the config and differ in `gist.enabled`: a GIST run pairs with the plain
    run of its seed and config (`ArmRun.key`), else with the plain run of its seed whose config differs from its own
    only in gist.* keys (`ArmRun.control`: GIST off, those keys cannot change a run), so one plain run can pair
    with GIST runs of several gist.* settings (a study's shared plain arm). Of several runs
    with the same seed, arm and config the LAST in `runs` counts (pass them oldest first: a re-run replaces the
    original); the others are reported in `replaced`. A run whose other arm is missing is reported in `unpaired`
    (and still counts in its arm's mean). A pair enters a metric's delta when both its runs ended with a result
    (`COUNTED_STATUSES`) and have that metric.

    Args:
        runs: Run snapshots, `ArmRun`s, or anything `arm_run` reads, in any mix.
        metrics: The metrics to take the delta of (both arms must have them: `DELTA_METRICS`).
        confidence: Level of every interval (t-based, clipped: accuracies to [0, 1], deltas to [-1, 1]).

    Returns:
        A `PairedResult`.

    Raises:
        ValueError: a metric the plain arm does not have (acc_gist, agreement) or an unknown one.
    """
    metrics = tuple(metrics)
    bad = [m for m in metrics if m not in DELTA_METRICS]
    if bad:
        raise ValueError(f"metrics: {', '.join(map(repr, bad))} cannot be compared (the plain arm has no Gist head "
                         f"or no such metric); use {', '.join(DELTA_METRICS)}")
    latest: dict[tuple[str, int, bool], ArmRun] = {}
    replaced: list[ArmRun] = []
    for run in map(arm_run, runs):
        old = latest.pop((run.key, run.seed, run.gist), None)
        if old is not None:
            replaced.append(old)
        latest[(run.key, run.seed, run.gist)] = run
    controls: dict[tuple[str, int], ArmRun] = {}  # (control, seed) -> the newest plain run with them
    for (_, seed, gist), run in latest.items():
        if not gist:
            controls[(run.key if run.control is None else run.control, seed)] = run
    pairs, unpaired, partnered = [], [], set()
    for (key, seed, gist), run in sorted(latest.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        if gist:
            plain = latest.get((key, seed, False)) or controls.get((key if run.control is None else run.control, seed))
            if plain is None:
                unpaired.append(run)
            else:
                pairs.append(SeedPair(seed, plain, run))
                partnered.add((plain.key, seed))
    unpaired += [run for (key, seed, gist), run in latest.items() if not gist and (key, seed) not in partnered]
    unpaired.sort(key=lambda r: (r.key, r.seed, r.gist))
    deltas: dict[str, dict[str, Any] | None] = {}
    for m in metrics:
        both = [p for p in pairs if p.delta(m) is not None]
        deltas[m] = (paired_delta([p.plain.value(m) for p in both], [p.gist.value(m) for p in both], confidence)
                     if both else None)
    partial = PairedResult(tuple(pairs), deltas, {}, tuple(unpaired), tuple(replaced))
    arms: dict[str, dict[str, Interval | None]] = {}
    for arm in ARMS:
        arms[arm] = {}
        for m in (*metrics, *(("acc_gist", "agreement") if arm == "gist" else ())):
            values = [v for _, v in partial.arm_values(arm, m)]
            arms[arm][m] = t_interval(values, confidence, ACCURACY_BOUNDS) if values else None
    cost = next((p for p in pairs if p.plain.trainable_params is not None and p.gist.trainable_params is not None),
                None)
    return PairedResult(tuple(pairs), deltas, arms, tuple(unpaired), tuple(replaced),
                        extra_params=None if cost is None else cost.gist.trainable_params - cost.plain.trainable_params,
                        plain_params=None if cost is None else cost.plain.trainable_params)


# ------------------------------------------------------------------------------------------------ presentation
def points(value: float | None, signed: bool = True) -> str:
    """A fraction as percentage points with 2 decimals ('+1.23'; unsigned '42.50'; a delta that rounds to zero is
    '+0.00', never '-0.00'); None or not finite -> 'n/a'."""
    if value is None or not math.isfinite(value):
        return "n/a"
    shown = round(100 * value, 2) + 0.0  # + 0.0 turns -0.0 into 0.0
    return f"{shown:+.2f}" if signed else f"{shown:.2f}"


def format_interval(low: float | None, high: float | None, signed: bool = True) -> str:
    """'[-0.40, +2.86]' in points (an accuracy: unsigned '[30.10, 54.90]'); '' without an interval."""
    if low is None or high is None:
        return ""
    return f"[{points(low, signed)}, {points(high, signed)}]"


def format_delta(d: Mapping[str, Any] | None) -> str:
    """One line of a paired delta: 'mean delta +1.23 points over 3 seed(s) ± 0.50 (std), 95% CI [...], p = ...'
    plus its note (1 or 2 seeds) and whether the interval was clipped; '' for None."""
    if not d:
        return ""
    text = f"mean delta {points(d['mean'])} points over {d['n']} seed(s)"
    if d.get("std") is not None and d.get("ci_low") is not None:
        level = round(100 * d.get("confidence", 0.95))
        text += f" ± {points(d['std'], False)} (std), {level}% CI {format_interval(d['ci_low'], d['ci_high'])}"
        if d.get("clipped"):
            text += " (clipped to the possible range)"
    if d.get("p_value") is not None:
        text += f", p = {d['p_value']:.3g}"
    if d.get("note"):
        text += f"; {d['note']}"
    return text


def format_table(result: PairedResult | Mapping[str, Any]) -> str:
    """The CLI's text: per seed both arms' final accuracy (%), the delta and the best accuracies, then the mean
    delta with its CI, p and note, and GIST's parameter cost. A mapping with a `paired` entry (what
    `run_compare` and `RunManager.group_results` return) is read through it."""
    if not isinstance(result, PairedResult):
        result = result["paired"]
    lines = [f"{'seed':>4}  {'plain':>7}  {'GIST':>7}  {'delta':>7}   (final test accuracy, %; best in brackets)"]
    for r in result.seed_rows():
        p, g = r["plain_acc_cls"], r["gist_acc_cls"]
        if p is None or g is None:
            lines.append(f"{r['seed']:>4}  {r['plain_status']:>7}  {r['gist_status']:>7}")
            continue
        best = f"[{points(r['plain_best_acc_cls'], False)} / {points(r['gist_best_acc_cls'], False)}]"
        lines.append(f"{r['seed']:>4}  {100 * p:7.2f}  {100 * g:7.2f}  {100 * (g - p):+7.2f}   {best}")
    d = result.delta("acc_cls") if "acc_cls" in result.deltas else None
    if d:
        cost = "" if result.extra_params is None else f"; GIST adds {result.extra_params:,} trainable parameters"
        lines.append(format_delta(d) + cost)
    if result.unpaired:
        lines.append("without a partner: " + ", ".join(r.id or f"seed {r.seed} {r.arm}" for r in result.unpaired))
    return "\n".join(lines)


__all__ = ["ARMS", "COUNTED_STATUSES", "DELTA_METRICS", "RUN_METRICS", "ArmRun", "PairedResult", "SeedPair",
           "arm_run", "control_key", "format_delta", "format_interval", "format_table", "pair_key", "paired_result",
           "points"]
