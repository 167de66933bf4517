"""Live run: what it does now, the BKLD decomposition and accuracies as it trains, its end metrics; stop, resume."""

import time

import charts
import readouts
import state
import streamlit as st
import widgets

import gist_engine as ge

mgr = state.manager()
runs = mgr.list(limit=200)
st.title("Live run")
if not runs:
    st.info("No runs yet: start one on the Launch page.")
    st.page_link(state.LAUNCH, label="Launch a run", icon=":material/rocket_launch:")
    st.stop()
by_id = {r.id: r for r in runs}
wanted = st.query_params.get("run")
if wanted and wanted not in by_id:
    try:
        by_id = {wanted: mgr.get(wanted), **by_id}  # older than the list's limit
    except ge.RunNotFound:
        st.warning(f"No run with id {wanted!r}; showing the newest run instead.")
run_id = st.selectbox("Run", list(by_id), index=list(by_id).index(wanted) if wanted in by_id else 0,
                      format_func=lambda i: state.run_label(by_id[i]))
st.query_params["run"] = run_id  # a reload or a second tab re-attaches to this run
snap = mgr.get(run_id)
cfg = snap.config
head, stop = st.columns([5, 1], vertical_alignment="center")
with head:
    state.status_badge(snap.status)
    st.caption(widgets.run_caption(snap))
if snap.status in state.ACTIVE and stop.button("Stop", icon=":material/stop:", type="primary"):
    mgr.stop(run_id)
    st.rerun()
if snap.status in ("stopped", "interrupted", "failed"):
    saved = (snap.run_dir / readouts.STATE_FILE).exists()
    again = st.columns([1, 1, 3], vertical_alignment="center")
    if again[0].button("Resume", icon=":material/play_arrow:", key="live.resume", disabled=not saved,
                       help="Continue from the last training state saved (every train.checkpoint_every epochs)"
                       if saved else "No training state was saved (train.checkpoint_every is 0): Rerun instead"):
        mgr.resume(run_id)
        st.rerun()
    if again[1].button("Rerun", icon=":material/replay:", key="live.rerun",
                       help="A new run with the same config (and group)"):
        state.open_run(mgr.rerun(run_id))
    again[2].caption(f"This run {snap.status} at step {snap.step} of {snap.total_steps}.")
with st.popover("Chart options", icon=":material/tune:"):
    options = {"smoothing": st.slider("Smoothing", 0.0, 0.99, 0.0, 0.01, key="live.smoothing",
                                      help="Exponential moving average of the loss curves, as on TensorBoard"),
               "log": st.toggle("Log scale", key="live.log", help="A logarithmic loss axis"),
               "raw": st.toggle("Raw terms", key="live.raw", help="Each loss term unweighted, as the trainer logs it "
                                "(the KL terms are small: use the log scale)")}


@st.fragment(run_every=1.0 if snap.status in state.ACTIVE else None)
def live_view() -> None:
    """Polls the store for new steps (redrawn only when some came); the whole page reruns once when the run ends."""
    tick = time.perf_counter()
    s = mgr.get(run_id)
    metrics = state.run_metrics(mgr, run_id)
    readouts.set_tab_title(readouts.tab_title(s))
    if s.status in state.ACTIVE:
        st.progress(readouts.phase_fraction(s), text=readouts.phase_text(s))
    elif s.status == "completed":
        for col, (label, value, help_) in zip(st.columns(4), readouts.end_metrics(s), strict=False):
            col.metric(label, value, help=help_, border=True)
    if s.error:
        st.error(f"This run {s.status}: {s.error}")
    evals = mgr.evaluations(run_id)
    if not len(metrics) and s.status in state.ACTIVE:
        st.info(f"{readouts.phase_text(s)}; the first curve point appears after the first step.",
                icon=":material/hourglass_top:")
    elif not len(metrics):
        st.info(f"No training step was recorded: the run {s.status} before its first step.")
    else:
        loss, acc = st.columns(2)
        loss_fig, acc_fig = charts.live_figures(st.session_state.setdefault(state.FIGURES_KEY, {}), run_id,
                                                metrics, evals, cfg.get("gist"), options)
        loss.plotly_chart(loss_fig, key="live.loss", config=charts.MODEBAR)
        if acc_fig is not None:
            acc.plotly_chart(acc_fig, key="live.acc", config=charts.MODEBAR)
        else:
            acc.info("Accuracy of both heads and their agreement appear after the first evaluation (set "
                     "train.probe_every for a curve during training).")
    times = st.session_state.setdefault(state.FRAGMENT_MS_KEY, [])
    times.append(1000 * (time.perf_counter() - tick))
    st.caption(f"step {s.step} · refreshed in {times[-1]:.0f} ms")
    if s.status != snap.status:
        st.rerun()  # the status changed: redraw the page (stops polling once the run has ended)


live_view()
data = st.columns(3)
data[0].download_button("Download the step metrics (CSV)", lambda: mgr.metrics(run_id).to_csv(index=False),
                        file_name=f"{run_id}-metrics.csv", mime="text/csv", icon=":material/download:",
                        key="live.csv", on_click="ignore")
data[1].download_button("Download the evaluations (CSV)", lambda: mgr.evaluations(run_id).to_csv(index=False),
                        file_name=f"{run_id}-evaluations.csv", mime="text/csv", icon=":material/download:",
                        key="live.evals_csv", on_click="ignore")
with st.expander("Copy as CLI"):
    widgets.copy_as_cli(cfg, key="live.cli")
links = st.columns(3)
links[0].page_link(state.ATTENTION, label="Attention maps of this run", icon=":material/visibility:",
                   query_params={"run": run_id})
if snap.group_id:
    links[1].page_link(state.COMPARE, label="Its paired comparison", icon=":material/compare_arrows:",
                       query_params={"group": snap.group_id})
