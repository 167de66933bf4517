"""GIST Studio's engine: GIST (Ruan et al., 2023) on timm Vision Transformers with every standard PEFT method."""

from .backbones import BACKBONES, BackboneError, create_backbone
from .build import build_model, describe_model, parameter_summary
from .config import (
    ConfigError,
    DataConfig,
    GistConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    load_run_config,
)
from .losses import INTERACTION_LOSSES, LOSS_TERMS, gist_loss
from .model import GistOutput, GistViT
from .tuners import TUNERS, apply_tuner, count_parameters

__version__ = "0.1.0"

__all__ = [
    "BACKBONES",
    "INTERACTION_LOSSES",
    "LOSS_TERMS",
    "TUNERS",
    "BackboneError",
    "ConfigError",
    "DataConfig",
    "GistConfig",
    "GistOutput",
    "GistViT",
    "ModelConfig",
    "RunConfig",
    "TrainConfig",
    "apply_tuner",
    "build_model",
    "count_parameters",
    "create_backbone",
    "describe_model",
    "gist_loss",
    "load_run_config",
    "parameter_summary",
]
