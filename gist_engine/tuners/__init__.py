"""PEFT methods ("tuners"): one file each, one explicit table, one function that sets what is trained."""

from __future__ import annotations

from typing import Any

from ..config import ConfigError, describe_fields, parse
from . import adapter, bitfit, full, linear, lora, ssf, vpt
from .base import TunerSpec, count_parameters, mark_trainable

TUNERS: dict[str, TunerSpec] = {
    "linear": linear.SPEC,
    "full": full.SPEC,
    "bitfit": bitfit.SPEC,
    "adapter": adapter.SPEC,
    "lora": lora.SPEC,
    "vpt": vpt.SPEC,
    "ssf": ssf.SPEC,
}


def parse_tuner_args(method: str, args: dict[str, Any] | None) -> Any:
    """The validated options dataclass of `method` from a mapping (unknown or bad keys rejected by name)."""
    if method not in TUNERS:
        raise ConfigError(f"method: unknown tuner {method!r}; choose one of {', '.join(TUNERS)}")
    return parse(TUNERS[method].config, args or {}, prefix="method_args")


def apply_tuner(model: Any, method: str, args: dict[str, Any] | None = None) -> Any:
    """Add `method` to a GistViT or GistTextEncoder in place and set its trainable parameters; returns the options."""
    spec = TUNERS[method]
    cfg = parse_tuner_args(method, args)
    apply = spec.apply_for(model)
    if apply is None:
        supported = ", ".join(n for n, s in TUNERS.items() if s.apply_for(model) is not None)
        raise ConfigError(f"method: {method!r} does not support {getattr(model, 'modality', 'image')} backbones; "
                          f"choose one of {supported}")
    apply(model, cfg)
    mark_trainable(model, spec.trainable)
    return cfg


def describe_tuners() -> dict[str, Any]:
    """Every tuner with its help and options (name, type, default, help, choices) for `list --json` and the app."""
    out = {}
    for name, spec in TUNERS.items():
        out[name] = {"help": spec.help, "options": describe_fields(spec.config), "variants": spec.variants,
                     "text": spec.apply_text is not None}
    return out


__all__ = ["TUNERS", "TunerSpec", "apply_tuner", "count_parameters", "describe_tuners", "mark_trainable",
           "parse_tuner_args"]
