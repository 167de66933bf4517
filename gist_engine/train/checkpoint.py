"""Checkpoints of the trainable parameters only (safetensors + metadata), loading onto the backbone, predict."""

from __future__ import annotations

import json
import platform
import random
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .._io import atomic_path
from .._version import __version__
from ..build import build_model
from ..config import ConfigError, RunConfig, load_run_config, peft_installed_version, to_dict
from ..files import CHECKPOINT_NAME, RESUME_NAME
from ..model import GistViT
from ..speed import plain_named_parameters
from ..tuners import peft_type_of, saved_frozen_parameters

RESUME_FORMAT = "gist-studio-resume/1"


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not fit its model; the message names the file and the problem."""


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    return {"gist_engine": __version__, "torch": torch.__version__, "timm": timm.__version__,
            "numpy": np.__version__, "python": platform.python_version(),
            "peft": peft_installed_version() or "not installed"}  # read from its metadata, peft not imported


def _saved_parameters(model: GistViT) -> dict[str, torch.nn.Parameter]:
    """What a checkpoint holds, by plain name: the trained parameters and the frozen ones a peft initialisation
    rewrote (PiSSA, OLoRA: `tuners.saved_frozen_parameters`), which a rebuilt backbone would not have."""
    rewritten = {id(p) for p in saved_frozen_parameters(model)}
    return {n: p for n, p in plain_named_parameters(model) if p.requires_grad or id(p) in rewritten}


def trainable_state(model: GistViT) -> dict[str, torch.Tensor]:
    """The trained parameters (tuner, Gist token, heads) by name (as built: without speed wrappers), as contiguous
    CPU float tensors; with a peft initialisation that rewrote frozen weights, those weights too."""
    return {n: p.detach().float().cpu().contiguous() for n, p in _saved_parameters(model).items()}


def saved_peft_type(config: dict[str, Any]) -> str | None:
    """The peft type a stored config (a `to_dict` mapping) was trained with, lower case; None for other methods."""
    if config.get("method") != "peft":
        return None
    args = config.get("method_args") or {}
    return str(args.get("peft_type", "lora")).lower() if isinstance(args, dict) else None


def check_peft_type(model: GistViT, saved: str | None, source: str) -> None:
    """Refuse tensors of one peft type (or of another method) for a model of another peft type, by name.

    Raises:
        CheckpointError: "<source> holds loha adapters; this model has lora ...".
    """
    have = peft_type_of(model)
    if have != saved and (have is not None or saved is not None):
        held = f"{saved} (peft) adapters" if saved else "no peft adapters"
        made = f"peft type {have}" if have else "no peft adapters"
        raise CheckpointError(f"{source} holds {held}; this model has {made}: a checkpoint loads only into a model "
                              "built with the same method and peft type (method_args.peft_type)")


def atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """Write a safetensors file atomically: a temp file in the same folder, then rename."""
    with atomic_path(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)


def save_checkpoint(model: GistViT, path: str | Path, config: RunConfig, step: int = 0,
                    extra: dict[str, Any] | None = None) -> Path:
    """Save the trainable parameters with the resolved config, package versions and seed in the metadata."""
    meta = {"config": json.dumps(to_dict(config)), "versions": json.dumps(package_versions()),
            "seed": str(config.train.seed), "step": str(step), "format": "gist-studio/1",
            "extra": json.dumps(extra or {})}
    path = Path(path)
    atomic_save(trainable_state(model), path, meta)
    return path


def _read_safetensors(path: str | Path, file_name: str, what: str,
                      readable: str) -> tuple[Path, dict[str, torch.Tensor], dict[str, str]]:
    """The file (`path`, or `path/file_name` for a run folder), its tensors and raw metadata; never unpickles.

    A missing file is "no {what} at ..."; an unreadable one "... is not a readable safetensors {readable}".
    """
    path = Path(path)
    if path.is_dir():
        path = path / file_name
    if not path.is_file():
        raise CheckpointError(f"no {what} at {path}")
    try:
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors {readable}: {exc}") from None
    return path, tensors, meta


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and decoded metadata of a checkpoint; never unpickles anything."""
    path, tensors, meta = _read_safetensors(path, CHECKPOINT_NAME, "checkpoint", "checkpoint")
    if meta.get("format") != "gist-studio/1" or "config" not in meta:
        raise CheckpointError(f"{path} is not a GIST Studio checkpoint (no config in its metadata)")
    try:
        decoded = {"config": json.loads(meta["config"]), "versions": json.loads(meta.get("versions", "{}")),
                   "seed": int(meta.get("seed", 0)), "step": int(meta.get("step", 0)),
                   "extra": json.loads(meta.get("extra", "{}"))}
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: corrupt metadata ({exc})") from None
    return tensors, decoded


def load_trainable_state(model: GistViT, tensors: dict[str, torch.Tensor], source: str = "checkpoint",
                         config: dict[str, Any] | None = None) -> None:
    """Copy checkpoint tensors into the model's trainable parameters (and rewritten frozen ones, see
    `trainable_state`), checking the peft type (from the checkpoint's `config`, when given), names and shapes first.
    """
    if config is not None:
        check_peft_type(model, saved_peft_type(config), source)
    params = _saved_parameters(model)
    missing = sorted(set(params) - set(tensors))
    unexpected = sorted(set(tensors) - set(params))
    wrong = [f"{n}: {tuple(tensors[n].shape)} vs model {tuple(p.shape)}" for n, p in params.items()
             if n in tensors and tensors[n].shape != p.shape]
    if missing or unexpected or wrong:
        raise CheckpointError(f"{source} does not fit the model: missing {missing[:4]}, unexpected "
                              f"{unexpected[:4]}, shape mismatch {wrong[:4]}")
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(tensors[n].to(p.dtype))


def save_training_state(path: str | Path, model: GistViT, optimizer: torch.optim.Optimizer,
                        scheduler: torch.optim.lr_scheduler.LRScheduler, config: RunConfig, step: int, epoch: int,
                        extra: dict[str, Any] | None = None,
                        scaler: torch.amp.GradScaler | None = None) -> Path:
    """Write what a run needs to continue after `epoch` epochs, atomically, as one safetensors file.

    Tensors: the trainable parameters (`model.*`), the optimizer state (`optim.<index>.<name>`) and the torch,
    CUDA, numpy and python RNG states (`rng.*`). Metadata (JSON): the resolved config, step, epoch, optimizer
    hyper-parameters, scheduler state, the fp16 gradient scaler's state (scale, growth tracker) if there is one,
    and `extra` (e.g. the result so far). Nothing is pickled.
    """
    tensors = {f"model.{k}": v for k, v in trainable_state(model).items()}
    opt = optimizer.state_dict()
    optim_scalars: dict[str, dict[str, Any]] = {}
    for idx, state in opt["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                optim_scalars.setdefault(str(idx), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    np_state = np.random.get_state()  # ('MT19937', keys uint32 (624,), pos, has_gauss, cached_gaussian)
    tensors["rng.numpy"] = torch.from_numpy(np_state[1].astype(np.int64))
    py_state = random.getstate()  # (version, 625 ints, gauss_next)
    tensors["rng.python"] = torch.tensor(py_state[1], dtype=torch.int64)
    state = {"param_groups": opt["param_groups"], "optim_scalars": optim_scalars,
             "scheduler": scheduler.state_dict(), "numpy": [np_state[0], *np_state[2:]],
             "python": [py_state[0], py_state[2]], "extra": extra or {},
             "scaler": scaler.state_dict() if scaler is not None else None}
    meta = {"format": RESUME_FORMAT, "config": json.dumps(to_dict(config)), "step": str(step), "epoch": str(epoch),
            "state": json.dumps(state, default=float)}
    path = Path(path)
    atomic_save(tensors, path, meta)
    return path


def read_training_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The tensors and decoded metadata (config, step, epoch, state) of a `save_training_state` file."""
    path, tensors, meta = _read_safetensors(path, RESUME_NAME, "resumable training state", "file")
    if meta.get("format") != RESUME_FORMAT:
        raise CheckpointError(f"{path} is not a GIST Studio training state (format {meta.get('format')!r})")
    try:
        decoded = {"config": json.loads(meta["config"]), "step": int(meta["step"]), "epoch": int(meta["epoch"]),
                   "state": json.loads(meta["state"])}
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: corrupt metadata ({exc})") from None
    return tensors, decoded


def restore_training_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any], model: GistViT,
                           optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
                           source: str = "training state", scaler: torch.amp.GradScaler | None = None) -> None:
    """Load a `read_training_state` result into the model, optimizer, scheduler, the global RNGs and the fp16
    gradient scaler (when both the state and `scaler` have one)."""
    state = meta["state"]
    load_trainable_state(model, {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")},
                         source=source, config=meta.get("config"))
    optim_state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            optim_state.setdefault(int(idx), {})[name] = value
    for idx, scalars in state["optim_scalars"].items():
        optim_state.setdefault(int(idx), {}).update(scalars)
    try:
        optimizer.load_state_dict({"state": optim_state, "param_groups": state["param_groups"]})
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{source}: its optimizer state does not fit the model ({exc})") from None
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(tensors["rng.torch"])
    cuda_keys = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    cuda = [tensors[k] for k in cuda_keys]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    name, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, tensors["rng.numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, gauss_next = state["python"]
    random.setstate((version, tuple(tensors["rng.python"].tolist()), gauss_next))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[GistViT, RunConfig]:
    """Rebuild a run's model from its checkpoint (a file or a run directory): backbone + trained parameters.

    The model's `class_names` attribute holds the training dataset's class names.
    """
    tensors, meta = read_checkpoint(path)
    try:
        config = load_run_config(meta["config"])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its config is not valid here: {exc}") from None
    model = build_model(config, seed=config.train.seed)
    load_trainable_state(model, tensors, source=str(path), config=meta["config"])
    model.class_names = meta["extra"].get("class_names") or [str(i) for i in range(model.num_classes)]
    model.text_pairs = meta["extra"].get("text_pairs")  # trained on sentence pairs; None: not recorded (older file)
    return model.to(device).eval(), config


def check_text_pairs(model: Any, texts: list[str], text_pairs: list[str] | None) -> None:
    """Refuse texts that do not match how the model was trained: one text each, or a pair (`model.text_pairs`,
    set by `load_model`; when it is unknown, either is accepted).

    Raises:
        ConfigError: a pair model given single texts, a single-text model given pairs, or unequal counts.
    """
    trained_on_pairs = getattr(model, "text_pairs", None)
    if text_pairs is not None and len(text_pairs) != len(texts):
        raise ConfigError(f"predict: {len(texts)} text(s) but {len(text_pairs)} text pair(s); give one second text "
                          "per text")
    if trained_on_pairs and text_pairs is None:
        raise ConfigError("predict: this model was trained on sentence pairs (text + text_pair), so one text alone "
                          "means nothing to it; give the second text of each pair (--text-pair, or text_pairs=)")
    if trained_on_pairs is False and text_pairs is not None:
        raise ConfigError("predict: this model was trained on single texts, not sentence pairs; drop the second "
                          "texts (--text-pair, text_pairs=)")


@torch.inference_mode()
def predict(model: GistViT, images: torch.Tensor | list[str], class_names: list[str] | None = None,
            top_k: int = 5, text_pairs: list[str] | None = None) -> list[dict[str, Any]]:
    """Top-k classes of the CLS head (what GIST predicts at inference), with the Gist head's view beside it.

    Args:
        model: A GistViT (or GistTextEncoder) in eval mode.
        images: (B, 3, H, W) normalised float images; for a text model, a list of texts (tokenised here).
        class_names: Names for the class indices (default: the indices as strings).
        top_k: How many classes to return per image.
        text_pairs: For a model trained on sentence pairs: the second text of each pair (as `text_pair` in its
            dataset), one per text.

    Raises:
        ConfigError: texts that do not match how the model was trained (see `check_text_pairs`).
    """
    if isinstance(images, (list, tuple)):  # texts for a GistTextEncoder
        texts = list(images)
        pairs = list(text_pairs) if text_pairs is not None else None
        check_text_pairs(model, texts, pairs)
        out = model(model.tokenize(texts, pairs))
    else:
        out = model(images.to(next(model.parameters()).device))
    probs = out.cls_logits.float().softmax(-1).cpu()
    gist = out.gist_logits.float().softmax(-1).cpu() if out.gist_logits is not None else None
    names = class_names or [str(i) for i in range(probs.shape[-1])]
    results = []
    for i in range(probs.shape[0]):
        p, idx = probs[i].topk(min(top_k, probs.shape[-1]))
        item = {"top": [{"class": names[j], "index": int(j), "prob": float(v)} for v, j in zip(p, idx, strict=True)]}
        if gist is not None:
            j = int(gist[i].argmax())
            item["gist_top"] = {"class": names[j], "index": j, "prob": float(gist[i, j])}
        results.append(item)
    return results
