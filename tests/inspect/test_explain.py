"""Tests for Integrated Gradients, GradCAM, overlays and the attention report (tiny models, CPU, offline)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from matplotlib import colormaps
from PIL import Image
from torch import nn

from gist_engine import build_model, load_run_config
from gist_engine.inspect import AttentionMaps, attention_modules, to_uint8_images, unwrap_module
from gist_engine.inspect.explain import (
    attention_report,
    explain,
    grad_cam,
    integrated_gradients,
    load_image,
    overlay_heatmap,
    prepare_image,
    upsample_grid,
)
from gist_engine.inspect.report import attention_summary


def _model(method: str = "linear", args: dict | None = None, gist: bool = True, backbone: str = "test_vit",
           image_size: int = 0) -> nn.Module:
    config = {"backbone": backbone, "pretrained": False, "image_size": image_size, "method": method,
              "method_args": args or {}, "gist": {"enabled": gist}}
    model = build_model(config, seed=0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # random init is nearly constant: bigger weights give logits worth explaining
        for attn in attention_modules(model):
            qkv = unwrap_module(attn.qkv)
            qkv.weight.copy_(torch.randn(qkv.weight.shape, generator=gen) * 0.3)
        model.vit.head.weight.copy_(torch.randn(model.vit.head.weight.shape, generator=gen))
    return model.eval()


def _images(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("head", ["cls", "gist"])
def test_ig_completeness(head):
    """Attributions sum to the logit difference F(x) - F(baseline) (IG's completeness axiom)."""
    model = _model("lora")
    grid, delta, diff = integrated_gradients(model, _images(), head, target=[3, 5], n_steps=32)
    assert grid.shape == (2, 4, 4)
    assert np.abs(diff).min() > 1e-2  # a non-trivial difference to explain
    np.testing.assert_allclose(grid.sum(axis=(1, 2)), diff, atol=0.02 * np.abs(diff).max())
    np.testing.assert_allclose(grid.sum(axis=(1, 2)) - diff, delta, atol=1e-4)
    with torch.no_grad():
        out = model(_images())
        base = model(torch.zeros(2, 3, 32, 32))
    change = out.cls_logits - base.cls_logits if head == "cls" else out.gist_logits - base.gist_logits
    np.testing.assert_allclose(diff, change[[0, 1], [3, 5]].numpy(), atol=1e-5)


def test_explain_both_heads_gist_off_and_mode_restored():
    model = _model("vpt", {"length": 3, "deep": True}).train()
    att = explain(model, _images(), n_steps=8, gradcam=True)
    assert model.training
    with torch.no_grad():
        predicted = model.eval()(_images()).cls_logits.argmax(-1)
    assert list(att.target) == predicted.tolist()  # default: the CLS prediction
    assert att.cls_grid.shape == att.gist_grid.shape == (2, 4, 4)
    assert att.cls_map.shape == att.gist_map.shape == (2, 32, 32)
    assert att.cls_delta.shape == att.gist_delta.shape == (2,)
    assert att.cls_gradcam.shape == att.gist_gradcam.shape == (2, 4, 4)
    plain = explain(_model(gist=False), _images(), target=1, n_steps=4)
    assert list(plain.target) == [1, 1]
    assert plain.gist_grid is None and plain.gist_delta is None and plain.cls_grid.shape == (2, 4, 4)
    with pytest.raises(ValueError, match="GIST"):
        integrated_gradients(_model(gist=False), _images(), "gist", n_steps=2)


@pytest.mark.parametrize(("backbone", "size", "grid"), [("vit_base_patch16_224", 32, (2, 2)),
                                                        ("dinov2_s14", 28, (2, 2))])
def test_ig_real_architectures(backbone, size, grid):
    config = {"backbone": backbone, "pretrained": False, "image_size": size, "method": "lora"}
    model = build_model(config, seed=0)
    att = explain(model.eval(), _images(1, size), n_steps=4, gradcam=True)
    assert att.cls_grid.shape == (1, *grid) and att.cls_map.shape == (1, size, size)
    assert att.gist_gradcam.shape == (1, *grid)
    assert np.isfinite(att.cls_delta).all() and np.isfinite(att.gist_grid).all()


def test_gradcam_skips_the_extra_tokens():
    """GradCAM by hand on the last block's norm1, the layout counted by hand: 1 + 2 + 1 + 3 extra tokens."""
    model = _model("vpt", {"length": 3, "deep": True}, backbone="test_vit_reg")
    x = _images()
    cam = grad_cam(model, x, "gist", target=2)
    acts = []
    norm1 = unwrap_module(model.vit.blocks[-1]).norm1
    handle = norm1.register_forward_hook(lambda m, a, o: acts.append(o))
    try:
        score = model(x.clone().requires_grad_(True)).gist_logits[:, 2].sum()
        (grad,) = torch.autograd.grad(score, acts[0])  # (B, T, D)
    finally:
        handle.remove()
    a, g = acts[0].detach()[:, 7:], grad[:, 7:]  # (B, 16, D) the patches
    ref = torch.relu((g.mean(1, keepdim=True) * a).sum(-1)).reshape(2, 4, 4)
    np.testing.assert_allclose(cam, ref.numpy(), atol=1e-6)
    assert (cam >= 0).all() and cam.max() > 0


def test_overlay_heatmap():
    image = np.full((32, 32, 3), 100, dtype=np.uint8)
    heat = np.arange(16, dtype=np.float32).reshape(4, 4)
    out = overlay_heatmap(image, heat, cmap="viridis", alpha=0.5)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(overlay_heatmap(image, heat, alpha=0.0), image)
    full = overlay_heatmap(image, np.eye(32), cmap="viridis", alpha=1.0)
    expected = (colormaps["viridis"](np.eye(32))[..., :3] * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(full, expected)
    flat = overlay_heatmap(image, np.ones((4, 4)), cmap="viridis", alpha=1.0)  # constant map: bottom colour
    assert (flat == flat[0, 0]).all()
    assert upsample_grid(heat[None], 8).shape == (1, 8, 8)


def test_image_loading_and_normalisation(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (50, 70, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "x.png")
    img = load_image(tmp_path / "x.png", 32)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    model = _model()
    resized, x = prepare_image(model, tmp_path / "x.png")  # the same decoder: alpha composited over white
    np.testing.assert_array_equal(resized, img)
    assert x.shape == (1, 3, 32, 32)
    cfg = model.data_config
    np.testing.assert_array_equal(to_uint8_images(x, cfg["mean"], cfg["std"])[0], img)


@pytest.mark.parametrize("gist", [True, False], ids=["gist_on", "gist_off"])
def test_attention_cli_writes_maps_figure_summary(tmp_path, gist):
    rgb = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in.jpg")
    config = {"backbone": "test_vit", "method": "adapter", "gist": {"enabled": gist}, "train": {"epochs": 2}}
    summary = attention_summary(None, config, tmp_path / "in.jpg", tmp_path / "out")
    for name in ("maps.npz", "attention.png", "summary.json"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == summary
    assert len(summary["layers"]) == 2 and summary["grid"] == [4, 4]
    layer = summary["layers"][0]
    assert layer["cls_entropy"] > 0
    assert (layer["gist_entropy"] is not None) == gist and (layer["cls_gist_cosine"] is not None) == gist
    maps = AttentionMaps.load(tmp_path / "out" / "maps.npz")
    assert maps.images.shape == (1, 32, 32, 3) and maps.has_gist == gist
    with Image.open(tmp_path / "out" / "attention.png") as png:
        assert png.size[0] > 200


def test_attention_report_with_a_loaded_model(tmp_path):
    model = _model("ssf")
    summary = attention_report(model, np.zeros((20, 20, 3), np.uint8), tmp_path)
    assert summary["prediction"]["gist"] is not None and summary["rollout"]["cosine"] is not None
    via_cli = attention_summary(tmp_path / "run", None, _png(tmp_path), tmp_path / "cli", model=model)
    assert via_cli["run"] == str(tmp_path / "run")
    with pytest.raises(ValueError, match="checkpoint"):  # checkpoint.CheckpointError
        attention_summary(tmp_path / "empty_run", None, _png(tmp_path), tmp_path / "x")
    with pytest.raises(ValueError, match="config"):
        attention_summary(None, None, _png(tmp_path), tmp_path / "x")


def test_attention_cli_loads_a_run(tmp_path):
    from gist_engine.train.checkpoint import CHECKPOINT_NAME, save_checkpoint

    config = load_run_config({"backbone": "test_vit", "method": "lora", "gist": {"length": 2}})
    model = build_model(config, seed=config.train.seed).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:  # "trained": differs from a fresh build
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 0.5)
    (tmp_path / "run").mkdir()
    save_checkpoint(model, tmp_path / "run" / CHECKPOINT_NAME, config)
    summary = attention_summary(tmp_path / "run", None, _png(tmp_path), tmp_path / "out")
    expected = attention_report(model, np.zeros((8, 8, 3), np.uint8), tmp_path / "direct")
    assert summary["layers"] == expected["layers"] and summary["run"] == str(tmp_path / "run")


def _png(tmp_path) -> str:
    path = tmp_path / "img.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(path)
    return path
