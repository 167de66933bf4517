"""The Studies page's parts: the new-study form, the studies table, the grid of cell statuses, the matrix and curves."""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import run_actions
import services
import state
import streamlit as st
import yaml
from plotly.subplots import make_subplots

import gist_engine as ge

STUDIES = "views/studies.py"  # this page, as registered in streamlit_app.py
BUILTIN_DIR = services.ASSETS / "studies"  # the built-in study specs
SOURCES = ("Launch config + axes", "Built-in spec", "Spec file")
NONE = "(none)"
# study_results' metrics that both arms have (the plain arm has no Gist head), with their labels.
METRICS = {"acc_cls": "test accuracy, CLS head", "best_acc_cls": "best test accuracy, CLS head"}
FIRST_AXES = ("gist.temperature", "gist.length", "gist.loss", "gist.loss_weight", "method", "data.dataset",
              "train.lr", "recipe")  # offered first: the method's open questions
NOT_AXES = ("gist.enabled", "train.seed", "name")  # set per run by the study (arm, seed) or meaningless
EXPORTS = {"csv": ("CSV", "csv", "text/csv"), "md": ("Markdown", "md", "text/markdown"),
           "latex": ("LaTeX", "tex", "application/x-tex")}
CELL_COLOURS = {"completed": "#c7e9c0", "diverged": "#fcbba1", "failed": "#fcbba1", "running": "#c6dbef",
                "queued": "#eeeeee", "stopped": "#fdd0a2", "interrupted": "#dadaeb"}
ARM_COLOURS = {"plain": "#1f77b4", "gist": "#d62f6a", "delta": "#222222"}
DASHES = ("solid", "dash", "dot", "dashdot", "longdash")  # one per value of the other axes in a curve


@st.cache_resource
def jobs() -> dict[str, Any]:
    """Study id -> the `ge.StudyJob` driving it in this server process (shared by every browser session)."""
    return {}


def root() -> Any:
    """Where studies live: the app's RunManager (a study's local runs then train on its workers beside the other
    runs), or the data directory when the manager is a stand-in."""
    mgr = state.manager()
    return mgr if isinstance(mgr, ge.RunManager) else state.data_root()


# ------------------------------------------------------------------------------------------------ new study
def _get(cfg: dict[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def axis_fields(cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Dotted config key -> its field (help, choices) for every key a study can sweep on top of `cfg`."""
    cat = services.catalogue()
    out: dict[str, dict[str, Any]] = {"method": {"help": "The PEFT method.", "choices": list(cat["tuners"])},
                                      "recipe": {"help": services.recipe_help(), "choices": None}}
    for f in cat["sections"]["model"]:
        out.setdefault(f["name"], f)
    for section in ("gist", "data", "train"):
        out.update({f"{section}.{f['name']}": f for f in cat["sections"][section]})
    tuner = cat["tuners"].get(cfg.get("method"), {})
    out.update({f"method_args.{f['name']}": f for f in tuner.get("options", [])})
    first = {k: out[k] for k in FIRST_AXES if k in out}
    return {**first, **{k: v for k, v in out.items() if k not in first and k not in NOT_AXES}}


def parse_values(text: str, axis: str) -> list[Any]:
    """`1, 2, 3` or `[bkld, kl]` -> a list of YAML values (`1e-3` read as a number).

    Raises:
        ValueError: naming the axis when the text is not a list.
    """
    flow = text.strip() if text.strip().startswith("[") else f"[{text}]"
    try:
        values = yaml.safe_load(flow)
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem", None) or "cannot be read"  # PyYAML's own message spans several lines
        raise ValueError(f"values of {axis}: {text!r} is not a comma-separated list of values ({where}); write "
                         "e.g. 1, 2, 3 or [bkld, kl]") from None
    if not isinstance(values, list):
        raise ValueError(f"values of {axis}: {text!r} is not a comma-separated list")
    return [_number(v) for v in values]


def _number(value: Any) -> Any:
    if isinstance(value, str):  # PyYAML reads 1e-3 as a string (YAML 1.1 wants 1.0e-3)
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _example(field: dict[str, Any], current: Any) -> str:
    if field.get("choices"):
        return "e.g. " + ", ".join(map(str, list(field["choices"])[:4]))
    return f"comma-separated values (now {current})" if current is not None else "comma-separated values"


def axes_spec(cfg: dict[str, Any]) -> dict[str, Any] | None:
    """The form of a study over the launch draft: one or two axes and their values, seeds, name -> a spec mapping;
    None while no axis has values yet (nothing typed: nothing to refuse).

    Raises:
        ValueError: a value list that does not parse, or the same axis twice (named).
    """
    fields = axis_fields(cfg)
    grid: dict[str, list[Any]] = {}
    for i in (1, 2):
        left, right = st.columns([1, 2])
        axis = left.selectbox(f"Axis {i}", [NONE, *fields], index=1 if i == 1 else 0, key=f"studies.axis{i}",
                              accept_new_options=True, help="Any dotted run-config key (type one not listed).")
        if axis == NONE or not axis:
            continue
        field = fields.get(axis, {"help": None})
        text = right.text_input(f"Values of axis {i}", key=f"studies.values{i}.{axis}",
                                placeholder=_example(field, _get(cfg, axis)), help=field.get("help"))
        if axis in grid:
            raise ValueError(f"axis {i}: {axis} is axis 1 already; pick another key")
        if text.strip():
            grid[axis] = parse_values(text, axis)
    seeds, name = st.columns([1, 2])
    n = seeds.number_input("Seeds", min_value=1, max_value=20, value=1, key="studies.seeds",
                           help="Seeds per cell; plain and GIST share each seed (same init and data order). One "
                           "seed gives no confidence interval; 3 or more give a CI and a p-value.")
    title = name.text_input("Study name", value=f"{cfg.get('name') or 'study'}-sweep", key="studies.name")
    if not grid:
        st.caption("Type the values of at least one axis (e.g. 1, 2, 3) to plan a study.")
        return None
    return {"name": title, "base": copy.deepcopy(cfg), "grid": grid, "seeds": int(n)}


def builtin_spec() -> str | None:
    """A built-in spec file from assets/studies (its path), or None when there is none."""
    files = sorted(BUILTIN_DIR.glob("*.yaml")) if BUILTIN_DIR.is_dir() else []
    if not files:
        st.info(f"No built-in specs in {BUILTIN_DIR}.")
        return None
    path = st.selectbox("Built-in spec", files, format_func=lambda p: p.stem, key="studies.builtin")
    try:
        about = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("description")
    except (OSError, yaml.YAMLError, AttributeError):
        about = None  # the spec's validation below names the problem
    if about:
        st.caption(about)
    return str(path)


def uploaded_spec() -> ge.StudySpec | None:
    """A spec from an uploaded YAML file, read by `ge.load_uploaded_spec`: it reads nothing on the server (`base:`
    names a built-in config, `base: demo_cpu`, or is inline) and its size is counted before anything is built."""
    upload = st.file_uploader("Study spec (YAML)", type=["yaml", "yml"], key="studies.upload",
                              help="`base:` names a built-in config (e.g. base: demo_cpu) or gives the run config "
                                   "inline; an uploaded spec reads no files.")
    if upload is None:
        return None
    return ge.load_uploaded_spec(upload.getvalue(), upload.name)


def backend_choice() -> tuple[str, dict[str, Any]]:
    """The backend (`local`, or `ray` when Ray is installed) and its options (address, resources per trial)."""
    names = [n for n in ge.STUDY_BACKENDS if n != "ray" or ge.ray_available()]
    backend = st.radio("Backend", names, horizontal=True, key="studies.backend",
                       help="local: this app's run workers. ray: one Ray task per run, on this machine or a cluster.")
    if "ray" not in names:
        st.caption("The `ray` backend appears here when Ray is installed (`pip install .[ray]`).")
    if backend != "ray":
        return backend, {}
    address, cpus, gpus = st.columns([2, 1, 1])
    addr = address.text_input("Ray address", key="studies.address", placeholder="empty: a local Ray; auto; ray://host:10001",
                              help="ray.init(address=...): empty starts Ray here, `auto` joins this machine's cluster.")
    return backend, {"address": addr.strip() or None,
                     "cpus_per_trial": cpus.number_input("CPUs per trial", 0.5, 256.0, 1.0, key="studies.cpus"),
                     "gpus_per_trial": gpus.number_input("GPUs per trial", 0.0, 16.0, 0.0, key="studies.gpus")}


def running_twin(spec: ge.StudySpec, where: Any) -> str | None:
    """The id of a study with this exact spec whose driver runs now (starting it again would collide), or None."""
    text = json.dumps(spec.to_dict())
    return next((s.id for s in ge.list_studies(where) if s.status == "running" and json.dumps(s.spec) == text), None)


def new_study_form(cfg: dict[str, Any], where: Any) -> None:
    """Build a spec (launch draft + axes, built-in or uploaded), validate it by name, pick a backend, start it."""
    source = st.segmented_control("Start from", SOURCES, default=SOURCES[0], key="studies.source") or SOURCES[0]
    try:
        raw = axes_spec(cfg) if source == SOURCES[0] else builtin_spec() if source == SOURCES[1] else uploaded_spec()
        spec = ge.load_study_spec(raw) if raw is not None else None
    except (ValueError, ge.ConfigError) as exc:  # StudyError is a ConfigError: the engine's message, by name
        st.error(f"Fix the study first: {exc}")
        spec = None
    if spec is not None:
        st.caption(f"**{ge.printable(spec.name)}**: {spec.size_text.replace(' x ', ' × ')}")
    backend, options = backend_choice()
    new = st.checkbox("Start over", key="studies.new", help="A new study even when this spec ran before; otherwise "
                      "the stored study continues and its completed runs are kept.")
    if st.button("Start study", type="primary", icon=":material/play_arrow:", key="studies.start",
                 disabled=spec is None):
        twin = None if new else running_twin(spec, where)
        if twin:
            st.warning(f"This spec runs already as study {twin}.")
            return
        start(spec, where, backend, new=new, **options)


def start(spec_or_id: Any, where: Any, backend: str, **options: Any) -> None:
    """Start (or resume) a study on a background thread, keep its job, open it."""
    job = ge.start_study(spec_or_id, where, backend, **options)
    jobs()[job.study_id] = job
    st.query_params["study"] = job.study_id
    st.rerun()


# ------------------------------------------------------------------------------------------------- studies
def studies_frame(infos: list[Any]) -> pd.DataFrame:
    """One row per study: id, name, status, backend, cells, runs and their status counts, created (UTC)."""
    shown = ("completed", "running", "queued", "failed", "interrupted")
    rows = [{"id": s.id, "name": s.name, "status": s.status, "backend": s.backend, "cells": s.cells,
             "runs": s.planned, **{k: s.counts.get(k, 0) for k in shown},
             "other": sum(v for k, v in s.counts.items() if k not in (*shown, "pending")),  # stopped, diverged, ...
             "pending": s.counts.get("pending", 0), "created": pd.to_datetime(s.created, unit="s")} for s in infos]
    return pd.DataFrame(rows)


def summary(info: Any) -> None:
    """A study's status badge, its counts of runs by status and its progress."""
    state.status_badge(info.status)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(info.counts.items()) if v)
    st.caption(f"{info.name} · {info.id} · {info.backend} · {info.cells} cell(s), {info.planned} runs: {counts}")
    st.progress(info.settled / max(1, info.planned), text=f"{info.settled} of {info.planned} runs settled")


def controls(info: Any, job: Any, where: Any) -> bool:
    """The stop/resume buttons of a study and its driver's error; returns whether it is still running."""
    active = info.status == "running" or (job is not None and not job.done)
    if job is not None and job.error is not None:
        st.error(f"The study's driver stopped: {job.error}")
    if info.error and not active:
        st.caption(f"Last driver error: {info.error}")
    if job is not None and not job.done:
        if st.button("Stop study", icon=":material/stop:", key="studies.stop",
                     help="Stop its runs (resumable: Resume continues them from their last training state)."):
            job.stop()
            job.wait(60)
            st.rerun()
    elif info.example:  # imported from the gallery: read-only
        st.caption(f"A read-only example from the gallery ({info.example}): remove it on the Gallery page; "
                   "run its spec as a new study to train it here.")
    elif not active and info.status != "completed" and st.button("Resume study", icon=":material/replay:",
                                                                  key="studies.resume"):
        backend = info.backend if info.backend != "ray" or ge.ray_available() else "local"
        start(info.id, where, backend, **({"address": st.session_state.get("studies.address") or None}
                                          if backend == "ray" else {}))
    return active


def status_grid(runs: pd.DataFrame) -> Any:
    """Cells x (seed, arm): each run's status (with its step while it trains, its accuracy once done), coloured."""
    frame = runs.assign(column=[f"seed {s} · {a}" for s, a in zip(runs["seed"], runs["arm"], strict=True)])
    frame["text"] = [_cell_text(r) for r in frame.itertuples(index=False)]
    labels, columns = list(dict.fromkeys(frame["label"])), list(dict.fromkeys(frame["column"]))
    text = frame.pivot(index="label", columns="column", values="text").reindex(index=labels, columns=columns)
    status = frame.pivot(index="label", columns="column", values="status").reindex(index=labels, columns=columns)
    colours = status.map(lambda s: f"background-color: {CELL_COLOURS[s]}" if s in CELL_COLOURS else "")
    return text.style.apply(lambda _: colours, axis=None)


def _cell_text(r: Any) -> str:
    if r.status == "running" and r.total_steps:
        return f"running {int(r.step or 0)}/{int(r.total_steps)}"
    if r.status in ("completed", "diverged") and r.acc_cls is not None and r.acc_cls == r.acc_cls:
        return f"{r.status} {100 * r.acc_cls:.1f}%"
    return str(r.status) + (f" (try {r.attempts})" if r.attempts and r.attempts > 1 else "")


def cell_links(runs: pd.DataFrame) -> None:
    """Pick a cell; open its runs in Compare (its paired group) or one of them in Live; stop its runs at once."""
    cell, run, compare, live = st.columns([3, 3, 1, 1], vertical_alignment="bottom")
    label = cell.selectbox("Cell", list(dict.fromkeys(runs["label"])), key="studies.cell")
    mine = runs[(runs["label"] == label) & runs["run_id"].notna()]
    ids = list(mine["run_id"])
    names = {r.run_id: f"seed {r.seed} · {r.arm} · {r.status} · {r.run_id}" for r in mine.itertuples()}
    picked = run.selectbox("Run of the cell", ids, format_func=names.get, key="studies.cell_run")
    if compare.button("Compare", icon=":material/compare_arrows:", key="studies.open_compare", disabled=not ids):
        groups = set(mine["group_id"].dropna())  # the cell's paired group when all its runs have one
        gid = next(iter(groups)) if len(groups) == 1 and mine["group_id"].notna().all() else None
        st.switch_page(state.COMPARE, query_params={"group": gid} if gid else {"runs": ids})
    if live.button("Live", icon=":material/monitoring:", key="studies.open_live", disabled=picked is None):
        state.open_run(picked)
    cell_rows = runs[runs["label"] == label]  # pending runs too: the cell's index
    run_actions.stop_cell_button(state.manager(), runs.attrs.get("study"), int(cell_rows["cell"].iloc[0]),
                                 list(cell_rows["status"]))


# ------------------------------------------------------------------------------------------------- results
def _label(key: Any) -> str:
    return " · ".join(map(str, key)) if isinstance(key, tuple) else str(key)


def matrix_figure(values: pd.DataFrame, text: pd.DataFrame, metric: str) -> go.Figure:
    """A heatmap of mean GIST - plain (points) per cell, each annotated `+1.23 [-0.40, +2.86]*`."""
    z = 100 * values.apply(pd.to_numeric, errors="coerce")
    span = max(1.0, float(z.abs().max().max()) if z.notna().any().any() else 1.0)  # symmetric: white is 0
    fig = go.Figure(go.Heatmap(z=z.to_numpy(), x=[_label(c) for c in values.columns],
                               y=[_label(i) for i in values.index], text=text.to_numpy(), texttemplate="%{text}",
                               colorscale="RdBu", zmin=-span, zmax=span, colorbar={"title": "points"},
                               hovertemplate="%{y} / %{x}: %{text}<extra></extra>"))
    fig.update_layout(title=f"GIST - plain, {METRICS[metric]} (points, 95% CI; * p<.05 ** p<.01 *** p<.001)",
                      height=max(260, 60 * len(values) + 120), margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis_title=values.columns.name or "", yaxis_title=" · ".join(map(str, values.index.names)))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return fig


def matrix_view(results: pd.DataFrame, metric: str) -> tuple[str | None, str | None]:
    """Rows and columns picked among the axes; the matrix as a heatmap and a table. Returns (rows, cols)."""
    axes = list(results.attrs.get("axes", []))
    rows = cols = None
    if axes:
        left, right = st.columns(2)
        rows = left.selectbox("Rows", axes, key="studies.rows")
        others = [a for a in axes if a != rows]
        picked = right.selectbox("Columns", [*others, NONE], key="studies.cols")
        cols = None if picked == NONE else picked
    table = ge.study_matrix(results, rows, cols)
    if not results["n"].sum():
        st.info("The matrix fills in as both arms of a seed complete.")
    else:
        values = ge.study_matrix(results, rows, cols, formatted=False).reindex(index=table.index,
                                                                               columns=table.columns)
        st.plotly_chart(matrix_figure(values, table, metric), key="studies.matrix_chart")
    st.dataframe(table, key="studies.matrix")
    if results.attrs.get("paired", True) and (results["n"] == 2).any():
        st.caption(ge.FEW_SEEDS_NOTE)  # the cells marked † rest on 2 seeds
    return rows, cols


def _band(fig: go.Figure, x: pd.Series, low: pd.Series, high: pd.Series, colour: str, col: int) -> None:
    ok = low.notna() & high.notna()
    if ok.any():
        xs = list(x[ok])
        fig.add_trace(go.Scatter(x=xs + xs[::-1], y=list(high[ok]) + list(low[ok])[::-1], fill="toself",
                                 fillcolor=colour, opacity=0.18, line={"width": 0}, hoverinfo="skip",
                                 showlegend=False), row=1, col=col)


def curve_figure(curve: pd.DataFrame, axis: str, metric: str) -> go.Figure:
    """Both arms' accuracy (left) and GIST - plain (right) against a numeric axis, with their 95% CI bands."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=(f"{METRICS[metric]} (%)", "GIST - plain (points)"))
    others = [a for a in curve.attrs.get("axes", []) if a != axis]
    groups = curve.groupby(others, sort=False) if others else [((), curve)]
    for i, (key, part) in enumerate(groups):
        tag = f" ({_label(key)})" if others else ""
        num = part.apply(pd.to_numeric, errors="coerce")
        for arm, col in (("plain", 1), ("gist", 1), ("delta", 2)):
            colour = ARM_COLOURS[arm]
            _band(fig, num[axis], 100 * num[f"{arm}_ci_low"], 100 * num[f"{arm}_ci_high"], colour, col)
            name = {"plain": "plain", "gist": "GIST", "delta": "GIST - plain"}[arm] + tag
            fig.add_trace(go.Scatter(x=num[axis], y=100 * num[f"{arm}_mean"], mode="lines+markers", name=name,
                                     line={"color": colour, "dash": DASHES[i % len(DASHES)]}), row=1, col=col)
    fig.add_hline(y=0, line={"color": "#888888", "dash": "dot"}, row=1, col=2)
    fig.update_xaxes(title_text=axis)
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 40, "b": 10}, legend={"orientation": "h", "y": -0.3})
    return fig


def curve_view(results: pd.DataFrame, metric: str) -> None:
    """For a numeric axis: both arms and their difference against its values (a numeric axis picked)."""
    numeric = [a for a in results.attrs.get("axes", [])
               if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in results[a])]
    if not numeric or not results["n"].sum():
        return
    axis = st.selectbox("Curve along", numeric, key="studies.curve_axis") if len(numeric) > 1 else numeric[0]
    st.plotly_chart(curve_figure(ge.study_curve(results, axis), axis, metric), key="studies.curve")


def export_buttons(study_id: str, where: Any, metric: str, rows: str | None, cols: str | None) -> None:
    """Download the per-cell statistics (CSV) and the matrix (Markdown, LaTeX); each written when clicked."""
    for column, (to, (label, ext, mime)) in zip(st.columns(len(EXPORTS)), EXPORTS.items(), strict=True):
        data = functools.partial(ge.export_study, study_id, to, root=where, metric=metric, rows=rows, cols=cols)
        column.download_button(f"Download {label}", data, file_name=f"study-{study_id}.{ext}", mime=mime,
                               key=f"studies.export.{to}", on_click="ignore", icon=":material/download:")


def delete_controls(info: Any, active: bool, where: Any) -> None:
    """Delete the study (and optionally its runs) after a confirmation; not while it runs, nor a gallery example."""
    if info.example:
        return
    with st.expander("Delete this study"):
        runs = st.checkbox("Also delete its runs", key=f"studies.delete_runs.{info.id}")
        sure = st.checkbox(f"Confirm deleting study {info.id}", key=f"studies.delete_confirm.{info.id}")
        if active:
            st.caption("Stop the study first.")
        if st.button("Delete study", icon=":material/delete:", key="studies.delete", disabled=active or not sure):
            ge.delete_study(info.id, where, runs=runs)
            jobs().pop(info.id, None)
            st.query_params.pop("study", None)
            st.rerun()
