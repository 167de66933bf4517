"""The Studies page's parts: the new-study form, the studies table, the grid of cell statuses, the matrix and curves."""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import charts
import fmt
import pandas as pd
import panels
import run_actions
import services
import state
import streamlit as st
import yaml

import gist_engine as ge
from gist_engine.status import RunStatus

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


@st.cache_resource
def jobs() -> dict[str, Any]:
    """Study id -> the `ge.StudyJob` driving it in this server process (shared by every browser session)."""
    return {}


def root() -> Any:
    """Where studies live: the app's store (read without torch; a study's local runs train on its RunManager's
    workers beside the other runs, loaded when one starts), or the data directory when the manager is a stand-in."""
    mgr = state.store()
    return mgr if isinstance(mgr, ge.RunReader) else services.data_root()


def writer(where: Any) -> Any:
    """What a study's start or deletion writes through: the app's RunManager for its lazy store (loading the engine
    now, behind `services.ENGINE_LOADING`), else `where` itself."""
    return where.manager() if isinstance(where, state.LazyManager) else where


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
            grid[axis] = fmt.parse_values(text, axis)
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
    job = ge.start_study(spec_or_id, writer(where), backend, **options)
    jobs()[job.study_id] = job
    st.query_params["study"] = job.study_id
    st.rerun()


def summary(info: Any) -> None:
    """A study's status badge, its counts of runs by status and its progress."""
    panels.status_badge(info.status)
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
    run_actions.stop_cell_button(state.store(), runs.attrs.get("study"), int(cell_rows["cell"].iloc[0]),
                                 list(cell_rows["status"]))


# ------------------------------------------------------------------------------------------------- tuning
def tuning_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A tuned study's search per cell and arm: trials settled, pruned and running, the chosen values and their
    validation accuracy (%)."""
    return pd.DataFrame([{
        "cell": r["label"], "arm": "GIST" if r["arm"] == "gist" else "plain",
        "trials": f"{r['settled']}/{r['trials']}" if r["trials"] else "not tuned",
        "pruned": r["pruned"], "in progress": r[RunStatus.RUNNING],
        "chosen": ("base config" if r["values"] == {} else "choosing..." if r["values"] is None
                   else ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                  for k, v in r["values"].items())),
        "val. acc. (%)": None if r["val_acc"] is None else round(100 * r["val_acc"], 2)} for r in rows])


def tuning_view(rows: list[dict[str, Any]]) -> None:
    """A tuned study's progress: per cell and arm the trials and the chosen values, and one cell's trial curves."""
    if not rows:
        return
    st.subheader("Tuning on the validation split")
    st.caption("Each arm is tuned with the same number of trials on validation data (never the test split); its "
               "best trial's values then train over the seeds, and those final runs give the verdict below.")
    st.dataframe(tuning_frame(rows), hide_index=True, key="studies.tuning")
    cells = list(dict.fromkeys(r["label"] for r in rows))
    cell = st.selectbox("Trial curves of cell", cells, key="studies.tuning_cell") if len(cells) > 1 else cells[0]
    if any(t["epochs"] for r in rows for t in r["curve"]):
        st.plotly_chart(charts.trial_figure(rows, cell), key="studies.trials")


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
        st.plotly_chart(charts.matrix_figure(values, table, METRICS[metric]), key="studies.matrix_chart")
    st.dataframe(table, key="studies.matrix")
    if results.attrs.get("paired", True) and (results["n"] == 2).any():
        st.caption(ge.FEW_SEEDS_NOTE)  # the cells marked † rest on 2 seeds
    return rows, cols


def curve_view(results: pd.DataFrame, metric: str) -> None:
    """For a numeric axis: both arms and their difference against its values (a numeric axis picked)."""
    numeric = [a for a in results.attrs.get("axes", [])
               if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in results[a])]
    if not numeric or not results["n"].sum():
        return
    axis = st.selectbox("Curve along", numeric, key="studies.curve_axis") if len(numeric) > 1 else numeric[0]
    st.plotly_chart(charts.curve_figure(ge.study_curve(results, axis), axis, METRICS[metric]), key="studies.curve")


def budget_view(study_id: str, where: Any, metric: str) -> None:
    """GIST − plain against the epochs of the same runs, with its CI band (`ge.study_budget`), when the study's runs
    were evaluated after more than one epoch."""
    budget = charts.budget_frame(ge.study_budget(study_id, where, metric))
    if budget is not None:
        st.plotly_chart(charts.budget_figure(budget), key="studies.budget", config=charts.MODEBAR)
        st.caption(charts.BUDGET_NOTE)


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
            ge.delete_study(info.id, writer(where), runs=runs)
            jobs().pop(info.id, None)
            st.query_params.pop("study", None)
            st.rerun()
