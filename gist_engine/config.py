"""Typed, validated run configuration: dataclasses with help text, YAML loading and `key=value` overrides."""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the key."""


def option(
    default: Any,
    help: str,
    *,
    choices: typing.Iterable[Any] | None = None,
    min: float | None = None,
    max: float | None = None,
    min_exclusive: bool = False,
) -> Any:
    """A dataclass field with help text and the constraints `parse` enforces.

    Args:
        default: The default value (a dict/list default is copied per instance).
        help: One sentence shown in the CLI, `list --json` and the app's forms.
        choices: Allowed values, if the option is an enumeration.
        min: Smallest allowed value (inclusive unless `min_exclusive`).
        max: Largest allowed value (inclusive).
        min_exclusive: Whether `min` itself is rejected.
    """
    meta = {"help": help, "choices": tuple(choices) if choices is not None else None, "min": min, "max": max,
            "min_exclusive": min_exclusive}
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    if dataclasses.is_dataclass(default):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting only the lossless int -> float case."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {tp}")
    if dataclasses.is_dataclass(tp):
        return parse(tp, value, prefix=key)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported option type {_type_name(tp)}")  # a programming error in a dataclass


def _check_range(value: Any, meta: typing.Mapping[str, Any], key: str) -> None:
    if value is None:
        return
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(str, choices))}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and (value < lo or (meta.get("min_exclusive") and value == lo)):
        bound = f"> {lo}" if meta.get("min_exclusive") else f">= {lo}"
        raise ConfigError(f"{key}: {value!r} is out of range (must be {bound})")
    if hi is not None and value > hi:
        raise ConfigError(f"{key}: {value!r} is out of range (must be <= {hi})")


def parse(cls: type[T], data: typing.Mapping[str, Any] | T | None, prefix: str = "") -> T:
    """Build dataclass `cls` from a mapping, rejecting unknown keys and bad values by name.

    Args:
        cls: A dataclass type whose fields were declared with `option`.
        data: A mapping (e.g. from YAML), an instance of `cls` (re-validated), or None for all defaults.
        prefix: Dotted key prefix used in error messages (e.g. "gist").

    Returns:
        A validated instance of `cls`.

    Raises:
        ConfigError: naming the first offending key.
    """
    if isinstance(data, cls):
        data = to_dict(data)
    if data is None:
        data = {}
    if not isinstance(data, typing.Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        where = f" in {prefix}" if prefix else ""
        raise ConfigError(
            f"unknown config key {'.'.join(filter(None, [prefix, str(unknown[0])]))!r}{where}; "
            f"valid keys: {', '.join(fields)}"
        )
    values = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        value = _coerce(value, hints[name], key)
        _check_range(value, fields[name].metadata, key)
        values[name] = value
    obj = cls(**values)
    validate = getattr(obj, "validate", None)
    if validate is not None:
        validate()
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass instance as a plain (YAML/JSON-ready) nested dict."""
    return dataclasses.asdict(obj)


def describe_fields(cls: type) -> list[dict[str, Any]]:
    """Name, type, default, help and constraints of every field of a config dataclass (for UIs and `list`)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            default = to_dict(default)
        meta = f.metadata
        out.append({
            "name": f.name, "type": _type_name(hints[f.name]).replace("typing.", ""), "default": default,
            "help": meta.get("help", ""), "choices": list(meta["choices"]) if meta.get("choices") else None,
            "min": meta.get("min"), "max": meta.get("max"),
        })
    return out


# ----------------------------------------------------------------------------------------------------------------
# The configuration tree. Keys may be extended, never renamed.

INTERACTION_LOSS_NAMES = ("bkld", "kl", "reverse_kl", "js", "mse", "none")


@dataclass
class GistConfig:
    """The Gist token and the knowledge-interaction loss (Ruan et al., 2023)."""

    enabled: bool = option(True, "Add the Gist token and the interaction loss; off = the plain PEFT method.")
    length: int = option(1, "Number of Gist tokens L; with L > 1 their outputs are averaged.", min=1, max=64)
    init: float = option(0.5, "The Gist token is initialised uniform(-init, init).", min=0.0, max=10.0)
    dropout: float = option(0.1, "Dropout on the Gist token in training.", min=0.0, max=0.9)
    shared_head: bool = option(True, "One head for CLS and Gist (as the paper); false = a separate Gist head.")
    ce_weight: float = option(0.5, "Weight of the cross-entropy of the Gist head's prediction.", min=0.0, max=100.0)
    loss: str = option("bkld", "Interaction loss between the CLS and Gist predictions.",
                       choices=INTERACTION_LOSS_NAMES)
    loss_weight: float = option(0.75, "Weight of the interaction loss.", min=0.0, max=100.0)
    temperature: float = option(3.0, "Softmax temperature T of the interaction loss.", min=0.0, max=1000.0,
                                min_exclusive=True)


@dataclass
class ModelConfig:
    """Everything needed to build a GistViT: backbone, PEFT method and GIST options."""

    backbone: str = option("dinov2_s14", "A registered backbone, or a timm model name (hub weights need a network).")
    pretrained: bool = option(True, "Load pretrained weights; false = random init (tests, speed measurements).")
    weights: str | None = option(None, "A local weights file (.safetensors, .pth/.bin, ViT .npz) for the backbone.")
    image_size: int = option(0, "Input size in pixels; 0 = the backbone's default.", min=0, max=4096)
    num_classes: int | None = option(None, "Classes of the new head; empty = the dataset's (10 without one).",
                                     min=2, max=100_000)
    method: str = option("adapter", "PEFT method (tuner) name; see `python -m gist_engine list`.")
    method_args: dict = option({}, "Options of the tuner, e.g. {variant: gist} or {rank: 8}.")
    gist: GistConfig = option(GistConfig(), "Gist token and interaction loss options.")

    def validate(self) -> None:
        """Check the cross-field constraints (tuner name and its options)."""
        from .tuners import TUNERS, parse_tuner_args  # local: tuners import the model, which imports config

        if self.method not in TUNERS:
            raise ConfigError(f"method: unknown tuner {self.method!r}; choose one of {', '.join(TUNERS)}")
        parse_tuner_args(self.method, self.method_args)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping with `yaml.safe_load`; a clear error for a missing or malformed file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys, got {type(data).__name__}")
    return data


def apply_overrides(data: dict[str, Any], overrides: typing.Iterable[str]) -> dict[str, Any]:
    """Apply `key.sub=value` overrides (values parsed as YAML scalars) to a copy of a config mapping.

    Args:
        data: The config mapping (not modified).
        overrides: Strings like "gist.length=2" or "method_args={rank: 4}".

    Returns:
        The new mapping. Key validity is checked later by `parse`.
    """
    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. gist.length=2)")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {key}: cannot parse value {raw!r}: {exc}") from None
        node = out
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {key}: {'.'.join(parts[: i + 1])} is not a mapping")
            node = child
        node[parts[-1]] = value
    return out


@dataclass
class DataConfig:
    """Which dataset and which part of it (VTAB-1k style sizes, few-shot)."""

    dataset: str = option("mnist5k", "Dataset name (see `list`), or imagefolder:<dir>, vtab:<dir>.")
    train_size: int | None = option(None, "Training images drawn (seeded) from the train split; empty = all.",
                                    min=1)
    val_size: int = option(0, "Validation images held out of the train split (0 = none).", min=0)
    test_size: int | None = option(None, "Test images drawn (seeded) from the test split; empty = all.", min=1)
    few_shot: int | None = option(None, "k training images per class (seeded); empty = off.", min=1)
    seed: int = option(0, "Seed of the subsampling (the split itself is fixed per dataset).", min=0)
    max_length: int = option(128, "Text datasets: tokens per document after truncation, [CLS] and [SEP] included "
                             "(the Gist token comes on top); ignored for images.", min=4, max=8192)


@dataclass
class TrainConfig:
    """The optimisation schedule and where it runs."""

    epochs: int = option(1, "Passes over the training set.", min=1, max=100_000)
    batch_size: int = option(32, "Images per optimisation step.", min=1, max=65_536)
    lr: float = option(1e-3, "Peak learning rate (AdamW).", min=0.0, max=10.0, min_exclusive=True)
    weight_decay: float = option(1e-4, "AdamW weight decay (not on biases, norms, tokens, prompts).",
                                 min=0.0, max=10.0)
    warmup_epochs: float = option(0.0, "Linear warm-up length in epochs before the cosine decay.", min=0.0)
    eval_every: int = option(1, "Evaluate on the test split every N epochs (and always at the end).", min=1)
    seed: int = option(0, "Seed of the initialisation and the data order (same for plain and GIST runs).", min=0)
    device: str = option("auto", "auto (CUDA when present), cpu or cuda.", choices=("auto", "cpu", "cuda"))
    precision: str = option("auto", "auto (bf16 on CUDA, fp32 on CPU), fp32 or bf16.",
                            choices=("auto", "fp32", "bf16"))
    frozen_dtype: str = option("auto", "Storage of the frozen backbone weights: fp32, bf16 (needs precision bf16; "
                               "autocast rounds them to bf16 for every matmul anyway, and the residual stream then "
                               "runs in bf16 too), or auto (bf16 when training in bf16 on CUDA).",
                               choices=("auto", "fp32", "bf16"))
    max_steps: int | None = option(None, "Stop after this many optimisation steps (empty = no limit).", min=1)
    grad_clip: float | None = option(None, "Clip the gradient norm to this value (empty = off).", min=0.0,
                                     min_exclusive=True)
    attention_every: int = option(0, "Record CLS/Gist attention maps of a probe batch every K steps (0 = off).",
                                  min=0)
    probe_images: int = option(4, "Images in the attention probe batch.", min=1, max=64)
    checkpoint_every: int = option(0, "Write a resumable checkpoint every N epochs (0 = only the final one).",
                                   min=0)
    log_every: int = option(0, "Read the loss terms back from the device every N steps: every step is still "
                            "reported (in a burst), a non-finite loss at its exact step; 0 = auto: 1 on CPU, 10 on "
                            "CUDA.", min=0, max=10_000)
    compile: bool = option(False, "Compile the forward + loss with torch.compile (falls back to eager with a "
                           "warning if compiling fails); pays off on long GPU runs.")
    cuda_graph: bool = option(False, "On CUDA, capture the whole training step (forward, backward, AdamW) as a "
                              "CUDA graph per batch shape after 3 eager steps and replay it: no Python per kernel, "
                              "for small batches whose steps the CPU cannot launch fast enough; image models only. "
                              "Experimental (see README, Speed); ignored with train.compile, whose modes do this "
                              "themselves.")
    eval_batch_size: int = option(0, "Images per evaluation batch; 0 = auto: 1024 on CUDA, 64 on CPU.",
                                  min=0, max=65_536)
    cpu_threads: int = option(0, "torch threads on CPU; 0 = auto: the CPUs this process may use, less those other "
                              "processes keep busy (chosen once per process).", min=0, max=1024)

    def validate(self) -> None:
        """bf16 frozen weights only under bf16 autocast."""
        if self.frozen_dtype == "bf16" and self.precision == "fp32":
            raise ConfigError("train.frozen_dtype: bf16 frozen weights need train.precision bf16 (or auto on CUDA); "
                              "precision is fp32")


@dataclass
class RunConfig(ModelConfig):
    """A whole run: the model (top-level keys), the data and the training schedule."""

    name: str | None = option(None, "A label for the run (shown in the run list).")
    data: DataConfig = option(DataConfig(), "Dataset and protocol options.")
    train: TrainConfig = option(TrainConfig(), "Optimisation options.")


def load_run_config(source: str | Path | typing.Mapping[str, Any] | RunConfig | None = None,
                    overrides: typing.Iterable[str] = ()) -> RunConfig:
    """A validated RunConfig from a YAML file, a mapping or a RunConfig, with `key=value` overrides applied."""
    if isinstance(source, RunConfig):
        data = to_dict(source)
    elif isinstance(source, (str, Path)):
        data = load_yaml(source)
    else:
        data = dict(source or {})
    return parse(RunConfig, apply_overrides(data, overrides))
