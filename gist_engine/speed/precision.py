"""bf16 frozen weights and bf16 frozen LayerNorms for training under bf16 autocast.

Autocast rounds every frozen matmul weight to bf16 anyway: stored in bf16 (`cast_frozen_`), they are not re-cast
every step and the residual stream runs in bf16 too. The frozen LayerNorms then run in bf16 as well
(`LowPrecisionLayerNorm`): no float32 round trip of the stream per norm. Trainable parameters stay float32 (the
optimiser's master weights).
"""

from __future__ import annotations

import torch
from timm.layers import LayerNorm as TimmLayerNorm
from timm.layers.fast_norm import fast_layer_norm
from torch import Tensor, nn

from .tuners import FusedSSF
from .wrap import SpeedWrapper, replace_modules


def resolve_frozen_dtype(setting: str, device: torch.device, precision: str) -> torch.dtype | None:
    """`train.frozen_dtype` resolved: bf16 (auto: on CUDA when training in bf16) or None (keep float32).

    Raises:
        ValueError: bf16 frozen weights without bf16 precision.
    """
    if setting == "bf16" or (setting == "auto" and device.type == "cuda" and precision == "bf16"):
        if precision != "bf16":
            raise ValueError("train.frozen_dtype: bf16 frozen weights need train.precision bf16 (autocast)")
        return torch.bfloat16
    return None


class LowPrecisionLayerNorm(SpeedWrapper):
    """A frozen LayerNorm run in autocast's dtype (timm's public `fast_layer_norm`).

    Autocast runs LayerNorm in float32: on a bf16 residual stream each norm then costs a bf16 -> fp32 copy of its
    input, a float32 norm and an fp32 -> bf16 copy for the next matmul, and the same three again backward. The fast
    norm casts the input and weights to autocast's dtype and runs the norm there (its statistics still accumulate
    in float32), so the output is the float32 norm rounded once to bf16, the value the next matmul read anyway.
    Without autocast it is `F.layer_norm`, as the base norm.
    """

    def __init__(self, base_layer: nn.LayerNorm) -> None:
        super().__init__(base_layer)

    def forward(self, x: Tensor) -> Tensor:
        """(..., C) -> (..., C)."""
        norm = self.base_layer
        if not self.enabled:
            return norm(x)
        return fast_layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def low_precision_frozen_norms_(model: nn.Module) -> int:
    """Wrap every LayerNorm of `model` whose parameters are all frozen in a `LowPrecisionLayerNorm`, in place
    (idempotent); returns how many frozen norms now run that way. A norm with a trainable weight or bias keeps
    autocast's float32 path (its gradients stay float32); a norm that a `FusedSSF` folds is left alone (the fold
    runs its own bf16 norm)."""
    folded = {id(m.base_layer.base_layer) for m in model.modules() if isinstance(m, FusedSSF) and m.folded_norm}

    def make(parent: nn.Module, name: str, child: nn.Module) -> nn.Module | None:
        if type(child) not in (nn.LayerNorm, TimmLayerNorm) or isinstance(parent, LowPrecisionLayerNorm):
            return None
        if id(child) in folded or any(p.requires_grad for p in child.parameters()):
            return None
        return LowPrecisionLayerNorm(child)

    replace_modules(model, make)
    return sum(isinstance(m, LowPrecisionLayerNorm) for m in model.modules())


def cast_frozen_(model: nn.Module, dtype: torch.dtype = torch.bfloat16, norms: bool = True) -> int:
    """Store every frozen floating-point parameter of `model` in `dtype`, in place; returns how many were cast.

    Trainable parameters stay float32 (the optimiser's master weights). Run the model under `autocast` afterwards:
    it mixes dtypes only through autocast's casts. With `norms`, the frozen LayerNorms then run in `dtype` too
    (`low_precision_frozen_norms_`).
    """
    count = 0
    for param in model.parameters():
        if not param.requires_grad and param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)
            count += 1
    if norms:
        low_precision_frozen_norms_(model)
    return count


def mixed_dtype(model: nn.Module) -> torch.dtype | None:
    """The low-precision dtype of a model whose frozen weights `cast_frozen_` cast, or None for a uniform model."""
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    low = dtypes - {torch.float32}
    return next(iter(low)) if len(dtypes) > 1 and len(low) == 1 else None


__all__ = ["LowPrecisionLayerNorm", "cast_frozen_", "low_precision_frozen_norms_", "mixed_dtype",
           "resolve_frozen_dtype"]
