"""Packed-qkv attention: timm's fused attention without the qkv gradient's copy, for chosen query rows."""

from __future__ import annotations

from typing import Any

import torch
from timm.layers import Attention
from torch import Tensor, nn
from torch.nn import functional as F

from .wrap import SpeedWrapper, replace_modules


class PackedQKVAttention(SpeedWrapper):
    """timm's `Attention` (its `base_layer`) whose fused path splits q, k, v from the qkv output's (B, N, 3, H, d)
    layout, and can compute the output of the first `rows` queries only.

    timm permutes qkv to (3, B, H, N, d) before splitting, so backward stacks the three gradients in that order and
    copies them back to the (B, N, 3 * H * d) layout the qkv projection needs: one full-size copy per block. Split
    on the packed axis instead, backward's stack writes that layout directly. Forward values are the same (the
    same views go into `scaled_dot_product_attention`). Where timm's fused path is off (attention capture sets the
    base module's `fused_attn` to False while it records) or the module is gated, timm's own forward runs.
    """

    def __init__(self, base_layer: Attention) -> None:
        super().__init__(base_layer)

    @property
    def fused_attn(self) -> bool:
        """timm's switch of the base module (attention capture turns it off while it records)."""
        return self.base_layer.fused_attn

    @fused_attn.setter
    def fused_attn(self, value: bool) -> None:
        self.base_layer.fused_attn = value

    @property
    def packed(self) -> bool:
        """Whether this module's own path runs now: enabled, timm's fused path on and no gate."""
        attn = self.base_layer
        return self.enabled and attn.fused_attn and getattr(attn, "gate", None) is None

    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False,
                rows: int | None = None, grad_rows: tuple[int, int] | None = None) -> Tensor:
        """(B, N, D) -> (B, N, D), or (B, rows, D): the first `rows` queries against all N keys and values.

        `grad_rows` (a, b): only rows a:b of `x` need an input gradient (see `RowGradLinear`). Both need `packed`.
        """
        attn = self.base_layer
        if not self.packed:
            if rows is not None or grad_rows is not None:
                raise RuntimeError("attention rows need the packed fused path (see speed.rows.rows_supported)")
            return attn(x, attn_mask=attn_mask, is_causal=is_causal)
        B, N, _ = x.shape
        qkv = self._qkv(x, grad_rows)  # (B, N, 3 * H * d)
        q, k, v = qkv.reshape(B, N, 3, attn.num_heads, attn.head_dim).unbind(2)  # (B, N, H, d) each
        if rows is not None:
            q = q[:, :rows]  # (B, rows, H, d)
        q, k = attn.q_norm(q), attn.k_norm(k)  # over d: the same on either layout
        x = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                           attn_mask=attn_mask, is_causal=is_causal,
                                           dropout_p=attn.attn_drop.p if attn.training else 0.0)  # (B, H, rows, d)
        x = attn.norm(x.transpose(1, 2).reshape(B, q.shape[1], attn.num_heads * attn.head_dim))  # (B, rows, H * d)
        return attn.proj_drop(attn.proj(x))

    def _qkv(self, x: Tensor, grad_rows: tuple[int, int] | None) -> Tensor:
        """The qkv projection of every row; with `grad_rows` and a frozen `nn.Linear` projection, backward
        multiplies only those rows' gradient by the weight (`RowGradLinear`)."""
        qkv = self.base_layer.qkv
        if (grad_rows is None or not (torch.is_grad_enabled() and x.requires_grad) or type(qkv) is not nn.Linear
                or qkv.weight.requires_grad or (qkv.bias is not None and qkv.bias.requires_grad)):
            return qkv(x)
        return RowGradLinear.apply(x, qkv.weight, qkv.bias, *grad_rows)


class RowGradLinear(torch.autograd.Function):
    """`F.linear(x, weight, bias)` of a frozen layer whose input needs a gradient on rows a:b of dim 1 only.

    Backward: a zero input gradient with `grad[:, a:b] @ weight` in those rows (no weight or bias gradient), where
    autograd would multiply the whole (B, N, out) gradient by the weight. Forward is the plain projection, autocast
    included.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None, a: int, b: int) -> Tensor:
        ctx.save_for_backward(weight)
        ctx.rows, ctx.x_shape, ctx.x_dtype = (a, b), x.shape, x.dtype
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None, None]:
        (weight,) = ctx.saved_tensors
        a, b = ctx.rows
        grad_x = grad.new_zeros(ctx.x_shape, dtype=ctx.x_dtype)  # (B, N, in)
        grad_x[:, a:b] = (grad[:, a:b] @ weight.to(grad.dtype)).to(ctx.x_dtype)
        return grad_x, None, None, None, None


def enable_fused_attention(model: nn.Module, packed_qkv: bool = True) -> int:
    """Switch every timm attention module of `model` to its fused (scaled_dot_product_attention) path; returns how
    many. With `packed_qkv`, each timm `Attention` is also wrapped in a `PackedQKVAttention` (in place; the root
    module itself cannot be: wrap it yourself)."""
    count = 0
    for module in model.modules():
        if hasattr(module, "fused_attn") and hasattr(module, "qkv"):
            module.fused_attn = True
            count += 1
    if packed_qkv:
        replace_modules(model, lambda parent, name, child: PackedQKVAttention(child)
                        if type(child) is Attention and not isinstance(parent, PackedQKVAttention) else None)
    return count


__all__ = ["PackedQKVAttention", "RowGradLinear", "enable_fused_attention"]
