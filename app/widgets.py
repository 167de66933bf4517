"""Forms generated from the engine's config dataclasses (help -> widget help) and small shared displays."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

import charts
import numpy as np
import pandas as pd
import services
import streamlit as st

import gist_engine as ge

# Labels of config fields, by name or by "section.name" (checked first): no two widgets on one page share a label.
LABELS = {"ce_weight": "Gist CE weight", "loss": "Interaction loss", "loss_weight": "Interaction weight",
          "init": "Init range", "shared_head": "Shared head", "lr": "Learning rate", "few_shot": "Few-shot k",
          "enabled": "GIST on", "length": "Gist tokens", "temperature": "Temperature", "cpu_threads": "CPU threads",
          "eval_batch_size": "Eval batch size", "attention_every": "Attention snapshot every",
          "frozen_dtype": "Frozen weights stored as", "cuda_graph": "CUDA graphs", "drop_path_rate": "Drop-path rate",
          "data.seed": "Data seed", "train.seed": "Seed", "gist.dropout": "Gist dropout",
          "adapter.dropout": "Adapter dropout", "lora.dropout": "LoRA dropout", "vpt.dropout": "Prompt dropout",
          "vpt.length": "Prompt tokens", "ssf.init_std": "SSF init std"}


def _label(name: str, scope: str = "") -> str:
    return LABELS.get(f"{scope}.{name}") or LABELS.get(name) or name.replace("_", " ").capitalize()


def _placeholder(help_text: str) -> str:
    """What an empty optional field means, read from its help ('empty = all' -> 'all')."""
    found = re.search(r"empty\s*=\s*([^;.()]+)", help_text or "")
    return found.group(1).strip() if found else "empty"


def _float_step(default: Any) -> float:
    if isinstance(default, (int, float)) and default:
        return 10.0 ** math.floor(math.log10(abs(default)))
    return 0.1


def value_problem(field: dict[str, Any], value: Any, path: str, label: str | None = None) -> str | None:
    """Why a form value is refused, in words ('Epochs — train.epochs: 0 is out of range (must be >= 1)'), from the
    field's own choices and range (`ge.check_value`: the check the config parser makes), or None when it is fine."""
    label = label or _label(field["name"])
    if value is None and "None" not in field["type"]:
        return f"{label} — {path}: needs a value"
    try:
        ge.check_value(field, value, path)
    except ge.ConfigError as exc:
        return f"{label} — {exc}"
    return None


def show_problem(problem: str | None, problems: list[str] | None) -> None:
    """Say why a value is refused right under its widget (visible text, not a tooltip) and collect the reason."""
    if problem is None:
        return
    st.error(problem, icon=":material/error:")
    if problems is not None:
        problems.append(problem)


def field_widget(field: dict[str, Any], key: str, value: Any, path: str | None = None, scope: str = "",
                 problems: list[str] | None = None) -> Any:
    """One widget for one config field (a `describe_fields` dict), keeping its value in the session.

    choices -> selectbox, bool -> toggle, int/float -> number_input (empty allowed when optional), str -> text_input
    (empty = None when optional). The field's help text becomes the widget's help; `scope` picks its label
    (LABELS' "scope.name"). Numbers take any value: one outside the field's range is shown as typed with the reason
    under it and added to `problems` (the browser keeps no hidden last valid value); `path` names the key there.
    """
    kind, label, help_ = field["type"], _label(field["name"], scope), field["help"] or None
    path = path or field["name"]
    optional = "None" in kind
    base = kind.replace(" | None", "").replace("None | ", "")
    common = {"key": key, "help": help_, "persist_state": "session"}
    if field["choices"]:
        choices = list(field["choices"])
        return st.selectbox(label, choices, index=choices.index(value) if value in choices else 0, **common)
    if base == "bool":
        return st.toggle(label, value=bool(value), **common)
    if base in ("int", "float"):
        number, problem = number_box(label, value, base == "int", path, optional=optional,
                                     placeholder=_placeholder(field["help"]) if optional else None, **common)
        show_problem(problem or value_problem(field, number, path, label), problems)
        return number
    text = st.text_input(label, value="" if value is None else str(value), **common)
    return None if optional and not text.strip() else text


def parse_number(text: str, is_int: bool) -> int | float | None:
    """A typed number: '224', '1e-3', '2_000' or '2,000'; an int field takes a whole float ('2e2' -> 200). None for
    empty text. Raises ValueError with the reason when the text is no number of that kind ('abc', '1.5' for int)."""
    text = text.strip().replace("_", "").replace(",", "")
    if not text:
        return None
    number = float(text)  # ValueError for 'abc'
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    if is_int:
        if not number.is_integer():
            raise ValueError("not a whole number")
        return int(number)
    return number


def number_box(label: str, value: int | float | None, is_int: bool, path: str, key: str, optional: bool = False,
               **kwargs: Any) -> tuple[int | float | None, str | None]:
    """A number typed as text, so that anything typed reaches the app and is answered: a browser's number box drops
    letters and silently restores the last value ('abc' in Image size went back to a number unseen).

    Returns (the number, None), or (`value`, the reason) when the text is no number: the caller shows the reason
    under the box and blocks the launch, while the page keeps drawing with the last valid value; the text stays as
    typed. Empty text is None when `optional`, else a reason.
    """
    shown = "" if value is None else str(int(value)) if is_int else f"{float(value):g}"
    text = st.text_input(label, value=shown, key=key, **kwargs)
    kind = "a whole number" if is_int else "a number"
    try:
        number = parse_number(text, is_int)
    except ValueError:
        example = shown or ("224" if is_int else "0.001")
        return value, f"{label} — {path}: {text.strip()!r} is not {kind}; type {kind}, e.g. {example}"
    if number is None and not optional:
        return value, f"{label} — {path}: needs a value ({kind})"
    return number, None


def config_form(fields: Iterable[dict[str, Any]], values: dict[str, Any], key: str, skip: Iterable[str] = (),
                columns: int = 2, path: str = "", scope: str | None = None,
                problems: list[str] | None = None) -> dict[str, Any]:
    """Widgets for every field (except `skip`) laid out in `columns`; returns {name: value}.

    `path` is the config section ("train", "method_args", "" for top-level keys) named in the reasons a value is
    refused (added to `problems`); `scope` picks the labels (default `path`; a tuner's name for its options).
    """
    shown = [f for f in fields if f["name"] not in set(skip)]
    cols = st.columns(columns)
    out = {}
    for i, f in enumerate(shown):
        with cols[i % columns]:
            out[f["name"]] = field_widget(f, f"{key}.{f['name']}", values.get(f["name"], f["default"]),
                                          path=f"{path}.{f['name']}" if path else f["name"],
                                          scope=path if scope is None else scope, problems=problems)
    return out


FORM_TYPES = ("int", "float", "bool", "str")  # peft option types a generated form edits; lists/dicts stay in YAML


def method_form(tuner: dict[str, Any], method: str, args: dict[str, Any], key: Callable[[str], str],
                problems: list[str]) -> dict[str, Any]:
    """The chosen method's `method_args` form: for `peft`, a peft type and a form generated from its peft config
    fields (`peft_form`); else the tuner's own options (`config_form`)."""
    if method == "peft":
        return peft_form(tuner["peft_types"], args, key("args.peft"), problems=problems)
    return config_form(tuner["options"], args, key(f"args.{method}"), path="method_args", scope=method,
                       problems=problems)


def peft_form(info: dict[str, Any], values: dict[str, Any], key: str,
              problems: list[str] | None = None) -> dict[str, Any]:
    """`method: peft`: a peft type picker and a form generated from that type's config fields (`list --json`'s
    `tuners.peft.peft_types`: help, types, defaults read from peft's dataclasses); returns the flat method_args
    (`peft_type` and the options that differ from their defaults; keys set in YAML, e.g. lists, are kept)."""
    types = info["types"]
    names = list(types)
    current = str(values.get("peft_type", "lora")).lower()
    peft_type = st.selectbox("Peft type", names, index=names.index(current) if current in names else 0,
                             key=f"{key}.peft_type", persist_state="session",
                             help="Hugging Face peft's tuner type (peft " + info["pinned"] + "); GIST adds its token "
                                  "on top. LM-only types (prompt/prefix tuning, ...) are not offered.")
    st.caption(types[peft_type]["help"])
    if not info["version"]:
        st.warning("peft is not installed here: pip install 'gist-studio[peft]'", icon=":material/warning:")
        return {"peft_type": peft_type}
    kept = {k: v for k, v in values.items() if k != "peft_type"} if peft_type == current else {}
    fields = types[peft_type]["options"]
    editable = [f for f in fields if f["choices"] or f["type"] in FORM_TYPES]
    form = config_form(editable, kept, f"{key}.{peft_type}", path="method_args", scope=f"peft.{peft_type}",
                       problems=problems)
    defaults = {f["name"]: f["default"] for f in editable}
    changed = {k: v for k, v in form.items() if v != defaults[k]}
    in_yaml = [f["name"] for f in fields if f not in editable]
    if in_yaml:
        st.caption(f"Set in the YAML config (lists, mappings): {', '.join(in_yaml)}; targets by default: "
                   f"{types[peft_type]['image_targets']['target_modules']}.")
    return {"peft_type": peft_type, **{k: v for k, v in kept.items() if k not in form}, **changed}


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


# how the history table names each run's selection (train.select_on, resolved)
SELECTED_ON = {"val": "validation", "test": "test (optimistic)", "last": "last epoch"}


def runs_frame(snapshots: Iterable[Any]) -> pd.DataFrame:
    """The history table: one row per run, newest first."""
    rows = [{"id": s.id, "name": s.name, "status": s.status, "method": s.method, "GIST": s.gist_enabled,
             "seed": s.seed, "dataset": (s.config.get("data") or {}).get("dataset"),
             "backbone": s.config.get("backbone"),
             "acc CLS %": None if s.acc_cls is None else round(100 * s.acc_cls, 2),
             "selected on": SELECTED_ON.get(s.selected_on),
             "best %": None if s.best_acc_cls is None else round(100 * s.best_acc_cls, 2),
             "progress": s.progress, "trainable": s.trainable_params, "group": s.group_id,
             "created": pd.Timestamp(s.created, unit="s", tz="UTC").tz_localize(None).floor("s")}
            for s in snapshots]
    return pd.DataFrame(rows, columns=["id", "name", "status", "method", "GIST", "seed", "dataset", "backbone",
                                       "acc CLS %", "selected on", "best %", "progress", "trainable", "group",
                                       "created"])


EMPTY = "—"  # what an empty text cell of a table reads (not "None")


def for_display(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` as a table shows it: empty text cells (None in a text column: a run without a group) read "—";
    numbers, flags and dates are left as they are (a CSV export takes the frame itself, empty cells empty)."""
    text = [c for c in frame.columns
            if pd.api.types.is_object_dtype(frame[c]) or pd.api.types.is_string_dtype(frame[c])]
    return frame.fillna({c: EMPTY for c in text}) if text else frame


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


def datasets_frame(entries: list[dict[str, Any]], uploads: list[dict[str, Any]]) -> pd.DataFrame:
    """The datasets table: the uploads first, newest first (when stored), then the registered datasets."""
    when = {u["dataset"]: pd.Timestamp(u["created"], unit="s").floor("s") for u in uploads}
    rank = {u["dataset"]: i for i, u in enumerate(uploads)}
    rows = sorted(entries, key=lambda e: (not e.get("uploaded"), rank.get(e["dataset"], 0)))
    frame = pd.DataFrame(rows, columns=[c for c in DATASET_COLUMNS if c != "uploaded"])
    frame.insert(7, "uploaded", [when.get(d) for d in frame.dataset])
    return frame


def options_of(column: pd.Series) -> list[str]:
    """The distinct values of a table column for a filter, sorted; missing values (None/NaN) left out."""
    return sorted(column.dropna().astype(str).unique())


def filter_runs(frame: pd.DataFrame, status: list[str], method: list[str], gist: str, text: str) -> pd.DataFrame:
    """The rows of `runs_frame` that match the filters (empty = any): status, method, GIST "on"/"off"/"any", and a
    case-insensitive text in the name, id, dataset, backbone or group (a missing value matches no text)."""
    mask = pd.Series(True, index=frame.index)
    if status:
        mask &= frame.status.astype(str).isin(status)
    if method:
        mask &= frame.method.astype(str).isin(method)
    if gist != "any":
        mask &= frame.GIST.fillna(False).astype(bool).eq(gist == "on")
    if text:
        hay = frame[["name", "id", "dataset", "backbone", "group"]].astype(object).fillna("").astype(str)
        mask &= hay.agg(" ".join, axis=1).str.contains(text, case=False, regex=False)
    return frame[mask]


def eta_text(snapshot: Any) -> str:
    """'step 12 / 32 · ETA 0:41' for the progress bar."""
    eta = snapshot.eta_seconds
    eta_s = "" if eta is None else f" · ETA {int(eta) // 60}:{int(eta) % 60:02d}"
    return f"{snapshot.status}: step {snapshot.step} / {snapshot.total_steps}{eta_s}"


def run_caption(snapshot: Any) -> str:
    """One line about a run: backbone @ input size, method, GIST on/off, dataset, seed, trainable parameters."""
    cfg = snapshot.config or {}
    data = cfg.get("data") or {}  # a missing key reads "None", never a KeyError
    size = (f"{data.get('max_length')} tokens" if ge.is_text_backbone(cfg.get("backbone") or "")
            else f"{cfg.get('image_size')} px")
    return (f"{cfg.get('backbone')} @ {size} · {snapshot.method} · GIST "
            f"{'on' if snapshot.gist_enabled else 'off'} · {data.get('dataset')} · seed {snapshot.seed}"
            + (f" · {fmt_params(snapshot.trainable_params)} trainable" if snapshot.trainable_params else ""))


def fmt_params(n: int | None) -> str:
    """12,345 -> '12.3K'; None -> 'n/a'."""
    if n is None:
        return "n/a"
    for unit, scale in (("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(n)


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
    c1.metric("Trainable parameters", fmt_params(info["trainable_params"]), help=info["summary"])
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


def class_label(label: int, class_names: list[str] | None) -> str:
    """A class by its name (`class_names[label]`), or its index when the names are unknown or too few."""
    return str(class_names[label]) if class_names and 0 <= label < len(class_names) else str(label)


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
        pred = "" if logits is None else f" · predicts {class_label(int(logits[index].argmax()), class_names)}"
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


def input_size(cfg: dict[str, Any], backbone: dict[str, Any], size_field: dict[str, Any],
               length_field: dict[str, Any], key: Any, problems: list[str] | None = None) -> str:
    """The input size of a backbone (edits `cfg`): image size in px for a ViT, `data.max_length` for a text
    encoder; returns the backbone's modality ("image" or "text"). `key(name)` makes widget keys; a value out of
    the field's range (or an image smaller than one patch) is shown with its reason and added to `problems`."""
    if backbone.get("modality", "image") == "text":
        cfg["image_size"] = 0  # ignored by text models
        length = cfg["data"]["max_length"] = st.number_input(
            "Max length (tokens)", value=int(cfg["data"].get("max_length") or length_field["default"]), step=16,
            help=length_field["help"], key=key("data.max_length"))
        show_problem(value_problem(length_field, length, "data.max_length", "Max length (tokens)"), problems)
        return "text"
    cfg["data"].pop("max_length", None)
    patch = backbone["patch_size"]
    size = cfg.get("image_size") or backbone["default_size"]  # 0 = the backbone's default size: shown as such
    size, problem = number_box("Image size (px)", max(patch, size // patch * patch), True, "image_size",
                               key=key(f"size.{patch}"),
                               help=f"{size_field['help']} A multiple of the patch size, {patch}.")
    cfg["image_size"] = size
    problem = problem or value_problem(size_field, size, "image_size", "Image size (px)")
    if problem is None and size is not None and size < patch:
        problem = f"Image size (px) — image_size: {size} is smaller than one patch ({patch} px)"
    show_problem(problem, problems)
    return "image"


def launch_checks(cfg: dict[str, Any], key: Any, problems: list[str], installed: bool | None = True
                  ) -> dict[str, Any] | None:
    """What stands before a launch, after the forms have collected their refused values in `problems`: the whole
    config parsed, the data sizes checked against the dataset (unless it is not `installed` yet: a run downloads
    it), then the cost panel. Returns the cost panel's info, or None (every reason listed) while anything blocks."""
    if not problems:
        try:
            ge.load_run_config(cfg)
        except ge.ConfigError as exc:
            show_problem(f"Fix this option first: {exc}", problems)
    if not problems and installed is not False:
        size_check(cfg, key, problems)
    info = None if problems else cost_panel(cfg)
    if problems:
        st.warning(f"Launch is blocked until {'this value is' if len(problems) == 1 else 'these values are'} "
                   "fixed: " + "; ".join(problems), icon=":material/block:")
    return info


def seeds_input(where: Any, most: int) -> tuple[Any, bool]:
    """The number of seeds of a paired comparison (any value can be typed; one outside 1..`most` is said under the
    launch buttons) and whether it is within range."""
    n = where.number_input("Seeds", value=3, step=1, key="launch.seeds",
                           help=f"Runs per arm of the paired comparison (plain and GIST share each seed), 1 to {most}.")
    ok = n is not None and 1 <= n <= most
    if not ok:
        st.error(f"Seeds — {n} is out of range (must be 1 to {most})", icon=":material/error:")
    return n, ok


@st.cache_data(max_entries=32, show_spinner=False)
def split_sizes(dataset: str, val_size: int, seed: int) -> dict[str, Any]:
    """`ge.split_sizes` of a dataset, cached (cleared when an upload is deleted)."""
    return ge.split_sizes(ge.DataConfig(dataset=dataset, val_size=val_size, seed=seed))


def size_check(cfg: dict[str, Any], key: Any, problems: list[str]) -> None:
    """Check the data sizes against what the chosen dataset holds per split (`ge.split_sizes`), before a run: each
    size too large is said (and added to `problems`) with a button that sets the sizes to what is available;
    otherwise one line says what is available. `key(name)` makes the launch page's widget keys."""
    data = cfg["data"]
    try:
        sizes = split_sizes(data["dataset"], int(data.get("val_size") or 0), int(data.get("seed") or 0))
    except (ge.DatasetError, OSError) as exc:
        show_problem(f"Dataset — {exc}", problems)
        return
    unit = "documents" if services.dataset_modality(data["dataset"]) == "text" else "images"
    fits, said = {}, []
    for name, have, what in (("train_size", sizes["train"], "the train split"),
                             ("test_size", sizes["test"], "the test split"),
                             ("few_shot", sizes["min_per_class"], "its smallest class in the train split")):
        want = data.get(name)
        if want is not None and want > have:
            fits[name] = have
            said.append(f"{_label(name, 'data')} — data.{name} is {want:,} but {what} holds {have:,} {unit}")
    available = (f"{sizes['train']:,} training and {sizes['test']:,} test {unit}"
                 + (f" ({sizes['val']:,} held out for validation)" if sizes["val"] else ""))
    if not fits:
        st.caption(f"Available: {available}; {sizes['split']}.")
        return
    for line in said:
        show_problem(line, problems)

    def fit() -> None:
        for name, n in fits.items():
            data[name] = n
            st.session_state[key(f"data.{name}")] = str(n)  # the number box holds text

    new = ", ".join(f"{_label(n, 'data')} {v:,}" for n, v in fits.items())
    st.button(f"Fit the sizes to the dataset ({new})",
              on_click=fit, icon=":material/fit_screen:", key=key("fit_sizes"),
              help=f"Sets the sizes to what the dataset holds: {available}.")


def recipe_picker(cfg: dict[str, Any], key: Any, apply: Any) -> None:
    """A recipe select box (none by default): picking one fills the form with its values and records `recipe` in the
    config; `apply(config)` replaces the draft and resets the widgets (state.apply_preset). Edits made afterwards win
    over the recipe (load_run_config merges it under the config's own keys)."""
    names = [None, *ge.RECIPES]
    current = cfg.get("recipe") if cfg.get("recipe") in names else None
    picked = st.selectbox("Recipe", names, index=names.index(current), key=key("recipe"),
                          format_func=lambda n: "none (the values below)" if n is None else n,
                          help=services.recipe_help())
    if picked == current:
        return
    if picked is None:
        cfg["recipe"] = None
        return
    try:  # every key written out, as the form shows them; the dataset stays yours
        apply(ge.to_dict(ge.load_run_config({"recipe": picked, "data": cfg["data"]})))
    except ge.ConfigError as exc:
        st.error(f"Recipe {picked} does not apply: {exc}")
        return
    st.rerun()


def advanced_options(cfg: dict[str, Any], sections: dict[str, list[dict[str, Any]]], key: Any,
                     problems: list[str] | None = None, auto_name: str = "") -> None:
    """The run name and the data, training and backbone forms (edits `cfg` in place); `key(name)` makes keys;
    refused values go to `problems`; `auto_name` is the name a run gets when the name is left empty."""
    cfg["name"] = st.text_input("Run name", value=cfg.get("name") or "", key=key("name"), placeholder=auto_name,
                                help="A label in the run list; empty = the preset's name while the form still "
                                     "equals that preset, else method · dataset · backbone.") or None
    st.markdown("**Data**")
    cfg["data"].update(config_form(sections["data"], cfg["data"], key("data"), columns=3, path="data",
                                   skip=["dataset", "max_length"], problems=problems))  # max_length: text only
    st.markdown("**Training**")
    cfg["train"] = config_form(sections["train"], cfg["train"], key("train"), columns=3, path="train",
                               problems=problems)
    st.markdown("**Backbone**")
    cfg.update(config_form(sections["model"], cfg, key("model"), columns=3, problems=problems,
                           skip=["backbone", "image_size", "method", "num_classes"]))
