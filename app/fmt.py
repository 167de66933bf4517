"""What the pages say in words, numbers and tables, with no Streamlit: labels, points, verdicts, run and dataset
tables, a run's phase; pure functions of snapshots and frames (importable and testable without a browser)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

import gist_engine as ge
from gist_engine.status import WITH_RESULT, RunStatus

# --------------------------------------------------------------------------------------------------- numbers and names
EMPTY = "—"  # what an empty text cell of a table reads (not "None")


def points(x: float | None, signed: bool = True) -> str:
    """0.0123 -> '+1.23' (accuracy points); None -> 'n/a'."""
    return "n/a" if x is None else f"{100 * x:{'+' if signed else ''}.2f}"


def pct(value: float | None) -> float | None:
    """A fraction as percent, 2 decimals (None stays None)."""
    return None if value is None else round(100 * value, 2)


def plural(n: int, word: str) -> str:
    """(1, 'seed') -> '1 seed'; (3, 'seed') -> '3 seeds'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def param_count(n: int | None) -> str:
    """12,345 -> '12.3K'; None -> 'n/a'."""
    if n is None:
        return "n/a"
    for unit, scale in (("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


def parse_number(text: str, is_int: bool) -> int | float | None:
    """A typed number: '224', '1e-3', '2_000' or '2,000'; an int field takes a whole float ('2e2' -> 200). None for
    empty text. Raises ValueError with the reason when the text is no number of that kind ('abc', '1.5' for int)."""
    text = text.strip().replace("_", "").replace(",", "")
    if not text:
        return None
    number = float(text)  # ValueError for 'abc'
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    if is_int:
        if not number.is_integer():
            raise ValueError("not a whole number")
        return int(number)
    return number


# Labels of config fields, by name or by "section.name" (checked first): no two widgets on one page share a label.
LABELS = {"ce_weight": "Gist CE weight", "loss": "Interaction loss", "loss_weight": "Interaction weight",
          "init": "Init range", "shared_head": "Shared head", "lr": "Learning rate", "few_shot": "Few-shot k",
          "enabled": "GIST on", "length": "Gist tokens", "temperature": "Temperature", "cpu_threads": "CPU threads",
          "eval_batch_size": "Eval batch size", "attention_every": "Attention snapshot every",
          "frozen_dtype": "Frozen weights stored as", "cuda_graph": "CUDA graphs", "drop_path_rate": "Drop-path rate",
          "data.seed": "Data seed", "train.seed": "Seed", "gist.dropout": "Gist dropout",
          "adapter.dropout": "Adapter dropout", "lora.dropout": "LoRA dropout", "vpt.dropout": "Prompt dropout",
          "vpt.length": "Prompt tokens", "ssf.init_std": "SSF init std"}


def field_label(name: str, scope: str = "") -> str:
    """A config field's widget label: LABELS' "scope.name", else its "name", else the name in words."""
    return LABELS.get(f"{scope}.{name}") or LABELS.get(name) or name.replace("_", " ").capitalize()


def placeholder(help_text: str) -> str:
    """What an empty optional field means, read from its help ('empty = all' -> 'all')."""
    found = re.search(r"empty\s*=\s*([^;.()]+)", help_text or "")
    return found.group(1).strip() if found else "empty"


def class_label(label: int, class_names: list[str] | None) -> str:
    """A class by its name (`class_names[label]`), or its index when the names are unknown or too few."""
    return str(class_names[label]) if class_names and 0 <= label < len(class_names) else str(label)


def short_label(snapshot: Any, name: bool = False) -> str:
    """'seed 0 · GIST' (a legend entry); with `name`, the run's name in front (runs of different configs)."""
    arm = "GIST" if snapshot.gist_enabled else "plain"
    return (f"{snapshot.name} · " if name else "") + f"seed {snapshot.seed} · {arm}"


def run_label(snapshot: Any) -> str:
    """A one-line label of a run for selectors: name, status, id."""
    gist = "GIST" if snapshot.gist_enabled else "plain"
    return f"{snapshot.name or snapshot.method} · {gist} · {snapshot.status} · {snapshot.id}"


def auto_name(cfg: dict[str, Any]) -> str:
    """A run's name from what it trains: "<method> · <dataset> · <backbone>" (an upload by its folder's name)."""
    kind, _, arg = str((cfg.get("data") or {}).get("dataset") or "").partition(":")
    return f"{cfg.get('method')} · {Path(arg).name if arg else kind} · {cfg.get('backbone')}"


def group_label(group: Mapping[str, Any], count: Mapping[str, int]) -> str:
    """A paired group in the selector: 'name · 2 seeds paired of 3 · id', the counts from its runs now."""
    paired = plural(count["paired"], "seed") + " paired" + (f" of {count['seeds']}" if count["seeds"] != count["paired"]
                                                            else "")
    return f"{group['name'] or group['id']} · {paired} · {group['id']}"


# ------------------------------------------------------------------------------------------------------- a run's state
STATE_FILE = "resume.safetensors"  # a run's training state (gist_engine.train.checkpoint.RESUME_NAME)


def run_caption(snapshot: Any) -> str:
    """One line about a run: backbone @ input size, method, GIST on/off, dataset, seed, trainable parameters."""
    cfg = snapshot.config_dict or {}
    data = cfg.get("data") or {}  # a missing key reads "None", never a KeyError
    size = (f"{data.get('max_length')} tokens" if ge.is_text_backbone(cfg.get("backbone") or "")
            else f"{cfg.get('image_size')} px")
    return (f"{cfg.get('backbone')} @ {size} · {snapshot.method} · GIST "
            f"{'on' if snapshot.gist_enabled else 'off'} · {data.get('dataset')} · seed {snapshot.seed}"
            + (f" · {param_count(snapshot.trainable_params)} trainable" if snapshot.trainable_params else ""))


def phase_text(snapshot: Any) -> str:
    """What a run does now, in words: 'Preparing the data and the model', 'evaluating 500 test images (128 / 500)',
    'step 12 / 32', or its end status."""
    phase = getattr(snapshot, "phase", None) or {}
    if snapshot.status == RunStatus.QUEUED:
        return "Queued: waiting for a free worker"
    if snapshot.status != RunStatus.RUNNING:
        return f"{snapshot.status.capitalize()} at step {snapshot.step} / {snapshot.total_steps}"
    if not snapshot.total_steps:
        return "Preparing the data and the model"
    name, done, total = phase.get("name"), phase.get("done", 0), phase.get("total", 0)
    if name == "evaluating":
        return f"Evaluating {total:,} test images ({done:,} / {total:,}) after step {snapshot.step}"
    if name == "validating":
        return f"Evaluating {total:,} validation images ({done:,} / {total:,}) after step {snapshot.step}"
    if name == "probing":
        return f"Accuracy probe: {total:,} held-out training images ({done:,} / {total:,}) at step {snapshot.step}"
    if name == "saving":
        return "Writing the checkpoint"
    eta = snapshot.eta_seconds
    eta = "" if eta is None else f" · ETA {int(eta) // 60}:{int(eta) % 60:02d}"
    return f"Training: step {snapshot.step} / {snapshot.total_steps}{eta}"


def phase_fraction(snapshot: Any) -> float:
    """The progress bar's value: the evaluation's share while evaluating, else the share of steps done."""
    phase = getattr(snapshot, "phase", None) or {}
    if snapshot.status == RunStatus.RUNNING and phase.get("name") in ("evaluating", "validating", "probing") and \
            phase.get("total"):
        return min(1.0, phase["done"] / phase["total"])
    return min(1.0, snapshot.progress)


def tab_title(snapshot: Any) -> str:
    """The browser tab's title for a live run: '42% · step 12/32 · GIST Studio', 'evaluating · ...', 'completed'."""
    phase = (getattr(snapshot, "phase", None) or {}).get("name")
    if snapshot.status == RunStatus.RUNNING and snapshot.total_steps:
        evaluating = phase in ("evaluating", "validating")
        doing = "evaluating" if evaluating else f"step {snapshot.step}/{snapshot.total_steps}"
        return f"{100 * snapshot.progress:.0f}% · {doing} · GIST Studio"
    return f"{snapshot.status} · {snapshot.name} · GIST Studio"


def end_metrics(snapshot: Any) -> list[tuple[str, str, str | None]]:
    """(label, value, help) of a finished run's metrics row: test accuracy (labelled "selected on test
    (optimistic)" when the test split chose its epoch), validation accuracy (when measured), Gist head, agreement,
    wall time."""
    wall = (snapshot.finished - snapshot.started) if snapshot.finished and snapshot.started else None
    best = None if snapshot.best_acc_cls is None else f"best {points(snapshot.best_acc_cls, False)}% during training"
    n = (snapshot.last_eval or {}).get("n")
    on = f"on {n:,} test images" if n else "on the test split"
    selected_on = getattr(snapshot, "selected_on", None)
    epoch = getattr(snapshot, "selected_epoch", None)
    how = f"{snapshot.selection} (epoch {epoch:g})" if selected_on and epoch is not None else None
    label = "Test accuracy, selected on test (optimistic)" if selected_on == "test" else "Test accuracy"
    rows = [(label, "n/a" if snapshot.acc_cls is None else f"{points(snapshot.acc_cls, False)}%",
             "; ".join(filter(None, [f"CLS head, {on}", how, best])))]
    if getattr(snapshot, "val_acc", None) is not None:
        rows.append(("Validation accuracy", f"{points(snapshot.val_acc, False)}%",
                     f"CLS head on the validation split at the selected epoch ({how or 'the last epoch'})"))
    if snapshot.gist_enabled:
        rows.append(("Gist head", "n/a" if snapshot.acc_gist is None else f"{points(snapshot.acc_gist, False)}%",
                     "Accuracy of the Gist token's prediction (the shared head on the Gist output)"))
        rows.append(("Agreement", "n/a" if snapshot.agreement is None else f"{points(snapshot.agreement, False)}%",
                     "Share of test images where the CLS and Gist heads predict the same class"))
    rows.append(("Wall time", "n/a" if wall is None else f"{wall:.0f} s" if wall >= 10 else f"{wall:.1f} s",
                 f"{plural(snapshot.step, 'step')} from start to end, data loading and evaluation included"))
    return rows


# --------------------------------------------------------------------------------------------------------- the verdict
ALPHA = 0.05  # the significance level the verdict is stated at (two-sided paired t-test)
WHY_SHORT = ("The Gist token starts random and every head sees it: early in training it adds noise to every "
             "prediction, and only later does the interaction loss turn it into a signal. A comparison after this "
             "little training shows how fast each arm starts, not which one ends better. The Launch page's preset "
             "'CPU demo over 4 epochs' is the longer comparison (plain vs GIST over 3 seeds).")


def verdict(delta: Mapping[str, Any] | None, epochs: float | None = None) -> dict[str, Any]:
    """The headline of a paired comparison and what it allows one to conclude.

    Args:
        delta: `paired_delta`'s dict (GIST - plain accuracy over paired seeds: n, mean, ci_low, ci_high, p_value),
            or None before any pair has finished.
        epochs: Epochs each run trained (the shortest of the compared runs), for the "too short" warning.

    Returns:
        `value` (mean delta, points), `ci` (the 95% CI text or a reason there is none), `p` (the p-value text),
        `significant` (True/False, None when it cannot be judged), `statement` (one plain sentence, on the page),
        `warnings` (why the comparison may be too short or too noisy to conclude anything).
    """
    out: dict[str, Any] = {"value": None, "ci": "", "p": "", "significant": None, "statement": "", "warnings": []}
    if epochs is not None and epochs <= 1:
        out["warnings"].append(f"Too short to conclude: each run trained {epochs:g} epoch{'s' if epochs != 1 else ''}. "
                               + WHY_SHORT)
    if not delta:
        out["statement"] = "No finished plain/GIST pair yet: the numbers appear when both runs of a seed have finished."
        return out
    n = delta["n"]
    out["value"] = f"{points(delta['mean'])} points"
    if delta.get("ci_low") is None:
        out["ci"] = "no confidence interval from one seed"
        out["p"] = "no p-value from one seed"
        out["statement"] = (f"One paired seed: GIST − plain = {points(delta['mean'])} points, with nothing to tell "
                            "this from seed-to-seed noise. Run at least 3 seeds.")
        out["warnings"].append("Too few seeds to conclude: one seed says nothing about the noise between seeds.")
        return out
    lo, hi = delta["ci_low"], delta["ci_high"]
    out["ci"] = f"95% CI [{points(lo)}, {points(hi)}]"
    if delta.get("clipped"):
        out["ci"] += " (clipped to the possible range, ±100 points)"
    note = delta.get("note") or ge.interval_note(n)
    if note:
        out["warnings"].append(f"Too few seeds to conclude: {note}.")
    p = delta.get("p_value")
    if p is None or not math.isfinite(p):
        out["p"] = "no p-value (every seed gave the same difference)"
        out["statement"] = f"Every seed gave the same difference, {points(delta['mean'])} points, over {n} seeds."
        return out
    out["p"] = f"p = {p:.3g} (paired t-test, {n} seeds)"
    out["significant"] = p < ALPHA
    if p < ALPHA:
        better = "better" if delta["mean"] > 0 else "worse"
        out["statement"] = (f"Significant at the 5% level with {n} seeds (p = {p:.3g}): GIST is {better} than plain "
                            f"on this setup, by {points(abs(delta['mean']), signed=False)} points "
                            f"({out['ci']}).")
    else:
        out["statement"] = (f"Not significant with {n} seeds (p = {p:.3g}): the {out['ci']} includes 0, so this "
                            "comparison cannot tell GIST from plain.")
        out["warnings"].append(f"Too noisy to conclude: the seeds disagree by more than the mean difference "
                               f"(std {points(delta.get('std'), signed=False)} points over {n} seeds); more seeds "
                               "or longer training narrow the interval.")
    return out


def seeds_in(snapshots: Iterable[Any]) -> dict[str, int]:
    """`seeds` (with any run), `paired` (with both a plain and a GIST run) among `snapshots`: counts from the data,
    paired as every comparison pairs them (`ge.paired_result`)."""
    snapshots = list(snapshots)
    return {"seeds": len({s.seed for s in snapshots}), "paired": len(ge.paired_result(snapshots).pairs)}


SEED_COLUMNS = {"seed": "seed", "plain_acc_cls": "plain", "gist_acc_cls": "GIST", "delta": "Δ",
                "gist_acc_gist": "Gist head", "gist_agreement": "agree", "plain_best_acc_cls": "plain best",
                "gist_best_acc_cls": "GIST best"}  # the per-seed table's columns and their headers


def seeds_frame(result: Any) -> pd.DataFrame:
    """The per-seed table of a `ge.PairedResult`: seed, both arms' accuracies in %, Δ (GIST − plain) in points,
    the Gist head, agreement and best accuracies (the columns of `SEED_COLUMNS` the result has)."""
    frame = pd.DataFrame(result.seed_rows())
    frame["delta"] = [p.delta("acc_cls") for p in result.pairs]
    frame = frame[[c for c in SEED_COLUMNS if c in frame]]
    return frame.assign(**{c: 100 * frame[c].astype(float) for c in frame if c != "seed"})


def recorded_ci(low: float | None, high: float | None, n: int) -> str:
    """A recorded difference's 95% CI in points, '[-100.00, +79.98]†': clipped to ±100 points as the engine clips
    (`ge.clip_interval`; bundles recorded before intervals were clipped carry the bare t-interval), marked
    `ge.FEW_SEEDS_MARK` over 2 seeds; '' without an interval."""
    if low is None or high is None:
        return ""
    low, high, _ = ge.clip_interval(low, high, ge.DELTA_BOUNDS)
    return f"[{points(low)}, {points(high)}]" + (ge.FEW_SEEDS_MARK if n == 2 else "")


def recorded_study_rows(results: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A recorded study's table (a gallery manifest's `results`), one row per cell: seeds, both arms' accuracy (%),
    GIST − plain (points), its 95% CI (`recorded_ci`) and p."""
    return [{"cell": r["label"], "seeds": r["n"], "plain %": pct(r["plain_mean"]), "GIST %": pct(r["gist_mean"]),
             "GIST − plain (points)": pct(r["delta_mean"]),
             "95% CI": recorded_ci(r.get("delta_ci_low"), r.get("delta_ci_high"), r["n"]), "p": r["p_value"]}
            for r in results]


def gallery_delta(d: dict) -> str:
    """'GIST − plain: +0.33 points, 95% CI [-0.92, +1.58], p = 0.37 (3 seeds)' from a paired_delta dict."""
    text = f"GIST − plain: {100 * d['mean']:+.2f} points"
    if d.get("ci_low") is not None:
        text += f", 95% CI {recorded_ci(d['ci_low'], d['ci_high'], 0)}, p = {d['p_value']:.2f}"
    if d["n"] < 2:
        return text + " (1 seed: no confidence interval, so no conclusion)"
    note = d.get("note") or ge.interval_note(d["n"])  # manifests written before the note existed
    return text + f" ({d['n']} seeds" + (f"; {note}" if note else "") + ")"


def gallery_rows(bundle: Mapping[str, Any], study: bool) -> list[dict[str, Any]]:
    """A gallery entry's table: per cell of a study (`recorded_study_rows`), else per run."""
    if study:
        return recorded_study_rows(bundle["results"])
    return [{"seed": r["seed"], "arm": "GIST" if r["gist_enabled"] else "plain", "test acc %": pct(r["acc_cls"]),
             "best %": pct(r["best_acc_cls"]), "Gist head %": pct(r["acc_gist"]), "agreement %": pct(r["agreement"]),
             "steps": r["step"]} for r in bundle["summary"]["runs"]]


# -------------------------------------------------------------------------------------------------------------- tables
# how the history table names each run's selection (train.select_on, resolved)
SELECTED_ON = {"val": "validation", "test": "test (optimistic)", "last": "last epoch"}


def runs_frame(snapshots: Iterable[Any]) -> pd.DataFrame:
    """The history table: one row per run, newest first."""
    rows = [{"id": s.id, "name": s.name, "status": s.status, "method": s.method, "GIST": s.gist_enabled,
             "seed": s.seed, "dataset": (s.config_dict.get("data") or {}).get("dataset"),
             "backbone": s.config_dict.get("backbone"),
             "acc CLS %": None if s.acc_cls is None else round(100 * s.acc_cls, 2),
             "selected on": SELECTED_ON.get(s.selected_on),
             "best %": None if s.best_acc_cls is None else round(100 * s.best_acc_cls, 2),
             "progress": s.progress, "trainable": s.trainable_params, "group": s.group_id,
             "created": pd.Timestamp(s.created, unit="s", tz="UTC").tz_localize(None).floor("s")}
            for s in snapshots]
    return pd.DataFrame(rows, columns=["id", "name", "status", "method", "GIST", "seed", "dataset", "backbone",
                                       "acc CLS %", "selected on", "best %", "progress", "trainable", "group",
                                       "created"])


def for_display(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` as a table shows it: empty text cells (None in a text column: a run without a group) read "—";
    numbers, flags and dates are left as they are (a CSV export takes the frame itself, empty cells empty)."""
    text = [c for c in frame.columns
            if pd.api.types.is_object_dtype(frame[c]) or pd.api.types.is_string_dtype(frame[c])]
    return frame.fillna({c: EMPTY for c in text}) if text else frame


def options_of(column: pd.Series) -> list[str]:
    """The distinct values of a table column for a filter, sorted; missing values (None/NaN) left out."""
    return sorted(column.dropna().astype(str).unique())


def filter_runs(frame: pd.DataFrame, status: list[str], method: list[str], gist: str, text: str) -> pd.DataFrame:
    """The rows of `runs_frame` that match the filters (empty = any): status, method, GIST "on"/"off"/"any", and a
    case-insensitive text in the name, id, dataset, backbone or group (a missing value matches no text)."""
    mask = pd.Series(True, index=frame.index)
    if status:
        mask &= frame.status.astype(str).isin(status)
    if method:
        mask &= frame.method.astype(str).isin(method)
    if gist != "any":
        mask &= frame.GIST.fillna(False).astype(bool).eq(gist == "on")
    if text:
        hay = frame[["name", "id", "dataset", "backbone", "group"]].astype(object).fillna("").astype(str)
        mask &= hay.agg(" ".join, axis=1).str.contains(text, case=False, regex=False)
    return frame[mask]


DATASET_FIELDS = ("dataset", "title", "modality", "images", "classes", "offline", "installed", "uploaded", "source",
                  "licence")  # the datasets table's columns, in order


def datasets_frame(entries: list[dict[str, Any]], uploads: list[dict[str, Any]]) -> pd.DataFrame:
    """The datasets table: the uploads first, newest first (when stored), then the registered datasets."""
    when = {u["dataset"]: pd.Timestamp(u["created"], unit="s").floor("s") for u in uploads}
    rank = {u["dataset"]: i for i, u in enumerate(uploads)}
    rows = sorted(entries, key=lambda e: (not e.get("uploaded"), rank.get(e["dataset"], 0)))
    frame = pd.DataFrame(rows, columns=[c for c in DATASET_FIELDS if c != "uploaded"])
    frame.insert(7, "uploaded", [when.get(d) for d in frame.dataset])
    return frame


def studies_frame(infos: list[Any]) -> pd.DataFrame:
    """One row per study: id, name, status, backend, cells, runs and their status counts, created (UTC)."""
    shown = [s.value for s in (RunStatus.COMPLETED, RunStatus.RUNNING, RunStatus.QUEUED, RunStatus.FAILED,
                               RunStatus.INTERRUPTED)]
    rows = [{"id": s.id, "name": s.name, "status": s.status, "backend": s.backend, "cells": s.cells,
             "runs": s.planned, **{k: s.counts.get(k, 0) for k in shown},
             "other": sum(v for k, v in s.counts.items() if k not in (*shown, "pending")),  # stopped, diverged, ...
             "pending": s.counts.get("pending", 0), "created": pd.to_datetime(s.created, unit="s")} for s in infos]
    return pd.DataFrame(rows)


def cell_text(r: Any) -> str:
    """A study grid cell: 'running 12/32', 'completed 81.5%', 'failed (try 2)'."""
    if r.status == RunStatus.RUNNING and r.total_steps:
        return f"running {int(r.step or 0)}/{int(r.total_steps)}"
    if r.status in WITH_RESULT and r.acc_cls is not None and r.acc_cls == r.acc_cls:
        return f"{r.status} {100 * r.acc_cls:.1f}%"
    return str(r.status) + (f" (try {r.attempts})" if r.attempts and r.attempts > 1 else "")


CELL_COLOURS = {RunStatus.COMPLETED: "#c7e9c0", RunStatus.DIVERGED: "#fcbba1", RunStatus.FAILED: "#fcbba1",
                RunStatus.RUNNING: "#c6dbef", RunStatus.QUEUED: "#eeeeee", RunStatus.STOPPED: "#fdd0a2",
                RunStatus.INTERRUPTED: "#dadaeb"}  # a study grid's cells by their run's status


def status_grid(runs: pd.DataFrame) -> Any:
    """Cells x (seed, arm): each run's status (with its step while it trains, its accuracy once done), coloured."""
    frame = runs.assign(column=[f"seed {s} · {a}" for s, a in zip(runs["seed"], runs["arm"], strict=True)])
    frame["text"] = [cell_text(r) for r in frame.itertuples(index=False)]
    labels, columns = list(dict.fromkeys(frame["label"])), list(dict.fromkeys(frame["column"]))
    text = frame.pivot(index="label", columns="column", values="text").reindex(index=labels, columns=columns)
    status = frame.pivot(index="label", columns="column", values="status").reindex(index=labels, columns=columns)
    colours = status.map(lambda s: f"background-color: {CELL_COLOURS[s]}" if s in CELL_COLOURS else "")
    return text.style.apply(lambda _: colours, axis=None)


# ---------------------------------------------------------------------------------------------------------- study axes
def parse_values(text: str, axis: str) -> list[Any]:
    """`1, 2, 3` or `[bkld, kl]` -> a list of YAML values (`1e-3` read as a number).

    Raises:
        ValueError: naming the axis when the text is not a list.
    """
    flow = text.strip() if text.strip().startswith("[") else f"[{text}]"
    try:
        values = yaml.safe_load(flow)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem", None) or "cannot be read"  # PyYAML's own message spans several lines
        raise ValueError(f"values of {axis}: {text!r} is not a comma-separated list of values ({where}); write "
                         "e.g. 1, 2, 3 or [bkld, kl]") from None
    if not isinstance(values, list):
        raise ValueError(f"values of {axis}: {text!r} is not a comma-separated list")
    return [_number(v) for v in values]


def _number(value: Any) -> Any:
    if isinstance(value, str):  # PyYAML reads 1e-3 as a string (YAML 1.1 wants 1.0e-3)
        try:
            return float(value)
        except ValueError:
            return value
    return value
