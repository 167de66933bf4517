"""One optimisation step of a Gist model (eager, compiled or replayed as a CUDA graph), the optimiser, autocast.

`TrainStep` runs bf16 or fp16 autocast (when asked; fp16 with a gradient scaler, as the release's train.py trains
with `--amp`: torch.autocast + a loss scaler), the GIST loss, backward, optional gradient clipping and the optimiser
step, and returns every loss term as ONE device tensor (no host synchronisation). Two options: `torch.compile` of
the forward + loss, falling back to eager with a logged warning on any compile error (the failed try is undone);
and, on CUDA for image batches, the whole step (forward, backward, clipping, AdamW) captured once per batch shape
as a CUDA graph and replayed, so no Python runs per kernel (a small-batch ViT step otherwise waits on the CPU's
kernel launches); a failed capture falls back to eager with a logged warning, or stops with a clear error where it
left CUDA's random generator unusable. `make_optimizer`: AdamW, fused into one kernel per step on CUDA.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any

import torch
from torch import Tensor, nn

from ..config import GistConfig
from ..losses import LOSS_TERMS, gist_loss

log = logging.getLogger(__name__)

# torch.compile backend; "aot_eager" traces and partitions without generating kernels (tests use it: inductor's
# first compile takes about a minute on a small CPU).
COMPILE_BACKEND = os.environ.get("GIST_COMPILE_BACKEND", "inductor")


def make_optimizer(groups: Iterable[dict[str, Any]], lr: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW over parameter groups: the fused single-kernel implementation on CUDA, torch's default elsewhere."""
    return torch.optim.AdamW(list(groups), lr=lr, fused=device.type == "cuda")


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str, cache_enabled: bool = True) -> AbstractContextManager:
    """bf16 or fp16 autocast on `device` when `precision` is "bf16" or "fp16"; a no-op context otherwise."""
    dtype = AUTOCAST_DTYPES.get(precision)
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None,
                          cache_enabled=cache_enabled)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """The gradient scaler fp16 training needs (torch.amp.GradScaler on the device's type), or None otherwise."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


# ---------------------------------------------------------------------------------------------------- the step
def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class TrainStep:
    """One optimisation step of a Gist model (GistViT, or the text model): `terms = step(x, y)`, kept on the device.

    The step is `zero_grad -> forward (autocast) + GIST loss -> backward -> clip -> optimizer.step`; in fp16 the
    backward runs on the scaled loss, the gradients are unscaled before clipping, and `scaler.step` skips the
    optimiser step whose gradients overflowed (the loss itself stays finite: such a step is not a divergence). It
    returns the loss terms in `LOSS_TERMS` order as a detached float32 (len(LOSS_TERMS),) tensor on the device and
    never reads anything back to the host (except fp16's scaler, which checks the gradients on the host), so a CUDA
    queue never drains between steps.

    With `compile=True` the forward + loss is compiled with `torch.compile` for the first batch shape it sees (static
    shapes, the fastest kernels); a batch of another shape (an epoch's smaller last batch) runs eagerly instead of
    paying a second compilation. A compile error is caught: the step logs a warning, restores the random state the
    failed try consumed, and from then on runs eagerly. Out-of-memory errors are re-raised.

    Args:
        model: The GistViT (its trainable parameters set).
        optimizer: The optimiser over `params`.
        params: The trained parameters (for gradient clipping).
        device: The training device.
        precision: "bf16" or "fp16" (autocast; fp16 with `scaler`) or "fp32".
        grad_clip: Max gradient norm, or None.
        gist: The run's GIST options (`RunConfig.gist`): the loss's terms, weights and temperature.
        compile: Compile the forward + loss.
        backend: torch.compile backend; None = `COMPILE_BACKEND`.
        mode: torch.compile mode (e.g. "max-autotune-no-cudagraphs"); None = torch's default.
        cuda_graph: On CUDA, capture the whole step once per image-batch shape and replay it (eager model only;
            not with fp16, whose scaler decides on the host whether a step runs: a logged note, then eager steps).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, params: list[nn.Parameter],
                 device: torch.device, precision: str = "fp32", grad_clip: float | None = None, *,
                 gist: GistConfig, compile: bool = False, backend: str | None = None, mode: str | None = None,
                 cuda_graph: bool = False) -> None:
        self.model, self.gist, self.optimizer, self.params = model, gist, optimizer, params
        self.device, self.precision, self.grad_clip = device, precision, grad_clip
        self.scaler = grad_scaler(device, precision)  # fp16 only; its state goes into the resume state
        self.compile_error: str | None = None
        self._shape: tuple | None = None  # the batch shape the compiled graph is for
        self._compiled: Callable[[Any, Tensor], Tensor] | None = None
        if compile:
            self._compiled = torch.compile(self.forward_loss, backend=backend or COMPILE_BACKEND, mode=mode,
                                           dynamic=False)
        # Whole-step CUDA graphs (eager model only: a compiled one is left to torch.compile's own modes).
        self.graph_error: str | None = None
        self._graphs: dict[tuple, _StepGraph] = {}
        self._eager_steps = 0
        self._lr: list[Tensor] = []
        self._side: torch.cuda.Stream | None = None
        self.cuda_graph = cuda_graph and device.type == "cuda" and not compile
        if self.cuda_graph and self.scaler is not None:
            log.info("train.cuda_graph is not used with fp16 precision (the gradient scaler decides on the host "
                     "whether each step runs); training runs eagerly")
            self.cuda_graph = False
        if self.cuda_graph:
            self._make_capturable()

    @property
    def graphed(self) -> bool:
        """Whether steps replay a captured CUDA graph (False before the first capture and after a fallback)."""
        return self.cuda_graph and bool(self._graphs)

    @property
    def compiled(self) -> bool:
        """Whether steps run compiled (False after a fallback)."""
        return self._compiled is not None

    def forward_loss(self, x: Any, y: Tensor, cache_enabled: bool = True) -> Tensor:
        """Eager forward + GIST loss: every term stacked, (len(LOSS_TERMS),); the last one, total, has a graph."""
        with autocast(self.device, self.precision, cache_enabled):
            out = self.model(x)
        terms = gist_loss(out.cls_logits, out.gist_logits, y, self.gist)
        return torch.stack([terms[k].float() for k in LOSS_TERMS])  # (6,) total last

    def _backward(self, values: Tensor) -> None:
        """Backward from the total loss (the last term), scaled by the fp16 gradient scaler if there is one."""
        loss = values[-1]
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def _compiled_forward_backward(self, x: Any, y: Tensor) -> Tensor:
        shape = _shape_key(x)
        if self._shape is not None and shape != self._shape:  # another shape: eager, no second compilation
            values = self.forward_loss(x, y)
            self._backward(values)
            return values
        rng = _rng_state(self.device) if self._shape is None else None
        try:
            values = self._compiled(x, y)
            self._backward(values)  # a compiled backward is built lazily: its failure is a compile failure too
        except Exception as exc:
            if _is_oom(exc):
                raise
            self._fall_back(exc, rng)
            values = self.forward_loss(x, y)
            self._backward(values)
        self._shape = shape
        return values

    def _fall_back(self, exc: BaseException, rng: tuple[Tensor, Tensor | None] | None) -> None:
        self._compiled = None
        self.compile_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
        if rng is not None:  # the failed try's dropout draws are undone: the eager redo draws the same numbers
            _set_rng_state(self.device, rng)
        self.optimizer.zero_grad(set_to_none=True)
        log.warning("torch.compile failed (%s); training continues eagerly", self.compile_error)

    def __call__(self, x: Any, y: Tensor) -> Tensor:
        """One step on a batch (images (B, 3, H, W), or a text batch's dict) and labels (B,).

        Returns:
            The detached loss terms on the device, (len(LOSS_TERMS),) float32 in `LOSS_TERMS` order.
        """
        if self.cuda_graph:
            return self._graph_step(x, y)
        return self._eager_step(x, y)

    def _eager_step(self, x: Any, y: Tensor) -> Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        if self._compiled is None:
            values = self.forward_loss(x, y)
            self._backward(values)
        else:
            values = self._compiled_forward_backward(x, y)
        if self.scaler is None:
            if self.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
            self.optimizer.step()
            return values.detach()
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.scaler.step(self.optimizer)  # skipped when the gradients hold an inf or a NaN
        self.scaler.update()
        return values.detach()

    # ------------------------------------------------------------------------------------------ CUDA graphs
    def _make_capturable(self) -> None:
        """Each group's lr becomes a device tensor the graph reads (the scheduler's new value is copied into it
        before every replay), and AdamW keeps its step count on the device (`capturable`)."""
        for group in self.optimizer.param_groups:
            lr = group["lr"]
            group.setdefault("initial_lr", float(lr))  # schedulers scale this float, never the tensor
            tensor = lr if isinstance(lr, Tensor) else torch.tensor(float(lr), device=self.device)
            group["lr"] = tensor
            self._lr.append(tensor)
            if "capturable" in group:
                group["capturable"] = True

    def _sync_lr(self) -> None:
        """Copy a scheduler's float lr (older torch replaces the tensor) into the tensor the graph reads."""
        for group, tensor in zip(self.optimizer.param_groups, self._lr, strict=True):
            if group["lr"] is not tensor:
                tensor.fill_(float(group["lr"]))
                group["lr"] = tensor

    def _graph_step(self, x: Any, y: Tensor) -> Tensor:
        """A replay of the step's graph for this batch shape; warm-up steps (real, eager) and the capture first."""
        self._sync_lr()
        if not isinstance(x, Tensor):  # text batches: a new padded length per batch, and mask checks on the host
            return self._eager_step(x, y)
        key = (_shape_key(x), tuple(y.shape))
        graph = self._graphs.get(key)
        if graph is not None:
            return graph.replay(x, y)
        if self._eager_steps < GRAPH_WARMUP_STEPS or len(self._graphs) >= MAX_GRAPHS:
            # the first steps run eagerly, so that lazy initialisations (cuBLAS, AdamW's state) happen outside a
            # capture; so do shapes beyond MAX_GRAPHS
            return self._side_stream_step(x, y)
        try:
            graph = self._capture(x, y)
        except Exception as exc:
            self.optimizer.zero_grad(set_to_none=True)
            if _is_oom(exc):
                raise
            self.cuda_graph = False
            self._graphs.clear()
            self.graph_error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
            log.warning("CUDA graph capture failed (%s); training continues eagerly", self.graph_error)
            try:
                return self._eager_step(x, y)
            except RuntimeError as after:  # a capture that failed half-way can leave CUDA's RNG unusable
                raise RuntimeError(f"CUDA graph capture failed ({self.graph_error}) and left CUDA unusable for "
                                   f"this process ({after}); run again with train.cuda_graph: false") from exc
        self._graphs[key] = graph
        return graph.replay(x, y)

    def _side_stream_step(self, x: Tensor, y: Tensor) -> Tensor:
        """An eager step on a side stream, as CUDA graph capture requires of the steps before it."""
        self._side = self._side or torch.cuda.Stream(self.device)
        self._side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self._side):
            values = self._eager_step(x, y)
        torch.cuda.current_stream(self.device).wait_stream(self._side)
        self._eager_steps += 1
        return values

    def _capture(self, x: Tensor, y: Tensor) -> _StepGraph:
        """Record (not run) one whole step on static copies of the batch; the gradients it writes are its own."""
        static_x, static_y = x.clone(), y.clone()
        self.optimizer.zero_grad(set_to_none=True)  # the captured backward allocates its gradients in the pool
        graph = torch.cuda.CUDAGraph()
        benchmark = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = False  # cuDNN's FIND cannot run inside a capture (its key sees alignment)
        try:
            with torch.cuda.graph(graph):
                values = self.forward_loss(static_x, static_y, cache_enabled=False)  # no cast cache outlives it
                values[-1].backward()
                if self.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip)
                self.optimizer.step()
        finally:
            torch.backends.cudnn.benchmark = benchmark
        grads = [p.grad for p in self.params]  # kept alive: the graph writes them on every replay
        return _StepGraph(graph, static_x, static_y, values.detach(), grads)


GRAPH_WARMUP_STEPS = 3  # eager steps before the first capture (each one a real training step)
MAX_GRAPHS = 2  # batch shapes captured per run (the full batch and an epoch's last one); others run eagerly


class _StepGraph:
    """A captured training step: its static inputs, its loss-terms output and the gradients it owns."""

    def __init__(self, graph: torch.cuda.CUDAGraph, x: Tensor, y: Tensor, values: Tensor, grads: list) -> None:
        self.graph, self.x, self.y, self.values, self.grads = graph, x, y, values, grads

    def replay(self, x: Tensor, y: Tensor) -> Tensor:
        """Copy the batch in, run the step, return a copy of its loss terms (the graph overwrites its own)."""
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
        return self.values.clone()


def _shape_key(x: Any) -> tuple:
    """The input's shapes: a tensor's, or each entry's of a mapping (text batches are dicts of tensors)."""
    if isinstance(x, Tensor):
        return tuple(x.shape)
    if isinstance(x, Mapping):
        return tuple((k, tuple(v.shape)) for k, v in sorted(x.items()))
    return (type(x).__name__,)


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def _set_rng_state(device: torch.device, state: tuple[Tensor, Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)



__all__ = ["AUTOCAST_DTYPES", "COMPILE_BACKEND", "TrainStep", "autocast", "grad_scaler", "make_optimizer"]
