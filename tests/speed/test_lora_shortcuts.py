"""LoRA's speed wrappers (one low-rank addmm over the fused qkv, or over a Linear's output) compute the plain tuner
layers' formula, with the same gradients, keep bf16 activations bf16 under autocast, and are what `speed.install`
puts on a LoRA model."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from gist_engine import speed
from gist_engine.speed.tuners import FusedLoRALinear, FusedLoRAQKV
from gist_engine.tuners.lora import LoRALinear, LoRAQKV
from tests.models import build, randomise


def lora_module(targets: str, rank: int = 2) -> LoRAQKV:
    model = build("lora", {"rank": rank, "alpha": 3.0, "targets": targets})
    randomise(model, (".lora_B",), std=0.05)  # an update of the base output's size, O(1)
    m = model.vit.blocks[0].attn.qkv
    assert isinstance(m, LoRAQKV)
    return m


def grads(m: nn.Module, loss: Tensor) -> dict[str, Tensor]:
    params = {n: p for n, p in m.named_parameters() if p.requires_grad}
    return dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))


@pytest.mark.parametrize("targets", ["q", "qv", "qkv", "kv"])
def test_fused_lora_qkv_forward_and_gradients_equal_the_plain_layer(targets: str) -> None:
    plain = lora_module(targets)
    fused = FusedLoRAQKV(plain)
    x = torch.randn(3, 5, plain.base_layer.in_features, generator=torch.Generator().manual_seed(2))
    w = torch.randn(3, 5, plain.base_layer.out_features, generator=torch.Generator().manual_seed(3))
    got, ref = fused(x), plain(x)
    assert got.shape == ref.shape == (3, 5, 3 * plain.base_layer.in_features)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    g_got, g_ref = grads(fused, (got * w).sum()), grads(plain, (ref * w).sum())
    assert set(g_ref) == {f"lora_{ab}.{t}" for ab in "AB" for t in targets}
    for name in g_ref:
        torch.testing.assert_close(g_got[f"base_layer.{name}"], g_ref[name], rtol=1e-5, atol=1e-5, msg=name)


def test_fused_lora_qkv_leaves_untargeted_slices_exactly_the_base_output() -> None:
    m = FusedLoRAQKV(lora_module("kv"))
    x = torch.randn(2, 4, m.base_layer.base_layer.in_features)
    d = m.base_layer.base_layer.in_features
    assert torch.equal(m(x)[..., :d], m.base_layer.base_layer(x)[..., :d])


def test_fused_lora_linear_equals_the_plain_layer() -> None:
    torch.manual_seed(0)
    plain = LoRALinear(nn.Linear(16, 24), rank=4, alpha=8.0, dropout=0.0)
    randomise(plain, ("lora_B",), std=0.05)
    fused = FusedLoRALinear(plain)
    x = torch.randn(3, 5, 16)
    got, ref = fused(x), plain(x)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    g_got, g_ref = grads(fused, got.square().sum()), grads(plain, ref.square().sum())
    for name in g_ref:
        torch.testing.assert_close(g_got[f"base_layer.{name}"], g_ref[name], rtol=1e-5, atol=1e-5, msg=name)


def test_disabled_fused_lora_runs_the_plain_layer() -> None:
    fused = FusedLoRAQKV(lora_module("qv"))
    x = torch.randn(2, 3, fused.base_layer.base_layer.in_features)
    with speed.disabled(fused):
        assert torch.equal(fused(x), fused.base_layer(x))


def test_autocast_bf16_keeps_fused_lora_outputs_bf16() -> None:
    lora = FusedLoRAQKV(lora_module("qv"))
    x = torch.randn(2, 5, lora.base_layer.base_layer.in_features, generator=torch.Generator().manual_seed(6))
    ref = lora(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = lora(x.bfloat16())
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), ref, rtol=0.05, atol=0.05)
    got.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in lora.parameters() if p.requires_grad)


def test_install_wraps_every_lora_layer_and_keeps_the_logits() -> None:
    model = build("lora", {"rank": 2, "targets": "qv"}).eval()
    randomise(model, (".lora_B",), std=0.05)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    before = model(x).cls_logits
    names = [n for n, _ in model.named_parameters()]
    report = speed.install(model, "cpu", cpu_threads=None)
    assert report.tuner_shortcuts["FusedLoRAQKV"] == len(model.vit.blocks)
    assert [n for n, _ in speed.plain_named_parameters(model)] == names
    torch.testing.assert_close(model(x).cls_logits, before, rtol=1e-5, atol=1e-5)
