"""Datasets: what can be trained on, and uploading your own ImageFolder zip (validated before it is stored)."""

import charts
import pandas as pd
import services
import state
import streamlit as st
import widgets

st.title("Datasets")
entries = services.list_datasets(state.data_root())
table = pd.DataFrame(entries)[["dataset", "title", "images", "classes", "offline", "installed", "source", "licence"]]
st.dataframe(table, hide_index=True, column_config={"source": st.column_config.TextColumn(width="large")})

st.subheader("Upload your own images")
st.caption("A **zip of class folders**: `cat/001.jpg`, `cat/002.png`, `dog/001.jpg`, ... (one top folder around them "
           "is fine). Every file is checked before anything is stored: size and entry caps, no paths that escape "
           "the folder, no links, images decoded with a pixel cap. Files that fail are listed with the reason.")
with st.form("upload"):
    upload = st.file_uploader("ImageFolder zip", type=["zip"])
    name = st.text_input("Dataset name", placeholder="e.g. my-pets", help="Letters, digits, '_', '.', '-'")
    overwrite = st.checkbox("Replace a dataset of the same name")
    submitted = st.form_submit_button("Validate and import", type="primary", icon=":material/upload:")
if submitted and upload is None:
    st.warning("Choose a zip file first.")
elif submitted:
    with st.spinner("Checking every file ..."):
        report = services.import_dataset_zip(upload.getvalue(), name.strip() or upload.name.rsplit(".", 1)[0],
                                             state.data_root(), overwrite=overwrite)
    for error in report.errors:
        st.error(error)
    if report.ok:
        st.success(f"Stored {report.accepted} images in {len(report.classes)} classes as `{report.dataset}`: "
                   "choose it on the Launch page.")
    for warning in report.warnings:
        st.warning(warning)
    if report.ok:
        st.plotly_chart(charts.class_counts(report.classes), key="datasets.counts")
        widgets.thumbnails({c: t for c, t in report.thumbnails.items() if t})
    if report.rejected:
        st.write(f"**Rejected ({len(report.rejected)})**")
        st.dataframe(pd.DataFrame(report.rejected, columns=["file in the zip", "reason"]), hide_index=True)
    if report.ok:
        st.page_link(state.LAUNCH, label="Launch a run on it", icon=":material/rocket_launch:")
