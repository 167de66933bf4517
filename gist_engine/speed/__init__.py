"""Every exact speed shortcut of training, installed on a built model by one call, `install`, as wrapper modules.

The model and the tuners are the plain math; `install(model, device, ...)` wraps their modules in place with
faster modules that compute the same function from the same parameters (each one keeps the original as
`base_layer`, and `print(model)` shows them):

- `PackedQKVAttention` (attention.py): timm's fused attention with q, k, v split on the packed axis (no full-size
  copy of the qkv gradient), for chosen query rows.
- `BlockRows` (rows.py): the last block for the head rows only; the first block's input gradient for the rows that
  carry one (GIST's tokens, VPT's prompts).
- `SharedUpAdapterBlock`, `FoldedScaleAdapter`, `FusedSSF`, `FusedLoRAQKV`, `FusedLoRALinear` (tuners.py): the
  adapter's scale folded into its up-projection, SSF as one LayerNorm or one addcmul, LoRA's update as one addmm.
- `LowPrecisionLayerNorm` and bf16 frozen weights (precision.py), when training in bf16.
- the CPU thread choice, cuDNN autotuning (device.py).

The training step has its own wrappers (step.py), installed by `install_step(step, compile=..., cuda_graph=...)`:
`CompiledStep` (torch.compile of the forward + loss) and `GraphedStep` (the whole step as a CUDA graph).

`disabled(model)` runs the plain code again inside a `with` block. Checkpoints name parameters without the
wrappers (`plain_named_parameters`), so a checkpoint of an installed model loads into a plain one and back.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import attention, rows, tuners
from .attention import PackedQKVAttention, RowGradLinear
from .device import (
    auto_log_every,
    choose_cpu_threads,
    choose_cpu_threads_in_background,
    configure_device,
    eval_batch_size,
    usable_cpus,
)
from .precision import LowPrecisionLayerNorm, cast_frozen_, mixed_dtype, resolve_frozen_dtype
from .rows import BlockRows
from .step import CompiledStep, GraphedStep, StepWrapper, install_step
from .tuners import FoldedScaleAdapter, FusedLoRALinear, FusedLoRAQKV, FusedSSF, SharedUpAdapterBlock
from .wrap import SpeedWrapper, plain_named_parameters, unwrap_speed


@dataclass
class SpeedReport:
    """What `install` installed."""

    fused_attention: int = 0  # timm attention modules switched to scaled_dot_product_attention
    packed_attention: int = 0  # of those, wrapped in PackedQKVAttention
    head_rows: int | None = None  # the last block runs for this many leading tokens (None: whole)
    grad_rows: tuple[int, int] | None = None  # the first block's input gradient rows (None: all)
    tuner_shortcuts: dict[str, int] = field(default_factory=dict)  # wrapper name -> how many
    frozen_dtype: str | None = None  # frozen weights stored in this dtype (None: float32)
    cast_parameters: int = 0  # frozen parameters cast to frozen_dtype
    low_precision_norms: int = 0  # frozen LayerNorms run in autocast's dtype
    device: dict[str, Any] = field(default_factory=dict)  # configure_device's settings ({} when left alone)

    def summary(self) -> str:
        """One line for a log."""
        parts = [f"fused attention {self.fused_attention} (packed {self.packed_attention})"]
        if self.head_rows is not None:
            parts.append(f"last block for {self.head_rows} head rows")
        if self.grad_rows is not None:
            parts.append(f"first block gradient rows {self.grad_rows[0]}:{self.grad_rows[1]}")
        parts += [f"{name} {n}" for name, n in self.tuner_shortcuts.items() if n]
        if self.frozen_dtype:
            parts.append(f"frozen weights {self.frozen_dtype} ({self.cast_parameters} cast, "
                         f"{self.low_precision_norms} norms)")
        parts += [f"{k} {v}" for k, v in self.device.items()]
        return ", ".join(parts)


def install(model: nn.Module, device: torch.device | str = "cpu", *, precision: str = "fp32",
            frozen_dtype: str = "auto", cpu_threads: int | None = 0, stock_modules: bool = False) -> SpeedReport:
    """Install every exact speed shortcut on a built model (a GistViT or a GistTextEncoder), in place.

    The installed model computes the same logits and gradients as before (float32: the same to rounding; the
    trainer's results are those of the installed model). Its parameters are the same objects; their names change
    (wrappers add `base_layer`): use `plain_named_parameters` for the names of the model as built. Call it once
    the trainable parameters are set and the model is on its device; calling it again changes nothing.

    Args:
        model: The built model, on `device`.
        device: The training device (decides `frozen_dtype` "auto" and the device settings).
        precision: "bf16" (bf16 autocast) or "fp32": the precision the model will train in.
        frozen_dtype: `train.frozen_dtype`: "bf16" stores frozen weights in bf16 and runs the frozen LayerNorms in
            bf16 (needs precision "bf16"); "fp32" keeps them; "auto" = bf16 on CUDA with bf16 precision.
        cpu_threads: torch's CPU threads (`configure_device`): 0 = chosen for the CPUs idle now (once per process),
            N = N; None leaves the process's device settings (threads, cuDNN) alone.
        stock_modules: Keep timm's attention module (no packed qkv, hence no row shortcuts) and autocast's float32
            LayerNorms: the benchmark's A/B of those two.

    Returns:
        A `SpeedReport` of what was installed.

    Raises:
        ValueError: bf16 frozen weights without bf16 precision (nothing is changed then).
    """
    device = torch.device(device)
    frozen = resolve_frozen_dtype(frozen_dtype, device, precision)  # raises before anything changes
    report = SpeedReport(tuner_shortcuts=tuners.install_tuner_shortcuts(model))
    report.fused_attention = attention.enable_fused_attention(model, packed_qkv=not stock_modules)
    report.packed_attention = sum(isinstance(m, PackedQKVAttention) for m in model.modules())
    if not stock_modules:
        placed = rows.install_row_shortcuts(model)
        report.head_rows, report.grad_rows = placed.get("head_rows"), placed.get("grad_rows")
    if frozen is not None:  # trainable parameters stay float32
        report.frozen_dtype = str(frozen).removeprefix("torch.")
        report.cast_parameters = cast_frozen_(model, frozen, norms=not stock_modules)
        report.low_precision_norms = sum(isinstance(m, LowPrecisionLayerNorm) for m in model.modules())
    if cpu_threads is not None:
        report.device = configure_device(device, cpu_threads)
    return report


@contextlib.contextmanager
def disabled(model: nn.Module) -> Iterator[nn.Module]:
    """Run the plain code of every speed wrapper of `model` inside the context (each one calls its `base_layer`):
    whole blocks, timm's attention, the tuners' own forward. Frozen weights stay in the dtype they were cast to.
    Every wrapper's switch is restored on exit, also when the body raises."""
    wrappers = [m for m in model.modules() if isinstance(m, SpeedWrapper)]
    saved = [m.enabled for m in wrappers]
    try:
        for m in wrappers:
            m.enabled = False
        yield model
    finally:
        for m, flag in zip(wrappers, saved, strict=True):
            m.enabled = flag


__all__ = ["BlockRows", "CompiledStep", "FoldedScaleAdapter", "FusedLoRALinear", "FusedLoRAQKV", "FusedSSF",
           "GraphedStep", "LowPrecisionLayerNorm", "PackedQKVAttention", "RowGradLinear", "SharedUpAdapterBlock",
           "SpeedReport", "SpeedWrapper", "StepWrapper", "auto_log_every", "cast_frozen_", "choose_cpu_threads",
           "choose_cpu_threads_in_background", "configure_device", "disabled", "eval_batch_size", "install",
           "install_step", "mixed_dtype", "plain_named_parameters", "resolve_frozen_dtype", "unwrap_speed",
           "usable_cpus"]
