"""Page sections too long for a page of their own: the Datasets page's benchmark import."""

from pathlib import Path

import pandas as pd
import streamlit as st
import widgets

import gist_engine as ge

IMPORTS = "imports"  # the folder under the data directory whose zips and folders the page can import


def benchmark_import(root: Path) -> None:
    """The 'Import a benchmark' form: a zip or folder placed in `<root>/imports/` (chosen by name: a browser never
    names a server path), or VTAB-1k from the Hugging Face hub; installed under `root` by `ge.import_benchmark`."""
    folder = root / IMPORTS
    sources = sorted(p.name for p in folder.iterdir() if p.suffix == ".zip" or p.is_dir()) if folder.is_dir() else []
    st.subheader("Import a benchmark")
    st.caption("VTAB-1k (the 19 task folders with their train800/val200/train800val200/test lists), FGVC (VPT's JSON "
               "splits) or the few-shot lists. A suite is far too large to upload through the browser: put its "
               f"**zip or folder in `{folder}`** on the server (or run `gist-engine data import`). Every list, label "
               "and image is checked before anything is installed; then `vtab1k:<task>` (or `fgvc:<name>`, "
               "`fewshot:<name>`) reads it. Layouts: docs/data.md.")
    with st.form("benchmark"):
        kind = st.selectbox("Benchmark", ["vtab1k", "fgvc", "fewshot"], help="The layout of the zip or folder")
        pick = st.selectbox(f"Zip or folder in {folder}", sources, index=None,
                            placeholder="choose one" if sources else "nothing there yet")
        hub = st.checkbox("Fetch VTAB-1k from the Hugging Face hub instead (XiN0919/VTAB-1k; needs a network)")
        replace = st.checkbox("Replace datasets installed before")
        go = st.form_submit_button("Check and install", icon=":material/download:")
    if go and not (pick or hub):
        st.warning(f"Choose a zip or folder in {folder} (or fetch from the hub).")
    elif go:
        try:
            with st.spinner("Checking every list and image ..."):
                result = ge.import_benchmark(kind, None if hub else folder / pick, root=root, overwrite=replace,
                                             from_hub=hub)
        except ge.DatasetError as exc:
            st.error(str(exc))
        else:
            widgets.split_sizes.clear()
            st.success(f"Installed {len(result.rows)} {kind} dataset(s) in {result.seconds:.0f} s: choose one on "
                       "the Launch page by its data.dataset value.")
            st.dataframe(pd.DataFrame([{"dataset": r["name"], "classes": r["classes"], "images": r["images"],
                                        **r["splits"], "data.dataset": r["dataset"]} for r in result.rows]),
                         hide_index=True)
