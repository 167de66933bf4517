"""What the pages say in words and numbers: a comparison's verdict, a run's phase and end state, short labels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import charts
import fmt
import streamlit as st

ENDED = ("completed", "stopped", "diverged", "failed", "interrupted")


def show_verdict(v: Mapping[str, Any]) -> None:
    """The verdict on the page: the statement (success / warning / info by significance) and every warning."""
    show = {True: st.success, False: st.warning}.get(v["significant"], st.info)
    show(v["statement"], icon=":material/query_stats:")
    for text in v["warnings"]:
        st.caption(f":material/warning: {text}")


def set_tab_title(title: str) -> None:
    """Set the browser tab's title (st.set_page_config may run once per page: a one-line script does it)."""
    safe = title.replace("\\", "").replace("'", "").replace("<", "").replace(">", "")
    st.html(f"<script>document.title = '{safe}';</script>", unsafe_allow_javascript=True)


def compare_headline(result: Any, chosen: list[Any]) -> None:
    """The numbers and the verdict on the page: mean gain, its 95% CI, p, seeds, GIST's parameter cost.

    `result` is the comparison's `ge.PairedResult`; `chosen` the runs compared (snapshots)."""
    d, extra = result.delta("acc_cls"), result.extra_params
    epochs = min((r.config.get("train") or {}).get("epochs", 1) for r in chosen)
    v = fmt.verdict(d, epochs)
    # the gain and its CI in a row, p, seeds and cost under them: five in a row cut them short at 1024 px
    k = [*st.columns([1, 1.3]), *st.columns(3)]
    if d:
        k[0].metric("GIST − plain", v["value"], help="Mean accuracy gain of GIST over the plain method, in "
                    "percentage points, over the paired seeds")
        k[1].metric("95% CI (points)", f"[{fmt.points(d['ci_low'])}, {fmt.points(d['ci_high'])}]"
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
    """The per-seed table of a `ge.PairedResult` (`fmt.seeds_frame`: accuracies in %, Δ in points), its columns
    sized to fit."""
    column = {c: st.column_config.NumberColumn(label, format="%+.2f" if c == "delta" else "%.2f", width="small",
                                               help=f"{label}, % (test accuracy; agree = CLS/Gist agreement)")
              for c, label in fmt.SEED_COLUMNS.items() if c != "seed"}
    st.dataframe(fmt.seeds_frame(result), hide_index=True, width="stretch",
                 column_config={"seed": st.column_config.NumberColumn("seed", width="small"), **column})


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
    saved = (snapshot.run_dir / fmt.STATE_FILE).exists()
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
    """A finished run's metrics as a row: test accuracy, Gist head, agreement, wall time."""
    # two by two: four in a row cut the values short ("11.0…") in a projector's 1024 px window
    for col, (label, value, help_) in zip([*st.columns(2), *st.columns(2)], fmt.end_metrics(snapshot), strict=False):
        col.metric(label, value, help=help_, border=True)


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
    labels = {r.id: fmt.short_label(r, name=named and not group) for r in chosen}
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
    set_tab_title(fmt.tab_title(snapshot))
    active = snapshot.status in ("queued", "running")
    if active:
        st.progress(fmt.phase_fraction(snapshot), text=fmt.phase_text(snapshot))
    elif snapshot.status == "completed":
        end_metrics_row(snapshot)
    if snapshot.error:
        st.error(f"This run {snapshot.status}: {snapshot.error}")
    if not has_steps and active:
        st.info(f"{fmt.phase_text(snapshot)}; the first curve point appears after the first step.",
                icon=":material/hourglass_top:")
    elif not has_steps:
        st.info(f"No training step was recorded: the run {snapshot.status} before its first step.")


