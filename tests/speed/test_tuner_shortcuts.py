"""The speed wrappers of the tuners and layers: SSF as one addcmul in the activation's dtype or one folded norm
(FusedSSF), the adapter's scale on the up-projection's weights (FoldedScaleAdapter), the packed-qkv attention and
the bf16 frozen norms compute the plain modules' formulas, with the same gradients, and keep bf16 activations bf16
under autocast."""

from __future__ import annotations

import pytest
import torch
from timm.layers import Attention
from timm.layers import LayerNorm as TimmLayerNorm
from torch import Tensor, nn

from gist_engine.inspect import capture_attention
from gist_engine.speed import LowPrecisionLayerNorm, plain_named_parameters
from gist_engine.speed.attention import PackedQKVAttention, enable_fused_attention
from gist_engine.speed.precision import cast_frozen_, low_precision_frozen_norms_
from gist_engine.speed.tuners import FoldedScaleAdapter, FusedSSF, folded_adapter, folded_up_weights
from gist_engine.tuners.adapter import Bottleneck
from gist_engine.tuners.ssf import SSF
from tests.models import build, randomise


def ssf_reference(m: SSF, x: Tensor) -> Tensor:
    """The previous forward: y * scale + shift in the parameters' dtype."""
    y = m.base_layer(x)
    if m.channel_dim == 1:
        return y * m.ssf_scale.view(-1, 1, 1) + m.ssf_shift.view(-1, 1, 1)
    return y * m.ssf_scale + m.ssf_shift


def grads(m: nn.Module, loss: Tensor) -> dict[str, Tensor]:
    params = {n: p for n, p in m.named_parameters() if p.requires_grad}
    return dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))


def fused(m: SSF) -> FusedSSF:
    """The speed wrapper of an SSF module (the same parameters)."""
    return FusedSSF(m)


def ssf_modules() -> list[SSF]:
    model = build("ssf", {"init_std": 0.0})
    randomise(model, (".ssf_",))
    convs = [model.vit.patch_embed.proj]
    blocks = model.vit.blocks[0]
    return [*convs, blocks.norm1, blocks.attn.qkv, blocks.mlp.fc1]


def ssf_input(m: SSF) -> Tensor:
    g = torch.Generator().manual_seed(4)
    if m.channel_dim == 1:
        return torch.randn(2, m.base_layer.in_channels, 16, 16, generator=g)
    dim = m.base_layer.in_features if isinstance(m.base_layer, nn.Linear) else m.ssf_scale.numel()
    return torch.randn(2, 5, dim, generator=g)


def test_ssf_forward_and_gradients_match_the_old_formula_in_fp32() -> None:
    modules = ssf_modules()
    assert [m.channel_dim for m in modules] == [1, -1, -1, -1]
    for m in modules:
        x = ssf_input(m)
        got, ref = fused(m)(x), ssf_reference(m, x)
        assert got.dtype == torch.float32 and got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
        w = torch.randn(got.shape, generator=torch.Generator().manual_seed(5))
        g_got, g_ref = grads(m, (got * w).sum()), grads(m, (ref * w).sum())
        assert set(g_got) == {"ssf_scale", "ssf_shift"}
        for name in g_ref:
            torch.testing.assert_close(g_got[name], g_ref[name], rtol=1e-5, atol=1e-5, msg=name)


def test_ssf_on_a_layer_norm_is_one_folded_norm_with_the_same_values_and_gradients() -> None:
    m = ssf_modules()[1]
    assert isinstance(m.base_layer, nn.LayerNorm)
    with torch.no_grad():  # a norm with its own non-trivial affine
        m.base_layer.weight.normal_(1.0, 0.3, generator=torch.Generator().manual_seed(9))
        m.base_layer.bias.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(10))
    x = ssf_input(m) * 2 + 0.5
    got, ref = fused(m)(x), ssf_reference(m, x)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
    w = torch.randn(got.shape, generator=torch.Generator().manual_seed(11))
    g_got, g_ref = grads(m, (got * w).sum()), grads(m, (ref * w).sum())
    for name in g_ref:
        torch.testing.assert_close(g_got[name], g_ref[name], rtol=1e-5, atol=1e-5, msg=name)
    m.base_layer.requires_grad_(False)
    m.base_layer.to(torch.bfloat16)  # bf16 frozen weights (cast_frozen_)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = fused(m)(x.bfloat16())
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), ref, rtol=0.05, atol=0.05)
    low.float().sum().backward()
    assert m.ssf_scale.grad.dtype == m.ssf_shift.grad.dtype == torch.float32


def test_autocast_bf16_keeps_ssf_outputs_bf16() -> None:
    for m in ssf_modules():
        x = ssf_input(m)
        ref = fused(m)(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            base_dtype = m.base_layer(x.bfloat16()).dtype  # a norm may run in fp32 under autocast
            got = fused(m)(x.bfloat16())
        assert m.ssf_scale.dtype == m.ssf_shift.dtype == torch.float32
        assert got.dtype == base_dtype
        if not isinstance(m.base_layer, nn.LayerNorm):
            assert got.dtype == torch.bfloat16
        torch.testing.assert_close(got.float(), ref, rtol=0.05, atol=0.1)

    ssf = SSF(nn.Identity(), 8, init_std=0.5)
    y = torch.randn(2, 3, 8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = fused(ssf)(y)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), ssf_reference(ssf, y.float()), rtol=0.02, atol=0.05)
    got.float().sum().backward()
    assert ssf.ssf_scale.grad is not None and ssf.ssf_scale.grad.dtype == torch.float32


# ------------------------------------------------------------------------------------------------ adapter
@pytest.mark.parametrize("scale", [0.1, 1.0])
def test_adapter_scale_on_the_weights_equals_scaling_the_output(scale: float) -> None:
    adapter = Bottleneck(16, 4, scale, zero_init=False)
    randomise(adapter, ("up.",), std=0.3)
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(7))
    got = FoldedScaleAdapter(adapter)(x)
    ref = adapter.up(adapter.act(adapter.down(x))) * scale
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-7)
    w = torch.randn(got.shape, generator=torch.Generator().manual_seed(8))
    g_got, g_ref = grads(adapter, (got * w).sum()), grads(adapter, (ref * w).sum())
    for name in g_ref:
        torch.testing.assert_close(g_got[name], g_ref[name], rtol=1e-5, atol=1e-6, msg=name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        up = folded_up_weights(adapter, x)  # cast once for both sites of a block
        assert all(t.dtype == torch.bfloat16 for t in up)
        shared, alone = folded_adapter(adapter, x, up), FoldedScaleAdapter(adapter)(x)
        ref = adapter.up(adapter.act(adapter.down(x))) * scale
    assert shared.dtype == alone.dtype == torch.bfloat16
    torch.testing.assert_close(shared, alone, rtol=0, atol=0)
    torch.testing.assert_close(shared.float(), ref.float(), rtol=2e-2, atol=2e-2)
    shared.float().sum().backward()
    assert all(p.grad.dtype == torch.float32 for p in adapter.parameters())


# ------------------------------------------------------------------------------------- packed-qkv attention
def attention_pair(**kwargs) -> tuple[Attention, Attention]:
    torch.manual_seed(0)
    stock = Attention(16, num_heads=4, qkv_bias=True, **kwargs)
    packed = Attention(16, num_heads=4, qkv_bias=True, **kwargs)
    packed.load_state_dict(stock.state_dict())
    enable_fused_attention(stock, packed_qkv=False)
    packed = PackedQKVAttention(packed)  # the root module: wrapped here (install wraps a model's submodules)
    enable_fused_attention(packed)
    assert type(stock) is Attention and type(packed) is PackedQKVAttention
    return stock, packed


@pytest.mark.parametrize("qk_norm", [False, True])
def test_packed_qkv_attention_equals_timm_attention(qk_norm: bool) -> None:
    stock, packed = attention_pair(qk_norm=qk_norm, norm_layer=nn.LayerNorm if qk_norm else None)
    x = torch.randn(3, 7, 16, generator=torch.Generator().manual_seed(1))
    xs, xp = x.clone().requires_grad_(), x.clone().requires_grad_()
    got, ref = packed(xp), stock(xs)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    w = torch.randn(got.shape, generator=torch.Generator().manual_seed(2))
    (got * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(xp.grad, xs.grad, rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(packed.named_parameters(), stock.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)
    assert {n for n, _ in plain_named_parameters(packed)} == set(stock.state_dict())  # the checkpoint names


def test_packed_qkv_attention_in_a_lora_model_and_under_attention_capture() -> None:
    stock, packed = (build("lora", {"rank": 2, "targets": "qv"}).eval() for _ in range(2))
    randomise(stock, (".lora_B",), std=0.05)
    packed.load_state_dict(stock.state_dict())
    enable_fused_attention(stock, packed_qkv=False)
    assert enable_fused_attention(packed) == len(packed.vit.blocks)
    assert all(type(b.attn) is PackedQKVAttention for b in packed.vit.blocks)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(packed(x).cls_logits, stock(x).cls_logits, rtol=1e-5, atol=1e-5)
    with capture_attention(packed) as cap, torch.no_grad():  # the unfused path: timm's own, hooks and all
        out = packed(x)
    maps = cap.stacked()
    assert maps.shape[:2] == (len(packed.vit.blocks), 2)
    torch.testing.assert_close(maps.sum(-1), torch.ones_like(maps.sum(-1)))
    torch.testing.assert_close(out.cls_logits, stock(x).cls_logits, rtol=1e-5, atol=1e-5)
    assert all(b.attn.fused_attn for b in packed.vit.blocks)


# ---------------------------------------------------------------------------------------- bf16 frozen norms
def test_frozen_layer_norms_run_in_bf16_under_autocast_and_trainable_ones_stay_float32() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.LayerNorm(16), TimmLayerNorm(16), nn.LayerNorm(16))
    for norm in net:
        nn.init.normal_(norm.weight, 1.0, 0.3)
        nn.init.normal_(norm.bias, 0.0, 0.3)
    net[0].requires_grad_(False)
    net[1].requires_grad_(False)
    ref = [nn.LayerNorm(16) for _ in net]
    for r, n in zip(ref, net, strict=True):
        r.load_state_dict(n.state_dict())
    keys = list(net.state_dict())
    cast_frozen_(net)
    assert type(net[0]) is LowPrecisionLayerNorm and type(net[1]) is LowPrecisionLayerNorm
    assert type(net[0].base_layer) is nn.LayerNorm and type(net[1].base_layer) is TimmLayerNorm
    assert type(net[2]) is nn.LayerNorm
    assert [n for n, _ in plain_named_parameters(net)] == keys and net[2].weight.dtype == torch.float32
    assert low_precision_frozen_norms_(net) == 2  # idempotent: the same two
    x = torch.randn(4, 6, 16, generator=torch.Generator().manual_seed(1)) * 3 + 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outs = [norm(x.bfloat16()) for norm in net[:2]]
    for out, r in zip(outs, ref[:2], strict=True):
        assert out.dtype == torch.bfloat16
        expected = r(x.bfloat16().float()).bfloat16()  # the float32 norm of the bf16 input, rounded once
        torch.testing.assert_close(out.float(), expected.float(), rtol=0.0, atol=2 ** -6)
    torch.testing.assert_close(net[0](x.bfloat16()), outs[0])  # no autocast: the plain norm, in bf16
