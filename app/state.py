"""Process-wide app state: the run store (read without torch; the one RunManager on first write), the launch draft,
page paths, session keys."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import fmt
import pandas as pd
import services
import streamlit as st

import gist_engine as ge

# Pages, as registered in streamlit_app.py (paths relative to it): the targets of st.switch_page / st.page_link.
LAUNCH, LIVE, COMPARE = "views/launch.py", "views/live.py", "views/compare.py"
ATTENTION, RUNS, DATASETS, ABOUT = "views/attention.py", "views/runs.py", "views/datasets.py", "views/about.py"

# Session-state keys.
MANAGER_KEY = "gist_manager"  # tests put a RunManager (or a fake with the same API) here before the first run
DRAFT_KEY = "launch_draft"  # the config being edited on the launch page (a nested dict)
LAUNCH_GEN_KEY = "launch_generation"  # bumped when a preset replaces the draft (fresh widget keys)
PRESET_KEY = "launch_preset"  # the preset (or recipe) the draft started from: its name names an unchanged copy
METRICS_KEY = "live_metrics"  # run id -> metrics frame fetched so far (the live page fetches only new steps)
FIGURES_KEY = "live_figures"  # run id -> (metrics rows, evaluations, loss figure, accuracy figure) last drawn
FRAGMENT_MS_KEY = "live_fragment_ms"  # durations of the live fragment's reruns, ms
RUNS_GEN_KEY = "runs.generation"  # bumped by a delete: the runs table and its confirmation start afresh
RUNS_FLASH_KEY = "runs.flash"  # "Deleted N runs: ..." kept for the rerun after a delete
SEEN_KEY = "runs.seen"  # ids of the runs this session has shown: one that is gone now was deleted, not mistyped
GONE_KEY = "runs.gone"  # what a polling fragment found deleted, said on the page's next full run
GONE_SAID_KEY = "runs.gone_said"  # what this full run said was deleted (a second find of it reruns no more)
DATASETS_GEN_KEY = "datasets.generation"  # bumped by deleting an upload: its picker and confirmation start afresh
DATASETS_FLASH_KEY = "datasets.flash"  # "Deleted the upload ..." kept for the rerun after it


@st.cache_resource(show_spinner=services.ENGINE_LOADING)
def _manager(root: str) -> Any:
    """One RunManager per data directory for the whole server process (shared by every browser session)."""
    return services.open_run_manager(root)


class LazyManager(ge.RunReader):
    """The run store as the pages use it: every read (runs, metrics, groups, verdicts, exports, the gallery's and
    the studies' tables) is a `ge.RunReader`'s, which imports no torch, timm or onnx; the first write (submit, stop,
    delete, resume, ...) loads the process's RunManager (`manager`, behind `services.ENGINE_LOADING`) and goes
    there. A RunReader to the engine (`isinstance`), so the gallery and the studies read through it.

    Raises:
        StoreError: on opening, a damaged, unreadable or newer store (its message names the file and what to do).
    """

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self._loaded: Any = None

    def manager(self) -> Any:
        """The process's RunManager on this data directory (imports torch and starts the workers the first time)."""
        if self._loaded is None:
            self._loaded = _manager(str(self.root))
        return self._loaded

    @property
    def loaded(self) -> bool:
        """Whether the RunManager (and torch) is loaded already."""
        return self._loaded is not None

    @property
    def store_problem(self) -> str | None:
        """Why the store refuses writes now: the RunManager's word once loaded (a reader writes nothing)."""
        return self._loaded.store_problem if self._loaded is not None else None

    def __getattr__(self, name: str) -> Any:  # only names a RunReader lacks: the write side
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.manager(), name)


@st.cache_resource(show_spinner=False)
def _store(root: str) -> LazyManager:
    """One LazyManager per data directory for the whole server process (shared by every browser session)."""
    return LazyManager(root)


def _stop_on_store_error(exc: Exception) -> None:
    st.error(str(exc), icon=":material/database:")  # damaged, read-only, newer: the message says what to do
    st.stop()


def store() -> Any:
    """The run store for a page: an injected manager (tests: `MANAGER_KEY`), else the process-wide `LazyManager`
    of `services.data_root()` (reads without torch; the first write loads the engine). A store that cannot be
    opened is said in red and the page stops there."""
    injected = st.session_state.get(MANAGER_KEY)
    if injected is not None:
        return injected
    try:
        return _store(str(services.data_root()))
    except ge.StoreError as exc:
        _stop_on_store_error(exc)


def manager() -> Any:
    """The RunManager: an injected one (tests) or the process-wide one for `services.data_root()`, loaded now
    (torch, the workers) behind `services.ENGINE_LOADING` the first time: for the pages that train or build models."""
    mgr = store()
    if not isinstance(mgr, LazyManager):
        return mgr
    try:
        return mgr.manager()
    except ge.StoreError as exc:
        _stop_on_store_error(exc)


def has_runs() -> bool:
    """Whether the store holds any run (True when it cannot be read: the page then says why, by name)."""
    injected = st.session_state.get(MANAGER_KEY)
    try:
        return bool((injected if injected is not None else _store(str(services.data_root()))).list(limit=1))
    except ge.StoreError:
        return True


def draft() -> dict[str, Any]:
    """The launch page's config being edited (starts as the offline CPU demo); persists across pages."""
    if DRAFT_KEY not in st.session_state:
        _start_from(services.demo_config())
    return st.session_state[DRAFT_KEY]


def _start_from(config: dict[str, Any]) -> None:
    """The draft becomes a copy of a preset, without its name (the name belongs to the preset: `run_name`)."""
    st.session_state[PRESET_KEY] = copy.deepcopy(config)
    st.session_state[DRAFT_KEY] = {**copy.deepcopy(config), "name": None}


def _same_run(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two configs train the same thing (their names aside), compared with every default filled in."""
    try:
        a, b = (ge.to_dict(ge.load_run_config({**c, "name": None})) for c in (a, b))
    except ge.ConfigError:
        return False
    return a == b


def run_name(cfg: dict[str, Any]) -> str:
    """The name a launch gives: the one typed in the form, else the preset's name while the form still equals
    the preset, else `fmt.auto_name` (what it trains)."""
    if cfg.get("name"):
        return str(cfg["name"])
    preset = st.session_state.get(PRESET_KEY) or {}
    if preset.get("name") and _same_run(cfg, preset):
        return str(preset["name"])
    return fmt.auto_name(cfg)


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
    _start_from(config)
    for key in [k for k in st.session_state if str(k).startswith("launch.")]:
        del st.session_state[key]
    st.session_state[LAUNCH_GEN_KEY] = st.session_state.get(LAUNCH_GEN_KEY, 0) + 1


def open_run(run_id: str) -> None:
    """Go to the live page of a run (its id in the URL as ?run=)."""
    st.switch_page(LIVE, query_params={"run": run_id})


def _digest(*parts: Any) -> str:
    return hashlib.sha1(repr(parts).encode()).hexdigest()[:8]


def runs_table_key(status: list[str], method: list[str], gist: str, text: str) -> str:
    """The runs table's widget key: new after a delete and when the filters change, so that no row stays selected
    by its position once the rows under it have changed ("runs.table.0" for the first, unfiltered table)."""
    gen = st.session_state.get(RUNS_GEN_KEY, 0)
    unfiltered = not (status or method or text) and gist == "any"
    return f"runs.table.{gen}" + ("" if unfiltered else f".{_digest(status, method, gist, text)}")


def runs_confirm_key(picked: Sequence[str]) -> str:
    """The delete confirmation's key: tied to the selected runs, so a new selection starts unconfirmed."""
    return f"runs.confirm.{st.session_state.get(RUNS_GEN_KEY, 0)}.{_digest(*sorted(picked))}"


def delete_runs(mgr: Any, run_ids: Sequence[str], names: dict[str, Any]) -> list[str]:
    """Delete runs; returns the ids deleted. Afterwards the runs table and its confirmation start afresh (nothing
    selected) and the next render of the runs page says "Deleted N runs: <names>" and what could not be deleted."""
    deleted, errors = [], []
    for run_id in run_ids:
        try:
            mgr.delete(run_id)
            deleted.append(run_id)
        except ge.RunError as exc:  # RunNotFound included
            errors.append(f"Run {run_id} was not deleted: {exc}")
    st.session_state[RUNS_GEN_KEY] = st.session_state.get(RUNS_GEN_KEY, 0) + 1
    label = ", ".join(f"{names.get(i) or i} ({i})" for i in deleted)
    done = [f"Deleted {len(deleted)} run{'s' if len(deleted) > 1 else ''}: {label}"] if deleted else []
    st.session_state[RUNS_FLASH_KEY] = {"success": done, "error": errors}
    return deleted


def get_run(mgr: Any, run_id: str) -> Any | None:
    """The run's snapshot for a page that shows or polls it (remembered as seen), or None when the store has no such
    run: deleted in another tab or by the CLI, or never there (`missing_run` says which)."""
    try:
        snap = mgr.get(run_id)
    except ge.RunNotFound:  # InvalidId included: a malformed id builds no path
        return None
    st.session_state.setdefault(SEEN_KEY, set()).add(run_id)
    return snap


def missing_run(run_id: str) -> str:
    """What to say of a run id the store does not have: deleted (this session showed it before) or unknown."""
    if run_id in st.session_state.get(SEEN_KEY, set()):
        return f"This run was deleted ({run_id}: in another tab or by the CLI)."
    return f"No run with id {run_id!r}."


def shown_run(mgr: Any, run_id: str) -> Any:
    """The snapshot of the run a page shows (`get_run`); when it is gone, a warning says so (`missing_run`) and the
    page stops there (nothing left to draw or poll)."""
    snap = get_run(mgr, run_id)
    if snap is None:
        st.warning(missing_run(run_id))
        st.stop()
    return snap


def missing_notice(mgr: Any, wanted: str | None, listed: Sequence[str], instead: str) -> None:
    """Warn when the run a link asked for (`wanted`, e.g. `?run=`) is neither `listed` nor in the store: deleted, or
    unknown (`missing_run`), and what the page shows `instead`."""
    if wanted and wanted not in listed and get_run(mgr, wanted) is None:
        st.warning(f"{missing_run(wanted)} {instead}")


def gone(what: str) -> None:
    """A fragment polled something that was deleted meanwhile: rerun the whole page, which says `what` was deleted
    (`gone_notice`) and draws what is left, so the fragment stops polling it. Never returns."""
    said = f"{what} was deleted (in another tab or by the CLI)."
    if st.session_state.get(GONE_SAID_KEY) == said:  # the redrawn page still offered it: say so, rerun no more
        st.warning(said, icon=":material/delete:")
        st.stop()
    st.session_state[GONE_KEY] = said
    st.rerun()


def gone_notice() -> None:
    """Say what a fragment found deleted (`gone`), once."""
    said = st.session_state[GONE_SAID_KEY] = st.session_state.pop(GONE_KEY, None)
    if said:
        st.warning(said, icon=":material/delete:")


def delete_upload(name: str, images: int) -> None:
    """Delete an uploaded dataset; the next render of the datasets page says what was deleted, with its picker and
    confirmation cleared."""
    try:
        ge.delete_uploaded_dataset(name, services.data_root())
        said = {"success": [f"Deleted the upload {name} ({images:,} images)."]}
    except ge.DatasetError as exc:
        said = {"error": [f"The upload {name} was not deleted: {exc}"]}
    st.session_state[DATASETS_GEN_KEY] = st.session_state.get(DATASETS_GEN_KEY, 0) + 1
    st.session_state[DATASETS_FLASH_KEY] = said


def refused(action: Callable[[], Any], prefix: str) -> Any:
    """`action()`, or None after showing `prefix: <why>` in red when the engine refuses it by name (a RunError or
    ConfigError: a bundle checked whole, a name with a control character, ...); nothing was written then."""
    try:
        return action()
    except (ge.RunError, ge.ConfigError) as exc:
        st.error(f"{prefix}: {exc}")
        return None


def launch(cfg: dict[str, Any], name: str, seeds: int | None = None) -> None:
    """Queue one run and open it on Live, or (with `seeds`) a paired comparison and open it on Compare; a refusal
    (e.g. a name with a control character) is said in red and nothing is queued."""
    mgr = manager()
    if seeds is None:
        if run_id := refused(lambda: mgr.submit(cfg, name=name), "Not launched"):
            open_run(run_id)
    elif group_id := refused(lambda: mgr.submit_group(cfg, seeds, name=name), "Not launched"):
        st.switch_page(COMPARE, query_params={"group": group_id})
