"""What one eager CUDA training step launches and how many bytes it moves, traced on any machine (no GPU needed).

On a GPU, the non-matmul part of an eager ViT step (casts, copies, norms, activations, adds) is bound by memory
traffic and kernel launches. This module counts both without a GPU: the forward runs on fake CUDA tensors under
CUDA's bf16 autocast policy and is recorded as an aten graph (`make_fx`), so autocast's casts appear as explicit
ops; that graph then runs forward and backward on meta tensors, and every aten op that reads or writes memory is
logged with the bytes of its inputs and outputs. Views are free and are not counted. Attention is traced as the
flash kernel that CUDA runs for bf16 (one op forward, one backward; float32 runs another fused kernel, traced the
same way). The optimiser step is left out (one fused AdamW kernel on CUDA).

A custom autograd Function (`gist_engine.speed.RowGradLinear`) is recorded by its forward ops, so the replay
back-propagates through them with autograd's own formulas, not the Function's backward: the trace over-counts that
backward.

The byte counts are a model (each op reads its inputs and writes its outputs once), not a measurement; they say
where a step's traffic goes and check that a change removed what it meant to remove. `benchmarks/step_traffic.py`
prints them; a test keeps the installed model free of float32 copies of the residual stream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from gist_engine.losses import gist_loss

# aten ops that only make views or allocate: no kernel, no traffic
FREE_OPS = frozenset({
    "view", "_unsafe_view", "t", "transpose", "expand", "permute", "unbind", "select", "slice", "detach", "alias",
    "as_strided", "split", "split_with_sizes", "chunk", "unsqueeze", "squeeze", "reshape", "_reshape_alias",
    "empty", "empty_like", "empty_strided", "new_empty_strided", "lift_fresh",
})
MATMUL_OPS = frozenset({"mm", "addmm", "bmm", "baddbmm", "convolution", "convolution_backward"})
ATTENTION_OPS = frozenset({"_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_backward"})


@dataclass(frozen=True)
class OpRecord:
    """One aten op of the traced step."""

    op: str  # aten name, e.g. "native_layer_norm"
    kind: str  # "matmul", "attention" or "other"
    bytes: int  # inputs read + outputs written
    dtypes: tuple[str, ...]  # of the tensor inputs
    shapes: tuple[tuple[int, ...], ...]  # of the tensor inputs


class _OpLog(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[OpRecord] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if func.namespace != "aten" or name in FREE_OPS:
            return out
        inputs = [a for a in tree_leaves((args, kwargs)) if isinstance(a, Tensor)]
        outputs = [o for o in tree_leaves(out) if isinstance(o, Tensor)]
        if name == "_to_copy" and inputs and outputs[0].dtype == inputs[0].dtype:
            return out  # a same-dtype "cast" of the meta replay; autocast's real casts change the dtype
        moved = sum(t.numel() * t.element_size() for t in inputs + outputs)
        kind = "matmul" if name in MATMUL_OPS else "attention" if name in ATTENTION_OPS else "other"
        self.records.append(OpRecord(name, kind, moved, tuple(str(t.dtype).removeprefix("torch.") for t in inputs),
                                     tuple(tuple(t.shape) for t in inputs)))
        return out


_SDPA = F.scaled_dot_product_attention  # restored after a trace


def _flash_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                     dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                     **kwargs) -> Tensor:
    """`scaled_dot_product_attention` as CUDA's flash kernel: fake tensors cannot ask the device which kernel."""
    if attn_mask is not None or kwargs.get("enable_gqa"):
        return _SDPA(query, key, value, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, scale=scale,
                     **kwargs)
    return torch.ops.aten._scaled_dot_product_flash_attention(query, key, value, dropout_p, is_causal, False,
                                                              scale=scale)[0]


@contextlib.contextmanager
def _cuda_bf16_autocast() -> Iterator[None]:
    # torch.autocast("cuda") turns itself off on a machine without CUDA; the dispatcher's switch does not
    enabled, dtype = torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
    torch.set_autocast_enabled("cuda", True)
    torch.set_autocast_dtype("cuda", torch.bfloat16)
    try:
        yield
    finally:
        torch.set_autocast_enabled("cuda", enabled)
        torch.set_autocast_dtype("cuda", dtype)


def trace_cuda_step(model: nn.Module, batch_size: int, bf16: bool = True) -> list[OpRecord]:
    """The aten ops of one forward + GIST loss + backward of an image `model` (a GistViT) as eager CUDA runs them.

    The model is not changed and needs no GPU: its parameters only lend their shapes, dtypes and `requires_grad`.
    Prepare it as the trainer does (`gist_engine.speed.install`) and put it in train mode. `bf16`: under bf16
    autocast (the trainer's default on CUDA), else float32.
    """
    named = list(model.named_parameters()) + list(model.named_buffers())
    names = [n for n, _ in named]
    size = model.image_size

    def step(x: Tensor, y: Tensor, *state: Tensor) -> Tensor:
        with _cuda_bf16_autocast() if bf16 else contextlib.nullcontext():
            out = torch.func.functional_call(model, dict(zip(names, state, strict=True)), (x,))
        return gist_loss(out.cls_logits, out.gist_logits, y, model.gist_cfg)["total"]

    def inputs(device: str) -> list[Tensor]:  # the parameters require grad as in training: the same ops
        x = torch.empty(batch_size, 3, size, size, device=device)
        y = torch.zeros(batch_size, dtype=torch.long, device=device)
        return [x, y] + [torch.empty(t.shape, dtype=t.dtype, device=device).requires_grad_(t.requires_grad)
                         for _, t in named]

    F.scaled_dot_product_attention = _flash_attention
    try:
        with FakeTensorMode():
            graph = make_fx(step)(*inputs("cuda"))
    finally:
        F.scaled_dot_product_attention = _SDPA
    for node in graph.graph.nodes:  # factory ops of the graph: on the meta device for the replay
        if isinstance(node.kwargs.get("device"), torch.device):
            node.update_kwarg("device", torch.device("meta"))
    graph.recompile()
    with _OpLog() as log:
        graph(*inputs("meta")).backward()
    return log.records


def summarize(records: list[OpRecord]) -> pd.DataFrame:
    """Kernels and GB per op, the heaviest first, with a total row: columns op, kind, kernels, gb."""
    frame = pd.DataFrame([(r.op, r.kind, r.bytes) for r in records], columns=["op", "kind", "bytes"])
    table = (frame.groupby(["op", "kind"], as_index=False)
             .agg(kernels=("bytes", "size"), gb=("bytes", "sum"))
             .sort_values("gb", ascending=False, ignore_index=True))
    table["gb"] = table["gb"] / 1e9
    total = pd.DataFrame([{"op": "total", "kind": "", "kernels": table["kernels"].sum(), "gb": table["gb"].sum()}])
    return pd.concat([table, total], ignore_index=True)


def totals(records: list[OpRecord]) -> dict[str, float]:
    """Kernels and GB of the whole step and of its non-matmul, non-attention part."""
    other = [r for r in records if r.kind == "other"]
    return {"kernels": len(records), "gb": sum(r.bytes for r in records) / 1e9,
            "other_kernels": len(other), "other_gb": sum(r.bytes for r in other) / 1e9}


__all__ = ["OpRecord", "summarize", "totals", "trace_cuda_step"]
