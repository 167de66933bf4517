"""Engine-side helpers for GIST Studio's app: cached models, previews, estimates, maps on numpy images, no UI."""

from __future__ import annotations

import copy
import functools
import importlib.util
import io
import json
import math
import os
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import yaml

from .config import (
    DataConfig,
    GistConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    describe_fields,
    load_run_config,
    to_dict,
)
from .data.upload import ImportReport, UploadLimits, import_imagefolder_zip, list_uploaded_datasets

# The offline CPU demo (the same run as assets/configs/demo_cpu.yaml): what the launch page starts from.
DEMO_CONFIG: dict[str, Any] = {
    "name": "demo-mnist5k-gist-adapter", "backbone": "dinov2_s14", "image_size": 112, "method": "adapter",
    "method_args": {"variant": "gist"},
    "gist": {"enabled": True, "length": 1, "loss": "bkld", "ce_weight": 0.5, "loss_weight": 0.75,
             "temperature": 3.0},
    "data": {"dataset": "mnist5k", "train_size": 1000, "test_size": 500, "seed": 0},
    "train": {"epochs": 1, "batch_size": 32, "lr": 0.005, "weight_decay": 0.0001, "warmup_epochs": 0.1,
              "seed": 0, "attention_every": 8},
}

# A run that finishes in seconds on any CPU: a tiny random ViT on the 8x8 digits (for trying the app out, and e2e).
SMOKE_CONFIG: dict[str, Any] = {
    "name": "smoke-digits-tiny-vit", "backbone": "test_vit", "image_size": 32, "method": "linear",
    "method_args": {}, "gist": {"enabled": True},
    "data": {"dataset": "digits", "train_size": 256, "test_size": 100, "seed": 0},
    "train": {"epochs": 20, "batch_size": 16, "lr": 0.003, "seed": 0, "attention_every": 40},
}
PRESETS: dict[str, dict[str, Any]] = {"CPU demo (DINOv2-S, MNIST, minutes)": DEMO_CONFIG,
                                      "Smoke test (tiny random ViT, seconds)": SMOKE_CONFIG}

# Published VTAB-1k results, ViT-B/16 ImageNet-21k: (mean of 19 tasks, mean of the 3 group means), percent.
# Source: the NOAH paper's table (Zhang et al., 2022) and the V-PETL Bench compilation; published, not measured here
# and not checkpoint-matched to GIST's AugReg backbone.
PUBLISHED_VTAB1K: tuple[tuple[str, float, float], ...] = (
    ("Full fine-tuning", 65.57, 68.97), ("Linear probe", 52.94, 57.64), ("VPT-Deep", 69.43, 71.97),
    ("BitFit", 62.05, 65.22), ("Adapter", 71.44, 73.86), ("LoRA", 72.25, 74.60), ("AdaptFormer", 72.32, 74.75),
    ("SSF", 73.10, 75.69), ("NOAH", 73.25, 75.48), ("FacT", 73.23, 75.55),
)
PUBLISHED_SOURCE = ("published VTAB-1k numbers, ViT-B/16 IN-21k (NOAH table / V-PETL Bench compilation); "
                    "not measured by GIST Studio")
GIST_CLAIM = ("GIST paper (abstract): Adapter inside GIST gains +2.25 points of mean VTAB-1k accuracy with ViT-B/16 "
              "for +0.8K parameters.")
MAX_UPLOAD_PIXELS = 40_000_000  # an image uploaded to the attention page: width * height cap

_LOCK = threading.RLock()  # Streamlit runs each browser session on its own thread
_MODELS: OrderedDict[str, Any] = OrderedDict()  # model key -> GistViT (eval mode), least recently used first
_MODEL_CACHE_SIZE = 3
_THROUGHPUT: dict[str, dict[str, float]] = {}


# ------------------------------------------------------------------------------------------------- catalogue
@functools.lru_cache(maxsize=1)
def studio_catalogue() -> dict[str, Any]:
    """Everything the forms offer: the CLI catalogue plus the fields of each config section.

    Returns:
        `cli.catalogue()` (backbones, tuners with options, losses, datasets, config), `image_backbones` (the
        registered ViTs the app offers) and `sections`: model
        (top-level scalar keys), gist, data, train — each a list of `describe_fields` dicts.
    """
    from .cli import catalogue

    cat = copy.deepcopy(catalogue())
    cat["image_backbones"] = {n: b for n, b in cat["backbones"].items()
                              if b.get("modality", "image") == "image" and b.get("patch_size")}
    model = [f for f in describe_fields(ModelConfig) if f["name"] not in ("gist", "method_args")]
    cat["sections"] = {"model": model, "gist": describe_fields(GistConfig), "data": describe_fields(DataConfig),
                       "train": describe_fields(TrainConfig)}
    return cat


def is_text_backbone(name: str) -> bool:
    """Whether a `backbone` value names a text encoder (a registered text backbone or `hf:<name>`)."""
    from .text.backbones import is_text_backbone as _is_text

    return _is_text(name)


def config_yaml(config: RunConfig | dict[str, Any]) -> str:
    """The validated config as YAML (every key, defaults filled in), ready for `--config`."""
    return yaml.safe_dump(to_dict(load_run_config(config)), sort_keys=False)


def cli_command(config: RunConfig | dict[str, Any], config_file: str = "run.yaml", group_seeds: int = 0) -> str:
    """The shell line that reproduces a run (or, with `group_seeds`, a paired comparison) from its YAML file."""
    cfg = load_run_config(config)
    label = cfg.name or f"{cfg.method}-{'gist' if cfg.gist.enabled else 'plain'}"
    if group_seeds:
        return f"python -m gist_engine compare --config {config_file} --seeds {group_seeds} --out runs/{label}"
    return f"python -m gist_engine train --config {config_file} --out runs/{label}"


def data_root() -> Path:
    """The app's data directory: $GIST_DATA_DIR, else the RunManager's default (user data dir)."""
    env = os.environ.get("GIST_DATA_DIR")
    if env:
        return Path(env)
    try:
        from .runs import data_dir
    except ImportError:
        import platformdirs

        return Path(platformdirs.user_data_dir("gist-studio"))
    return Path(data_dir())


def open_run_manager(root: str | Path | None = None, **kwargs: Any) -> Any:
    """A RunManager on `root` (default `data_root()`); its runs record attention snapshots when asked (the Trainer).

    Args:
        root: The data directory.
        kwargs: More `RunManager` arguments (workers_per_device, torch_threads, ...).
    """
    from .runs import RunManager

    return RunManager(root=Path(root) if root is not None else data_root(), **kwargs)


def run_not_found_error() -> type[Exception]:
    """The exception `RunManager.get` raises for an unknown id (KeyError when the store has none of its own)."""
    try:
        from .runs import RunNotFound
    except ImportError:
        return KeyError
    return RunNotFound


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
    from .data import describe_datasets

    out = []
    for name, info in describe_datasets().items():
        kind = info.get("modality", "image")
        if info["usage"] != name or modality not in (None, kind):  # folders come as uploads
            continue
        out.append({"dataset": name, **{k: info[k] for k in ("title", "source", "licence", "offline", "installed",
                                                             "images", "classes")}, "uploaded": False,
                    "modality": kind})
    if modality in (None, "image"):
        for up in list_uploaded_datasets(root if root is not None else data_root()):
            out.append({"dataset": up["dataset"], "title": f"Uploaded: {up['name']}",
                        "source": f"your zip upload, stored in {up['path']}", "licence": "that of your images",
                        "offline": True, "installed": True, "images": up["images"], "classes": len(up["classes"]),
                        "uploaded": True, "modality": "image"})
    return out


def dataset_modality(dataset: str) -> str:
    """"text" or "image": the modality of a `data.dataset` value (uploads and unknown names count as images)."""
    from .data.registry import _lookup

    try:
        spec, _ = _lookup(dataset)
    except Exception:  # an unknown or unreadable name: the image path reports it properly
        return "image"
    return getattr(spec, "modality", "image")


@functools.lru_cache(maxsize=16)
def text_preview(dataset: str, per_class: int = 3, chars: int = 300) -> dict[str, Any]:
    """`text_dataset_preview` cached (a few documents per class, class counts); see there."""
    from .text.data import text_dataset_preview

    return text_dataset_preview(dataset, per_class=per_class, chars=chars)


def text_samples(dataset: str, n: int = 8, seed: int = 0) -> dict[str, Any]:
    """`n` test-split documents of a text dataset (seeded): for the attention page.

    Returns:
        `texts` (pairs joined with " [SEP] "), `labels` (n,), `class_names`.
    """
    from .data.registry import SPLIT_SEED, TEST_FRACTION
    from .data.splits import fixed_split

    raw = _raw_dataset(dataset)
    pool = raw.test
    if pool is None:
        pool = raw.train.take(fixed_split(raw.train.labels, TEST_FRACTION, SPLIT_SEED)[1])
    pick = np.sort(np.random.default_rng(seed).choice(len(pool), size=min(n, len(pool)), replace=False))
    texts, pairs = pool.source.take(pool.index[pick])
    if pairs is not None:
        texts = [f"{t} [SEP] {q}" for t, q in zip(texts, pairs, strict=True)]
    return {"texts": list(texts), "labels": pool.labels[pick].tolist(), "class_names": list(raw.class_names)}


def _raw_dataset(dataset: str) -> Any:
    from .data.registry import _lookup

    spec, arg = _lookup(dataset)
    return spec.read(arg)


def _as_rgb(batch: Any) -> np.ndarray:
    """uint8 (k, C, S, S) tensor -> (k, S, S, 3) numpy."""
    return batch.expand(-1, 3, -1, -1).permute(0, 2, 3, 1).contiguous().numpy()


@functools.lru_cache(maxsize=16)
def dataset_preview(dataset: str, per_class: int = 4, size: int = 48) -> dict[str, Any]:
    """A few thumbnails per class and the class counts of a dataset (reads it; downloads nothing new).

    Args:
        dataset: A `data.dataset` value (`mnist5k`, `imagefolder:/path`, ...).
        per_class: Thumbnails per class (the first ones of the train pool, in order).
        size: Thumbnail side in pixels.

    Returns:
        `class_names`, `counts` (images per class over all pools), `total`, `where` (file or folder read),
        `thumbnails` {class: uint8 (k, size, size, 3)}.

    Raises:
        DatasetError: when it cannot be read (e.g. needs a network), with the reason.
    """
    raw = _raw_dataset(dataset)
    pools = [p for p in (raw.train, raw.test) if p is not None]
    counts = {c: int(sum((p.labels == i).sum() for p in pools)) for i, c in enumerate(raw.class_names)}
    thumbs = {}
    for i, c in enumerate(raw.class_names):
        pos = np.flatnonzero(raw.train.labels == i)[:per_class]
        if len(pos):
            thumbs[c] = _as_rgb(raw.train.source.fetch(raw.train.index[pos], size))
    return {"class_names": list(raw.class_names), "counts": counts, "total": sum(counts.values()),
            "where": raw.where, "thumbnails": thumbs}


def dataset_samples(dataset: str, n: int = 8, size: int = 112, seed: int = 0) -> dict[str, Any]:
    """`n` test-split images of a dataset (seeded), resized for a model: for the attention page.

    Returns:
        `images` uint8 (n, size, size, 3), `labels` (n,), `class_names`.
    """
    from .data.registry import SPLIT_SEED, TEST_FRACTION
    from .data.splits import fixed_split

    raw = _raw_dataset(dataset)
    pool = raw.test
    if pool is None:
        pool = raw.train.take(fixed_split(raw.train.labels, TEST_FRACTION, SPLIT_SEED)[1])
    pick = np.sort(np.random.default_rng(seed).choice(len(pool), size=min(n, len(pool)), replace=False))
    return {"images": _as_rgb(pool.source.fetch(pool.index[pick], size)), "labels": pool.labels[pick].tolist(),
            "class_names": list(raw.class_names)}


def decode_image(data: bytes, max_pixels: int = MAX_UPLOAD_PIXELS) -> np.ndarray:
    """An uploaded image file's bytes as RGB uint8 (H, W, 3); ValueError for a non-image or a too-large one."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                if img.size[0] * img.size[1] > max_pixels:
                    raise ValueError(f"the image has {img.size[0]}x{img.size[1]} pixels; the cap is {max_pixels:,}")
                return np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
    except UnidentifiedImageError:
        raise ValueError("not an image file PIL can read") from None
    except (OSError, SyntaxError, Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot decode the image: {exc}") from None


def import_dataset_zip(data: bytes, name: str, root: str | Path | None = None, overwrite: bool = False,
                       limits: UploadLimits | None = None) -> ImportReport:
    """`data.upload.import_imagefolder_zip` into the app's data directory (see there for the checks)."""
    report = import_imagefolder_zip(data, name, root if root is not None else data_root(), limits=limits,
                                    overwrite=overwrite)
    dataset_preview.cache_clear()
    return report


# ------------------------------------------------------------------------------------------------- models
def _model_key(config: RunConfig | dict[str, Any]) -> tuple[str, RunConfig]:
    cfg = load_run_config(config)
    model_part = {k: v for k, v in to_dict(cfg).items() if k not in ("name", "data", "train")}
    if is_text_backbone(cfg.backbone):  # a text model's length is part of it (positions, seq_len)
        model_part["max_length"] = cfg.data.max_length
    return json.dumps(model_part, sort_keys=True), cfg


def _cached(key: str, build: Callable[[], Any]) -> Any:
    with _LOCK:
        if key in _MODELS:
            _MODELS.move_to_end(key)
            return _MODELS[key]
        model = build()
        _MODELS[key] = model
        while len(_MODELS) > _MODEL_CACHE_SIZE:
            _MODELS.popitem(last=False)
        return model


def _num_classes(cfg: RunConfig) -> int:
    if cfg.num_classes:
        return cfg.num_classes
    try:
        if dataset_modality(cfg.data.dataset) == "text":
            return len(text_preview(cfg.data.dataset, 1, 8)["class_names"])
        return len(dataset_preview(cfg.data.dataset, 1, 8)["class_names"])
    except Exception:  # a dataset that cannot be read now: the model is still describable
        return 10


def model_for_config(config: RunConfig | dict[str, Any]) -> Any:
    """The (untrained) GistViT of a config, built once and cached (eval mode, CPU); num_classes from its data."""
    from .build import build_model

    cfg = load_run_config(config)
    if cfg.num_classes is None:
        cfg.num_classes = _num_classes(cfg)
    key, cfg = _model_key(cfg)
    return _cached(key, lambda: build_model(cfg, seed=cfg.train.seed).eval())


def model_for_run(run_dir: str | Path) -> Any:
    """A finished run's model from its checkpoint (cached by path and checkpoint time), eval mode, CPU."""
    from .train.checkpoint import CHECKPOINT_NAME, load_model

    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint in {run_dir} yet (a run writes it when it completes or stops)")
    key = f"run:{path}:{path.stat().st_mtime_ns}"
    return _cached(key, lambda: load_model(path)[0].eval())


def _model(source: str | Path | RunConfig | dict[str, Any]) -> Any:
    return model_for_run(source) if isinstance(source, (str, Path)) else model_for_config(source)


def describe_config(config: RunConfig | dict[str, Any]) -> dict[str, Any]:
    """Parameter counts and sequence layout of a config's model, before any run (builds it once, cached).

    Returns:
        `describe_model`'s dict (trainable_params, total_params, gist_params, sequence_layout, seq_len, ...)
        plus `plain_trainable_params` (the same method without GIST), `num_classes`, `grid`, `embed_dim`,
        `num_layers`, `num_heads`, `modality` ("image" or "text"; `grid` is None for text).
    """
    from .build import describe_model

    model = model_for_config(config)
    cfg = load_run_config(config)
    info = describe_model(model, cfg)
    extra = info["gist_params"]
    info.update(plain_trainable_params=info["trainable_params"] - extra, num_classes=model.num_classes,
                embed_dim=model.embed_dim, modality=getattr(model, "modality", "image"))
    if info["modality"] == "text":
        info.update(grid=None, num_layers=len(model.layers), num_heads=model.backbone.config.num_attention_heads)
    else:
        info.update(grid=list(model.grid_size), num_layers=len(model.vit.blocks),
                    num_heads=model.vit.blocks[0].attn.num_heads if hasattr(model.vit.blocks[0], "attn") else None)
    info["tuner_args"] = {k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v))
                          for k, v in info["tuner_args"].items()}
    return info


def _expected_sizes(cfg: RunConfig) -> tuple[int, int]:
    """(train images, test images) a config will use, from the registry's sizes (approximate for some)."""
    from .data.registry import TEST_FRACTION

    dc = cfg.data
    entry = next((d for d in list_datasets(modality=None) if d["dataset"] == dc.dataset), None)
    total = (entry or {}).get("images") or 1000
    classes = (entry or {}).get("classes") or 10
    test = round(TEST_FRACTION * total)
    train = total - test - dc.val_size
    if dc.few_shot:
        train = dc.few_shot * classes
    elif dc.train_size:
        train = dc.train_size
    return max(1, min(train, total)), max(1, dc.test_size or test)


def _throughput(cfg: RunConfig, batch: int) -> dict[str, float]:
    """Measured seconds per image (document) for a training step and for inference, on random images or
    max_length-token documents, CPU or CUDA."""
    import torch

    key = json.dumps([_model_key(cfg)[0], batch])
    with _LOCK:
        if key in _THROUGHPUT:
            return _THROUGHPUT[key]
        from .speed import configure_device
        from .train import resolve_device

        device = resolve_device(cfg.train.device)
        configure_device(device, cfg.train.cpu_threads)  # the thread count a run will use (process-wide anyway)
        start = time.perf_counter()
        model = model_for_config(cfg)
        build_s = time.perf_counter() - start
        if device.type != "cpu":
            model = copy.deepcopy(model).to(device)
        if getattr(model, "modality", "image") == "text":  # full-length documents: an upper bound per step
            x = model.tokenize([" ".join(["word"] * model.max_length)] * batch)  # on the model's device
        else:
            x = torch.randn(batch, 3, model.image_size, model.image_size, device=device)
        y = torch.zeros(batch, dtype=torch.long, device=device)
        model.train()
        try:
            times = []
            for _ in range(3):  # the first pass warms up allocators and kernels; the best of the next two counts
                tick = time.perf_counter()
                out = model(x)
                torch.nn.functional.cross_entropy(out.cls_logits, y).backward()
                times.append(time.perf_counter() - tick)
            model.zero_grad(set_to_none=True)
        finally:
            model.eval()
        with torch.inference_mode():
            infers = []
            for _ in range(2):
                tick = time.perf_counter()
                model(x)
                infers.append(time.perf_counter() - tick)
        times, infer = [min(times[1:])], min(infers)
        _THROUGHPUT[key] = {"train_s_per_image": times[-1] / batch, "eval_s_per_image": infer / batch,
                            "build_s": build_s, "device": str(device), "threads": torch.get_num_threads()}
        return _THROUGHPUT[key]


def estimate_run(config: RunConfig | dict[str, Any]) -> dict[str, Any]:
    """A rough run-time estimate on this machine: one measured training step, scaled to the schedule.

    Returns:
        `seconds` (total), `steps`, `train_images`, `test_images`, `evals`, the measured per-image times and
        `device`.
    """
    cfg = load_run_config(config)
    tc = cfg.train
    n_train, n_test = _expected_sizes(cfg)
    steps_per_epoch = math.ceil(n_train / tc.batch_size)
    steps = tc.epochs * steps_per_epoch if tc.max_steps is None else min(tc.max_steps, tc.epochs * steps_per_epoch)
    evals = tc.epochs // tc.eval_every + (1 if tc.epochs % tc.eval_every else 0)
    t = _throughput(cfg, min(4, tc.batch_size))
    train_s = steps * min(tc.batch_size, n_train) * t["train_s_per_image"]
    eval_s = evals * n_test * t["eval_s_per_image"]
    return {"seconds": train_s + eval_s + t["build_s"] + 0.5, "train_seconds": train_s, "eval_seconds": eval_s,
            "steps": steps, "train_images": n_train, "test_images": n_test, "evals": evals, **t}


# ------------------------------------------------------------------------------------------------- attention
def attention_for(source: str | Path | RunConfig | dict[str, Any], image: np.ndarray) -> Any:
    """CLS/Gist attention maps of one image for a run (its directory) or an untrained config's model.

    Args:
        source: A run directory (with its checkpoint) or a config (the untrained backbone + tuner + Gist token).
        image: RGB uint8 (H, W, 3) of any size (resized to the model input).

    Returns:
        `attention.AttentionMaps` (numpy arrays; `images` holds the resized image).
    """
    from .attention import compute_attention_maps
    from .explain import prepare_image

    model = _model(source)
    resized, x = prepare_image(model, image)
    with _LOCK:  # the capture hooks switch module flags: one inspection of a cached model at a time
        maps = compute_attention_maps(model, x, with_images=False)
    maps.images = resized[None]  # (1, S, S, 3)
    return maps


def model_modality(source: str | Path | RunConfig | dict[str, Any]) -> str:
    """"text" or "image": the modality of a run's (its directory) or a config's model (loads/builds it, cached)."""
    return getattr(_model(source), "modality", "image")


def text_attention_for(source: str | Path | RunConfig | dict[str, Any], text: str) -> Any:
    """CLS/Gist attention over the tokens of one text for a text run (its directory) or an untrained config.

    Returns:
        `text.attention.TokenAttention` (numpy; `strip`, `heatmap`, `prediction`).
    """
    from .text.attention import compute_token_attention

    model = _model(source)
    if getattr(model, "modality", "image") != "text":
        raise ValueError("not a text model: use attention_for with an image")
    with _LOCK:  # the capture switches the attention implementation: one inspection of a cached model at a time
        return compute_token_attention(model, text)


def attributions_for(source: str | Path | RunConfig | dict[str, Any], image: np.ndarray, n_steps: int = 16,
                     target: int | None = None) -> tuple[Any, np.ndarray]:
    """Integrated Gradients (captum) for the CLS head and the Gist head of one image.

    Returns:
        (`explain.Attributions`, the image resized to the model input (S, S, 3)).
    """
    from .explain import explain, prepare_image

    model = _model(source)
    resized, x = prepare_image(model, image)
    with _LOCK:
        attr = explain(model, x, target=target, n_steps=n_steps, internal_batch_size=n_steps)
    return attr, resized


def overlay(image: np.ndarray, heat: np.ndarray, cmap: str = "inferno", alpha: float = 0.55,
            vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """A heat map (any grid) blended over an RGB uint8 image; see `explain.overlay_heatmap`."""
    from .explain import overlay_heatmap

    return overlay_heatmap(image, heat, cmap=cmap, alpha=alpha, vmin=vmin, vmax=vmax)


def run_snapshots(run_dir: str | Path) -> list[int]:
    """The training steps at which a run recorded attention snapshots (ascending; empty when none)."""
    from .attention import list_snapshots

    return list_snapshots(run_dir)


def run_snapshot(run_dir: str | Path, step: int) -> Any:
    """The attention maps of a run's probe images at `step` (`AttentionMaps` with the probe images)."""
    from .attention import load_snapshot

    return load_snapshot(run_dir, step)


# ------------------------------------------------------------------------------------------------- comparisons
def _pair_key(snapshot: Any) -> str:
    cfg = copy.deepcopy(snapshot.config or {})
    cfg.pop("name", None)
    cfg.get("gist", {}).pop("enabled", None)
    return json.dumps(cfg, sort_keys=True, default=str)


def pair_runs(snapshots: Sequence[Any]) -> dict[str, Any]:
    """Pair any selection of runs into plain/GIST couples (same config and seed, GIST off vs on).

    Args:
        snapshots: RunSnapshot-like objects (config, seed, gist_enabled, acc_cls, best_acc_cls, last_eval, ...).

    Returns:
        The shape of `RunManager.group_results`: `seeds` rows, `delta_acc_cls`, `delta_best_acc_cls`,
        `extra_params`, plus `unpaired` (ids of runs without a partner).
    """
    from .compare import summarise

    by_key: dict[str, dict[bool, Any]] = {}
    for s in snapshots:
        by_key.setdefault(_pair_key(s), {})[bool(s.gist_enabled)] = s
    results, paired = [], set()
    for pair in by_key.values():
        if set(pair) != {False, True}:
            continue
        for enabled, s in pair.items():
            ev = s.last_eval or {}
            results.append((s.seed, enabled, SimpleNamespace(
                acc_cls=s.acc_cls, best_acc_cls=s.best_acc_cls, status=s.status,
                trainable_params=s.trainable_params or 0, acc_gist=ev.get("acc_gist"),
                agreement=ev.get("agreement"))))
            paired.add(s.id)
    out = summarise(results) if results else {"seeds": [], "delta_acc_cls": None, "delta_best_acc_cls": None}
    out["unpaired"] = [s.id for s in snapshots if s.id not in paired]
    return out


__all__ = [
    "DEMO_CONFIG",
    "GIST_CLAIM",
    "PRESETS",
    "PUBLISHED_SOURCE",
    "PUBLISHED_VTAB1K",
    "SMOKE_CONFIG",
    "attention_for",
    "attributions_for",
    "cli_command",
    "config_yaml",
    "data_root",
    "dataset_modality",
    "dataset_preview",
    "dataset_samples",
    "decode_image",
    "describe_config",
    "estimate_run",
    "import_dataset_zip",
    "is_text_backbone",
    "list_datasets",
    "mlflow_available",
    "model_for_config",
    "model_for_run",
    "model_modality",
    "open_run_manager",
    "overlay",
    "pair_runs",
    "run_not_found_error",
    "run_snapshot",
    "run_snapshots",
    "studio_catalogue",
    "text_attention_for",
    "text_preview",
    "text_samples",
]
