"""GIST Studio: the site map (st.navigation) and page config; run with `streamlit run app/streamlit_app.py`.

The pages live in views/, not pages/: a pages/ folder beside the entry point switches on Streamlit's legacy
auto-discovery, which runs a page without this site map when a fresh server's first visit is its URL.
"""

import sys
from pathlib import Path

import streamlit as st

ROOT = str(Path(__file__).resolve().parents[1])
if ROOT not in sys.path:  # a checkout without `pip install -e .`: the pages import gist_engine from here
    sys.path.insert(0, ROOT)

st.set_page_config(page_title="GIST Studio", page_icon=":material/token:", layout="wide")

PAGES = {
    "Train": [
        st.Page("views/launch.py", title="Launch", icon=":material/rocket_launch:", default=True),
        st.Page("views/live.py", title="Live run", icon=":material/monitoring:", url_path="live"),
        st.Page("views/compare.py", title="Compare", icon=":material/compare_arrows:", url_path="compare"),
        st.Page("views/studies.py", title="Studies", icon=":material/grid_view:", url_path="studies"),
    ],
    "Inspect": [
        st.Page("views/attention.py", title="Attention", icon=":material/visibility:", url_path="attention"),
        st.Page("views/runs.py", title="Runs", icon=":material/history:", url_path="runs"),
        st.Page("views/datasets.py", title="Datasets", icon=":material/photo_library:", url_path="datasets"),
    ],
    "Learn": [st.Page("views/about.py", title="What is GIST?", icon=":material/school:", url_path="about")],
}

st.navigation(PAGES).run()
