"""GistViT: parity with plain timm when GIST is off, where the Gist token sits, its heads and options."""

from __future__ import annotations

import copy

import pytest
import torch
from timm.models.vision_transformer import VisionTransformer

from gist_engine import GistConfig, GistViT, build_model


def tiny_vit(**kwargs) -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0, **kwargs)


def block_input(model: GistViT, x: torch.Tensor) -> torch.Tensor:
    """The token sequence entering the first block."""
    seen = {}
    handle = model.vit.blocks[0].register_forward_pre_hook(lambda mod, args: seen.setdefault("x", args[0]))
    try:
        model(x)
    finally:
        handle.remove()
    return seen["x"]


@pytest.mark.parametrize("kwargs", [{}, {"reg_tokens": 2, "init_values": 1e-5}, {"no_embed_class": True}])
def test_gist_off_equals_plain_timm(kwargs, images):
    vit = tiny_vit(**kwargs)
    model = GistViT(copy.deepcopy(vit), num_classes=5, gist=GistConfig(enabled=False)).eval()
    vit.reset_classifier(5)
    vit.head.load_state_dict(model.vit.head.state_dict())
    vit.eval()
    out = model(images)
    assert out.gist_logits is None
    torch.testing.assert_close(out.cls_logits, vit(images), rtol=0, atol=1e-6)


def test_gist_token_sits_after_prefix_without_position_embedding(images):
    for kwargs, prefix in [({}, 1), ({"reg_tokens": 2}, 3)]:
        model = GistViT(tiny_vit(**kwargs), num_classes=5, gist=GistConfig(length=2)).eval()
        x = block_input(model, images)  # (B, P + G + N, D)
        n = model.vit.patch_embed.num_patches
        assert x.shape == (4, prefix + 2 + n, 32)
        assert model.gist_slice == slice(prefix, prefix + 2)
        # exactly the token: no position embedding added, no dropout in eval
        torch.testing.assert_close(x[:, prefix:prefix + 2], model.gist_token.expand(4, -1, -1), rtol=0, atol=0)
        plain = model.vit._pos_embed(model.vit.patch_embed(images))  # (B, P + N, D)
        torch.testing.assert_close(x[:, :prefix], plain[:, :prefix])
        torch.testing.assert_close(x[:, prefix + 2:], plain[:, prefix:])
        assert model.vit.pos_embed.shape == tiny_vit(**kwargs).pos_embed.shape  # no entries added for Gist


def test_gist_token_init_and_dropout_only_in_training(images):
    model = GistViT(tiny_vit(), num_classes=5, gist=GistConfig(init=0.5, dropout=0.5))
    token = model.gist_token.detach()
    assert token.abs().max() <= 0.5 and token.std() > 0.2  # uniform(-0.5, 0.5): std ~ 0.29
    model.train()
    x = block_input(model, images)[:, 1]  # (B, D)
    assert (x == 0).any(), "dropout zeroes some Gist entries in training"
    model.eval()
    torch.testing.assert_close(block_input(model, images)[:, 1], token[:, 0].expand(4, -1))


def test_heads_shared_and_separate_and_mean_of_gist_outputs(images):
    model = GistViT(tiny_vit(), num_classes=5, gist=GistConfig(length=3, dropout=0.0)).eval()
    feats = model.forward_features(images)  # (B, 1 + 3 + N, D)
    out = model(images)
    torch.testing.assert_close(out.cls_logits, model.vit.head(feats[:, 0]))
    torch.testing.assert_close(out.gist_logits, model.vit.head(feats[:, 1:4].mean(1)))
    assert model.gist_parameter_count() == 3 * 32

    sep = GistViT(tiny_vit(), num_classes=5, gist=GistConfig(shared_head=False)).eval()
    out = sep(images)
    feats = sep.forward_features(images)
    torch.testing.assert_close(out.gist_logits, sep.gist_head(feats[:, 1]))
    assert sep.gist_parameter_count() == 32 + 32 * 5 + 5


def test_gist_token_changes_cls_output_through_attention(images):
    """No attention mask: the Gist token interacts with every token, CLS included."""
    vit = tiny_vit()
    on = GistViT(copy.deepcopy(vit), 5, GistConfig()).eval()
    off = GistViT(copy.deepcopy(vit), 5, GistConfig(enabled=False)).eval()
    off.vit.head.load_state_dict(on.vit.head.state_dict())
    assert not torch.allclose(on(images).cls_logits, off(images).cls_logits)


def test_backbone_without_class_token_is_refused():
    with pytest.raises(ValueError, match="class token"):
        GistViT(tiny_vit(class_token=False, global_pool="avg"), num_classes=5)


def test_sequence_layout_and_build_model_data_config():
    model = build_model({"backbone": "test_vit_reg", "method": "vpt", "method_args": {"length": 3},
                         "gist": {"length": 2}})
    assert model.sequence_layout() == [("CLS", 1), ("registers", 2), ("Gist", 2), ("prompts", 3), ("patches", 16)]
    assert model.num_extra_tokens == 8
    assert model.data_config == {"mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5), "image_size": 32}


# ------------------------------------------------------------------------ the last block for the head rows only
ROW_CASES = [("linear", {}), ("adapter", {}), ("adapter", {"variant": "houlsby"}),
             ("adapter", {"variant": "adaptformer"}), ("lora", {}), ("vpt", {}), ("vpt", {"deep": True}),
             ("ssf", {"init_std": 0.3}), ("bitfit", {}), ("full", {})]


def last_block_rows(model: GistViT, x: torch.Tensor) -> int:
    """How many tokens the last block's second norm saw in a forward of `model`."""
    seen = []
    last = model.vit.blocks[-1]
    norm2 = getattr(last, "base_layer", last)
    norm2 = getattr(norm2, "base_layer", norm2).norm2
    handle = norm2.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[1]))
    try:
        model(x)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("backbone", ["test_vit", "test_vit_reg"])
@pytest.mark.parametrize(("method", "args"), ROW_CASES)
def test_the_last_block_runs_for_the_head_rows_only_with_the_same_logits_and_gradients(backbone, method, args):
    from gist_engine.fastpath import enable_fused_attention

    full = build_model({"backbone": backbone, "method": method, "method_args": args,
                        "gist": {"dropout": 0.0}}, seed=0).train()
    rows = copy.deepcopy(full)
    enable_fused_attention(rows)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert last_block_rows(full, x) == full.seq_len
    assert last_block_rows(rows, x) == rows.head_rows == rows.num_prefix_tokens + 1
    want, got = full(x), rows(x)
    for name in ("cls_logits", "gist_logits"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name), rtol=1e-5, atol=1e-6, msg=name)
    (want.cls_logits.sum() + want.gist_logits.square().sum()).backward()
    (got.cls_logits.sum() + got.gist_logits.square().sum()).backward()
    for (name, a), b in zip(full.named_parameters(), rows.parameters(), strict=True):
        if a.requires_grad:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_attention_capture_and_gist_off_models_run_the_last_block_whole(images):
    from gist_engine.fastpath import enable_fused_attention
    from gist_engine.inspect import capture_attention

    model = build_model({"backbone": "test_vit", "method": "adapter", "gist": {"enabled": False}}, seed=0).eval()
    enable_fused_attention(model)
    assert last_block_rows(model, images) == model.head_rows == 1  # CLS only
    with capture_attention(model) as cap:  # the unfused path records every query row of every block
        assert last_block_rows(model, images) == model.seq_len
    assert cap.stacked().shape[-2] == model.seq_len


@pytest.mark.parametrize(("method", "args", "grad_rows"), [
    ("adapter", {}, [(1, 2)]),  # the Gist token, after the CLS token
    ("linear", {}, [(1, 2)]),
    ("vpt", {"length": 3}, [(1, 5)]),  # the Gist token and the prompts VPT inserts in the first block
    ("lora", {}, []),  # a trained qkv projection needs its whole input
    ("ssf", {}, []),  # SSF trains the patch embedding: every row carries a gradient
])
def test_the_first_qkv_projection_back_propagates_to_the_rows_that_need_it_only(monkeypatch, method, args,
                                                                                grad_rows):
    from gist_engine import model as model_module
    from gist_engine.fastpath import enable_fused_attention

    calls = []
    real = model_module.RowGradLinear.apply
    monkeypatch.setattr(model_module.RowGradLinear, "apply", lambda *a: calls.append(tuple(a[-2:])) or real(*a))
    model = build_model({"backbone": "test_vit", "method": method, "method_args": args,
                         "gist": {"dropout": 0.0}}, seed=0).train()
    enable_fused_attention(model)
    out = model(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    (out.cls_logits.sum() + out.gist_logits.sum()).backward()
    assert calls == grad_rows
    assert model.gist_token.grad is not None and model.gist_token.grad.abs().sum() > 0
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert calls == grad_rows  # no gradient wanted: the plain projection


def test_row_grad_linear_gives_autograd_s_gradient_in_its_rows_and_zero_elsewhere():
    from gist_engine.model import RowGradLinear

    torch.manual_seed(0)
    layer = torch.nn.Linear(8, 12).requires_grad_(False)
    x = torch.randn(3, 5, 8, requires_grad=True)
    w = torch.randn(3, 5, 12)
    (layer(x) * w).sum().backward()
    want = x.grad.clone()
    x.grad = None
    y = RowGradLinear.apply(x, layer.weight, layer.bias, 1, 3)
    torch.testing.assert_close(y, layer(x))
    (y * w).sum().backward()
    torch.testing.assert_close(x.grad[:, 1:3], want[:, 1:3])
    assert not x.grad[:, :1].any() and not x.grad[:, 3:].any()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 activations, float32 input and weight
        y = RowGradLinear.apply(x, layer.weight, layer.bias, 1, 3)
    assert y.dtype == torch.bfloat16
    x.grad = None
    (y.float() * w).sum().backward()
    assert x.grad.dtype == torch.float32
    torch.testing.assert_close(x.grad[:, 1:3], want[:, 1:3], rtol=0.02, atol=0.05)
