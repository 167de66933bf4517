"""Attention capture: hooks that record every block's post-softmax attention, and an eval-mode context."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from timm.layers import Attention
from torch import Tensor, nn


def unwrap_module(module: nn.Module) -> nn.Module:
    """The original module inside tuner wrappers (which keep it as `base_layer`)."""
    while hasattr(module, "base_layer"):  # tuner wrappers (PromptBlock, ParallelAdapterBlock, ...)
        module = module.base_layer
    return module


def attention_modules(model: nn.Module) -> list[Attention]:
    """timm's Attention module of every block, in block order, looking through tuner wrappers.

    Args:
        model: A GistViT or a timm VisionTransformer.

    Returns:
        One `timm.layers.Attention` per block.
    """
    vit = getattr(model, "vit", model)
    modules = []
    for i, block in enumerate(vit.blocks):
        attn = getattr(unwrap_module(block), "attn", None)
        if attn is not None and not isinstance(attn, Attention):
            attn = unwrap_module(attn)
        if not isinstance(attn, Attention):
            raise TypeError(f"block {i}: attention capture supports timm's Attention module, got "
                            f"{type(attn).__name__}")
        modules.append(attn)
    return modules


class AttentionCapture:
    """What `capture_attention` records: each block's post-softmax attention in the latest forward pass."""

    def __init__(self, num_layers: int) -> None:
        self.maps: list[Tensor | None] = [None] * num_layers  # each (B, heads, T, T), detached

    def clear(self) -> None:
        """Forget the recorded maps."""
        self.maps = [None] * len(self.maps)

    unit = "blocks"  # what the model calls its layers, for the error message

    def stacked(self) -> Tensor:
        """All layers as one tensor (L, B, heads, T, T); raises if some block has not run."""
        missing = [i for i, m in enumerate(self.maps) if m is None]
        if missing:
            raise RuntimeError(f"no attention recorded for {self.unit} {missing}: run a forward in the context")
        return torch.stack(self.maps)  # (L, B, H, T, T)


@contextlib.contextmanager
def capture_attention(model: nn.Module) -> Iterator[AttentionCapture]:
    """Record the softmax attention of every block while inside the context.

    Fused attention (`Attention.fused_attn`) is switched off per module so the explicit softmax runs, and a
    forward hook on `attn.attn_drop` reads its input, the post-softmax matrix (before attention dropout).
    On exit the hooks are removed and every flag is restored, also when the forward raises. The training
    path never enters this context and keeps fused attention.

    Args:
        model: A GistViT (any tuner, GIST on or off) or a timm VisionTransformer.

    Yields:
        An AttentionCapture; `maps[i]` is block i's attention (B, heads, T, T) of the latest forward pass.
    """
    modules = attention_modules(model)
    capture = AttentionCapture(len(modules))
    saved = [m.fused_attn for m in modules]
    handles = []

    def recorder(index: int):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            capture.maps[index] = args[0].detach()  # (B, H, T, T) softmax(q k^T / sqrt(d))

        return hook

    try:
        for i, module in enumerate(modules):
            module.fused_attn = False
            handles.append(module.attn_drop.register_forward_hook(recorder(i)))
        yield capture
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in zip(modules, saved, strict=True):
            module.fused_attn = flag


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode (no dropout) and restore each one's own train/eval flag on exit."""
    saved = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in saved:
            m.training = training


__all__ = ["AttentionCapture", "attention_modules", "capture_attention", "eval_mode", "unwrap_module"]
