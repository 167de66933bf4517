"""GIST Studio's engine: GIST (Ruan et al., 2023) on timm Vision Transformers with every standard PEFT method."""

from . import studio  # engine-side helpers of the Streamlit app (cached models, previews, estimates)
from .backbones import BACKBONES, TEXT_BACKBONES, BackboneError, create_backbone
from .build import build_model, describe_model, parameter_summary
from .checkpoint import CheckpointError, load_model, predict, save_checkpoint
from .compare import run_compare
from .config import (
    ConfigError,
    DataConfig,
    GistConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    load_run_config,
)
from .data import (
    DATASETS,
    DatasetError,
    describe_datasets,
    import_text_table,
    list_text_datasets,
    load_dataset,
    text_dataset_preview,
)
from .inspect import TokenAttention, compute_token_attention
from .losses import INTERACTION_LOSSES, LOSS_TERMS, gist_loss
from .model import GistOutput, GistViT
from .stats import paired_delta
from .text_model import GistTextEncoder
from .train import Callback, Trainer, TrainResult, train
from .tuners import TUNERS, apply_tuner, count_parameters

__version__ = "0.1.0"

__all__ = [
    "BACKBONES",
    "DATASETS",
    "INTERACTION_LOSSES",
    "LOSS_TERMS",
    "TEXT_BACKBONES",
    "TUNERS",
    "BackboneError",
    "Callback",
    "CheckpointError",
    "ConfigError",
    "DataConfig",
    "DatasetError",
    "GistConfig",
    "GistOutput",
    "GistTextEncoder",
    "GistViT",
    "ModelConfig",
    "RunConfig",
    "TokenAttention",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "apply_tuner",
    "build_model",
    "compute_token_attention",
    "count_parameters",
    "create_backbone",
    "describe_datasets",
    "describe_model",
    "gist_loss",
    "import_text_table",
    "list_text_datasets",
    "load_dataset",
    "load_model",
    "load_run_config",
    "paired_delta",
    "parameter_summary",
    "predict",
    "run_compare",
    "save_checkpoint",
    "studio",
    "text_dataset_preview",
    "train",
]
