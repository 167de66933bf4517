"""What the pages ask of the engine: presets, published numbers, cached models, previews, estimates, attention."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import streamlit as st
import yaml

import gist_engine as ge

_HERE = Path(__file__).resolve().parent
# The example configs, presets and reference numbers: beside the modules in an installed gist_studio package,
# beside app/ in a checkout.
ASSETS = _HERE / "assets" if (_HERE / "assets").is_dir() else _HERE.parent / "assets"
PRESETS_FILE = ASSETS / "presets.yaml"  # the launch page's presets: labels and the run config files they load
PUBLISHED_FILE = ASSETS / "published" / "vtab1k.yaml"  # published VTAB-1k numbers shown beside the comparisons
PRESET_KEYS = ("label", "config", "overrides")
GALLERY_ENV = "GIST_GALLERY_DIR"  # another gallery folder than the shipped one (tests, a course's own examples)
MODEL_CACHE_SIZE = 3  # models kept for the whole server (built from a config or loaded from a run)

Source = str | Path | ge.RunConfig | dict[str, Any]  # a run directory, or a config of an untrained model


# ------------------------------------------------------------------------------------------------- assets
def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `extra` laid over it, nested mappings merged key by key (neither is changed)."""
    out = copy.deepcopy(dict(base))
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) \
            else copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None


def gallery_dir() -> Path:
    """The folder of the recorded examples: `$GIST_GALLERY_DIR`, else the shipped `assets/gallery`."""
    return Path(os.environ.get(GALLERY_ENV) or ASSETS / "gallery")


def load_presets(index: str | Path = PRESETS_FILE) -> dict[str, dict[str, Any]]:
    """The launch page's presets, read from the YAML index and the run config files it names.

    Args:
        index: A YAML file with a `presets` list; each entry has `label`, `config` (a run config file, relative to
            the index) and optionally `overrides` (keys the app sets on top of that file).

    Returns:
        label -> run config (a nested dict, as in the YAML), in the index's order; the first is the starting draft.

    Raises:
        ValueError: naming the file and the entry of a malformed index; ConfigError naming the file and the key of
            a config that does not validate.
    """
    index = Path(index)
    data = _read_yaml(index)
    entries = data.get("presets") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{index}: needs a non-empty `presets` list")
    out = {}
    for i, entry in enumerate(entries):
        where = f"{index}: presets[{i}]"
        if not isinstance(entry, dict) or not {"label", "config"} <= set(entry):
            raise ValueError(f"{where} needs a `label` and a `config` file")
        if unknown := sorted(set(entry) - set(PRESET_KEYS)):
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(PRESET_KEYS)}")
        path = index.parent / entry["config"]
        config = _merge(_read_yaml(path) or {}, entry.get("overrides") or {})
        try:
            ge.load_run_config(config)
        except ge.ConfigError as exc:
            raise ge.ConfigError(f"{index}: preset {entry['label']!r} (config {path}): {exc}") from None
        out[str(entry["label"])] = config
    return out


def demo_config() -> dict[str, Any]:
    """The first preset (the offline CPU demo): the config the launch page starts from."""
    return next(iter(load_presets().values()))


def load_published(path: str | Path = PUBLISHED_FILE) -> dict[str, Any]:
    """Published reference numbers from a data file (not measured here).

    Returns:
        `source` (where the numbers come from), `claim` (the paper's headline), `columns` {key: header} and `rows`
        (one dict per method with the keys of `columns`), as in the file; `gist_authors`: what the GIST authors
        themselves published (`source`, `columns`, `rows`, the same shape), shown as the paper's.

    Raises:
        ValueError: a missing part or a row whose keys are not its table's columns (named).
    """
    path = Path(path)
    data = _read_yaml(path)
    missing = [k for k in ("source", "claim", "columns", "rows", "gist_authors")
               if not isinstance(data, dict) or k not in data]
    if not missing:
        missing = [f"gist_authors.{k}" for k in ("source", "columns", "rows")
                   if not isinstance(data["gist_authors"], dict) or k not in data["gist_authors"]]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}")
    for where, table in (("", data), ("gist_authors.", data["gist_authors"])):
        for i, row in enumerate(table["rows"]):
            if set(row) != set(table["columns"]):
                raise ValueError(f"{path}: {where}rows[{i}] has keys {sorted(row)}, the columns are "
                                 f"{sorted(table['columns'])}")
    return data


# ------------------------------------------------------------------------------------------------- catalogue
ENGINE_LOADING = "Loading the model engine (torch, timm) ... the first time after a start, this takes a while."


@st.cache_data(show_spinner=ENGINE_LOADING)
def catalogue() -> dict[str, Any]:
    """Everything the forms offer: `ge.catalogue()` plus `image_backbones` (the registered ViTs) and `sections`:
    model (top-level scalar keys), gist, data, train — each a list of `ge.describe_fields` dicts."""
    cat = ge.catalogue()
    cat["image_backbones"] = {n: b for n, b in cat["backbones"].items()
                              if b.get("modality", "image") == "image" and b.get("patch_size")}
    model = [f for f in ge.describe_fields(ge.ModelConfig) if f["name"] not in ("gist", "method_args")]
    cat["sections"] = {"model": model, "gist": ge.describe_fields(ge.GistConfig),
                       "data": ge.describe_fields(ge.DataConfig), "train": ge.describe_fields(ge.TrainConfig)}
    return cat


def recipe_help() -> str:
    """The help of the recipe select box: what a recipe is and where its values come from."""
    return ("A named set of defaults from the official GIST release (docs/recipes.md): gist_release is the common "
            "VTAB-1k protocol, vtab1k/<task> adds the task's classes, lr, weight decay and drop-path; "
            "fewshot/<dataset> are the authors' few-shot values. Picking one fills the form; your later edits win. "
            "Set the dataset to the task's folder yourself (vtab1k:<root>/<task>, or vtab1k:<task> once imported "
            "on the Datasets page).")


def hub_backbone(name: str) -> dict[str, dict[str, Any]]:
    """{name: its catalogue entry} for a timm hub ViT that is not registered (e.g. a recipe's backbone), with the
    default size from timm's pretrained config and the patch size from the name; {} for a registered or text name
    or one timm does not know."""
    cat = ge.catalogue()
    if name in cat["backbones"] or name in cat["text_backbones"]:
        return {}
    try:
        size = ge.backbone_data_config(name)["image_size"]
    except (ge.BackboneError, ValueError):
        return {}
    patch = re.search(r"patch(\d+)", name)
    return {name: {**ge.backbone_info(name), "title": f"{name} (timm hub, needs a network)",
                   "default_size": size, "patch_size": int(patch.group(1)) if patch else 16}}


def config_yaml(config: ge.RunConfig | dict[str, Any]) -> str:
    """The validated config as YAML (every key, defaults filled in), ready for `--config`."""
    return yaml.safe_dump(ge.to_dict(ge.load_run_config(config)), sort_keys=False)


def cli_command(config: ge.RunConfig | dict[str, Any], config_file: str = "run.yaml", group_seeds: int = 0) -> str:
    """The shell line that reproduces a run (or, with `group_seeds`, a paired comparison) from its YAML file."""
    cfg = ge.load_run_config(config)
    label = re.sub(r"[^\w.-]+", "-", cfg.name or f"{cfg.method}-{'gist' if cfg.gist.enabled else 'plain'}").strip("-")
    if group_seeds:
        return f"python -m gist_engine compare --config {config_file} --seeds {group_seeds} --out runs/{label}"
    return f"python -m gist_engine train --config {config_file} --out runs/{label}"


def data_root() -> Path:
    """The app's data directory (runs, uploads, the SQLite store): $GIST_DATA_DIR, else the user data directory."""
    return Path(ge.runs_data_dir())


def open_run_manager(root: str | Path | None = None, **kwargs: Any) -> ge.RunManager:
    """A RunManager on `root` (default `data_root()`); kwargs: more `RunManager` arguments (torch_threads, ...)."""
    return ge.RunManager(root=Path(root) if root is not None else data_root(), **kwargs)


@st.cache_resource(show_spinner=False)
def load_engine_in_background() -> threading.Thread:
    """Start importing the engine's heavy libraries (`ge.preload`: torch, timm, onnx) in a daemon thread, once per
    server process, when a page that builds models opens: it draws its title at once (`gist_engine` itself imports
    none of them) and waits only for what is left, behind `ENGINE_LOADING`."""
    thread = threading.Thread(target=ge.preload, name="gist-engine-preload", daemon=True)
    thread.start()
    return thread


def mlflow_available() -> bool:
    """Whether MLflow export can work (the package is installed)."""
    return importlib.util.find_spec("mlflow") is not None


# ------------------------------------------------------------------------------------------------- datasets
def list_datasets(root: str | Path | None = None, modality: str | None = "image") -> list[dict[str, Any]]:
    """Selectable datasets: registered ones without a folder argument, then (images) uploads under `<root>/datasets`.

    Args:
        root: The data directory of the uploads (default `data_root()`).
        modality: "image" (default), "text", or None for both.

    Each entry: `dataset` (the `data.dataset` value), `title`, `source`, `licence`, `offline`, `installed`,
    `images` (documents for text), `classes`, `uploaded`, `modality`.
    """
    out = []
    for name, info in ge.describe_datasets().items():
        kind = info.get("modality", "image")
        if info["usage"] != name or modality not in (None, kind):  # folders come as uploads
            continue
        out.append({"dataset": name, **{k: info[k] for k in ("title", "source", "licence", "offline", "installed",
                                                             "images", "classes")}, "uploaded": False,
                    "modality": kind})
    if modality in (None, "image"):
        for up in ge.list_uploaded_datasets(root if root is not None else data_root()):
            out.append({"dataset": up["dataset"], "title": f"Uploaded: {up['name']}",
                        "source": f"your zip upload, stored in {up['path']}", "licence": "that of your images",
                        "offline": True, "installed": True, "images": up["images"], "classes": len(up["classes"]),
                        "uploaded": True, "modality": "image"})
    return out


def dataset_modality(dataset: str) -> str:
    """"text" or "image": the modality of a `data.dataset` value (unknown names count as images: the image path
    reports them properly)."""
    try:
        return ge.dataset_modality(dataset)
    except ge.DatasetError:
        return "image"


@st.cache_data(max_entries=16, show_spinner=False)
def dataset_preview(dataset: str, per_class: int = 4, size: int = 48) -> dict[str, Any]:
    """`ge.dataset_preview` cached (thumbnails per class, class counts); cleared when a zip is imported."""
    return ge.dataset_preview(dataset, per_class=per_class, size=size)


@st.cache_data(max_entries=16, show_spinner=False)
def text_preview(dataset: str, per_class: int = 3, chars: int = 300) -> dict[str, Any]:
    """`ge.text_dataset_preview` cached (a few documents per class, class counts)."""
    return ge.text_dataset_preview(dataset, per_class=per_class, chars=chars)


def class_names(dataset: str) -> list[str] | None:
    """The class names of a dataset (from its cached preview), or None when it cannot be read now."""
    try:
        preview = text_preview(dataset, 1, 8) if dataset_modality(dataset) == "text" else dataset_preview(dataset, 1, 8)
    except Exception:  # a dataset missing or unreadable here: the page shows class indices instead
        return None
    return list(preview["class_names"])


def import_dataset_zip(data: bytes, name: str, root: str | Path | None = None, overwrite: bool = False) -> Any:
    """`ge.import_imagefolder_zip` into the app's data directory (see there for the checks); its ImportReport."""
    report = ge.import_imagefolder_zip(data, name, root if root is not None else data_root(), overwrite=overwrite)
    dataset_preview.clear()
    return report


# ------------------------------------------------------------------------------------------------- models
@st.cache_resource(max_entries=MODEL_CACHE_SIZE, show_spinner=False)
def _cached_model(key: str, _build: Callable[[], Any]) -> Any:
    """The model of `key`, built by `_build` on first use and shared by every session; least recently used go."""
    return _build()


@st.cache_resource(show_spinner=False)
def _inspection_lock() -> threading.Lock:
    """One use of a cached model at a time: attention capture switches module flags, a timing step train mode."""
    return threading.Lock()


def _model_key(config: ge.RunConfig | dict[str, Any]) -> tuple[str, ge.RunConfig]:
    cfg = ge.load_run_config(config)
    model_part = {k: v for k, v in ge.to_dict(cfg).items() if k not in ("name", "recipe", "data", "train")}
    if ge.is_text_backbone(cfg.backbone):  # a text model's length is part of it (positions, seq_len)
        model_part["max_length"] = cfg.data.max_length
    return json.dumps(model_part, sort_keys=True), cfg


def _num_classes(cfg: ge.RunConfig) -> int:
    if cfg.num_classes:
        return cfg.num_classes
    try:
        if dataset_modality(cfg.data.dataset) == "text":
            return len(text_preview(cfg.data.dataset, 1, 8)["class_names"])
        return len(dataset_preview(cfg.data.dataset, 1, 8)["class_names"])
    except Exception:  # a dataset that cannot be read now: the model is still describable
        return 10


def model_for_config(config: ge.RunConfig | dict[str, Any]) -> Any:
    """The (untrained) GistViT of a config, built once and cached (eval mode, CPU); num_classes from its data."""
    cfg = ge.load_run_config(config)
    if cfg.num_classes is None:  # a copy: load_run_config hands back the caller's own RunConfig
        cfg = dataclasses.replace(cfg, num_classes=_num_classes(cfg))
    key, cfg = _model_key(cfg)
    return _cached_model(key, lambda: ge.build_model(cfg, seed=cfg.train.seed).eval())


def model_for_run(run_dir: str | Path) -> Any:
    """A finished run's model from its checkpoint (cached by path and checkpoint time), eval mode, CPU."""
    path = Path(run_dir) / ge.CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint in {run_dir} yet (a run writes it when it completes or stops)")
    return _cached_model(f"run:{path}:{path.stat().st_mtime_ns}", lambda: ge.load_model(path)[0].eval())


def _model(source: Source) -> Any:
    return model_for_run(source) if isinstance(source, (str, Path)) else model_for_config(source)


def model_modality(source: Source) -> str:
    """"text" or "image": the modality of a run's (its directory) or a config's model (loads/builds it, cached)."""
    return getattr(_model(source), "modality", "image")


def describe_config(config: ge.RunConfig | dict[str, Any]) -> dict[str, Any]:
    """Parameter counts and sequence layout of a config's model, before any run (builds it once, cached).

    Returns:
        `describe_model`'s dict (trainable_params, total_params, gist_params, sequence_layout, seq_len, ...)
        plus `plain_trainable_params` (the same method without GIST), `num_classes`, `grid`, `embed_dim`,
        `num_layers`, `num_heads`, `modality` ("image" or "text"; `grid` is None for text).
    """
    model = model_for_config(config)
    info = ge.describe_model(model, ge.load_run_config(config))
    info.update(plain_trainable_params=info["trainable_params"] - info["gist_params"], num_classes=model.num_classes,
                embed_dim=model.embed_dim, modality=getattr(model, "modality", "image"))
    if info["modality"] == "text":
        info.update(grid=None, num_layers=len(model.layers), num_heads=model.backbone.config.num_attention_heads)
    else:
        info.update(grid=list(model.grid_size), num_layers=len(model.vit.blocks),
                    num_heads=model.vit.blocks[0].attn.num_heads if hasattr(model.vit.blocks[0], "attn") else None)
    info["tuner_args"] = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
                          for k, v in info["tuner_args"].items()}
    return info


@st.cache_data(show_spinner=False)
def _throughput(key: str, batch: int, how: str, _cfg: ge.RunConfig) -> dict[str, Any]:
    """`ge.measure_throughput` of the model of `key` trained as `how` says (device, precision, threads: measured
    once per model, batch and `how`) and its `build_s`."""
    start = time.perf_counter()
    model = model_for_config(_cfg)
    build_s = time.perf_counter() - start
    with _inspection_lock():
        return {**ge.measure_throughput(model, batch, _cfg.train.device, _cfg.train.cpu_threads, _cfg),
                "build_s": build_s}


def estimate_run(config: ge.RunConfig | dict[str, Any]) -> dict[str, Any]:
    """A run-time estimate on this machine: the trainer's step and evaluation timed (`ge.measure_throughput`),
    scaled to the schedule (`ge.estimate_run_time`).

    Returns:
        `ge.estimate_run_time`'s dict: `seconds` (total), `steps`, `train_images`, `test_images`, `evals`, the
        measured per-image times and `device`.
    """
    cfg = ge.load_run_config(config)
    entry = next((d for d in list_datasets(modality=None) if d["dataset"] == cfg.data.dataset), None) or {}
    batch = min(8, cfg.train.batch_size)  # timed at batch // 4 and batch: the fixed and per-image parts of a step
    tc = cfg.train
    how = json.dumps([tc.device, tc.precision, tc.frozen_dtype, tc.cpu_threads])
    return ge.estimate_run_time(cfg, _throughput(_model_key(cfg)[0], batch, how, cfg), entry.get("images"),
                                entry.get("classes"))


# ------------------------------------------------------------------------------------------------- attention
def attention_for(source: Source, image: Any) -> Any:
    """CLS/Gist attention maps (`ge.image_attention`) of one image (a file's bytes, or RGB uint8 (H, W, 3)) for a
    run (its directory) or an untrained config's model; `images` holds the image resized to the model input."""
    model = _model(source)
    with _inspection_lock():
        return ge.image_attention(model, image)


def text_attention_for(source: Source, text: str) -> Any:
    """CLS/Gist attention over the tokens of one text (`ge.compute_token_attention`) for a text run or config."""
    model = _model(source)
    if getattr(model, "modality", "image") != "text":
        raise ValueError("not a text model: use attention_for with an image")
    with _inspection_lock():
        return ge.compute_token_attention(model, text)


def attributions_for(source: Source, image: Any, n_steps: int = 16, target: int | None = None) -> tuple[Any, Any]:
    """Integrated Gradients (captum) for the CLS head and the Gist head of one image: `ge.explain_image`'s
    (Attributions, the image resized to the model input (S, S, 3))."""
    model = _model(source)
    with _inspection_lock():
        return ge.explain_image(model, image, target=target, n_steps=n_steps)


def overlay(image: Any, heat: Any, cmap: str = "inferno", alpha: float = 0.55, vmin: float | None = None,
            vmax: float | None = None) -> Any:
    """A heat map (any grid) blended over an RGB uint8 image; see `ge.overlay_heatmap`."""
    return ge.overlay_heatmap(image, heat, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax)


@st.cache_data(max_entries=32, show_spinner=False)
def split_sizes(dataset: str, val_size: int, seed: int) -> dict[str, Any]:
    """`ge.split_sizes` of a dataset, cached (cleared when an upload is deleted)."""
    return ge.split_sizes(ge.DataConfig(dataset=dataset, val_size=val_size, seed=seed))
