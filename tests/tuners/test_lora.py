"""LoRA's tuner layers compute the straightforward formula (each targeted qkv slice plus its low-rank update), with
the same gradients, and keep bf16 activations bf16 under autocast (the fused addmm is a speed wrapper:
tests/speed/test_lora_shortcuts.py)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from gist_engine.tuners.lora import LoRALinear, LoRAQKV
from tests.models import build, randomise


def lora_qkv_reference(m: LoRAQKV, x: Tensor) -> Tensor:
    """The formula, written out: chunk the (B, T, 3D) output, add each targeted slice's update, cat."""
    out = m.base_layer(x)
    qkv = dict(zip("qkv", out.chunk(3, dim=-1), strict=True))
    for t in m.targets:
        qkv[t] = qkv[t] + (x @ m.lora_A[t].T) @ m.lora_B[t].T * m.scaling
    return torch.cat([qkv["q"], qkv["k"], qkv["v"]], dim=-1)


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
def test_lora_qkv_forward_and_gradients_match_the_formula(targets: str) -> None:
    m = lora_module(targets)
    assert set(m.lora_A) == set(m.lora_B) == set(targets)
    x = torch.randn(3, 5, m.base_layer.in_features, generator=torch.Generator().manual_seed(2))
    w = torch.randn(3, 5, m.base_layer.out_features, generator=torch.Generator().manual_seed(3))
    got, ref = m(x), lora_qkv_reference(m, x)
    assert got.shape == ref.shape == (3, 5, 3 * m.base_layer.in_features)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    g_got, g_ref = grads(m, (got * w).sum()), grads(m, (ref * w).sum())
    assert set(g_got) == {f"lora_{ab}.{t}" for ab in "AB" for t in targets}
    for name in g_ref:
        torch.testing.assert_close(g_got[name], g_ref[name], rtol=1e-5, atol=1e-5, msg=name)


def test_lora_qkv_untargeted_slices_are_exactly_the_base_output() -> None:
    m = lora_module("kv")
    x = torch.randn(2, 4, m.base_layer.in_features)
    d = m.base_layer.in_features
    assert torch.equal(m(x)[..., :d], m.base_layer(x)[..., :d])


def test_lora_state_dict_keys_are_unchanged() -> None:
    m = lora_module("qv", rank=4)
    d = m.base_layer.in_features
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items() if "lora_" in k}
    assert shapes == {"lora_A.q": (4, d), "lora_A.v": (4, d), "lora_B.q": (d, 4), "lora_B.v": (d, 4)}


def test_lora_linear_matches_the_reference() -> None:
    torch.manual_seed(0)
    m = LoRALinear(nn.Linear(16, 24), rank=4, alpha=8.0, dropout=0.0)
    randomise(m, ("lora_B",), std=0.05)
    x = torch.randn(3, 5, 16)
    got = m(x)
    ref = m.base_layer(x) + (x @ m.lora_A.T) @ m.lora_B.T * m.scaling
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-6)
    g_got, g_ref = grads(m, got.square().sum()), grads(m, ref.square().sum())
    for name in g_ref:
        torch.testing.assert_close(g_got[name], g_ref[name], rtol=1e-5, atol=1e-5, msg=name)


def test_autocast_bf16_keeps_lora_outputs_bf16() -> None:
    lora = lora_module("qv")
    x = torch.randn(2, 5, lora.base_layer.in_features, generator=torch.Generator().manual_seed(6))
    ref = lora(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = lora(x.bfloat16())
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), ref, rtol=0.05, atol=0.05)
    got.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in lora.parameters() if p.requires_grad)
