"""Build a GistViT from a config: backbone + Gist token + PEFT method, and describe it without training."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from .backbones import BackboneError, create_backbone, is_text_backbone
from .config import ConfigError, ModelConfig, PeftMethodConfig, parse, parse_method_args
from .model import GistViT
from .text_model import build_text_model
from .tuners import apply_tuner, count_parameters

DEFAULT_NUM_CLASSES = 10  # for a model built without a dataset (describe, tests)


def model_config(config: ModelConfig | Mapping[str, Any]) -> ModelConfig:
    """A ModelConfig (or RunConfig) as it is, no second parse; a mapping of its keys parsed once (ConfigError)."""
    if isinstance(config, ModelConfig):
        return config
    return parse(ModelConfig, config)


def build_model(config: ModelConfig | Mapping[str, Any], seed: int | None = None) -> GistViT:
    """Build the model a config describes: backbone, Gist token(s), heads and the PEFT method.

    Args:
        config: A ModelConfig (or RunConfig), used as it is, or a mapping of its keys (parsed once; unknown keys
            rejected by name).
        seed: If given, seeds torch before any parameter is initialised (same seed => same model).

    Returns:
        The GistViT with its trainable parameters set; `model.data_config` holds mean/std/image_size. A text
        backbone (`gist_engine.backbones.TEXT_BACKBONES` or `hf:<name>`) gives a GistTextEncoder instead (its
        `data_config` names the tokenizer and max_length).
    """
    cfg = model_config(config)
    if seed is not None:
        torch.manual_seed(seed)
    if is_text_backbone(cfg.backbone):  # a BERT/RoBERTa-family encoder: GistTextEncoder (gist_engine.text_model)
        if cfg.drop_path_rate:
            raise ConfigError(f"drop_path_rate: {cfg.drop_path_rate:g} is for image backbones (timm's stochastic "
                              f"depth); text backbone {cfg.backbone!r} has none, set it to 0")
        return build_text_model(cfg, cfg.num_classes or DEFAULT_NUM_CLASSES)
    vit, data_config = create_backbone(cfg.backbone, cfg.image_size, cfg.pretrained, cfg.weights,
                                       drop_path_rate=cfg.drop_path_rate)
    patch = vit.patch_embed.patch_size[0]
    if data_config["image_size"] % patch:
        raise BackboneError(f"image_size: {data_config['image_size']} is not a multiple of the patch size {patch}")
    model = GistViT(vit, cfg.num_classes or DEFAULT_NUM_CLASSES, cfg.gist)
    model.method = cfg.method
    model.method_config = apply_tuner(model, cfg.method, cfg.method_args)
    model.data_config = data_config
    return model


def parameter_summary(model: GistViT) -> str:
    """peft's one-line summary, plus the parameters GIST adds."""
    trainable, total = count_parameters(model)
    return (f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {100 * trainable / total:.4f}"
            f" || gist params: {model.gist_parameter_count():,}")


def describe_model(model: GistViT, config: ModelConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The facts `describe --json` prints: parameter counts, tuner, backbone, image size, sequence length.

    The tuner and its options come from `config` (the one the model was built from), the counts from the model.
    """
    cfg = model_config(config)
    options = parse_method_args(cfg.method, cfg.method_args)  # the typed options as they are; a dict parsed
    trainable, total = count_parameters(model)
    return {
        "trainable_params": trainable,
        "total_params": total,
        "gist_params": model.gist_parameter_count(),
        "tuner": cfg.method,
        # every option, defaults included; method: peft its flat form (peft_type and the keys given)
        "tuner_args": ({"peft_type": options.peft_type, **options.options} if isinstance(options, PeftMethodConfig)
                       else dataclasses.asdict(options)),
        "backbone": cfg.backbone,
        "image_size": getattr(model, "image_size", None),  # None for a text model
        "max_length": getattr(model, "max_length", None),  # None for an image model
        "seq_len": model.seq_len,
        "sequence_layout": model.sequence_layout(),
        "summary": parameter_summary(model),
    }


__all__ = ["BackboneError", "ConfigError", "build_model", "describe_model", "parameter_summary"]
