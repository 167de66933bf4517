"""Acting on runs from any page: the run Live opens, a queued run's place, stopping a group or a study cell in one
click, a finished run's adapter download, and the launch buttons' totals."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import fmt
import services
import state
import streamlit as st

import gist_engine as ge
from gist_engine.status import ACTIVE

LAST_WATCHED_KEY = "live.last_watched"  # the run this browser tab last showed on Live


def default_run(runs: Mapping[str, Any], wanted: str | None) -> str:
    """The run Live opens: the one asked for (?run=), else the newest one training, else the one this browser tab
    last watched, else the newest that has ended; a queued run only when there is nothing else (`runs`: id ->
    snapshot, newest first, not empty)."""
    if wanted in runs:
        return wanted
    ids = list(runs)
    running = [i for i in ids if runs[i].status == ge.RunStatus.RUNNING]
    last = st.session_state.get(LAST_WATCHED_KEY)
    ended = [i for i in ids if runs[i].status not in ACTIVE]
    return (running or ([last] if last in runs else []) or ended or ids)[0]


def watched(run_id: str) -> None:
    """Remember the run Live shows, for the next visit of this browser tab."""
    st.session_state[LAST_WATCHED_KEY] = run_id


def live_notes(snapshot: Any, runs: list[Any]) -> None:
    """Under the Live page's header: the run is remembered as this tab's last watched; a queued run shows its place
    and ETA, an ended one its adapter download (or why it has none)."""
    watched(snapshot.id)
    if snapshot.status == ge.RunStatus.QUEUED:
        queue_note(snapshot, runs)
    else:
        adapter_download(snapshot, "live.adapter")


def duration(seconds: float) -> str:
    """'40 s', '3 min', '1 h 20 min': a time to read at a glance (estimates: whole minutes past one minute)."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def estimated_seconds(config: Any) -> float | None:
    """A run's whole time estimated on this machine from its config (`services.estimate_run`), None if it cannot
    be (e.g. a backbone not on this machine, a config that does not validate)."""
    try:
        return float(services.estimate_run(config)["seconds"])
    except Exception:  # an estimate is an aid: a config it cannot price shows no time rather than an error
        return None


def queue_note(snapshot: Any, runs: list[Any]) -> None:
    """For a queued run: its place in its device's queue and about when it starts and ends."""
    place = ge.queue_place(snapshot, runs, lambda run: estimated_seconds(run.config))
    if place is None:
        return
    before = []
    if place.running:
        before.append(fmt.plural(len(place.running), "run") + " training now")
    if place.ahead:
        before.append(fmt.plural(len(place.ahead), "queued run") + " ahead")
    text = f"Queued: **number {place.position} in line** on {snapshot.device or 'cpu'}"
    text += f", after {' and '.join(before)}." if before else ", next to start."
    if place.wait_seconds is not None and place.eta_seconds is not None:
        text += (f" It should start in about {duration(place.wait_seconds)} and end in about "
                 f"{duration(place.eta_seconds)} (estimated on this machine).")
    st.info(text, icon=":material/schedule:")


def stop_group_button(mgr: Any, group_id: str | None, runs: list[Any], key: str, where: Any = st) -> None:
    """'Stop the group (N active)': stops every queued and running run of the group in one click."""
    active = [r for r in runs if r.group_id == group_id and r.status in ACTIVE] if group_id else []
    if where.button(f"Stop the group ({len(active)} active)", key=key, icon=":material/stop_circle:",
                    disabled=not active, help="Stop its queued runs and the one training (each can resume)."):
        mgr.stop_group(group_id)
        st.rerun()


def selection_actions(mgr: Any, picked: list[str], runs: list[Any]) -> None:
    """The Runs page's actions on its selected rows: stop their paired group (when they belong to one) in one
    click; download the adapter of one selected run that has ended."""
    by_id = {r.id: r for r in runs}
    chosen = [by_id[i] for i in picked if i in by_id]
    groups = {r.group_id for r in chosen}
    left, right = st.columns(2)
    stop_group_button(mgr, groups.pop() if len(groups) == 1 else None, runs, "runs.stop_group", left)
    if len(chosen) == 1:
        adapter_download(chosen[0], "runs.adapter", right)


def stop_cell_button(mgr: Any, study_id: str, cell: int, statuses: list[str], where: Any = st) -> None:
    """'Stop cell': stops the queued and running runs of one study cell in one click (resuming the study continues
    them)."""
    active = sum(s in ACTIVE for s in statuses)
    if where.button("Stop cell", key="studies.stop_cell", icon=":material/stop_circle:", disabled=not active,
                    help="Stop this cell's queued and running runs; Resume study continues them."):
        state.refused(lambda: ge.stop_study_cell(study_id, cell, mgr), "Not stopped")
        st.rerun()


def adapter_download(snapshot: Any, key: str, where: Any = st) -> None:
    """A finished run's adapter (its trained tensors as safetensors + config.yaml + manifest, one zip), packed when
    clicked; for an ended run without one, the reason."""
    if snapshot.status in ACTIVE:
        return
    if not snapshot.has_checkpoint:
        try:
            ge.adapter_archive(snapshot)
        except ge.RunError as exc:
            where.caption(str(exc))
        return
    where.download_button("Download the adapter (.zip)", data=lambda: ge.adapter_archive(snapshot), key=key,
                          file_name=ge.adapter_file_name(snapshot), mime="application/zip", on_click="ignore",
                          icon=":material/download:",
                          help="The trained tensors (tuner, head, Gist token) as safetensors, with the run's "
                               "config.yaml: gist_engine.load_model rebuilds the model from them.")


def pair_label(cfg: dict[str, Any], seeds: int, ready: bool) -> str:
    """The paired launch's label with its total: 'Launch plain vs GIST × 2 seeds (4 runs, about 10 min on this
    machine)': the runs one after another on this machine's worker (`services.estimate_run` per run); without the
    total while the config cannot be priced (`ready` False, or no estimate)."""
    label = f"Launch plain vs GIST × {seeds} seeds" if seeds else "Launch plain vs GIST"
    each = estimated_seconds(cfg) if ready and seeds else None  # none: the button keeps its plain label
    return label if each is None else f"{label} ({2 * seeds} runs, about {duration(2 * seeds * each)} on this machine)"


def pair_button(where: Any, cfg: dict[str, Any], seeds: int, ready: bool) -> bool:
    """The paired launch's button (`pair_label`; its label wraps rather than being cut in a narrow column); whether
    it was clicked. Disabled until the config is `ready` and `seeds` is in range (0: not)."""
    return where.button(pair_label(cfg, seeds, ready), icon=":material/compare_arrows:", wrap=True,
                        disabled=not (ready and seeds))
