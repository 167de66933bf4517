"""GIST Studio's engine: GIST (Ruan et al., 2023) on timm Vision Transformers with every standard PEFT method."""

from ._version import __version__ as __version__
from .backbones import (
    BACKBONES,
    TEXT_BACKBONES,
    BackboneError,
    backbone_data_config,
    backbone_info,
    create_backbone,
    is_text_backbone,
)
from .build import build_model, describe_model, parameter_summary
from .catalog import catalogue
from .config import (
    RECIPES,
    ConfigError,
    DataConfig,
    GistConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    describe_fields,
    load_run_config,
    to_dict,
)
from .data import (
    DATASETS,
    DatasetError,
    describe_datasets,
    import_text_table,
    list_text_datasets,
    load_dataset,
)
from .data.preview import dataset_preview, dataset_samples, text_dataset_preview, text_dataset_samples
from .data.registry import dataset_modality
from .data.upload import decode_image, import_imagefolder_zip, list_uploaded_datasets
from .estimate import estimate_run_time, measure_throughput
from .inspect import TokenAttention, compute_token_attention, list_snapshots, load_snapshot
from .inspect.explain import explain_image, image_attention, overlay_heatmap
from .losses import INTERACTION_LOSSES, LOSS_TERMS, gist_loss
from .model import GistOutput, GistViT
from .runs import RunError, RunManager, RunNotFound, RunSnapshot, paired_delta, run_compare, summarise
from .runs import data_dir as runs_data_dir
from .runs.gallery import (
    GalleryError,
    gallery_examples,
    import_gallery,
    import_gallery_entry,
    list_gallery,
    remove_gallery_example,
)
from .text_model import GistTextEncoder
from .train import Callback, Trainer, TrainResult, train
from .train.checkpoint import CHECKPOINT_NAME, CheckpointError, load_model, predict, save_checkpoint
from .tuners import TUNERS, apply_tuner, count_parameters

__all__ = [
    "BACKBONES",
    "CHECKPOINT_NAME",
    "DATASETS",
    "INTERACTION_LOSSES",
    "LOSS_TERMS",
    "RECIPES",
    "TEXT_BACKBONES",
    "TUNERS",
    "BackboneError",
    "Callback",
    "CheckpointError",
    "ConfigError",
    "DataConfig",
    "DatasetError",
    "GalleryError",
    "GistConfig",
    "GistOutput",
    "GistTextEncoder",
    "GistViT",
    "ModelConfig",
    "RunConfig",
    "RunError",
    "RunManager",
    "RunNotFound",
    "RunSnapshot",
    "TokenAttention",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "apply_tuner",
    "backbone_data_config",
    "backbone_info",
    "build_model",
    "catalogue",
    "compute_token_attention",
    "count_parameters",
    "create_backbone",
    "dataset_modality",
    "dataset_preview",
    "dataset_samples",
    "decode_image",
    "describe_datasets",
    "describe_fields",
    "describe_model",
    "estimate_run_time",
    "explain_image",
    "gallery_examples",
    "gist_loss",
    "image_attention",
    "import_gallery",
    "import_gallery_entry",
    "import_imagefolder_zip",
    "import_text_table",
    "is_text_backbone",
    "list_gallery",
    "list_snapshots",
    "list_text_datasets",
    "list_uploaded_datasets",
    "load_dataset",
    "load_model",
    "load_run_config",
    "load_snapshot",
    "measure_throughput",
    "overlay_heatmap",
    "paired_delta",
    "parameter_summary",
    "predict",
    "remove_gallery_example",
    "run_compare",
    "runs_data_dir",
    "save_checkpoint",
    "summarise",
    "text_dataset_preview",
    "text_dataset_samples",
    "to_dict",
    "train",
]
