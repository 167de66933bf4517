"""PEFT methods ("tuners"): one file each, one explicit table, one function that sets what is trained."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import ConfigError, Options, describe_fields, parse_method_args
from . import adapter, bitfit, full, linear, lora, ssf, vpt
from .base import TunerLayer, TunerSpec, count_parameters, mark_trainable, no_weight_decay_parameters

TUNERS: dict[str, TunerSpec] = {
    "linear": linear.SPEC,
    "full": full.SPEC,
    "bitfit": bitfit.SPEC,
    "adapter": adapter.SPEC,
    "lora": lora.SPEC,
    "vpt": vpt.SPEC,
    "ssf": ssf.SPEC,
}


def parse_tuner_args(method: str, args: Mapping[str, Any] | Options | None) -> Options:
    """The typed options of `method` (its class in METHOD_CONFIGS): an options object as it is, a mapping parsed.

    Raises ConfigError for an unknown method, or naming the unknown or bad `method_args.<key>`.
    """
    return parse_method_args(method, args)


def apply_tuner(model: Any, method: str, args: Mapping[str, Any] | Options | None = None) -> Options:
    """Add `method` to a GistViT or GistTextEncoder in place and set its trainable parameters; returns the options.

    `args` is the method's typed options (a parsed `ModelConfig.method_args`), or a mapping parsed here once.
    """
    cfg = parse_method_args(method, args)
    spec = TUNERS[method]
    apply = spec.apply_for(model)
    if apply is None:
        supported = ", ".join(n for n, s in TUNERS.items() if s.apply_for(model) is not None)
        raise ConfigError(f"method: {method!r} does not support {getattr(model, 'modality', 'image')} backbones; "
                          f"choose one of {supported}")
    apply(model, cfg)
    mark_trainable(model, spec.trainable(model))
    return cfg


def describe_tuners() -> dict[str, Any]:
    """Every tuner with its help and options (name, type, default, help, choices) for `list --json` and the app."""
    out = {}
    for name, spec in TUNERS.items():
        out[name] = {"help": spec.help, "options": describe_fields(spec.config), "variants": spec.variants,
                     "text": spec.apply_text is not None}
    return out


__all__ = ["TUNERS", "TunerLayer", "TunerSpec", "apply_tuner", "count_parameters", "describe_tuners",
           "mark_trainable", "no_weight_decay_parameters", "parse_tuner_args"]
