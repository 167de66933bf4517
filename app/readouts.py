"""What the pages say in words and numbers: a comparison's verdict, a run's phase and end state, short labels."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import streamlit as st

ALPHA = 0.05  # the significance level the verdict is stated at (two-sided paired t-test)
STATE_FILE = "resume.safetensors"  # a run's training state (gist_engine.train.checkpoint.RESUME_NAME)
ENDED = ("completed", "stopped", "diverged", "failed", "interrupted")
WHY_SHORT = ("The Gist token starts random and every head sees it: early in training it adds noise to every "
             "prediction, and only later does the interaction loss turn it into a signal. A comparison after this "
             "little training shows how fast each arm starts, not which one ends better. The Launch page's preset "
             "'CPU demo over 4 epochs' is the longer comparison (plain vs GIST over 3 seeds).")


def short_label(snapshot: Any, name: bool = False) -> str:
    """'seed 0 · GIST' (a legend entry); with `name`, the run's name in front (runs of different configs)."""
    arm = "GIST" if snapshot.gist_enabled else "plain"
    return (f"{snapshot.name} · " if name else "") + f"seed {snapshot.seed} · {arm}"


def points(x: float | None, signed: bool = True) -> str:
    """0.0123 -> '+1.23' (accuracy points); None -> 'n/a'."""
    return "n/a" if x is None else f"{100 * x:{'+' if signed else ''}.2f}"


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


def show_verdict(v: Mapping[str, Any]) -> None:
    """The verdict on the page: the statement (success / warning / info by significance) and every warning."""
    show = {True: st.success, False: st.warning}.get(v["significant"], st.info)
    show(v["statement"], icon=":material/query_stats:")
    for text in v["warnings"]:
        st.caption(f":material/warning: {text}")


def seeds_in(snapshots: Iterable[Any]) -> dict[str, int]:
    """`seeds` (with any run), `paired` (with both a plain and a GIST run) among `snapshots`: counts from the data."""
    arms: dict[int, set[bool]] = {}
    for s in snapshots:
        arms.setdefault(s.seed, set()).add(bool(s.gist_enabled))
    return {"seeds": len(arms), "paired": sum(a == {False, True} for a in arms.values())}


def plural(n: int, word: str) -> str:
    """(1, 'seed') -> '1 seed'; (3, 'seed') -> '3 seeds'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def phase_text(snapshot: Any) -> str:
    """What a run does now, in words: 'Preparing the data and the model', 'evaluating 500 test images (128 / 500)',
    'step 12 / 32', or its end status."""
    phase = (snapshot.latest or {}).get("phase") or {}
    if snapshot.status == "queued":
        return "Queued: waiting for a free worker"
    if snapshot.status not in ("running",):
        return f"{snapshot.status.capitalize()} at step {snapshot.step} / {snapshot.total_steps}"
    if not snapshot.total_steps:
        return "Preparing the data and the model"
    name, done, total = phase.get("name"), phase.get("done", 0), phase.get("total", 0)
    if name == "evaluating":
        return f"Evaluating {total:,} test images ({done:,} / {total:,}) after step {snapshot.step}"
    if name == "probing":
        return f"Accuracy probe: {total:,} held-out training images ({done:,} / {total:,}) at step {snapshot.step}"
    if name == "saving":
        return "Writing the checkpoint"
    eta = snapshot.eta_seconds
    eta = "" if eta is None else f" · ETA {int(eta) // 60}:{int(eta) % 60:02d}"
    return f"Training: step {snapshot.step} / {snapshot.total_steps}{eta}"


def phase_fraction(snapshot: Any) -> float:
    """The progress bar's value: the evaluation's share while evaluating, else the share of steps done."""
    phase = (snapshot.latest or {}).get("phase") or {}
    if snapshot.status == "running" and phase.get("name") in ("evaluating", "probing") and phase.get("total"):
        return min(1.0, phase["done"] / phase["total"])
    return min(1.0, snapshot.progress)


def tab_title(snapshot: Any) -> str:
    """The browser tab's title for a live run: '42% · step 12/32 · GIST Studio', 'evaluating · ...', 'completed'."""
    phase = ((snapshot.latest or {}).get("phase") or {}).get("name")
    if snapshot.status == "running" and snapshot.total_steps:
        doing = "evaluating" if phase == "evaluating" else f"step {snapshot.step}/{snapshot.total_steps}"
        return f"{100 * snapshot.progress:.0f}% · {doing} · GIST Studio"
    return f"{snapshot.status} · {snapshot.name} · GIST Studio"


def set_tab_title(title: str) -> None:
    """Set the browser tab's title (st.set_page_config may run once per page: a one-line script does it)."""
    safe = title.replace("\\", "").replace("'", "").replace("<", "").replace(">", "")
    st.html(f"<script>document.title = '{safe}';</script>", unsafe_allow_javascript=True)


def end_metrics(snapshot: Any) -> list[tuple[str, str, str | None]]:
    """(label, value, help) of a finished run's metrics row: test accuracy, Gist head, agreement, wall time."""
    wall = (snapshot.finished - snapshot.started) if snapshot.finished and snapshot.started else None
    best = None if snapshot.best_acc_cls is None else f"best {points(snapshot.best_acc_cls, False)}% during training"
    n = (snapshot.last_eval or {}).get("n")
    on = f"on {n:,} test images" if n else "on the test split"
    rows = [("Test accuracy", "n/a" if snapshot.acc_cls is None else f"{points(snapshot.acc_cls, False)}%",
             f"CLS head, {on}; {best}" if best else f"CLS head, {on}")]
    if snapshot.gist_enabled:
        rows.append(("Gist head", "n/a" if snapshot.acc_gist is None else f"{points(snapshot.acc_gist, False)}%",
                     "Accuracy of the Gist token's prediction (the shared head on the Gist output)"))
        rows.append(("Agreement", "n/a" if snapshot.agreement is None else f"{100 * snapshot.agreement:.1f}%",
                     "Share of test images where the CLS and Gist heads predict the same class"))
    rows.append(("Wall time", "n/a" if wall is None else f"{wall:.0f} s",
                 f"{plural(snapshot.step, 'step')} from start to end, data loading and evaluation included"))
    return rows
