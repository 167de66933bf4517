"""`block_forward`, the one composition of timm's pre-norm Block that tuners and speed shortcuts share, is timm's
`Block.forward` exactly, adds its parallel branches where GIST's adapter reads, and gives the leading rows."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block

from gist_engine.speed.attention import PackedQKVAttention
from gist_engine.tuners.base import block_forward


def block(init_values: float | None = None) -> Block:
    torch.manual_seed(0)
    return Block(dim=32, num_heads=4, init_values=init_values).eval()


def test_it_is_timms_block_forward_exactly():
    for b in (block(), block(init_values=0.5)):  # with layer scale (DINOv2) and without
        x = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(1))
        assert torch.equal(block_forward(b, x), b(x))


def test_branches_read_each_sub_layers_unnormalised_input():
    b = block()
    x = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(2))
    seen = []

    def side(h):
        seen.append(h)
        return 0.5 * h

    out = block_forward(b, x, beside_attn=side, beside_mlp=side)
    h = x + b.drop_path1(b.ls1(b.attn(b.norm1(x)))) + 0.5 * x
    torch.testing.assert_close(out, h + b.drop_path2(b.ls2(b.mlp(b.norm2(h)))) + 0.5 * h, rtol=0, atol=0)
    assert seen[0] is x and torch.equal(seen[1], h)


def test_rows_are_the_leading_rows_of_the_whole_output():
    b = block()
    b.attn = PackedQKVAttention(b.attn)  # the attention module that can answer for chosen query rows
    x = torch.randn(2, 7, 32, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(block_forward(b, x, rows=2), block_forward(b, x)[:, :2], rtol=1e-6, atol=1e-6)
