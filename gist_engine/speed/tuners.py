"""Tuner shortcuts: the adapter's scale folded into its up-projection, SSF folded into a LayerNorm's affine, LoRA's
update as one addmm on the base output."""

from __future__ import annotations

import torch
from timm.layers import LayerNorm as TimmLayerNorm
from torch import Tensor, nn
from torch.nn import functional as F

from ..tuners.adapter import Bottleneck, ParallelAdapterBlock
from ..tuners.base import block_forward
from ..tuners.lora import LoRALinear, LoRAQKV
from ..tuners.ssf import SSF
from .wrap import SpeedWrapper, replace_modules, unwrap_speed


def folded_up_weights(adapter: Bottleneck, x: Tensor) -> tuple[Tensor, Tensor | None]:
    """The up-projection's (D, r) weight and (D,) bias times the adapter's scale, in autocast's dtype when it is
    on for `x`'s device (cast once here, not by every call that uses them)."""
    weight, bias = adapter.up.weight, adapter.up.bias
    if adapter.scale != 1.0:
        weight, bias = weight * adapter.scale, None if bias is None else bias * adapter.scale
    if torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
        weight, bias = weight.to(dtype), None if bias is None else bias.to(dtype)
    return weight, bias


def folded_adapter(adapter: Bottleneck, x: Tensor, up: tuple[Tensor, Tensor | None]) -> Tensor:
    """`adapter(x)` with its scale in the up-projection's weights `up` (`folded_up_weights`). (..., D) -> (..., D)"""
    hidden = adapter.dropout(adapter.act(adapter.down(x)))  # (..., r)
    return F.linear(hidden, *up)


class FoldedScaleAdapter(SpeedWrapper):
    """A `Bottleneck` whose scale multiplies the up-projection's (D, r) weight and bias, not its (B, T, D) output:
    the same function without a full-size multiply forward and backward (two passes over the activations)."""

    def forward(self, x: Tensor) -> Tensor:
        """(..., D) -> (..., D)."""
        if not self.enabled:
            return self.base_layer(x)
        return folded_adapter(self.base_layer, x, folded_up_weights(self.base_layer, x))


class SharedUpAdapterBlock(SpeedWrapper):
    """A `ParallelAdapterBlock` whose adapter's scale is folded into its up-projection once per forward and shared
    by both sites; it can also run for the rows `speed.rows` asks of it (see `PackedQKVAttention`)."""

    def forward(self, x: Tensor, rows: int | None = None, grad_rows: tuple[int, int] | None = None) -> Tensor:
        """(B, N, D) -> (B, N, D), or (B, rows, D) for the first `rows` tokens; `grad_rows` (a, b): only rows a:b of
        `x` need an input gradient."""
        if not self.enabled:
            return self.base_layer(x)
        block = self.base_layer
        adapter = unwrap_speed(block.adapter)
        up = folded_up_weights(adapter, x)  # shared by both sites

        def side(h: Tensor) -> Tensor:
            return folded_adapter(adapter, h, up)

        kwargs = {} if grad_rows is None else {"grad_rows": grad_rows}
        return block_forward(block.base_layer, x, rows=rows, beside_attn=side if "attn" in block.sites else None,
                             beside_mlp=side if "mlp" in block.sites else None, **kwargs)


class FusedSSF(SpeedWrapper):
    """An `SSF` as one op: after a LayerNorm with an affine, one LayerNorm with the scale and shift folded into its
    weight and bias; after any other layer, one addcmul in the output's dtype."""

    def __init__(self, base_layer: SSF) -> None:
        super().__init__(base_layer)
        norm = base_layer.base_layer
        self.folded_norm = type(norm) in (nn.LayerNorm, TimmLayerNorm) and norm.elementwise_affine

    def forward(self, x: Tensor) -> Tensor:
        """base(x) scaled and shifted per channel: (..., C), or (B, C, H, W) when channel_dim is 1."""
        if not self.enabled:
            return self.base_layer(x)
        ssf = self.base_layer
        if self.folded_norm:
            return self._folded_norm(x)
        y = ssf.base_layer(x)
        # The float32 parameters are cast to y's dtype (a C-element copy): multiplying bf16 activations by float32
        # parameters would promote the whole activation to float32, doubling its traffic, and take two kernels.
        scale, shift = ssf.ssf_scale.to(y.dtype), ssf.ssf_shift.to(y.dtype)
        if ssf.channel_dim == 1:  # (B, C, H, W)
            scale, shift = scale.view(-1, 1, 1), shift.view(-1, 1, 1)
        return torch.addcmul(shift, y, scale)

    def _folded_norm(self, x: Tensor) -> Tensor:
        """A LayerNorm's output scaled and shifted, as one LayerNorm: `(x^ * w + b) * s + t = x^ * (w * s) + (b * s
        + t)`, so the norm's own backward yields the scale and shift gradients (no full-size multiply, sum or
        addcmul forward or backward). Under autocast the norm runs in autocast's dtype (statistics in float32),
        as the frozen norms of a bf16 model do (`speed.precision.LowPrecisionLayerNorm`); the folded (C,) weights
        are cast to it, since CUDA's LayerNorm takes weights of the input's dtype."""
        ssf = self.base_layer
        norm = ssf.base_layer
        weight = norm.weight * ssf.ssf_scale
        bias = ssf.ssf_shift if norm.bias is None else torch.addcmul(ssf.ssf_shift, norm.bias, ssf.ssf_scale)
        device = x.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
        with torch.autocast(device, enabled=False):
            return F.layer_norm(x.to(dtype), norm.normalized_shape, weight.to(dtype), bias.to(dtype), norm.eps)


class FusedLoRAQKV(SpeedWrapper):
    """A `LoRAQKV` whose update over all targeted slices is one addmm on the full-size (..., 3D) output, instead of
    chunk + a per-slice add + cat (extra full-size copies forward and backward)."""

    def forward(self, x: Tensor) -> Tensor:
        """x (..., D) -> (..., 3D)."""
        if not self.enabled:
            return self.base_layer(x)
        lora = self.base_layer
        out = lora.base_layer(x)  # (..., 3D)
        h = lora.dropout(x)
        a_all = torch.cat([lora.lora_A[t] for t in lora.targets]).to(h.dtype)  # (n*r, D)
        # (3D, n*r): slice s of the output reads only its own r columns; an untargeted slice is a zero-width block,
        # so it gets zero rows. Built from the tiny B parameters every step, with the scaling folded in.
        b_first = lora.lora_B[lora.targets[0]]
        empty = b_first.new_zeros(b_first.shape[0], 0)  # (D, 0)
        b_all = torch.block_diag(*(lora.lora_B[t] if t in lora.targets else empty for t in "qkv"))
        b_all = (b_all * lora.scaling).to(out.dtype)
        low = (h @ a_all.T).to(out.dtype)  # (..., n*r); under autocast already out's dtype
        flat = torch.addmm(out.reshape(-1, out.shape[-1]), low.reshape(-1, low.shape[-1]), b_all.T)
        return flat.reshape(out.shape)


class FusedLoRALinear(SpeedWrapper):
    """A `LoRALinear` whose scaling goes into the small B and whose add goes into the GEMM (one addmm), so the
    full-size output is written once."""

    def forward(self, x: Tensor) -> Tensor:
        """x (..., in) -> (..., out)."""
        if not self.enabled:
            return self.base_layer(x)
        lora = self.base_layer
        out = lora.base_layer(x)  # (..., out)
        h = lora.dropout(x)
        low = (h @ lora.lora_A.to(h.dtype).T).to(out.dtype)  # (..., r)
        b = (lora.lora_B * lora.scaling).to(out.dtype)  # (out, r)
        flat = torch.addmm(out.reshape(-1, out.shape[-1]), low.reshape(-1, low.shape[-1]), b.T)
        return flat.reshape(out.shape)


# The tuner module each shortcut wraps.
SHORTCUTS: dict[type, type[SpeedWrapper]] = {
    ParallelAdapterBlock: SharedUpAdapterBlock,
    Bottleneck: FoldedScaleAdapter,  # a sequential adapter's, or a text encoder's (a parallel block's is shared)
    SSF: FusedSSF,
    LoRAQKV: FusedLoRAQKV,
    LoRALinear: FusedLoRALinear,
}


def install_tuner_shortcuts(model: nn.Module) -> dict[str, int]:
    """Wrap the tuner modules of `model` in place as `SHORTCUTS` says (idempotent); returns how many of each
    wrapper the model holds, by wrapper name."""
    in_blocks = {id(m.adapter) for m in model.modules() if isinstance(m, ParallelAdapterBlock)}

    def make(parent: nn.Module, name: str, child: nn.Module) -> nn.Module | None:
        wrapper = SHORTCUTS.get(type(child))
        if wrapper is None or isinstance(parent, wrapper) or id(child) in in_blocks:
            return None
        return wrapper(child)

    replace_modules(model, make)
    return {w.__name__: sum(isinstance(m, w) for m in model.modules()) for w in SHORTCUTS.values()}


__all__ = [
    "SHORTCUTS",
    "FoldedScaleAdapter",
    "FusedLoRALinear",
    "FusedLoRAQKV",
    "FusedSSF",
    "SharedUpAdapterBlock",
    "folded_adapter",
    "folded_up_weights",
    "install_tuner_shortcuts",
]
