"""One optimisation step of a Gist model (the plain eager step), the optimiser, autocast.

`TrainStep` runs bf16 or fp16 autocast (when asked; fp16 with a gradient scaler, as the release's train.py trains
with `--amp`: torch.autocast + a loss scaler), the GIST loss, backward, optional gradient clipping and the optimiser
step, and returns every loss term as ONE device tensor (no host synchronisation). Its speed shortcuts,
`torch.compile` of the forward + loss and whole-step CUDA graphs, are wrappers in `gist_engine.speed.step`
(`speed.install_step`). `make_optimizer`: AdamW, fused into one kernel per step on CUDA.
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn

from ..config import GistConfig
from ..losses import LOSS_TERMS, gist_loss


def make_optimizer(groups: Iterable[dict[str, Any]], lr: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW over parameter groups: the fused single-kernel implementation on CUDA, torch's default elsewhere."""
    return torch.optim.AdamW(list(groups), lr=lr, fused=device.type == "cuda")


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(setting: str, device: torch.device) -> str:
    """`train.precision` as a run uses it: "auto" is bf16 autocast on CUDA and fp32 elsewhere; any other setting
    ("fp32", "bf16", "fp16") stands."""
    return ("bf16" if device.type == "cuda" else "fp32") if setting == "auto" else setting


def autocast(device: torch.device, precision: str, cache_enabled: bool = True) -> AbstractContextManager:
    """bf16 or fp16 autocast on `device` when `precision` is "bf16" or "fp16"; a no-op context otherwise."""
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None,
                          cache_enabled=cache_enabled)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """The gradient scaler fp16 training needs (torch.amp.GradScaler on the device's type), or None otherwise."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


# ---------------------------------------------------------------------------------------------------- the step
class TrainStep:
    """One optimisation step of a Gist model (GistViT, or the text model): `terms = step(x, y)`, kept on the device.

    The step is `zero_grad -> forward (autocast) + GIST loss -> backward -> clip -> optimizer.step`; in fp16 the
    backward runs on the scaled loss, the gradients are unscaled before clipping, and `scaler.step` skips the
    optimiser step whose gradients overflowed (the loss itself stays finite: such a step is not a divergence). It
    returns the loss terms in `LOSS_TERMS` order as a detached float32 (len(LOSS_TERMS),) tensor on the device and
    never reads anything back to the host (except fp16's scaler, which checks the gradients on the host), so a CUDA
    queue never drains between steps. The compiled and CUDA-graph steps wrap it (`speed.install_step`).

    Args:
        model: The GistViT (its trainable parameters set).
        optimizer: The optimiser over `params`.
        params: The trained parameters (for gradient clipping).
        device: The training device.
        precision: "bf16" or "fp16" (autocast; fp16 with `scaler`) or "fp32".
        grad_clip: Max gradient norm, or None.
        gist: The run's GIST options (`RunConfig.gist`): the loss's terms, weights and temperature.
    """

    compiled = False  # the speed wrappers' flags (`speed.step`), False for the plain step
    graphed = False
    compile_error: str | None = None
    graph_error: str | None = None

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, params: list[nn.Parameter],
                 device: torch.device, precision: str = "fp32", grad_clip: float | None = None, *,
                 gist: GistConfig) -> None:
        self.model, self.gist, self.optimizer, self.params = model, gist, optimizer, params
        self.device, self.precision, self.grad_clip = device, precision, grad_clip
        self.scaler = grad_scaler(device, precision)  # fp16 only; its state goes into the resume state

    def __call__(self, x: Any, y: Tensor) -> Tensor:
        """One step on a batch (images (B, 3, H, W), or a text batch's dict) and labels (B,).

        Returns:
            The detached loss terms on the device, (len(LOSS_TERMS),) float32 in `LOSS_TERMS` order.
        """
        self.optimizer.zero_grad(set_to_none=True)
        values = self.forward_loss(x, y)
        self.backward(values)
        self.update()
        return values.detach()

    def forward_loss(self, x: Any, y: Tensor, cache_enabled: bool = True) -> Tensor:
        """Eager forward + GIST loss: every term stacked, (len(LOSS_TERMS),); the last one, total, has a graph."""
        with autocast(self.device, self.precision, cache_enabled):
            out = self.model(x)
        terms = gist_loss(out.cls_logits, out.gist_logits, y, self.gist)
        return torch.stack([terms[k].float() for k in LOSS_TERMS])  # (6,) total last

    def backward(self, values: Tensor) -> None:
        """Backward from the total loss (the last term), scaled by the fp16 gradient scaler if there is one."""
        loss = values[-1]
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def update(self) -> None:
        """Clip the gradients (the true ones: unscaled first in fp16) and step the optimiser (fp16: through the
        scaler, which skips a step whose gradients hold an inf or a NaN, then updates its scale)."""
        if self.scaler is None:
            if self.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
            self.optimizer.step()
            return
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()


__all__ = ["AUTOCAST_DTYPES", "TrainStep", "autocast", "grad_scaler", "make_optimizer"]
