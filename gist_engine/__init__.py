"""GIST Studio's engine: GIST (Ruan et al., 2023) on timm Vision Transformers with every standard PEFT method."""

from . import studio  # engine-side helpers of the Streamlit app (cached models, previews, estimates)
from ._version import __version__ as __version__
from .backbones import BACKBONES, BackboneError, create_backbone
from .build import build_model, describe_model, parameter_summary
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
from .data import DATASETS, DatasetError, describe_datasets, load_dataset
from .losses import INTERACTION_LOSSES, LOSS_TERMS, gist_loss
from .model import GistOutput, GistViT
from .stats import paired_delta
from .text import (
    TEXT_BACKBONES,
    GistTextEncoder,
    TokenAttention,
    compute_token_attention,
    import_text_table,
    list_text_datasets,
    text_dataset_preview,
)
from .train import Callback, CheckpointError, Trainer, TrainResult, load_model, predict, save_checkpoint, train
from .tuners import TUNERS, apply_tuner, count_parameters

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
