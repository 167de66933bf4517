"""Compare: GIST minus plain per seed and on average (95% CI, p, a verdict), like-for-like curves, published rows."""

import charts
import fmt
import pandas as pd
import panels
import run_actions
import services
import state
import streamlit as st

import gist_engine as ge
from gist_engine.status import ACTIVE

st.title("Compare plain and GIST")
mgr = state.store()  # reads without torch; a stop loads the engine (behind services.ENGINE_LOADING)
state.gone_notice()
groups = {g["id"]: g for g in mgr.groups()}
everything = mgr.list()
runs = {r.id: r for r in everything[:500]}
counts = {g: fmt.seeds_in(r for r in everything if r.group_id == g) for g in groups}  # from the runs there now
wanted_group, wanted_runs = st.query_params.get("group"), st.query_params.get_all("runs")
mode = st.segmented_control("What to compare", ["Paired group", "Any runs"], key="compare.mode",
                            default="Any runs" if wanted_runs or not groups else "Paired group")


if mode == "Paired group" and groups:
    ids = list(groups)
    gid = st.selectbox("Group", ids, index=ids.index(wanted_group) if wanted_group in ids else 0,
                       format_func=lambda g: fmt.group_label(groups[g], counts[g]))
    st.query_params.update(group=gid)
    members = mgr.list(group_id=gid)
    picked = [r.id for r in members]
    run_actions.stop_group_button(mgr, gid, members, "compare.stop_group")  # its queued and running runs at once
else:
    gid = None
    picked = st.multiselect("Runs", list(runs), default=[r for r in wanted_runs if r in runs],
                            format_func=lambda i: fmt.run_label(runs[i]),
                            help="Runs with the same config and seed, GIST off and on, are paired.")
active = any(runs[i].status in ACTIVE for i in picked if i in runs)
loss_key, smoothing, log = panels.compare_options()


@st.fragment(run_every=2.0 if active else None)
def results_view() -> None:
    """Refreshes while any compared run still trains; redraws the page once they have all finished."""
    try:
        if gid:
            results = mgr.group_results(gid)
            chosen, verdict = results["runs"], results["paired"]
        else:
            chosen = [mgr.get(i) for i in picked]
            verdict = ge.paired_result(chosen)  # pairs by config and seed, as a group's runs are paired
    except ge.RunNotFound:  # the group or a run was deleted while polled: the page redraws without it
        state.gone(f"The group {gid}" if gid else "A compared run")
    if not chosen:
        st.info("Pick a paired group (Launch → 'plain vs GIST') or some runs.")
        return
    panels.compare_headline(verdict, chosen)
    if verdict.pairs and verdict.delta("acc_cls"):
        chart, table = st.container(), st.container()  # one above the other: 1024 px cut both
        chart.plotly_chart(charts.delta_figure(verdict), key="compare.delta", config=charts.MODEBAR)
        with table:
            panels.seeds_table(verdict)
    panels.compare_curves(mgr, chosen, bool(gid), loss_key, smoothing, log)
    if verdict.unpaired:
        st.caption(f"Without a partner (shown in the curves only): {', '.join(r.id for r in verdict.unpaired)}")
    if active and not any(r.status in ACTIVE for r in chosen):
        st.rerun()


results_view()
st.subheader("Reference: published VTAB-1k numbers")
published = services.load_published()
st.caption(f"**Published numbers, not runs of this app** — {published['source']}. {published['claim']}")
st.dataframe(pd.DataFrame(published["rows"], columns=list(published["columns"])).rename(columns=published["columns"]),
             hide_index=True)
