"""Live run: what it does now, the BKLD decomposition and accuracies as it trains, its end metrics; stop, resume."""

import time

import charts
import fmt
import panels
import run_actions
import state
import streamlit as st

from gist_engine.status import ACTIVE

mgr = state.store()  # reads without torch; stop or resume loads the engine
runs = mgr.list(limit=200)
st.title("Live run")
by_id, wanted = {r.id: r for r in runs}, st.query_params.get("run")
if wanted and wanted not in by_id:  # older than the list's limit, or deleted (another tab, the CLI)
    if (older := state.get_run(mgr, wanted)) is not None:
        by_id = {wanted: older, **by_id}
    else:
        st.warning(state.missing_run(wanted) + (" Showing another run instead." if by_id else ""))
if not by_id:
    st.info("No runs yet: start one on the Launch page.")
    st.page_link(state.LAUNCH, label="Launch a run", icon=":material/rocket_launch:")
    st.stop()
run_id = st.selectbox("Run", list(by_id), index=list(by_id).index(run_actions.default_run(by_id, wanted)),
                      format_func=lambda i: fmt.run_label(by_id[i]))  # the training one, never a queued one first
st.query_params["run"] = run_id  # a reload or a second tab re-attaches to this run
snap = state.shown_run(mgr, run_id)  # stops here if deleted since the list was read: nothing to poll
cfg = snap.config_dict  # as stored: a run of another release still shows
head, stop = st.columns([5, 1], vertical_alignment="center")
with head:
    panels.status_badge(snap.status)
    st.caption(fmt.run_caption(snap))
if snap.status in ACTIVE and stop.button("Stop", icon=":material/stop:", type="primary"):
    mgr.stop(run_id)
    st.rerun()
panels.resume_or_rerun(mgr, snap, state.open_run)  # a stopped, interrupted or failed run
run_actions.live_notes(snap, runs)  # remembered as watched; a queued run's place, a finished run's adapter
options = panels.live_options()


@st.fragment(run_every=1.0 if snap.status in ACTIVE else None)
def live_view() -> None:
    """Polls the store for new steps (redrawn only when some came); the whole page reruns once when the run ends."""
    tick = time.perf_counter()
    if (s := state.get_run(mgr, run_id)) is None:
        st.rerun()  # deleted while watched: the page redraws, says so, and stops polling it
    if mgr.store_problem:  # e.g. a full disk: the runs' outcomes show from memory until the store takes writes
        st.error(f"The run store takes no writes: {mgr.store_problem}")
    metrics = state.run_metrics(mgr, run_id)
    panels.live_status(s, has_steps=bool(len(metrics)))
    evals = mgr.evaluations(run_id)
    if len(metrics):
        loss, acc = st.container(), st.container()  # one above the other: side by side, 1024 px cut their titles
        loss_fig, acc_fig = charts.live_figures(st.session_state.setdefault(state.FIGURES_KEY, {}), run_id,
                                                metrics, evals, cfg.get("gist"), options)
        loss.plotly_chart(loss_fig, key="live.loss", config=charts.MODEBAR)
        if acc_fig is not None:
            acc.plotly_chart(acc_fig, key="live.acc", config=charts.MODEBAR)
        else:
            acc.info("Accuracy of both heads and their agreement appear after the first evaluation (set "
                     "train.probe_every for a curve during training).")
    (times := st.session_state.setdefault(state.FRAGMENT_MS_KEY, [])).append(1000 * (time.perf_counter() - tick))
    st.caption(f"step {s.step} · refreshed in {times[-1]:.0f} ms")
    if s.status != snap.status:
        st.rerun()  # the status changed: redraw the page (stops polling once the run has ended)


live_view()
panels.csv_downloads(mgr, run_id)
with st.expander("Copy as CLI"):
    panels.copy_as_cli(cfg, key="live.cli")
links = st.columns(3)
links[0].page_link(state.ATTENTION, label="Attention maps of this run", icon=":material/visibility:",
                   query_params={"run": run_id})
if snap.group_id:
    links[1].page_link(state.COMPARE, label="Its paired comparison", icon=":material/compare_arrows:",
                       query_params={"group": snap.group_id})
