"""PEFT methods ("tuners"): one file each, one explicit table, one function that sets what is trained."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import ConfigError, Options, describe_fields, describe_peft_types, parse_method_args
from . import adapter, bitfit, full, linear, lora, peft, ssf, vpt
from .base import TunerLayer, TunerSpec, count_parameters, mark_trainable, no_weight_decay_parameters

TUNERS: dict[str, TunerSpec] = {
    "linear": linear.SPEC,
    "full": full.SPEC,
    "bitfit": bitfit.SPEC,
    "adapter": adapter.SPEC,
    "lora": lora.SPEC,
    "vpt": vpt.SPEC,
    "ssf": ssf.SPEC,
    "peft": peft.SPEC,  # Hugging Face peft's tuner types (method_args.peft_type), gist_engine.config.peft
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
    """Every tuner with its help and options (name, type, default, help, choices) for `list --json` and the app;
    `peft` also lists its peft types with their own options (`gist_engine.config.describe_peft_types`)."""
    out = {}
    for name, spec in TUNERS.items():
        out[name] = {"help": spec.help, "options": describe_fields(spec.config), "variants": spec.variants,
                     "text": spec.apply_text is not None}
    out["peft"]["peft_types"] = describe_peft_types()
    return out


def tuner_train_start(model: Any, method: str, total_steps: int) -> None:
    """The method's preparation before the first step (AdaLoRA's total_step), if it has one."""
    hook = TUNERS[method].on_train_start
    if hook is not None:
        hook(model, total_steps)


def tuner_step_end(method: str) -> Any:
    """The method's per-step hook `(model, step)`, called after optimizer.step (AdaLoRA's update_and_allocate), or
    None."""
    return TUNERS[method].on_step_end


def saved_frozen_parameters(model: Any) -> list[Any]:
    """Frozen parameters a checkpoint must hold besides the trained ones: those a peft initialisation rewrote
    (PiSSA, OLoRA, ...); empty for every other method."""
    handle = getattr(model, "peft", None)
    return list(handle.rewritten) if handle is not None else []


def peft_type_of(model: Any) -> str | None:
    """The peft type of a model built with `method: peft`, else None."""
    handle = getattr(model, "peft", None)
    return handle.peft_type if handle is not None else None


__all__ = ["TUNERS", "TunerLayer", "TunerSpec", "apply_tuner", "count_parameters", "describe_tuners",
           "mark_trainable", "no_weight_decay_parameters", "parse_tuner_args", "peft_type_of",
           "saved_frozen_parameters", "tuner_step_end", "tuner_train_start"]
