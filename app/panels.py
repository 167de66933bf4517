"""Display pieces of the pages (Streamlit): a run's status and live state, a comparison's headline and tables, the
cost of a config, a dataset's card and benchmark import, attention maps; their words and numbers come from fmt."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import charts
import fmt
import numpy as np
import pandas as pd
import services
import streamlit as st

import gist_engine as ge
from gist_engine.status import ACTIVE, RESUMABLE, RunStatus

# ------------------------------------------------------------------------------------------------------- first visit
GALLERY_PAGE = "views/gallery.py"


def first_example(folder: Path) -> bool:
    """A new user's first sight, drawn before the engine loads: the first recorded study of the gallery in `folder`
    whose bundle has a per-epoch verdict (the shipped `study-budget`: GIST - plain against the training budget),
    as a chart with its caption and a link to the Gallery. Reads the bundle's manifest only (no torch, no import
    into the store). Returns whether it drew one (False: no such bundle, or the folder cannot be read)."""
    try:
        listed = ge.list_gallery(folder)
    except (ge.GalleryError, OSError):  # the Gallery page says why, by name
        return False
    for b in listed:
        if b["recorded"] and (budget := charts.budget_frame(b.get("budget"))) is not None:
            with st.container(border=True):
                st.markdown(f"**A recorded example to start from. {b['title']}**")
                st.caption(b["description"])
                st.plotly_chart(charts.budget_figure(budget), key="launch.example", config=charts.MODEBAR)
                st.page_link(GALLERY_PAGE, label="More recorded examples in the Gallery (import them to explore)",
                             icon=":material/collections:")
            return True
    return False


ENGINE_POLL_SECONDS = 0.5  # how often a page waiting for the engine asks whether it has loaded
ENGINE_TICKS_KEY = "engine_wait_ticks"  # session state: the waiting fragment's runs so far


def load_engine_after_first_paint() -> None:
    """For a page that first draws something torch-free (Launch for a new user): the engine (torch, timm, onnx)
    starts loading only when the browser asks back, on the first timed rerun of a fragment (`ENGINE_POLL_SECONDS`
    after the page arrived, later while the browser is still busy drawing it), so that the import does not take a
    core and the GIL from the browser and the server while the first chart draws (measured: it delayed that chart
    by about 0.8 s on 2 cores). Until it has loaded the page stops here behind `services.ENGINE_LOADING`, then
    reruns whole. Returns at once once torch is imported (or being imported) in this process."""
    if "torch" in sys.modules:
        return
    st.info(services.ENGINE_LOADING, icon=":material/hourglass_top:")

    @st.fragment(run_every=ENGINE_POLL_SECONDS)
    def poll() -> None:
        ticks = st.session_state[ENGINE_TICKS_KEY] = st.session_state.get(ENGINE_TICKS_KEY, -1) + 1
        if ticks == 0:  # the page's own run: the browser has not drawn it yet
            return
        if not services.load_engine_in_background().is_alive():  # started once per server; done
            st.rerun(scope="app")

    poll()
    st.stop()


# ---------------------------------------------------------------------------------------------------------------- runs
STATUS_COLOURS = {RunStatus.QUEUED: "gray", RunStatus.RUNNING: "blue", RunStatus.COMPLETED: "green",
                  RunStatus.STOPPED: "orange", RunStatus.DIVERGED: "red", RunStatus.FAILED: "red",
                  RunStatus.INTERRUPTED: "violet"}


def status_badge(status: str) -> None:
    """A coloured badge for a run status."""
    st.badge(status, color=STATUS_COLOURS.get(status, "gray"))


_SMALL, _NUM = 80, 90  # px: a short text or a number under a header of its width
RUNS_COLUMNS = {  # the history table: every header readable, long texts (names, folders) cut with a tooltip
    "id": st.column_config.TextColumn("id", width=_SMALL), "name": st.column_config.TextColumn("name", width="medium"),
    "status": st.column_config.TextColumn("status", width=_NUM), "method": st.column_config.TextColumn("method",
                                                                                                   width=_NUM),
    "GIST": st.column_config.CheckboxColumn("GIST", width=_SMALL - 20),
    "seed": st.column_config.NumberColumn("seed", width=_SMALL - 20, format="%d"),
    "dataset": st.column_config.TextColumn("dataset", width="medium"),
    "backbone": st.column_config.TextColumn("backbone", width=_NUM + 20),
    "acc CLS %": st.column_config.NumberColumn("acc CLS %", width=_NUM, format="%.2f"),
    "selected on": st.column_config.TextColumn("selected on", width=_NUM + 30,
                                               help="which evaluation chose the epoch of acc CLS (train.select_on)"),
    "best %": st.column_config.NumberColumn("best %", width=_SMALL, format="%.2f"),
    "progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=1, width=_NUM),
    "trainable": st.column_config.NumberColumn("trainable", width=_NUM, format="compact",
                                               help="trainable parameters"),
    "group": st.column_config.TextColumn("group", width=_SMALL),
    "created": st.column_config.DatetimeColumn("created (UTC)", width=_NUM + 60, format="YYYY-MM-DD HH:mm"),
}


# ---------------------------------------------------------------------------------------------------------------- live
def live_status(snapshot: Any, has_steps: bool) -> None:
    """The live page's state of a run: the tab title; while it runs, a progress bar saying what it does; at the end
    the metrics row (completed) or the error; before any step, what is happening instead of an empty chart."""
    set_tab_title(fmt.tab_title(snapshot))
    active = snapshot.status in ACTIVE
    if active:
        st.progress(fmt.phase_fraction(snapshot), text=fmt.phase_text(snapshot))
    elif snapshot.status == RunStatus.COMPLETED:
        end_metrics_row(snapshot)
    if snapshot.error:
        st.error(f"This run {snapshot.status}: {snapshot.error}")
    if not has_steps and active:
        st.info(f"{fmt.phase_text(snapshot)}; the first curve point appears after the first step.",
                icon=":material/hourglass_top:")
    elif not has_steps:
        st.info(f"No training step was recorded: the run {snapshot.status} before its first step.")


def set_tab_title(title: str) -> None:
    """Set the browser tab's title (st.set_page_config may run once per page: a one-line script does it)."""
    safe = title.replace("\\", "").replace("'", "").replace("<", "").replace(">", "")
    st.html(f"<script>document.title = '{safe}';</script>", unsafe_allow_javascript=True)


def end_metrics_row(snapshot: Any) -> None:
    """A finished run's metrics as rows of two (`end_metrics`), then its note (an early stop)."""
    # two by two: four in a row cut the values short ("11.0…") in a projector's 1024 px window
    metrics = fmt.end_metrics(snapshot)
    cols = [col for _ in range(0, len(metrics), 2) for col in st.columns(2)]
    for col, (label, value, help_) in zip(cols, metrics, strict=False):
        col.metric(label, value, help=help_, border=True)
    if getattr(snapshot, "note", None):
        st.caption(snapshot.note)


def resume_or_rerun(mgr: Any, snapshot: Any, open_run: Any) -> None:
    """Resume (from the last training state, when one was saved) and Rerun (same config, a new run) buttons for a
    stopped, interrupted or failed run (nothing for another status); `open_run(run_id)` goes to the new run's live
    page."""
    if snapshot.status not in RESUMABLE:
        return
    saved = (snapshot.run_dir / fmt.STATE_FILE).exists()
    cols = st.columns([1, 1, 3], vertical_alignment="center")
    if cols[0].button("Resume", icon=":material/play_arrow:", key="live.resume", disabled=not saved,
                      help="Continue from the last training state saved (every train.checkpoint_every epochs)"
                      if saved else "No training state was saved (train.checkpoint_every is 0): Rerun instead"):
        mgr.resume(snapshot.id)
        st.rerun()
    if cols[1].button("Rerun", icon=":material/replay:", key="live.rerun", help="A new run with the same config"):
        open_run(mgr.rerun(snapshot.id))
    cols[2].caption(f"This run {snapshot.status} at step {snapshot.step} of {snapshot.total_steps}.")


def live_options() -> dict[str, Any]:
    """The live page's chart options (a popover): smoothing, log axis, raw terms; `charts.loss_figure`'s keywords."""
    with st.popover("Chart options", icon=":material/tune:"):
        return {"smoothing": st.slider("Smoothing", 0.0, 0.99, 0.0, 0.01, key="live.smoothing",
                                       help="Exponential moving average of the loss curves, as on TensorBoard"),
                "log": st.toggle("Log scale", key="live.log", help="A logarithmic loss axis"),
                "raw": st.toggle("Raw terms", key="live.raw", help="Each loss term unweighted, as the trainer logs "
                                 "it (the KL terms are small: use the log scale)")}


def csv_downloads(mgr: Any, run_id: str) -> None:
    """Download buttons for a run's step metrics and evaluations (CSV, made when clicked)."""
    cols = st.columns(2)
    cols[0].download_button("Download the step metrics (CSV)", lambda: mgr.metrics(run_id).to_csv(index=False),
                            file_name=f"{run_id}-metrics.csv", mime="text/csv", icon=":material/download:",
                            key="live.csv", on_click="ignore")
    cols[1].download_button("Download the evaluations (CSV)", lambda: mgr.evaluations(run_id).to_csv(index=False),
                            file_name=f"{run_id}-evaluations.csv", mime="text/csv", icon=":material/download:",
                            key="live.evals_csv", on_click="ignore")


# ------------------------------------------------------------------------------------------------------------- compare
def compare_headline(result: Any, chosen: list[Any]) -> None:
    """The numbers and the verdict on the page: mean gain, its 95% CI, p, seeds, GIST's parameter cost.

    `result` is the comparison's `ge.PairedResult`; `chosen` the runs compared (snapshots)."""
    d, extra = result.delta("acc_cls"), result.extra_params
    epochs = min((r.config_dict.get("train") or {}).get("epochs", 1) for r in chosen)
    v = fmt.verdict(d, epochs)
    # the gain and its CI in a row, p, seeds and cost under them: five in a row cut them short at 1024 px
    k = [*st.columns([1, 1.3]), *st.columns(3)]
    if d:
        k[0].metric("GIST − plain", v["value"], help="Mean accuracy gain of GIST over the plain method, in "
                    "percentage points, over the paired seeds")
        k[1].metric("95% CI (points)", f"[{fmt.points(d['ci_low'])}, {fmt.points(d['ci_high'])}]"
                    if d["ci_low"] is not None else "n/a",
                    help=v["ci"] + (f". {d['note']}" if d.get("note") else ""))
        k[2].metric("p-value", "n/a" if d["p_value"] is None else f"{d['p_value']:.3g}", help=v["p"])
        k[3].metric("Seeds paired", d["n"], help="Seeds with a finished plain and GIST run")
    done = sum(r.status not in ACTIVE for r in chosen)
    if done < len(chosen):
        k[3].progress(done / len(chosen), text=f"{done} of {len(chosen)} runs finished")
    if extra is not None:
        share = f" (+{100 * extra / result.plain_params:.2f}% of the method's)" if result.plain_params else ""
        k[4].metric("GIST params", f"+{extra:,}", help=f"Parameter cost of GIST: extra trainable parameters{share}")
    show_verdict(v)


def show_verdict(v: Mapping[str, Any]) -> None:
    """The verdict on the page: the statement (success / warning / info by significance) and every warning."""
    show = {True: st.success, False: st.warning}.get(v["significant"], st.info)
    show(v["statement"], icon=":material/query_stats:")
    for text in v["warnings"]:
        st.caption(f":material/warning: {text}")


def seeds_table(result: Any) -> None:
    """The per-seed table of a `ge.PairedResult` (`fmt.seeds_frame`: accuracies in %, Δ in points), its columns
    sized to fit."""
    column = {c: st.column_config.NumberColumn(label, format="%+.2f" if c == "delta" else "%.2f", width="small",
                                               help=f"{label}, % (test accuracy; agree = CLS/Gist agreement)")
              for c, label in fmt.SEED_COLUMNS.items() if c != "seed"}
    st.dataframe(fmt.seeds_frame(result), hide_index=True, width="stretch",
                 column_config={"seed": st.column_config.NumberColumn("seed", width="small"), **column})


def compare_options() -> tuple[str, float, bool]:
    """Compare's chart options (a popover): the loss curve (CLS cross-entropy or the total), smoothing, log axis."""
    with st.popover("Chart options", icon=":material/tune:"):
        loss_key = st.radio("Loss curve", ["ce_cls", "total"], key="compare.loss_key", format_func={
            "ce_cls": "Cross-entropy of the CLS head (the same quantity in both arms)",
            "total": "Training objective (GIST's total: CE + weighted Gist CE + weighted interaction)"}.get)
        smoothing = st.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="compare.smoothing",
                              help="Exponential moving average of the loss curves, as on TensorBoard")
        log = st.toggle("Log scale (loss)", key="compare.log")
    return loss_key, smoothing, log


def compare_curves(mgr: Any, chosen: list[Any], group: bool, loss_key: str, smoothing: float, log: bool) -> None:
    """Compare's curves, one line per run ('seed 0 · GIST'): accuracy over training (the accuracy probe, else the
    test evaluations) and the loss `loss_key` (ce_cls: like with like; total: each arm's objective), with CSVs."""
    named = len({r.name.rsplit("-seed", 1)[0].removesuffix("-gist").removesuffix("-plain") for r in chosen}) > 1
    labels = {r.id: fmt.short_label(r, name=named and not group) for r in chosen}
    evals = {labels[r.id]: mgr.evaluations(r.id) for r in chosen}
    probed = any(len(charts.split_of(e, charts.PROBE)) for e in evals.values())
    split = charts.PROBE if probed else charts.TEST
    acc = {k: charts.split_of(e, split) for k, e in evals.items()}
    losses = {labels[r.id]: mgr.metrics(r.id, keys=[loss_key]) for r in chosen}
    c1, c2 = st.columns(2)
    title = ("CLS-head accuracy on the probe (held-out training images)" if probed
             else "Test accuracy, CLS head")
    c1.plotly_chart(charts.overlay_figure(acc, "acc_cls", title, 100, "%"), key="compare.acc", config=charts.MODEBAR)
    loss_title = "Cross-entropy of the CLS head (both arms)" if loss_key == "ce_cls" else \
        "Training objective (GIST: its total; plain: CE)"
    c2.plotly_chart(charts.overlay_figure(losses, loss_key, loss_title, y="loss", smoothing=smoothing, log=log),
                    key="compare.loss", config=charts.MODEBAR)
    c1.download_button("Accuracy data (CSV)", charts.curves_frame(acc, "acc_cls").to_csv(index=False),
                       file_name="accuracy.csv", mime="text/csv", key="compare.acc_csv", on_click="ignore",
                       icon=":material/download:")
    c2.download_button("Loss data (CSV)", charts.curves_frame(losses, loss_key).to_csv(index=False),
                       file_name=f"{loss_key}.csv", mime="text/csv", key="compare.loss_csv", on_click="ignore",
                       icon=":material/download:")


# -------------------------------------------------------------------------------------------------------------- launch
def cost_panel(config: dict[str, Any]) -> dict[str, Any] | None:
    """Trainable parameters, GIST's extra parameters, the token sequence and a run-time estimate for a config."""
    try:
        with st.spinner("Building the model to count its parameters ..."):
            info = services.describe_config(config)
            est = services.estimate_run(config)
    except (ge.ConfigError, ge.BackboneError, ge.DatasetError, ValueError) as exc:
        st.error(f"This configuration cannot be built: {exc}")
        return None
    c1, c2 = st.columns(2)  # two by two: four in a row cut the labels short in a 1024 px window
    c3, c4 = st.columns(2)
    pct = 100 * info["trainable_params"] / info["total_params"]
    c1.metric("Trainable parameters", fmt.param_count(info["trainable_params"]), help=info["summary"])
    c2.metric("GIST adds", f"+{info['gist_params']:,}", help="The Gist token(s) (and a separate Gist head if chosen)")
    c3.metric("Share of the model", f"{pct:.3f}%", help=f"of {info['total_params']:,} parameters")
    minutes, seconds = divmod(round(est["seconds"]), 60)
    text = info.get("modality") == "text"
    unit = "documents" if text else "images"
    c4.metric("Estimated time here", f"{minutes}:{seconds:02d} min", help=(
        f"{est['steps']} steps of {est['train_images']} training {unit}, {est['evals']} evaluation(s) of "
        f"{est['test_images']} {unit}; measured {1000 * est['train_s_per_image']:.1f} ms per training "
        f"{unit[:-1]} on {est['device']} (a rough estimate: other runs share the CPU"
        + ("; documents measured at full length" if text else "") + ")"))
    layout = " + ".join(f"{n} {k}" for k, n in info["sequence_layout"])
    where = (f"{info['backbone']} at up to {info['max_length']} tokens" if text else
             f"{info['backbone']} at {info['image_size']} px ({info['grid'][0]}x{info['grid'][1]} patches)")
    st.caption(f"Token sequence inside the {info['num_layers']} blocks: {layout} = {info['seq_len']} tokens · "
               f"{where}")
    return info


def copy_as_cli(config: dict[str, Any], seeds: int = 0, key: str = "cli") -> None:
    """The YAML and the `python -m gist_engine` line that reproduce a run (st.code has a copy button)."""
    try:
        text = services.config_yaml(config)
    except ge.ConfigError as exc:
        st.warning(f"Not a valid config yet: {exc}")
        return
    file = re.sub(r"[^\w.-]+", "-", config.get("name") or "run").strip("-") + ".yaml"  # "a · b" -> "a-b.yaml"
    st.code(services.cli_command(config, file, group_seeds=seeds), language="bash")
    st.code(text, language="yaml")
    st.download_button("Download YAML", text, file_name=file, mime="application/x-yaml", key=f"{key}.yaml",
                       icon=":material/download:")


# ------------------------------------------------------------------------------------------------------------ datasets
DATASET_COLUMNS = {
    "dataset": st.column_config.TextColumn("dataset", width="medium", help="the data.dataset value of a config"),
    "title": st.column_config.TextColumn("title", width="medium"),
    "modality": st.column_config.TextColumn("kind", width=_SMALL - 20),
    "images": st.column_config.NumberColumn("images", width=_SMALL, format="localized",
                                            help="images (documents for text datasets) over all splits"),
    "classes": st.column_config.NumberColumn("classes", width=_SMALL - 10),
    "offline": st.column_config.CheckboxColumn("offline", width=_SMALL - 20),
    "installed": st.column_config.CheckboxColumn("installed", width=_SMALL),
    "uploaded": st.column_config.DatetimeColumn("uploaded (UTC)", width=_NUM + 60, format="YYYY-MM-DD HH:mm"),
    "source": st.column_config.TextColumn("source", width="large"),
    "licence": st.column_config.TextColumn("licence", width="medium"),
}


def dataset_card(entry: dict[str, Any]) -> None:
    """Where a dataset comes from, its size and licence, and a few thumbnails (or documents, text) per class."""
    text = entry.get("modality") == "text"
    unit = "documents" if text else "images"
    size = f"{entry['images']:,} {unit}" if entry.get("images") else "size unknown until read"
    classes = f", {entry['classes']} classes" if entry.get("classes") else ""
    st.caption(f"**{entry['title']}** — {size}{classes}. Source: {entry['source']}. Licence: {entry['licence']}.")
    if entry.get("installed") is False:
        st.warning("Not available on this machine yet (it needs a download or a package).")
        return
    try:
        preview = (services.text_preview(entry["dataset"], per_class=2, chars=160) if text
                   else services.dataset_preview(entry["dataset"], per_class=3, size=40))
    except (ge.DatasetError, OSError) as exc:
        st.warning(f"Cannot preview it here: {exc}")
        return
    if text:
        text_samples(preview["samples"])
    else:
        thumbnails(preview["thumbnails"])


def text_samples(samples: dict[str, list[str]], max_classes: int = 10) -> None:
    """Example documents of a text dataset: a table of class and (cut) text."""
    rows = [{"class": c, "text": t} for c in list(samples)[:max_classes] for t in samples[c]]
    st.dataframe(pd.DataFrame(rows, columns=["class", "text"]), hide_index=True, width="stretch", height=220)
    if len(samples) > max_classes:
        st.caption(f"... and {len(samples) - max_classes} more classes")


def thumbnails(thumbs: dict[str, np.ndarray], max_classes: int = 10) -> None:
    """A grid of example images: one column per class, its examples stacked, the class name as caption."""
    names = list(thumbs)[:max_classes]
    if not names:
        return
    cols = st.columns(max(len(names), 8))  # at least 8 slots: a few classes still get small thumbnails
    for col, name in zip(cols, names, strict=False):
        stack = np.concatenate(list(thumbs[name]), axis=0)  # (k * S, S, 3)
        col.image(stack, caption=name, width="stretch")
    if len(thumbs) > max_classes:
        st.caption(f"... and {len(thumbs) - max_classes} more classes")


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
            services.split_sizes.clear()
            st.success(f"Installed {len(result.rows)} {kind} dataset(s) in {result.seconds:.0f} s: choose one on "
                       "the Launch page by its data.dataset value.")
            st.dataframe(pd.DataFrame([{"dataset": r["name"], "classes": r["classes"], "images": r["images"],
                                        **r["splits"], "data.dataset": r["dataset"]} for r in result.rows]),
                         hide_index=True)


# ----------------------------------------------------------------------------------------------------------- attention
def map_pair(maps: Any, index: int, layer: int, head: int | None, rollout: bool,
             class_names: list[str] | None = None) -> None:
    """The CLS map and the Gist map of one image side by side, over the image (each scaled to its own range); each
    head's prediction by its class name when `class_names` are known."""
    image = maps.images[index]
    cols = st.columns([1, 1, 1, 1.1])
    cols[0].image(image, caption="input", width="stretch")
    cols[3].caption("Bright = where the token looks. Each row of attention is how much the CLS (or Gist) token "
                    "reads from each patch in that layer; *rollout* multiplies the layers together (with the "
                    "residual path) to show what reaches the token by the end. Each map uses its own colour range.")
    for col, name in zip(cols[1:3], ("cls", "gist"), strict=True):
        per_head = getattr(maps, f"{name}_maps")
        if per_head is None:
            col.info("No Gist token in this model (GIST off).")
            continue
        if rollout:
            heat, what = getattr(maps, f"{name}_rollout")[index, layer], f"rollout through layer {layer}"
        elif head is None:
            heat, what = per_head[index, layer].mean(axis=0), f"layer {layer}, mean of heads"
        else:
            heat, what = per_head[index, layer, head], f"layer {layer}, head {head}"
        label = "CLS" if name == "cls" else "Gist"
        logits = getattr(maps, f"{name}_logits")
        pred = "" if logits is None else f" · predicts {fmt.class_label(int(logits[index].argmax()), class_names)}"
        col.image(services.overlay(image, heat), caption=f"{label} → patches, {what}{pred}", width="stretch")


def text_attention(source: Any, cfg: dict[str, Any], key: str) -> None:
    """The attention page of a text model: a sentence box (a test document by default), token strips for CLS and
    Gist, and a heat map by layer, head or rollout."""
    try:
        sample = ge.text_dataset_samples(cfg["data"]["dataset"], n=8)
    except (ge.DatasetError, OSError) as exc:
        st.warning(f"Cannot read test documents of {cfg['data']['dataset']}: {exc}")
        sample = {"texts": [""], "labels": [0], "class_names": ["?"]}
    texts, names = sample["texts"], sample["class_names"]
    pick = st.selectbox("Test document", range(len(texts)), key=f"{key}.pick",
                        format_func=lambda i: f"#{i} ({names[sample['labels'][i]]}) {texts[i][:70]}")
    text = st.text_area("Text", value=texts[pick], height=110, key=f"{key}.text.{pick}",
                        help="Any sentence or document; it is cut to the model's max_length tokens.")
    if not text.strip():
        st.info("Type a sentence to see where the CLS and Gist tokens look.")
        return
    try:
        with st.spinner("Running the encoder ..."):
            att = services.text_attention_for(source, text)
    except (ValueError, RuntimeError) as exc:
        st.error(str(exc))
        return
    pred = att.prediction()
    gist = "" if pred["gist"] is None else f" · Gist head: **{pred['gist']['class']}** ({pred['gist']['prob']:.0%})"
    st.markdown(f"CLS head predicts **{pred['cls']['class']}** ({pred['cls']['prob']:.0%}){gist} · "
                f"{len(att.tokens)} tokens")
    c1, c2, c3 = st.columns([2, 1, 1], vertical_alignment="bottom")
    layer = c1.slider("Layer", 0, att.num_layers - 1, att.num_layers - 1, key=f"{key}.layer")
    head = c2.selectbox("Head", [None, *range(att.num_heads)], key=f"{key}.head",
                        format_func=lambda h: "mean of heads" if h is None else f"head {h}")
    rollout = c3.toggle("Rollout", key=f"{key}.rollout",
                        help="Attention rollout (Abnar & Zuidema, 2020) through layers 0..layer (heads averaged)")
    what = f"rollout through layer {layer}" if rollout else (
        f"layer {layer}, " + ("mean of heads" if head is None else f"head {head}"))
    for query, label in (("cls", "CLS"), ("gist", "Gist")):
        if query == "gist" and att.gist is None:
            st.info("No Gist token in this model (GIST off).")
            continue
        st.plotly_chart(charts.token_strip_figure(att.strip(query, layer, head, rollout), f"{label} → tokens, {what}"),
                        key=f"{key}.strip.{query}")
    queries = ["CLS"] + (["Gist"] if att.gist is not None else [])
    q1, q2 = st.columns(2)
    query = q1.segmented_control("Heat map of", queries, default="CLS", key=f"{key}.hq") or "CLS"
    by = q2.segmented_control("Rows", ["layer", "head", "rollout"], default="rollout" if rollout else "layer",
                              key=f"{key}.by", format_func=lambda b: {"layer": "layers (heads averaged)",
                                                                      "head": f"heads of layer {layer}",
                                                                      "rollout": "rollout per layer"}[b]) or "layer"
    st.plotly_chart(charts.token_heatmap_figure(att.heatmap(query.lower(), by=by, layer=layer),
                                                f"{query} attention over the tokens, by {by}"), key=f"{key}.heat")
    st.caption("Each row of attention is how much the CLS (or Gist) token reads from each token; rows sum to 1 over "
               "all tokens ([CLS], [GIST] and [SEP] included). Integrated Gradients are for image models only.")


def attribution_pair(attr: Any, image: np.ndarray) -> None:
    """Integrated-Gradients maps of the CLS head and the Gist head (absolute values, shared colour scale)."""
    maps = [("CLS head", attr.cls_grid[0])] + ([("Gist head", attr.gist_grid[0])] if attr.gist_grid is not None else [])
    top = max(float(np.abs(m).max()) for _, m in maps) or 1.0
    cols = st.columns([1, 1, 1, 1.1])
    for col, (name, grid) in zip(cols[1:3], maps, strict=False):
        col.image(services.overlay(image, np.abs(grid), cmap="viridis", vmin=0.0, vmax=top), width="stretch",
                  caption=f"{name}: |IG| for class {int(attr.target[0])}")
    cols[0].image(image, caption="input", width="stretch")
    cols[3].caption(f"Integrated Gradients ({attr.n_steps} steps) on the patch embedding; a shared colour scale, "
                    f"so the two heads' reliance on each patch can be compared.")
