"""A study's results as tables: runs by cell, per-cell paired statistics, the paper's matrix, curves, exports."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..runs.ids import printable
from ..runs.pairs import ArmRun, PairedResult, paired_result, points
from ..runs.stats import interval_note
from ..status import ACTIVE, WITH_RESULT, RunStatus
from .spec import StudyError, StudySpec
from .store import PENDING, Root, StudyStore
from .tune import FINAL_PROTOCOL, PRUNED, TRIAL_PROTOCOL, best_trial

if TYPE_CHECKING:
    import pandas as pd

STUDY_EXPORTS = ("csv", "md", "latex")
METRICS = ("acc_cls", "best_acc_cls", "acc_gist", "agreement")  # per run (study_runs)
_LATEX_SPECIALS = {"%": r"\%", "_": r"\_", "&": r"\&", "#": r"\#", "$": r"\$", "{": r"\{", "}": r"\}",
                   "<": r"$<$", ">": r"$>$", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                   "\\": r"\textbackslash{}"}
DELTA_METRICS = ("acc_cls", "best_acc_cls")  # both arms have them, so GIST - plain is defined (study_results)
COUNTED = (RunStatus.COMPLETED, RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.FAILED, RunStatus.INTERRUPTED,
           RunStatus.STOPPED, RunStatus.DIVERGED, PENDING)
DELETED = "deleted"  # a planned run whose run row is gone (deleted on the Runs page)


def _pd() -> Any:
    import pandas as pd  # on use: pandas adds 0.3-0.7 s to `import gist_engine`, and training needs no tables

    return pd


def study_runs(study_id: str, root: Root = None) -> pd.DataFrame:
    """One row per cell, seed and arm, in plan order (seed, cell, arm): the grid of statuses.

    A plain run shared across gist-only axes (`StudySpec.shared_axes`) has a row in every cell it serves, with the
    same run id (and `shared` True): each cell's verdict pairs its GIST runs with it.

    Columns: cell (index), label, one column per axis (its value), seed, arm (plain/gist), run_id (None while not
    submitted), shared, group_id (the cell's paired group when its runs are its own: the app's Compare page),
    attempts, status (`pending` while not submitted), outcome (of the latest attempt), step, total_steps, acc_cls,
    best_acc_cls, acc_gist, agreement, error. `attrs`: study (id), name, axes, paired, shared_axes, planned (runs
    trained: fewer than the rows when the plain arm is shared).
    """
    with StudyStore(root) as s:
        info = s.get(study_id)
        spec = s.spec(study_id)  # as it was planned (counted when it was created or imported)
        latest = s.latest(study_id)
    shared, cells = bool(spec.shared_axes), spec.cells()
    rows = []
    for seed in spec.seeds:
        for cell in cells:
            for arm in spec.arms:
                owner = spec.plain_cell(cell.index) if arm == "plain" else cell.index
                r = latest.get((owner, seed, arm)) or {}
                rows.append({"cell": cell.index, "label": cell.label, **cell.values, "seed": seed, "arm": arm,
                             "run_id": r.get("run_id"), "shared": shared and arm == "plain",
                             "group_id": r.get("group_id"), "attempts": r.get("attempt", 0),
                             "status": r.get("status") or (DELETED if r else PENDING),
                             "outcome": r.get("outcome"), "step": r.get("step"), "total_steps": r.get("total_steps"),
                             **{k: r.get(k) for k in METRICS}, "error": r.get("run_error") or r.get("error")})
    df = _pd().DataFrame(rows)
    df.attrs.update(study=study_id, name=info.name, axes=spec.axes, paired=spec.paired,
                    shared_axes=spec.shared_axes, planned=info.planned)
    return df


def significance(p: float | None) -> str:
    """The usual markers: *** p < 0.001, ** p < 0.01, * p < 0.05, else ''."""
    if p is None or not math.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


def _check_metric(metric: str) -> None:
    if metric not in DELTA_METRICS:
        why = " (the plain arm has no Gist head, so GIST - plain is not defined)" if metric in METRICS else ""
        raise StudyError(f"metric: {metric!r} cannot be compared{why}; use one of {', '.join(DELTA_METRICS)}")


def _verdict_row(verdict: PairedResult, metric: str) -> dict[str, Any]:
    """A table row of one verdict: seeds, plain, gist (per-seed values), n, each arm's mean and CI, the paired delta
    with its CI, p, significance and note (the columns `study_results` and `study_budget` share)."""
    plain, gist = verdict.arm_values("plain", metric), verdict.arm_values("gist", metric)
    d = verdict.delta(metric) or {}
    row: dict[str, Any] = {"seeds": sorted({s for s, _ in plain + gist}), "plain": [v for _, v in plain],
                           "gist": [v for _, v in gist], "n": d.get("n", 0)}
    for arm in ("plain", "gist"):
        ci = verdict.arms[arm][metric]
        row[f"{arm}_mean"], row[f"{arm}_ci_low"], row[f"{arm}_ci_high"] = (
            (None, None, None) if ci is None else (ci.mean, ci.low, ci.high))
    row.update(delta_mean=d.get("mean"), delta_std=d.get("std"), delta_ci_low=d.get("ci_low"),
               delta_ci_high=d.get("ci_high"), p_value=d.get("p_value"), significance=significance(d.get("p_value")),
               note=d.get("note"))
    return row


def study_results(study_id: str, root: Root = None, metric: str = "acc_cls") -> pd.DataFrame:
    """One row per cell: per-seed accuracies of both arms and the paired delta GIST - plain.

    Each cell's verdict is `runs.pairs.paired_result` over its runs: its GIST runs paired by seed with its plain
    runs, which are the plain runs shared across the gist-only axes when the study shares them (`study_runs`).

    Args:
        metric: acc_cls (final test accuracy, default), best_acc_cls (best over the evaluations, VTAB-1k's
            number), acc_gist or agreement.

    Returns:
        Columns: cell, label, one per axis, seeds, plain, gist (lists over the seeds whose runs have the metric,
        as fractions), n (paired seeds), plain_mean, plain_ci_low, plain_ci_high, gist_mean, gist_ci_low,
        gist_ci_high (each arm's 95% t-interval, clipped to [0, 1]), delta_mean, delta_std, delta_ci_low,
        delta_ci_high (95% t-interval, clipped to [-1, 1]), p_value (paired t-test), significance, note (with 1 or
        2 paired seeds: why the interval cannot be read as a bound; see `runs.stats.interval_note`), and the status
        counts of the cell's runs (completed, running, queued, failed, interrupted, stopped, diverged, pending; a
        shared plain run counts in every cell it serves). `attrs`: study, name, axes, metric, paired.
    """
    _check_metric(metric)
    runs = study_runs(study_id, root)
    axes = runs.attrs["axes"]
    out = []
    for cell, group in runs.groupby("cell", sort=True):
        first = group.iloc[0]
        row: dict[str, Any] = {"cell": int(cell), "label": first["label"], **{a: first[a] for a in axes}}
        row.update(_verdict_row(_verdict(group, metric), metric))
        counts = group["status"].value_counts().to_dict()
        row.update({k: int(counts.get(k, 0)) for k in COUNTED})
        row["runs"] = len(group)
        out.append(row)
    df = _pd().DataFrame(out)
    df.attrs.update(runs.attrs, metric=metric)
    return df


def _verdict(group: pd.DataFrame, metric: str) -> PairedResult:
    """The paired verdict of one cell's rows of `study_runs` (its final runs)."""
    arm_runs = [ArmRun(seed=int(r.seed), gist=r.arm == "gist", status=r.status, id=r.run_id,
                       metrics={metric: getattr(r, metric)}) for r in group.itertuples(index=False)]
    return paired_result(arm_runs, (metric,))


def study_verdicts(study_id: str, root: Root = None, metric: str = "acc_cls") -> dict[int, PairedResult]:
    """Cell index -> its verdict: `runs.pairs.paired_result` over the cell's final runs (a tuned study's: each arm's
    chosen configuration over the seeds), the object `study_results` reads its numbers from."""
    runs = study_runs(study_id, root)
    return {int(cell): _verdict(group, metric) for cell, group in runs.groupby("cell", sort=True)}


# train.select_on -> how a run's reported epoch was chosen, as every output labels it.
SELECTION_LABELS = {"auto": "selected on validation where there is a validation split, else the last epoch",
                    "val": "selected on validation", "last": "last epoch",
                    "test": "selected on test (optimistic)"}


def study_selection(spec: StudySpec) -> dict[str, str | None]:
    """How the study's reported accuracies were selected: `final` (the runs of the verdict) and `trials` (a tuned
    study's trials; None without tuning), as `SELECTION_LABELS` words: `select_on: test` is "selected on test
    (optimistic)"."""
    if spec.tune is not None:
        return {"final": SELECTION_LABELS[FINAL_PROTOCOL["train.select_on"]],
                "trials": SELECTION_LABELS[TRIAL_PROTOCOL["train.select_on"]]}
    chosen = (spec.base.get("train") or {}).get("select_on", "auto")  # set in a base or by `set:`
    grid = spec.grid.get("train.select_on")
    if isinstance(grid, list):
        return {"final": "; ".join(SELECTION_LABELS.get(v, str(v)) for v in grid), "trials": None}
    return {"final": SELECTION_LABELS.get(chosen, str(chosen)), "trials": None}


def study_tuning(study_id: str, root: Root = None) -> list[dict[str, Any]]:
    """A tuned study's search, per cell and arm (cell order, plain before GIST); [] for a grid study.

    Returns:
        Dicts: cell, label, arm, tuned (the space keys the arm tunes; [] for an arm nothing in the space changes,
        which runs no trial and trains its cell's config), trials (planned), settled, running, pruned, values (the
        chosen values; None until every trial settled; {} for an untuned arm), val_acc (the chosen trial's best
        validation accuracy, a fraction), trial (its index), and curve: per trial its trial, run_id, values,
        status, outcome, val_acc and epochs ([epoch, validation accuracy] pairs: the trial curve).
    """
    with StudyStore(root) as s:
        spec = s.spec(study_id)
        if spec.tune is None:
            return []
        trials = s.latest_trials(study_id)
        curves = s.val_curves([r["run_id"] for r in trials.values() if r["run_id"]])
    out = []
    for cell in spec.cells():
        for arm in spec.arms:
            rows = sorted((r for (c, a, _), r in trials.items() if c == cell.index and a == arm),
                          key=lambda r: r["trial"])
            curve = [{"trial": r["trial"], "run_id": r["run_id"], "values": r["params"] or {},
                      "status": r["status"], "outcome": r["outcome"],
                      "val_acc": max((acc for _, acc in curves.get(r["run_id"], [])), default=None),
                      "epochs": [list(p) for p in curves.get(r["run_id"], [])]} for r in rows]
            planned = spec.tune.trials_of(arm)
            settled = [t for t in curve if t["status"] in WITH_RESULT or t["outcome"] == PRUNED
                       or t["status"] == RunStatus.FAILED]
            best = best_trial(settled) if len(settled) >= planned else None
            out.append({"cell": cell.index, "label": cell.label, "arm": arm, "tuned": list(spec.tune.arm_space(arm)),
                        "trials": planned, "settled": len(settled),
                        RunStatus.RUNNING: sum(t["status"] in ACTIVE for t in curve),
                        "pruned": sum(t["outcome"] == PRUNED for t in curve),
                        "values": ({} if planned == 0 else None if best is None else dict(best["values"])),
                        "val_acc": None if best is None else best["val_acc"],
                        "trial": None if best is None else best["trial"], "curve": curve})
    return out


def format_tuning(rows: list[dict[str, Any]]) -> list[str]:
    """`study show`'s lines of a tuned study's search: per cell and arm the chosen values and validation score."""
    lines = []
    for r in rows:
        name = "GIST" if r["arm"] == "gist" else "plain"
        if r["trials"] == 0:
            lines.append(f"  [{r['cell']}] {name}: not tuned (nothing in the space changes it): its base config")
            continue
        chosen = ("choosing" if r["values"] is None else ", ".join(f"{k}={_value(v)}" for k, v in r["values"].items())
                  + f" (trial {r['trial']}, val {_points(r['val_acc'], False)})")
        lines.append(f"  [{r['cell']}] {name}: {r['settled']}/{r['trials']} trials settled ({r['pruned']} pruned by "
                     f"ASHA, {r[RunStatus.RUNNING]} running); chosen: {chosen}")
    return lines


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _points(value: Any, signed: bool = True) -> str:
    """`runs.pairs.points`, with '-' for a missing value (a study table's empty cell)."""
    return "-" if value is None or _isnan(value) else points(value, signed)


FEW_SEEDS_MARK = "†"  # a cell whose interval rests on 2 seeds (see FEW_SEEDS_NOTE)
FEW_SEEDS_NOTE = f"{FEW_SEEDS_MARK} {interval_note(2)}"


def format_cell(row: Any) -> str:
    """`+1.23 [-0.40, +2.86]*`: mean GIST - plain in points, its 95% CI, the significance marker; a cell over 2
    paired seeds ends with `FEW_SEEDS_MARK` (its interval cannot bound the difference usefully)."""
    if row["delta_mean"] is None or _isnan(row["delta_mean"]):
        return "-"
    ci = (f" [{_points(row['delta_ci_low'])}, {_points(row['delta_ci_high'])}]"
          if row["delta_ci_low"] is not None and not _isnan(row["delta_ci_low"]) else "")
    few = FEW_SEEDS_MARK if row.get("n") == 2 else ""
    return f"{_points(row['delta_mean'])}{ci}{row['significance']}{few}"


def _single_arm(results: pd.DataFrame) -> str | None:
    """"plain" or "gist" for a study run without pairing (`paired: false`: one arm), else None."""
    if results.attrs.get("paired", True):
        return None
    has = [arm for arm in ("plain", "gist") if any(len(v) for v in results[arm])]
    return has[0] if len(has) == 1 else None


def format_accuracy(row: Any, arm: str) -> str:
    """`42.50 [30.10, 54.90]`: one arm's mean accuracy in percent with its 95% CI over the seeds."""
    mean = row[f"{arm}_mean"]
    if mean is None or _isnan(mean):
        return "-"
    low, high = row[f"{arm}_ci_low"], row[f"{arm}_ci_high"]
    ci = f" [{100 * low:.2f}, {100 * high:.2f}]" if low is not None and not _isnan(low) else ""
    return f"{100 * mean:.2f}{ci}"


def study_matrix(results: pd.DataFrame, rows: str | None = None, cols: str | None = None,
                 formatted: bool = True) -> pd.DataFrame:
    """The paper's table: mean GIST - plain per cell, rows = one axis, columns = another.

    Args:
        results: `study_results`'s frame.
        rows: The axis along the rows (default: the first axis; the other axes but `cols` join it as index levels).
        cols: The axis along the columns (default: the second axis; none with a single axis: one column "GIST -
            plain").
        formatted: Strings `+1.23 [-0.40, +2.86]*` in percentage points (default); False: delta_mean as floats.
    """
    axes = list(results.attrs.get("axes", []))
    pd = _pd()
    if not axes:
        value = format_cell(results.iloc[0]) if formatted else results.iloc[0]["delta_mean"]
        return pd.DataFrame({"GIST - plain": [value]}, index=pd.Index(["base"], name="study"))
    for name, axis in (("rows", rows), ("cols", cols)):
        if axis is not None and axis not in axes:
            raise StudyError(f"{name}: {axis!r} is not an axis of the study; axes: {', '.join(axes)}")
    rows = rows or next(a for a in axes if a != cols)
    cols = cols if cols is not None else next((a for a in axes if a != rows), None)
    index = [rows, *[a for a in axes if a not in (rows, cols)]]
    frame = results.copy()
    arm = _single_arm(results)  # an unpaired study: no difference exists, the one arm's accuracy is shown
    if arm is None:
        frame["value"] = [format_cell(r) for _, r in frame.iterrows()] if formatted else frame["delta_mean"]
    else:
        frame["value"] = ([format_accuracy(r, arm) for _, r in frame.iterrows()] if formatted
                          else frame[f"{arm}_mean"])
    frame[index + ([cols] if cols else [])] = frame[index + ([cols] if cols else [])].map(_label)
    if cols is None:
        title = "GIST - plain" if arm is None else f"{'GIST' if arm == 'gist' else 'plain'} accuracy (%)"
        table = frame.set_index(index)[["value"]].rename(columns={"value": title})
    else:
        table = frame.pivot_table(index=index, columns=cols, values="value", aggfunc="first", sort=False)
        table.columns.name = cols
    return table


def _label(value: Any) -> Any:
    return value if isinstance(value, (str, int, float)) else json.dumps(value)


def study_curve(results: pd.DataFrame, axis: str) -> pd.DataFrame:
    """Accuracy of both arms and their difference against a numeric axis, with 95% CI bands (a plot's data).

    Returns:
        One row per cell sorted by `axis` (then the other axes): the axis and other axes' values, plain_mean,
        plain_ci_low, plain_ci_high, gist_mean, gist_ci_low, gist_ci_high, delta_mean, delta_ci_low,
        delta_ci_high, p_value, n (fractions, not points).

    Raises:
        StudyError: `axis` is not an axis of the study or not numeric.
    """
    axes = list(results.attrs.get("axes", []))
    if axis not in axes:
        raise StudyError(f"axis: {axis!r} is not an axis of the study; axes: {', '.join(axes) or 'none'}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in results[axis]):
        raise StudyError(f"axis: {axis!r} is not numeric; a curve needs numbers (use study_matrix)")
    others = [a for a in axes if a != axis]
    cols = [axis, *others, "plain_mean", "plain_ci_low", "plain_ci_high", "gist_mean", "gist_ci_low", "gist_ci_high",
            "delta_mean", "delta_ci_low", "delta_ci_high", "p_value", "n"]
    curve = results.sort_values([*others, axis], kind="stable")[cols].reset_index(drop=True)
    curve.attrs.update(results.attrs)
    return curve


BUDGET_COLUMNS = ("cell", "label", "epoch", "step", "seeds", "plain", "gist", "n", "plain_mean", "plain_ci_low",
                  "plain_ci_high", "gist_mean", "gist_ci_low", "gist_ci_high", "delta_mean", "delta_std",
                  "delta_ci_low", "delta_ci_high", "p_value", "significance", "note")


def _value_at(curve: dict[float, tuple[int, float | None]] | None, epoch: float, metric: str) -> float | None:
    """A run's metric after `epoch` epochs: its test accuracy there (acc_cls) or the best up to there
    (best_acc_cls); None when the run was not evaluated after that epoch."""
    if not curve or epoch not in curve:
        return None
    if metric == "acc_cls":
        return curve[epoch][1]
    seen = [acc for e, (_, acc) in curve.items() if e <= epoch and acc is not None and math.isfinite(acc)]
    return max(seen) if seen else None


def study_budget(study_id: str, root: Root = None, metric: str = "acc_cls") -> pd.DataFrame:
    """GIST - plain against the training budget: each cell's paired verdict after each evaluated epoch of its runs.

    The points are evaluations of the same runs (`train.eval_every`: the test split after every N epochs), so they
    follow ONE schedule: the point at epoch 2 of an 8-epoch cosine run is that run after 2 epochs, not a 2-epoch
    run. At each epoch the verdict is `runs.pairs.paired_result` over the cell's runs (as `study_results`), each run
    read at that epoch; a run counts when it ended with its result (completed or diverged) and was evaluated there.

    Args:
        metric: acc_cls (the test accuracy after that epoch, default) or best_acc_cls (the best test accuracy of the
            evaluations up to that epoch: VTAB-1k's number at that budget).

    Returns:
        One row per cell and evaluated epoch, by cell then epoch: `BUDGET_COLUMNS` (cell, label, epoch (epochs done,
        float), step (the optimisation steps done then, the largest among the runs), seeds, plain, gist (per-seed
        values as fractions), n, plain_mean, plain_ci_low, plain_ci_high, gist_mean, gist_ci_low, gist_ci_high,
        delta_mean, delta_std, delta_ci_low, delta_ci_high (95% t-intervals, clipped like `study_results`), p_value,
        significance, note) and one column per axis. `attrs`: those of `study_runs`, metric.

    Raises:
        StudyError: an unknown study, or a metric that cannot be compared.
    """
    _check_metric(metric)
    runs = study_runs(study_id, root)
    axes = runs.attrs["axes"]
    ids = sorted({r for r in runs["run_id"] if isinstance(r, str)})
    with StudyStore(root) as s:
        points = s.store.test_evaluations(ids)
    curves: dict[str, dict[float, tuple[int, float | None]]] = {}
    for run_id, step, epoch, acc in points:
        if epoch is not None:  # ordered by step: a later evaluation at the same epoch (a resumed run) wins
            curves.setdefault(run_id, {})[float(epoch)] = (int(step), None if acc is None else float(acc))
    out = []
    for cell, group in runs.groupby("cell", sort=True):
        first = group.iloc[0]
        mine = [curves.get(r) for r in group["run_id"]]
        for epoch in sorted({e for curve in mine if curve for e in curve}):
            arm_runs = [ArmRun(seed=int(r.seed), gist=r.arm == "gist", status=r.status, id=r.run_id,
                               metrics={metric: _value_at(curve, epoch, metric)})
                        for r, curve in zip(group.itertuples(index=False), mine, strict=True)]
            row: dict[str, Any] = {"cell": int(cell), "label": first["label"], **{a: first[a] for a in axes},
                                   "epoch": epoch,
                                   "step": max(curve[epoch][0] for curve in mine if curve and epoch in curve)}
            row.update(_verdict_row(paired_result(arm_runs, (metric,)), metric))
            out.append(row)
    df = _pd().DataFrame(out, columns=[*BUDGET_COLUMNS[:2], *axes, *BUDGET_COLUMNS[2:]])
    df.attrs.update(runs.attrs, metric=metric)
    return df


def _epoch(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)


def budget_table(budget: pd.DataFrame) -> pd.DataFrame:
    """`study_budget`'s frame as the table people read: per cell (when several) and epoch, both arms' accuracy (%)
    with their 95% CI, GIST - plain in points `+1.23 [-0.40, +2.86]*` (`format_cell`), p and the paired seeds."""
    pd = _pd()
    index = ["epoch"] if budget["cell"].nunique() <= 1 else ["cell", "epoch"]
    rows = [{"cell": r["label"], "epoch": _epoch(r["epoch"]), "plain (%)": format_accuracy(r, "plain"),
             "GIST (%)": format_accuracy(r, "gist"), "GIST - plain (points)": format_cell(r),
             "p": "-" if r["p_value"] is None or _isnan(r["p_value"]) else f"{r['p_value']:.3g}", "seeds": r["n"]}
            for _, r in budget.iterrows()]
    columns = ["cell", "epoch", "plain (%)", "GIST (%)", "GIST - plain (points)", "p", "seeds"]
    return pd.DataFrame(rows, columns=columns).set_index(index).drop(columns=[c for c in ("cell",) if c not in index])


def _budget_caption(budget: pd.DataFrame) -> str:
    metric = budget.attrs.get("metric", "acc_cls")
    text = (f"{budget.attrs.get('name', 'study')}: GIST - plain ({metric}, points) after each evaluated epoch of the "
            "same runs (points of one schedule, not runs of that length), with its 95% CI; * p < 0.05, ** p < 0.01, "
            "*** p < 0.001 (paired t-test over seeds)")
    return text + (f"; {FEW_SEEDS_NOTE}" if (budget["n"] == 2).any() else "")


def format_budget(study_id: str, root: Root = None, metric: str = "acc_cls") -> str:
    """The CLI's `study show --by-epoch`: the study's status line, then per cell and evaluated epoch both arms'
    accuracy and GIST - plain with its 95% CI, p and seeds (`study_budget`, `budget_table`)."""
    with StudyStore(root) as s:
        info = s.get(study_id)
    budget = study_budget(study_id, root, metric)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(info.counts.items()) if v)
    lines = [f"study {info.id} ({info.name}): {info.status} on {info.backend}; {info.cells} cell(s), "
             f"{info.planned} run(s): {counts}",
             f"metric: {metric} (%) after each evaluated epoch, delta = GIST - plain in points"]
    if budget.empty:
        lines.append("no test evaluation of a run yet (the runs evaluate every train.eval_every epochs)")
    else:
        lines += ["", *markdown_table(budget_table(budget)).splitlines(), "", _budget_caption(budget)]
    return "\n".join(printable(line) for line in lines)


def format_study(study_id: str, root: Root = None, metric: str = "acc_cls") -> str:
    """The CLI's `study show`: status, per cell the config values, per-seed accuracies of both arms, the paired
    delta with its 95% CI and p, status counts; then the matrix."""
    with StudyStore(root) as s:
        info = s.get(study_id)
    res = study_results(study_id, root, metric)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(info.counts.items()) if v)
    lines = [f"study {info.id} ({info.name}): {info.status} on {info.backend}; {info.cells} cell(s), "
             f"{info.planned} run(s): {counts}", f"metric: {metric} (%), delta = GIST - plain in points"]
    with StudyStore(root) as s:
        spec = s.spec(study_id)
    selection = study_selection(spec)
    lines.append(f"final runs: {selection['final']}")
    tuning = study_tuning(study_id, root)
    if tuning:
        lines.append(f"tuning ({spec.tune.trials} trials per arm and cell, {spec.tune.search} search, scheduler "
                     f"{spec.tune.scheduler}; trials {selection['trials']}, never the test split):")
        lines += format_tuning(tuning)
    for _, r in res.iterrows():
        seeds = ", ".join(f"{sd}: {_points(p, False)}/{_points(g, False)}"
                          for sd, p, g in zip(r["seeds"], r["plain"], r["gist"], strict=False))
        status = ", ".join(f"{r[k]} {k}" for k in COUNTED if r[k])
        p = "" if r["p_value"] is None or _isnan(r["p_value"]) else f", p = {r['p_value']:.3g}"
        lines.append(f"[{r['cell']}] {r['label']}: plain {_points(r['plain_mean'], False)}, GIST "
                     f"{_points(r['gist_mean'], False)}, delta {format_cell(r)} over {r['n']} seed(s){p}; "
                     f"seeds plain/GIST {{{seeds}}}; runs: {status}" + (f"; {r['note']}" if r["note"] else ""))
    if len(res):
        lines += ["", *markdown_table(study_matrix(res)).splitlines()]  # one line each: printable escapes "\n"
        if _single_arm(res) is None and (res["n"] == 2).any():
            lines.append(FEW_SEEDS_NOTE)
    return "\n".join(printable(line) for line in lines)  # a name or value's control characters, escaped


def _csv(frame: pd.DataFrame, tuning: list[dict[str, Any]]) -> str:
    """A results frame as CSV: accuracies in percent and differences in points, as every other export shows them;
    per-seed lists joined with ';'; a tuned study's `tuning` rows (`study_tuning`) add each arm's chosen values,
    their validation score and its settled trials."""
    flat = frame.copy()
    for col in ("plain", "gist"):
        flat[col] = [[round(100 * v, 4) for v in values] for values in flat[col]]
    for col in [c for c in flat.columns if c.startswith(("plain_", "gist_", "delta_"))]:
        flat[col] = _pd().to_numeric(flat[col], errors="coerce") * 100
    for col in ("seeds", "plain", "gist"):
        flat[col] = [";".join(str(v) for v in values) for values in flat[col]]
    for t in tuning:
        at = flat["cell"] == t["cell"]
        flat.loc[at, f"{t['arm']}_chosen"] = json.dumps(t["values"]) if t["values"] is not None else ""
        flat.loc[at, f"{t['arm']}_val_acc"] = None if t["val_acc"] is None else 100 * t["val_acc"]
        flat.loc[at, f"{t['arm']}_trials"] = t["settled"]
    for col in [c for c in flat.columns if c.endswith("_trials")]:
        flat[col] = flat[col].astype("Int64")  # counts: 8, not 8.0 (a cell without the arm stays empty)
    return flat.to_csv(index=False)


def markdown_table(table: pd.DataFrame) -> str:
    """A GitHub-flavoured Markdown table of a frame, its index as the first column(s)."""
    axis = table.columns.name  # a pivoted matrix: its columns are values of that axis
    flat = table.reset_index()
    header = [str(c) if axis is None or c in table.index.names else f"{axis}={c}" for c in flat.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    for row in flat.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines)


def export_study(study_id: str, to: str = "csv", path: str | Path | None = None, root: Root = None,
                 metric: str = "acc_cls", rows: str | None = None, cols: str | None = None,
                 by_epoch: bool = False) -> str:
    """The study's results as text; written to `path` too when given.

    Args:
        to: csv (one row per cell, every statistic; per-seed lists joined with ';'; accuracies in percent and
            differences in percentage points, like md and latex), md (the matrix as a Markdown table) or latex
            (the matrix as a booktabs LaTeX table, pandas' Styler: needs jinja2).
        rows, cols: The matrix's axes (see `study_matrix`).
        by_epoch: The verdict against the training budget instead (`study_budget`: one row per cell and evaluated
            epoch; md and latex: `budget_table`).
    """
    if to not in STUDY_EXPORTS:
        raise StudyError(f"--to: {to!r} is not one of {', '.join(STUDY_EXPORTS)}")
    res = study_budget(study_id, root, metric) if by_epoch else study_results(study_id, root, metric)
    if to == "csv":
        text = _csv(res, [] if by_epoch else study_tuning(study_id, root))
    elif by_epoch:
        table, caption = budget_table(res), _budget_caption(res)
        text = (f"{markdown_table(table)}\n\n{caption}\n" if to == "md" else
                "% booktabs table: needs \\usepackage{booktabs}\n"
                + table.to_latex(escape=True, caption="".join(_LATEX_SPECIALS.get(ch, ch) for ch in caption)))
    else:
        matrix = study_matrix(res, rows, cols)
        arm = _single_arm(res)
        caption = (f"{res.attrs['name']}: mean GIST - plain ({metric}, points) with its 95% CI; "
                   "* p < 0.05, ** p < 0.01, *** p < 0.001 (paired t-test over seeds)" if arm is None else
                   f"{res.attrs['name']}: mean {metric} of the {arm} arm (%) with its 95% CI over seeds (an "
                   "unpaired study: no GIST - plain difference)")
        if arm is None and (res["n"] == 2).any():
            caption += f"; {FEW_SEEDS_NOTE}"
        tuning = study_tuning(study_id, root)
        if tuning:  # a tuned study: say what each arm chose on validation
            caption += "; each arm tuned on validation, chosen: " + "; ".join(
                f"[{t['label']}] {t['arm']} " + (", ".join(f"{k}={_value(v)}" for k, v in t["values"].items())
                                                 if t["values"] else "base config" if t["values"] == {} else "-")
                for t in tuning)
        if to == "md":
            text = f"{markdown_table(matrix)}\n\n{caption}\n"
        else:
            latex_caption = "".join(_LATEX_SPECIALS.get(ch, ch) for ch in caption)
            text = ("% booktabs table: needs \\usepackage{booktabs}\n"
                    + matrix.to_latex(escape=True, caption=latex_caption))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text, encoding="utf-8")
    return text


__all__ = ["BUDGET_COLUMNS", "DELTA_METRICS", "FEW_SEEDS_MARK", "FEW_SEEDS_NOTE", "METRICS", "SELECTION_LABELS",
           "STUDY_EXPORTS", "budget_table", "export_study", "format_budget", "format_cell", "format_study",
           "format_tuning", "markdown_table", "significance", "study_budget", "study_curve", "study_matrix",
           "study_results", "study_runs", "study_selection", "study_tuning", "study_verdicts"]
