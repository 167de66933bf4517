"""Tests for attention capture, CLS/Gist maps, rollout and the training snapshots (tiny random ViTs, CPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gist_engine import TUNERS, build_model
from gist_engine.inspect import (
    AttentionMaps,
    AttentionSnapshots,
    attention_modules,
    attention_rollout,
    capture_attention,
    choose_probe_images,
    compute_attention_maps,
    list_snapshots,
    load_snapshot,
    map_cosine,
    map_entropy,
    unwrap_module,
)
from gist_engine.tuners.adapter import VARIANTS

# Every tuner, the adapter variants and both VPT depths; each with GIST on and off.
TUNER_CASES = [(name, {}) for name in TUNERS if name not in ("adapter", "vpt")]
TUNER_CASES += [("adapter", {"variant": v}) for v in VARIANTS]
TUNER_CASES += [("vpt", {"length": 3, "deep": False}), ("vpt", {"length": 3, "deep": True})]
TUNER_IDS = [f"{m}-{a.get('variant', 'deep' if a.get('deep') else 'shallow')}" if a else m
             for m, a in TUNER_CASES]


def _model(method: str = "linear", args: dict | None = None, gist: bool = True, backbone: str = "test_vit",
           **gist_kw) -> nn.Module:
    model = build_model({"backbone": backbone, "method": method, "method_args": args or {},
                         "gist": {"enabled": gist, **gist_kw}}, seed=0)
    _sharpen(model)
    return model.eval()


def _sharpen(model: nn.Module) -> None:
    """Random init gives near-uniform attention; larger weights make the maps worth comparing."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for attn in attention_modules(model):
            qkv = unwrap_module(attn.qkv)
            qkv.weight.copy_(torch.randn(qkv.weight.shape, generator=gen) * 0.4)
        for name, p in model.named_parameters():
            if "lora_B" in name or ".up." in name:  # zero-initialised tuner outputs: make them matter
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def _images(n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))


def test_rows_sum_to_one_and_shapes():
    model = _model()
    with torch.no_grad(), capture_attention(model) as cap:
        model(_images())
    attn = cap.stacked()  # (L, B, H, T, T)
    assert attn.shape == (2, 2, 2, model.num_extra_tokens + 16, model.num_extra_tokens + 16)
    torch.testing.assert_close(attn.sum(-1), torch.ones(attn.shape[:-1]), atol=1e-5, rtol=0)
    assert (attn >= 0).all()


@pytest.mark.parametrize("method", ["linear", "lora"])
def test_capture_equals_reference_softmax(method):
    """softmax(q k^T / sqrt(d)) recomputed from the block's qkv (LoRA update included) and its input."""
    model = _model(method, backbone="test_vit_reg")
    inputs = []
    handles = [attn.register_forward_pre_hook(lambda m, args: inputs.append(args[0]))
               for attn in attention_modules(model)]
    try:
        with torch.no_grad(), capture_attention(model) as cap:
            model(_images())
    finally:
        for h in handles:
            h.remove()
    for attn, x, captured in zip(attention_modules(model), inputs, cap.maps, strict=True):
        b, t, _ = x.shape
        with torch.no_grad():
            qkv = attn.qkv(x).reshape(b, t, 3, attn.num_heads, attn.head_dim)  # (B, T, 3, H, d)
        q, k = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2)  # (B, H, T, d)
        ref = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(attn.head_dim), dim=-1)  # (B, H, T, T)
        torch.testing.assert_close(captured, ref, atol=1e-5, rtol=1e-4)
        assert ref.max() > 0.2  # the maps are far from uniform: the comparison means something


def test_flags_restored_even_when_forward_raises():
    model = _model("lora")
    modules = attention_modules(model)
    for m in modules:
        m.fused_attn = True
    modules[0].fused_attn = False  # a mixed state must come back as it was
    before = [m.fused_attn for m in modules]
    with pytest.raises(RuntimeError, match="boom"), capture_attention(model):
        assert not any(m.fused_attn for m in modules)
        raise RuntimeError("boom")
    assert [m.fused_attn for m in modules] == before
    assert all(not m.attn_drop._forward_hooks for m in modules)


def test_bad_input_inside_capture_restores_flags():
    model = _model()
    for m in attention_modules(model):
        m.fused_attn = True
    with pytest.raises(RuntimeError), capture_attention(model):
        model(torch.randn(1, 5, 32, 32))  # wrong channel count: the forward itself raises
    assert all(m.fused_attn for m in attention_modules(model))


@pytest.mark.parametrize("gist", [True, False], ids=["gist_on", "gist_off"])
@pytest.mark.parametrize(("method", "args"), TUNER_CASES, ids=TUNER_IDS)
def test_capture_every_tuner(method, args, gist):
    model = _model(method, args, gist)
    x = _images()
    for m in attention_modules(model):
        m.fused_attn = True
    with torch.no_grad():
        fused = model(x)
        with capture_attention(model) as cap:
            unfused = model(x)
    attn = cap.stacked()
    n_patches = model.vit.patch_embed.num_patches
    assert attn.shape[-1] == attn.shape[-2] == model.num_extra_tokens + n_patches
    torch.testing.assert_close(attn.sum(-1), torch.ones(attn.shape[:-1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(unfused.cls_logits, fused.cls_logits, atol=1e-5, rtol=1e-4)
    if gist:
        torch.testing.assert_close(unfused.gist_logits, fused.gist_logits, atol=1e-5, rtol=1e-4)
    else:
        assert unfused.gist_logits is None
    assert all(m.fused_attn for m in attention_modules(model))  # the training path stays fused

    maps = compute_attention_maps(model, x)
    assert maps.cls_maps.shape == (2, 2, 2, 4, 4)
    assert maps.cls_rollout.shape == (2, 2, 4, 4)
    assert maps.has_gist == gist
    assert (maps.gist_maps is None) == (not gist)
    summary = maps.summary()
    assert list(summary["layer"]) == [0, 1]
    assert summary["cls_entropy"].notna().all()
    assert summary["cls_gist_cosine"].notna().all() == gist


def test_maps_use_the_right_tokens():
    """CLS row at 0, Gist rows after the registers, patches after CLS + registers + Gist + prompts."""
    model = _model("vpt", {"length": 3, "deep": True}, backbone="test_vit_reg", length=2)
    assert model.num_extra_tokens == 1 + 2 + 2 + 3
    x = _images()
    with torch.no_grad(), capture_attention(model) as cap:
        out = model(x)
    attn = cap.stacked()  # (L, B, H, T, T)
    maps = compute_attention_maps(model, x)
    e = model.num_extra_tokens
    cls = attn[:, :, :, 0, e:].reshape(2, 2, 2, 4, 4).movedim(0, 1)  # (B, L, H, gh, gw)
    gist = attn[:, :, :, 3:5, e:].mean(3).reshape(2, 2, 2, 4, 4).movedim(0, 1)
    np.testing.assert_allclose(maps.cls_maps, cls.numpy(), atol=1e-6)
    np.testing.assert_allclose(maps.gist_maps, gist.numpy(), atol=1e-6)
    cls_to_gist = attn[:, :, :, 0, 3:5].sum(-1).movedim(0, 1)  # (L, B, H, G) -> (B, L, H)
    gist_to_cls = attn[:, :, :, 3:5, 0].mean(-1).movedim(0, 1)
    np.testing.assert_allclose(maps.cls_to_gist, cls_to_gist.numpy(), atol=1e-6)
    np.testing.assert_allclose(maps.gist_to_cls, gist_to_cls.numpy(), atol=1e-6)
    np.testing.assert_allclose(maps.cls_logits, out.cls_logits.numpy(), atol=1e-5)
    layout = (("CLS", 1), ("registers", 2), ("Gist", 2), ("prompts", 3), ("patches", 16))
    assert maps.sequence_layout == layout


def test_rollout_hand_computed():
    a1 = torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.2, 0.2, 0.6]])
    a2 = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    # A' = 0.5 A + 0.5 I (rows already sum to 1)
    r1 = torch.tensor([[0.75, 0.25, 0.0], [0.0, 1.0, 0.0], [0.1, 0.1, 0.8]])
    p2 = torch.tensor([[0.5, 0.0, 0.5], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5]])
    # R2 = A'2 @ R1, by hand: row 0 = 0.5 * r1[0] + 0.5 * r1[2] = [0.425, 0.175, 0.4]
    r2 = torch.tensor([[0.425, 0.175, 0.4], [0.375, 0.625, 0.0], [0.05, 0.55, 0.4]])
    attn = torch.stack([a1, a2])[:, None]  # (L, B, T, T)
    out = attention_rollout(attn)
    torch.testing.assert_close(out[0, 0], r1)
    torch.testing.assert_close(out[1, 0], r2)
    torch.testing.assert_close(out[1, 0], p2 @ r1)


def test_rollout_renormalises_rows():
    attn = torch.full((1, 1, 2, 2), 1.0)  # rows sum to 2: 0.5 A + 0.5 I = [[1, .5], [.5, 1]], re-normalised
    out = attention_rollout(attn)
    torch.testing.assert_close(out[0, 0], torch.tensor([[2.0, 1.0], [1.0, 2.0]]) / 3)


def test_entropy_and_cosine():
    uniform = np.ones((4, 4))
    one_hot = np.zeros((4, 4))
    one_hot[1, 2] = 3.0
    np.testing.assert_allclose(map_entropy(np.stack([uniform, one_hot])), [math.log(16), 0.0], atol=1e-12)
    np.testing.assert_allclose(map_cosine(uniform, 2 * uniform), 1.0)
    np.testing.assert_allclose(map_cosine(one_hot, uniform), 0.25)


def test_gist_off_cls_maps_still_work():
    maps = compute_attention_maps(_model(gist=False), _images())
    assert maps.gist_maps is None and maps.gist_rollout is None and maps.cls_to_gist is None
    assert maps.gist_mean is None and maps.gist_logits is None
    assert maps.cls_mean.shape == (2, 2, 4, 4)
    assert maps.summary()["gist_entropy"].isna().all()


def test_compute_restores_mode_and_turns_dropout_off():
    model = _model("lora", {"dropout": 0.5}, dropout=0.5)
    model.train()
    model.vit.blocks[0].eval()  # a mixed state comes back as it was
    x = _images()
    a = compute_attention_maps(model, x)
    b = compute_attention_maps(model, x)
    np.testing.assert_array_equal(a.cls_maps, b.cls_maps)  # no dropout: deterministic
    assert model.training and not model.vit.blocks[0].training and model.vit.blocks[1].training


def test_save_load_roundtrip(tmp_path):
    maps = compute_attention_maps(_model(length=2), _images())
    maps.step = 7
    size = maps.save(tmp_path / "m.npz")
    assert size == (tmp_path / "m.npz").stat().st_size
    back = AttentionMaps.load(tmp_path / "m.npz")
    assert back.step == 7 and back.sequence_layout == maps.sequence_layout
    np.testing.assert_allclose(back.cls_maps, maps.cls_maps, atol=1e-3)
    np.testing.assert_allclose(back.gist_rollout, maps.gist_rollout, atol=1e-3)
    np.testing.assert_array_equal(back.images, maps.images)
    np.testing.assert_array_equal(back.cls_logits, maps.cls_logits)  # logits kept in float32


def test_snapshots_every_k_steps(tmp_path):
    model = _model("lora")
    probe = choose_probe_images(_images(10), k=3, seed=0)
    assert probe.shape == (3, 3, 32, 32)
    torch.testing.assert_close(probe, choose_probe_images(_images(10), k=3, seed=0))  # seeded
    cb = AttentionSnapshots(tmp_path, every=3, probe_images=probe)
    model.train()
    optim = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    cb.on_train_start(model)
    at_start = compute_attention_maps(model, probe)
    for step in range(1, 8):
        out = model(_images(4))
        (out.cls_logits.square().mean() + out.gist_logits.square().mean()).backward()
        optim.step()
        optim.zero_grad()
        cb.on_step_end(model, step)
        assert model.training
    cb.on_train_end(model, 7)
    assert list_snapshots(tmp_path) == [0, 3, 6, 7]
    assert list_snapshots(tmp_path / "attention") == [0, 3, 6, 7]
    first = load_snapshot(tmp_path, 0)
    assert first.step == 0 and first.cls_maps.dtype == np.float32
    np.testing.assert_allclose(first.cls_maps, at_start.cls_maps, atol=2e-3)
    np.testing.assert_allclose(first.gist_rollout, at_start.gist_rollout, atol=2e-3)
    np.testing.assert_array_equal(first.images, at_start.images)  # the probe images come back, uint8
    last = load_snapshot(tmp_path, 6)
    assert not np.allclose(last.cls_maps, first.cls_maps, atol=1e-3)  # training changed the maps
    with np.load(tmp_path / "attention" / "step_0000003.npz") as data:
        assert data["cls_maps"].dtype == np.float16
    with pytest.raises(FileNotFoundError, match="recorded steps"):
        load_snapshot(tmp_path, 5)
    assert list_snapshots(tmp_path / "nothing") == []
