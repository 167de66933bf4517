"""Runs: the history table with filters; open in live or compare, delete, export (CSV, MLflow when installed)."""

from pathlib import Path

import fmt
import panels
import run_actions
import services
import state
import streamlit as st

st.title("Runs")
mgr = state.store()  # reads without torch; a delete loads the engine (behind services.ENGINE_LOADING)
for kind, lines in st.session_state.pop(state.RUNS_FLASH_KEY, {}).items():  # what the last delete did
    for line in lines:
        getattr(st, kind)(line)
frame = fmt.runs_frame(everything := mgr.list())
if frame.empty:
    st.info("No runs yet: start one on the Launch page.")
    st.page_link(state.LAUNCH, label="Launch a run", icon=":material/rocket_launch:")
    st.page_link("views/gallery.py", label="Or import the recorded examples (Gallery)", icon=":material/collections:")
    st.stop()
f1, f2, f3, f4 = st.columns([2, 2, 1, 2])
status = f1.multiselect("Status", fmt.options_of(frame.status), placeholder="any status")
method = f2.multiselect("Method", fmt.options_of(frame.method), placeholder="any method")
gist = f3.selectbox("GIST", ["any", "on", "off"])
text = f4.text_input("Search", placeholder="name, id, dataset, group")
shown = fmt.filter_runs(frame, status, method, gist, text)
event = st.dataframe(fmt.for_display(shown), hide_index=True, on_select="rerun", selection_mode="multi-row",
                     key=state.runs_table_key(status, method, gist, text), column_config=panels.RUNS_COLUMNS)
picked = [shown.iloc[i]["id"] for i in event.selection.rows if i < len(shown)]
st.caption(f"{len(shown)} of {len(frame)} runs · select rows to act on them")
b1, b2, b3, b4 = *st.columns(2), *st.columns(2)  # two by two: four in a row cut the labels at 1024 px
if b1.button("Open in live view", disabled=len(picked) != 1, icon=":material/monitoring:"):
    state.open_run(picked[0])
if b2.button("Compare selected", disabled=len(picked) < 2, icon=":material/compare_arrows:"):
    st.switch_page(state.COMPARE, query_params={"runs": picked})
b3.download_button("Export table (CSV)", shown.to_csv(index=False), file_name="gist_runs.csv", mime="text/csv",
                   icon=":material/download:")
confirm = b4.checkbox(f"Confirm deleting {len(picked)} run(s)", disabled=not picked,
                      key=state.runs_confirm_key(picked))  # a new selection needs a new confirmation
if b4.button("Delete selected", disabled=not (picked and confirm), icon=":material/delete:"):
    state.delete_runs(mgr, picked, dict(zip(frame.id, frame.name, strict=True)))
    st.rerun()  # a fresh table: no row selected, the confirmation cleared, what was deleted said on top
run_actions.selection_actions(mgr, picked, everything)  # stop their group in one click; a finished run's adapter
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
