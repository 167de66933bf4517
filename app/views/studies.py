"""Studies: paired sweeps of any config keys; start one, watch its cells fill in, read its matrix and curves, export."""

import fmt
import state
import streamlit as st
import study_views as sv

import gist_engine as ge

where = sv.root()
st.title("Studies")
st.caption("A study sweeps one or more config keys over a grid and runs every cell **plain and GIST on the same "
           "seeds**, then reads back the paper's table: mean GIST - plain with its 95% CI and a paired-test marker. "
           "A paired group (Launch → plain vs GIST) is a one-cell study kept off this list: it opens on Compare.")
studies = ge.list_studies(where)
new_study = st.expander("New study", expanded=not studies, key="studies.new_study", icon=":material/add:",
                        on_change="rerun")  # its form runs only while open: it needs the engine's catalogue
if new_study.open:
    with new_study:
        sv.new_study_form(state.draft(), where)
if not studies:
    st.info("No studies yet: start one above (from the Launch page's config plus an axis, or a spec).")
    st.stop()

st.dataframe(fmt.studies_frame(studies), hide_index=True, key="studies.table",
             column_config={"created": st.column_config.DatetimeColumn("created (UTC)")})
by_id = {s.id: s for s in studies}
wanted = st.query_params.get("study")
if wanted and wanted not in by_id:
    st.warning(f"No study with id {wanted!r}; showing the newest study instead.")
study_id = st.selectbox("Study", list(by_id), index=list(by_id).index(wanted) if wanted in by_id else 0,
                        format_func=lambda i: f"{by_id[i].name} · {by_id[i].status} · {i}")
st.query_params["study"] = study_id  # a reload or a second tab re-attaches to this study
job = sv.jobs().get(study_id)
active = sv.controls(by_id[study_id], job, where)


@st.fragment(run_every=2.0 if active else None)
def study_view() -> None:
    """Polls the store while the study runs: its grid of runs, matrix, curve; the page reruns once it ends."""
    try:
        info, runs = ge.get_study(study_id, where), ge.study_runs(study_id, where)
    except ge.ConfigError as exc:  # e.g. a spec whose base no longer validates here
        st.error(f"Cannot read this study: {exc}")
        return
    sv.summary(info)
    sv.tuning_view(ge.study_tuning(study_id, where))
    st.subheader("Runs by cell")
    st.dataframe(fmt.status_grid(runs), key="studies.grid")
    sv.cell_links(runs)
    st.subheader("Results")
    metric = st.selectbox("Metric", list(sv.METRICS), format_func=sv.METRICS.get, key="studies.metric")
    results = ge.study_results(study_id, where, metric)
    rows, cols = sv.matrix_view(results, metric)
    sv.curve_view(results, metric)
    sv.budget_view(study_id, where, metric)  # GIST - plain after each evaluated epoch of the same runs
    sv.export_buttons(study_id, where, metric, rows, cols)
    if active and info.status != "running" and (job is None or job.done):
        st.rerun()  # the study ended: redraw the page (stops polling)


study_view()
sv.delete_controls(by_id[study_id], active, where)
