"""What the pages say in words and numbers: a comparison's verdict, a run's phase and end state, short labels."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import charts
import pandas as pd
import streamlit as st

import gist_engine as ge

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


def show_verdict(v: Mapping[str, Any]) -> None:
    """The verdict on the page: the statement (success / warning / info by significance) and every warning."""
    show = {True: st.success, False: st.warning}.get(v["significant"], st.info)
    show(v["statement"], icon=":material/query_stats:")
    for text in v["warnings"]:
        st.caption(f":material/warning: {text}")


def seeds_in(snapshots: Iterable[Any]) -> dict[str, int]:
    """`seeds` (with any run), `paired` (with both a plain and a GIST run) among `snapshots`: counts from the data,
    paired as every comparison pairs them (`ge.paired_result`)."""
    snapshots = list(snapshots)
    return {"seeds": len({s.seed for s in snapshots}), "paired": len(ge.paired_result(snapshots).pairs)}


def plural(n: int, word: str) -> str:
    """(1, 'seed') -> '1 seed'; (3, 'seed') -> '3 seeds'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def phase_text(snapshot: Any) -> str:
    """What a run does now, in words: 'Preparing the data and the model', 'evaluating 500 test images (128 / 500)',
    'step 12 / 32', or its end status."""
    phase = getattr(snapshot, "phase", None) or {}
    if snapshot.status == "queued":
        return "Queued: waiting for a free worker"
    if snapshot.status not in ("running",):
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
    if snapshot.status == "running" and phase.get("name") in ("evaluating", "validating", "probing") and \
            phase.get("total"):
        return min(1.0, phase["done"] / phase["total"])
    return min(1.0, snapshot.progress)


def tab_title(snapshot: Any) -> str:
    """The browser tab's title for a live run: '42% · step 12/32 · GIST Studio', 'evaluating · ...', 'completed'."""
    phase = (getattr(snapshot, "phase", None) or {}).get("name")
    if snapshot.status == "running" and snapshot.total_steps:
        evaluating = phase in ("evaluating", "validating")
        doing = "evaluating" if evaluating else f"step {snapshot.step}/{snapshot.total_steps}"
        return f"{100 * snapshot.progress:.0f}% · {doing} · GIST Studio"
    return f"{snapshot.status} · {snapshot.name} · GIST Studio"


def set_tab_title(title: str) -> None:
    """Set the browser tab's title (st.set_page_config may run once per page: a one-line script does it)."""
    safe = title.replace("\\", "").replace("'", "").replace("<", "").replace(">", "")
    st.html(f"<script>document.title = '{safe}';</script>", unsafe_allow_javascript=True)


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


def compare_headline(result: Any, chosen: list[Any]) -> None:
    """The numbers and the verdict on the page: mean gain, its 95% CI, p, seeds, GIST's parameter cost.

    `result` is the comparison's `ge.PairedResult`; `chosen` the runs compared (snapshots)."""
    d, extra = result.delta("acc_cls"), result.extra_params
    epochs = min((r.config.get("train") or {}).get("epochs", 1) for r in chosen)
    v = verdict(d, epochs)
    # the gain and its CI in a row, p, seeds and cost under them: five in a row cut them short at 1024 px
    k = [*st.columns([1, 1.3]), *st.columns(3)]
    if d:
        k[0].metric("GIST − plain", v["value"], help="Mean accuracy gain of GIST over the plain method, in "
                    "percentage points, over the paired seeds")
        k[1].metric("95% CI (points)", f"[{points(d['ci_low'])}, {points(d['ci_high'])}]"
                    if d["ci_low"] is not None else "n/a",
                    help=v["ci"] + (f". {d['note']}" if d.get("note") else ""))
        k[2].metric("p-value", "n/a" if d["p_value"] is None else f"{d['p_value']:.3g}", help=v["p"])
        k[3].metric("Seeds paired", d["n"], help="Seeds with a finished plain and GIST run")
    done = sum(r.status not in ("queued", "running") for r in chosen)
    if done < len(chosen):
        k[3].progress(done / len(chosen), text=f"{done} of {len(chosen)} runs finished")
    if extra is not None:
        share = f" (+{100 * extra / result.plain_params:.2f}% of the method's)" if result.plain_params else ""
        k[4].metric("GIST params", f"+{extra:,}", help=f"Parameter cost of GIST: extra trainable parameters{share}")
    show_verdict(v)


def seeds_table(result: Any) -> None:
    """The per-seed table of a `ge.PairedResult` (accuracies in %, Δ in points), its columns sized to fit."""
    names = {"seed": "seed", "plain_acc_cls": "plain", "gist_acc_cls": "GIST", "delta": "Δ",
             "gist_acc_gist": "Gist head", "gist_agreement": "agree", "plain_best_acc_cls": "plain best",
             "gist_best_acc_cls": "GIST best"}
    frame = pd.DataFrame(result.seed_rows())
    frame["delta"] = [p.delta("acc_cls") for p in result.pairs]
    frame = frame[[c for c in names if c in frame]]
    pct = {c: 100 * frame[c].astype(float) for c in frame if c != "seed"}
    frame = frame.assign(**pct)
    column = {c: st.column_config.NumberColumn(label, format="%+.2f" if c == "delta" else "%.2f", width="small",
                                               help=f"{label}, % (test accuracy; agree = CLS/Gist agreement)")
              for c, label in names.items() if c != "seed"}
    st.dataframe(frame, hide_index=True, column_config={"seed": st.column_config.NumberColumn("seed", width="small"),
                                                        **column}, width="stretch")


def group_label(group: Mapping[str, Any], count: Mapping[str, int]) -> str:
    """A paired group in the selector: 'name · 2 seeds paired of 3 · id', the counts from its runs now."""
    paired = plural(count["paired"], "seed") + " paired" + (f" of {count['seeds']}" if count["seeds"] != count["paired"]
                                                            else "")
    return f"{group['name'] or group['id']} · {paired} · {group['id']}"


def compare_options() -> tuple[str, float, bool]:
    """Compare's chart options (a popover): the loss curve (CLS cross-entropy or the total), smoothing, log axis."""
    with st.popover("Chart options", icon=":material/tune:"):
        loss_key = st.radio("Loss curve", ["ce_cls", "total"], key="compare.loss_key", format_func={
            "ce_cls": "Cross-entropy of the CLS head (the same quantity in both arms)",
            "total": "Training objective (GIST's total: CE + weighted Gist CE + weighted interaction)"}.get)
        smoothing = st.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="compare.smoothing",
                              help="Exponential moving average of the loss curves, as on TensorBoard")
        log = st.toggle("Log scale (loss)", key="compare.log")
    return loss_key, smoothing, log


def live_options() -> dict[str, Any]:
    """The live page's chart options (a popover): smoothing, log axis, raw terms; `charts.loss_figure`'s keywords."""
    with st.popover("Chart options", icon=":material/tune:"):
        return {"smoothing": st.slider("Smoothing", 0.0, 0.99, 0.0, 0.01, key="live.smoothing",
                                       help="Exponential moving average of the loss curves, as on TensorBoard"),
                "log": st.toggle("Log scale", key="live.log", help="A logarithmic loss axis"),
                "raw": st.toggle("Raw terms", key="live.raw", help="Each loss term unweighted, as the trainer logs "
                                 "it (the KL terms are small: use the log scale)")}


def resume_or_rerun(mgr: Any, snapshot: Any, open_run: Any) -> None:
    """Resume (from the last training state, when one was saved) and Rerun (same config, a new run) buttons for a
    stopped, interrupted or failed run; `open_run(run_id)` goes to the new run's live page."""
    saved = (snapshot.run_dir / STATE_FILE).exists()
    cols = st.columns([1, 1, 3], vertical_alignment="center")
    if cols[0].button("Resume", icon=":material/play_arrow:", key="live.resume", disabled=not saved,
                      help="Continue from the last training state saved (every train.checkpoint_every epochs)"
                      if saved else "No training state was saved (train.checkpoint_every is 0): Rerun instead"):
        mgr.resume(snapshot.id)
        st.rerun()
    if cols[1].button("Rerun", icon=":material/replay:", key="live.rerun", help="A new run with the same config"):
        open_run(mgr.rerun(snapshot.id))
    cols[2].caption(f"This run {snapshot.status} at step {snapshot.step} of {snapshot.total_steps}.")


def end_metrics_row(snapshot: Any) -> None:
    """A finished run's metrics as rows of two (`end_metrics`), then its note (an early stop)."""
    # two by two: four in a row cut the values short ("11.0…") in a projector's 1024 px window
    metrics = end_metrics(snapshot)
    cols = [col for _ in range(0, len(metrics), 2) for col in st.columns(2)]
    for col, (label, value, help_) in zip(cols, metrics, strict=False):
        col.metric(label, value, help=help_, border=True)
    if getattr(snapshot, "note", None):
        st.caption(snapshot.note)


def csv_downloads(mgr: Any, run_id: str) -> None:
    """Download buttons for a run's step metrics and evaluations (CSV, made when clicked)."""
    cols = st.columns(2)
    cols[0].download_button("Download the step metrics (CSV)", lambda: mgr.metrics(run_id).to_csv(index=False),
                            file_name=f"{run_id}-metrics.csv", mime="text/csv", icon=":material/download:",
                            key="live.csv", on_click="ignore")
    cols[1].download_button("Download the evaluations (CSV)", lambda: mgr.evaluations(run_id).to_csv(index=False),
                            file_name=f"{run_id}-evaluations.csv", mime="text/csv", icon=":material/download:",
                            key="live.evals_csv", on_click="ignore")

def compare_curves(mgr: Any, chosen: list[Any], group: bool, loss_key: str, smoothing: float, log: bool) -> None:
    """Compare's curves, one line per run ('seed 0 · GIST'): accuracy over training (the accuracy probe, else the
    test evaluations) and the loss `loss_key` (ce_cls: like with like; total: each arm's objective), with CSVs."""
    named = len({r.name.rsplit("-seed", 1)[0].removesuffix("-gist").removesuffix("-plain") for r in chosen}) > 1
    labels = {r.id: short_label(r, name=named and not group) for r in chosen}
    evals = {labels[r.id]: mgr.evaluations(r.id) for r in chosen}
    probed = any(len(charts.split_of(e, charts.PROBE)) for e in evals.values())
    split = charts.PROBE if probed else charts.TEST
    acc = {k: charts.split_of(e, split) for k, e in evals.items()}
    losses = {labels[r.id]: mgr.metrics(r.id, keys=[loss_key]) for r in chosen}
    c1, c2 = st.columns(2)
    title = ("CLS-head accuracy on the probe (held-out training images)" if probed
             else "Test accuracy, CLS head")
    c1.plotly_chart(charts.overlay_figure(acc, "acc_cls", title, 100, "%"), key="compare.acc", config=charts.MODEBAR)
    loss_title = "Cross-entropy of the CLS head (both arms)" if loss_key == "ce_cls" else \
        "Training objective (GIST: its total; plain: CE)"
    c2.plotly_chart(charts.overlay_figure(losses, loss_key, loss_title, y="loss", smoothing=smoothing, log=log),
                    key="compare.loss", config=charts.MODEBAR)
    c1.download_button("Accuracy data (CSV)", charts.curves_frame(acc, "acc_cls").to_csv(index=False),
                       file_name="accuracy.csv", mime="text/csv", key="compare.acc_csv", on_click="ignore",
                       icon=":material/download:")
    c2.download_button("Loss data (CSV)", charts.curves_frame(losses, loss_key).to_csv(index=False),
                       file_name=f"{loss_key}.csv", mime="text/csv", key="compare.loss_csv", on_click="ignore",
                       icon=":material/download:")


def live_status(snapshot: Any, has_steps: bool) -> None:
    """The live page's state of a run: the tab title; while it runs, a progress bar saying what it does; at the end
    the metrics row (completed) or the error; before any step, what is happening instead of an empty chart."""
    set_tab_title(tab_title(snapshot))
    active = snapshot.status in ("queued", "running")
    if active:
        st.progress(phase_fraction(snapshot), text=phase_text(snapshot))
    elif snapshot.status == "completed":
        end_metrics_row(snapshot)
    if snapshot.error:
        st.error(f"This run {snapshot.status}: {snapshot.error}")
    if not has_steps and active:
        st.info(f"{phase_text(snapshot)}; the first curve point appears after the first step.",
                icon=":material/hourglass_top:")
    elif not has_steps:
        st.info(f"No training step was recorded: the run {snapshot.status} before its first step.")


def pct(value: float | None) -> float | None:
    """A fraction as percent, 2 decimals (None stays None)."""
    return None if value is None else round(100 * value, 2)


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
