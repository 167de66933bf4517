"""Runs: the history table with filters; open in live or compare, delete, export (CSV, MLflow when installed)."""

from pathlib import Path

import services
import state
import streamlit as st
import widgets

mgr = state.manager()
st.title("Runs")
frame = widgets.runs_frame(mgr.list())
if frame.empty:
    st.info("No runs yet: start one on the Launch page.")
    st.page_link(state.LAUNCH, label="Launch a run", icon=":material/rocket_launch:")
    st.page_link("views/gallery.py", label="Or import the recorded examples (Gallery)", icon=":material/collections:")
    st.stop()
f1, f2, f3, f4 = st.columns([2, 2, 1, 2])
status = f1.multiselect("Status", sorted(frame.status.unique()), placeholder="any status")
method = f2.multiselect("Method", sorted(frame.method.unique()), placeholder="any method")
gist = f3.selectbox("GIST", ["any", "on", "off"])
text = f4.text_input("Search", placeholder="name, id, dataset, group")
mask = frame.status.isin(status or frame.status) & frame.method.isin(method or frame.method)
shown = frame[mask & (frame.GIST.eq(gist == "on") if gist != "any" else True)]
if text:
    hay = shown[["name", "id", "dataset", "group"]].astype(str).agg(" ".join, axis=1)
    shown = shown[hay.str.contains(text, case=False, regex=False)]
event = st.dataframe(shown, hide_index=True, on_select="rerun", selection_mode="multi-row", key="runs.table",
                     column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=1),
                                    "created": st.column_config.DatetimeColumn("created (UTC)")})
picked = [shown.iloc[i]["id"] for i in event.selection.rows]
st.caption(f"{len(shown)} of {len(frame)} runs · select rows to act on them")
b1, b2, b3, b4 = st.columns(4)
if b1.button("Open in live view", disabled=len(picked) != 1, icon=":material/monitoring:"):
    state.open_run(picked[0])
if b2.button("Compare selected", disabled=len(picked) < 2, icon=":material/compare_arrows:"):
    st.switch_page(state.COMPARE, query_params={"runs": picked})
b3.download_button("Export table (CSV)", shown.to_csv(index=False), file_name="gist_runs.csv", mime="text/csv",
                   icon=":material/download:")
confirm = b4.checkbox(f"Confirm deleting {len(picked)} run(s)", disabled=not picked)
if b4.button("Delete selected", disabled=not (picked and confirm), icon=":material/delete:"):
    for run_id in picked:
        mgr.delete(run_id)
    st.rerun()
if len(picked) == 1:
    with st.expander("Export this run's metrics"):
        for kind in ["csv", *(["mlflow"] if services.mlflow_available() else [])]:
            if st.button(f"Export to {kind.upper()}", key=f"runs.export.{kind}"):
                where = mgr.export(picked[0], kind)
                st.success(f"Exported to {where}")
                if kind == "csv" and Path(where).is_file():  # one row per step, evaluations joined in
                    st.download_button("Download the CSV", Path(where).read_bytes(), on_click="ignore",
                                       file_name=Path(where).name, mime="text/csv")
        if not services.mlflow_available():
            st.caption("MLflow export appears here when the `mlflow` package is installed.")
