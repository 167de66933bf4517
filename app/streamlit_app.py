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

import services  # noqa: E402 - after the path above; imports gist_engine, whose API loads lazily (no torch yet)
import state  # noqa: E402 - the same

# The favicon is a file served by this server: a ":material/..." page icon makes the browser fetch it from
# fonts.gstatic.com, which fails offline (the pages' material icons come from the font Streamlit bundles).
ICON = Path(__file__).resolve().with_name("icon.png")
st.set_page_config(page_title="GIST Studio", page_icon=str(ICON), layout="wide")

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
PAGES["Learn"].append(st.Page("views/gallery.py", title="Gallery", icon=":material/collections:", url_path="gallery"))

# The pages that build models: torch & co start loading as one opens (in a thread, while its title and form draw).
# The store-reading pages load nothing: an import running beside them would hold the GIL and slow their charts;
# nor does Launch for a new user, who first sees a recorded example's chart there (the page then loads the engine).
ENGINE_PAGES = ("Launch", "Attention", "What is GIST?", "Datasets")
page = st.navigation(PAGES)
if page.title in ENGINE_PAGES and (page.title != "Launch" or state.has_runs()):
    services.load_engine_in_background()
page.run()
