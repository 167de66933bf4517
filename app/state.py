"""Process-wide app state: the one RunManager (st.cache_resource), the launch draft, page paths, session keys."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pandas as pd
import services
import streamlit as st

# Pages, as registered in streamlit_app.py (paths relative to it): the targets of st.switch_page / st.page_link.
LAUNCH, LIVE, COMPARE = "views/launch.py", "views/live.py", "views/compare.py"
ATTENTION, RUNS, DATASETS, ABOUT = "views/attention.py", "views/runs.py", "views/datasets.py", "views/about.py"

# Session-state keys.
MANAGER_KEY = "gist_manager"  # tests put a RunManager (or a fake with the same API) here before the first run
DRAFT_KEY = "launch_draft"  # the config being edited on the launch page (a nested dict)
LAUNCH_GEN_KEY = "launch_generation"  # bumped when a preset replaces the draft (fresh widget keys)
METRICS_KEY = "live_metrics"  # run id -> metrics frame fetched so far (the live page fetches only new steps)
FIGURES_KEY = "live_figures"  # run id -> (metrics rows, evaluations, loss figure, accuracy figure) last drawn
FRAGMENT_MS_KEY = "live_fragment_ms"  # durations of the live fragment's reruns, ms

ACTIVE = ("queued", "running")  # statuses that still change
STATUS_COLOURS = {"queued": "gray", "running": "blue", "completed": "green", "stopped": "orange",
                  "diverged": "red", "failed": "red", "interrupted": "violet"}


@st.cache_resource(show_spinner="Starting the run manager ...")
def _manager(root: str) -> Any:
    """One RunManager per data directory for the whole server process (shared by every browser session)."""
    return services.open_run_manager(root)


def data_root() -> Path:
    """The data directory: $GIST_DATA_DIR, else the user data directory (runs, uploads, the SQLite store)."""
    return services.data_root()


def manager() -> Any:
    """The RunManager: an injected one (tests) or the process-wide one for `data_root()`."""
    injected = st.session_state.get(MANAGER_KEY)
    if injected is not None:
        return injected
    try:
        return _manager(str(data_root()))
    except services.ge.StoreError as exc:  # damaged, read-only, newer: the message names the file and what to do
        st.error(str(exc), icon=":material/database:")
        st.stop()


def draft() -> dict[str, Any]:
    """The launch page's config being edited (starts as the offline CPU demo); persists across pages."""
    if DRAFT_KEY not in st.session_state:
        st.session_state[DRAFT_KEY] = services.demo_config()
    return st.session_state[DRAFT_KEY]


def run_metrics(mgr: Any, run_id: str) -> pd.DataFrame:
    """A run's step metrics so far, kept in the session: each call fetches only the steps added since the last."""
    cache = st.session_state.setdefault(METRICS_KEY, {})
    old = cache.get(run_id)
    since = int(old["step"].iloc[-1]) if old is not None and len(old) else 0
    new = mgr.metrics(run_id, since_step=since)
    cache[run_id] = new if old is None or not len(old) else pd.concat([old, new], ignore_index=True)
    return cache[run_id]


def launch_key(name: str) -> str:
    """A launch-page widget key; a preset starts a new generation of keys so every widget shows the preset."""
    return f"launch.{st.session_state.get(LAUNCH_GEN_KEY, 0)}.{name}"


def apply_preset(config: dict[str, Any]) -> None:
    """Replace the launch draft with a preset and reset the launch page's widgets to show it."""
    st.session_state[DRAFT_KEY] = copy.deepcopy(config)
    for key in [k for k in st.session_state if str(k).startswith("launch.")]:
        del st.session_state[key]
    st.session_state[LAUNCH_GEN_KEY] = st.session_state.get(LAUNCH_GEN_KEY, 0) + 1


def run_label(snapshot: Any) -> str:
    """A one-line label of a run for selectors: name, status, id."""
    gist = "GIST" if snapshot.gist_enabled else "plain"
    return f"{snapshot.name or snapshot.method} · {gist} · {snapshot.status} · {snapshot.id}"


def open_run(run_id: str) -> None:
    """Go to the live page of a run (its id in the URL as ?run=)."""
    st.switch_page(LIVE, query_params={"run": run_id})


def status_badge(status: str) -> None:
    """A coloured badge for a run status."""
    st.badge(status, color=STATUS_COLOURS.get(status, "gray"))
