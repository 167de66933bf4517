"""The row shortcuts (speed.rows): the last block for the head rows only, the first block's row gradient."""

from __future__ import annotations

import copy

import pytest
import torch

from gist_engine import build_model, speed
from gist_engine.inspect import capture_attention
from gist_engine.model import GistViT
from gist_engine.speed import attention as speed_attention
from gist_engine.speed.attention import RowGradLinear


def install(model: GistViT) -> GistViT:
    speed.install(model, "cpu", cpu_threads=None)
    return model


# ------------------------------------------------------------------------ the last block for the head rows only
ROW_CASES = [("linear", {}), ("adapter", {}), ("adapter", {"variant": "houlsby"}),
             ("adapter", {"variant": "adaptformer"}), ("lora", {}), ("vpt", {}), ("vpt", {"deep": True}),
             ("ssf", {"init_std": 0.3}), ("bitfit", {}), ("full", {})]


def last_block_rows(model: GistViT, x: torch.Tensor) -> int:
    """How many tokens the last block's second norm saw in a forward of `model`."""
    seen = []
    last = model.vit.blocks[-1]
    while hasattr(last, "base_layer"):  # speed's and the tuners' wrappers
        last = last.base_layer
    norm2 = last.norm2
    handle = norm2.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[1]))
    try:
        model(x)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("backbone", ["test_vit", "test_vit_reg"])
@pytest.mark.parametrize(("method", "args"), ROW_CASES)
def test_the_last_block_runs_for_the_head_rows_only_with_the_same_logits_and_gradients(backbone, method, args):
    full = build_model({"backbone": backbone, "method": method, "method_args": args,
                        "gist": {"dropout": 0.0}}, seed=0).train()
    rows = install(copy.deepcopy(full))
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
    model = build_model({"backbone": "test_vit", "method": "adapter", "gist": {"enabled": False}}, seed=0).eval()
    install(model)
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
    calls = []
    real = speed_attention.RowGradLinear.apply
    monkeypatch.setattr(speed_attention.RowGradLinear, "apply", lambda *a: calls.append(tuple(a[-2:])) or real(*a))
    model = build_model({"backbone": "test_vit", "method": method, "method_args": args,
                         "gist": {"dropout": 0.0}}, seed=0).train()
    install(model)
    out = model(torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    (out.cls_logits.sum() + out.gist_logits.sum()).backward()
    assert calls == grad_rows
    assert model.gist_token.grad is not None and model.gist_token.grad.abs().sum() > 0
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
    assert calls == grad_rows  # no gradient wanted: the plain projection


def test_row_grad_linear_gives_autograd_s_gradient_in_its_rows_and_zero_elsewhere():
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
