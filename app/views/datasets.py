"""Datasets: what can be trained on; uploading your own ImageFolder zip (validated before it is stored); deleting it."""

import charts
import fmt
import pandas as pd
import panels
import services
import state
import streamlit as st

import gist_engine as ge

st.title("Datasets")
for kind, lines in st.session_state.pop(state.DATASETS_FLASH_KEY, {}).items():  # what the last delete did
    for line in lines:
        getattr(st, kind)(line)
listing = st.container()  # filled at the end, so that an upload made below is listed at once

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
                                             services.data_root(), overwrite=overwrite)
    for error in report.errors:
        st.error(error)
    if report.ok:
        services.split_sizes.clear()  # a replaced upload has new sizes
        st.success(f"Stored {report.accepted} images in {len(report.classes)} classes as `{report.dataset}`: "
                   "choose it on the Launch page.")
    for warning in report.warnings:
        st.warning(warning)
    if report.ok:
        st.plotly_chart(charts.class_counts(report.classes), key="datasets.counts")
        panels.thumbnails({c: t for c, t in report.thumbnails.items() if t})
    if report.rejected:
        st.write(f"**Rejected ({len(report.rejected)})**")
        st.dataframe(pd.DataFrame(report.rejected, columns=["file in the zip", "reason"]), hide_index=True,
                     column_config={"file in the zip": st.column_config.TextColumn(width="medium"),
                                    "reason": st.column_config.TextColumn(width="large")})
    if report.ok:
        st.page_link(state.LAUNCH, label="Launch a run on it", icon=":material/rocket_launch:")

panels.benchmark_import(services.data_root())

with listing:
    entries = services.list_datasets(services.data_root(), modality=None)
    uploads = ge.list_uploaded_datasets(services.data_root())  # newest first
    st.dataframe(fmt.datasets_frame(entries, uploads), hide_index=True, column_config=panels.DATASET_COLUMNS)
    if uploads:
        with st.expander(f"Delete an upload ({len(uploads)} stored)"):
            gen = st.session_state.get(state.DATASETS_GEN_KEY, 0)
            names = {u["name"]: u for u in uploads}
            pick = st.selectbox("Upload to delete", list(names), index=None, key=f"datasets.pick.{gen}",
                                placeholder="choose an upload", format_func=lambda n: f"{n} ({names[n]['images']:,} "
                                                                                      "images)")
            sure = st.checkbox(f"Confirm deleting {pick or 'it'} and its images", disabled=pick is None,
                               key=f"datasets.confirm.{gen}.{pick}")
            if st.button("Delete upload", disabled=not (pick and sure), icon=":material/delete:"):
                state.delete_upload(pick, names[pick]["images"])
                services.dataset_preview.clear()  # the previews and split sizes of a folder that is gone
                services.split_sizes.clear()
                st.rerun()
            st.caption("Runs trained on an upload keep their results; they cannot be rerun once it is gone.")
